//! A sealwire server for load tests, with the same control endpoints as the IGNIS anchor.
//!
//! WebSockets on `--listen` (path `/ws`, any non-empty token is the user id, every room may
//! be joined); on `--control` an HTTP API for the load tool:
//! - `POST /burst {count, size, room?, event?}` sends `count` messages whose plaintext
//!   envelope `{"event":..,"data":{"s":seq,"t":epochMs,"p":"xx.."}}` is `size` bytes, in one
//!   tight loop inside the server: to `room` when given (IGNIS `send()` routing), else to
//!   everyone.
//! - `GET /stats` client counts, pid and resident memory; `GET /metrics` the server's metrics.
//!
//! ```text
//! cargo build --release --example bench_server --example loadgen
//! ulimit -n $(ulimit -Hn)
//! target/release/examples/bench_server --listen 127.0.0.1:8090 --control 127.0.0.1:8091 \
//!     [--require-encryption] [--backend aws-lc|p256] [--read-buffer BYTES] [--write-buffer BYTES]
//!     [--reuse-port] [--history-rooms GLOBS] [--history-broadcast] [--history-size N]
//!     [--redis URL] [--publish-concurrency N] [--room-keys GLOBS]
//! ```

#[path = "common/proc.rs"]
mod proc;

use sealwire::compat::IgnisSend;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::{Json, Router, extract::State, routing::get, routing::post};
use futures_util::StreamExt as _;
use sealwire::server::{AuthRequest, ClientInfo, Identity, Server, ServerConfig};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Burst {
    #[serde(default = "default_count")]
    count: u64,
    #[serde(default = "default_size")]
    size: usize,
    room: Option<String>,
    event: Option<String>,
}

fn default_count() -> u64 {
    1000
}

fn default_size() -> usize {
    200
}

fn now_ms() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as f64 / 1000.0
}

#[derive(serde::Serialize)]
struct BenchData<'a> {
    s: u64,
    t: f64,
    p: &'a str,
}

async fn burst(State(server): State<Server>, Json(b): Json<Burst>) -> Json<Value> {
    let event = b.event.unwrap_or_else(|| "bench".to_owned());
    let pad_for = |s: u64, t: f64| {
        let base =
            serde_json::to_string(&json!({"event": event, "data": {"s": s, "t": t, "p": ""}}))
                .map(|j| j.len())
                .unwrap_or(0);
        "x".repeat(b.size.saturating_sub(base))
    };
    let t0 = now_ms();
    // Publications in flight at once (`--publish-concurrency`, default 1: one after the
    // other). Started in order, so a stream's order is the loop's.
    let concurrency = arg("--publish-concurrency")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let (server, event, room) = (&server, &event, b.room.as_deref());
    let recipients: usize = futures_util::stream::iter(0..b.count)
        .map(|s| {
            let t = now_ms();
            let pad = pad_for(s, t);
            async move {
                let data = BenchData { s, t, p: &pad };
                server
                    .send(room, event, &data)
                    .await
                    .map_or(0, |r| r.local_recipients)
            }
        })
        .buffered(concurrency)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    let t1 = now_ms();
    Json(json!({
        "ok": true, "count": b.count, "size": b.size, "room": b.room,
        "t0": t0, "loop_ms": t1 - t0, "local_recipients": recipients,
    }))
}

fn rss_bytes() -> u64 {
    proc::rss_bytes("self").unwrap_or(0)
}

async fn stats(State(server): State<Server>) -> Json<Value> {
    let c = server.counts();
    Json(json!({
        "pid": std::process::id(),
        "clients": c.clients,
        "authenticated": c.authenticated,
        "encrypted": c.encrypted,
        "rss": rss_bytes(),
    }))
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let control = arg("--control").unwrap_or_else(|| "127.0.0.1:8091".to_owned());
    let mut config = ServerConfig::default();
    if std::env::args().any(|a| a == "--require-encryption") {
        config.encryption = sealwire::server::EncryptionPolicy::Required;
    }
    if arg("--backend").as_deref() == Some("p256") {
        config.handshake.backend = sealwire::crypto::Backend::RustCrypto;
    }
    let mut http = sealwire::transport::HttpConfig::default();
    if let Some(n) = arg("--read-buffer").and_then(|v| v.parse().ok()) {
        http.read_buffer_bytes = n;
    }
    if let Some(n) = arg("--write-buffer").and_then(|v| v.parse().ok()) {
        http.write_buffer_bytes = n;
    }
    if let Some(globs) = arg("--history-rooms") {
        config.history.rooms = globs.split(',').map(str::to_owned).collect();
    }
    config.history.broadcast = std::env::args().any(|a| a == "--history-broadcast");
    if let Some(n) = arg("--history-size").and_then(|v| v.parse().ok()) {
        config.history.size = n;
    }
    if let Some(globs) = arg("--room-keys") {
        config.room_keys.rooms = globs.split(',').map(str::to_owned).collect();
    }
    // Long enough for tens of thousands of clients to connect before any sweep matters.
    config.auth_timeout = Duration::from_secs(60);
    let mut builder = Server::builder();
    // With Redis: the Redis bus, and history (when on) in Redis Streams.
    if let Some(url) = arg("--redis") {
        use sealwire::bus::{RedisBus, RedisBusConfig};
        let bus = RedisBus::new(RedisBusConfig::new(url))?;
        if config.history.enabled() {
            builder =
                builder.history_store(bus.history_store(config.history.size, config.history.ttl)?);
        }
        builder = builder.bus(bus);
    }
    let server = builder
        .config(config)
        .authenticate(|req: AuthRequest| async move {
            Ok(req.token.filter(|t| !t.is_empty()).map(Identity::new))
        })
        .validate_rooms(|_: std::sync::Arc<ClientInfo>, rooms: Vec<String>| async move { rooms })
        .build()?;
    let addr: std::net::SocketAddr = listen.parse().context("--listen must be IP:port")?;
    let ws = if std::env::args().any(|a| a == "--reuse-port") {
        sealwire::transport::bind_shared(addr)
    } else {
        sealwire::transport::bind(addr)
    }
    .with_context(|| format!("bind {listen}"))?;
    let ctl = tokio::net::TcpListener::bind(&control)
        .await
        .with_context(|| format!("bind {control}"))?;
    let app = Router::new()
        .route("/burst", post(burst))
        .route("/stats", get(stats))
        .route(
            "/metrics",
            get(|State(server): State<Server>| async move { server.render_metrics().0 }),
        )
        .with_state(server.clone());
    tokio::spawn(async move { axum::serve(ctl, app).await });
    println!(
        "BENCH SERVER READY pid={} ws=ws://{listen}/ws control=http://{control}",
        std::process::id()
    );
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    sealwire::transport::serve_with_shutdown(ws, server, http, stop).await?;
    Ok(())
}
