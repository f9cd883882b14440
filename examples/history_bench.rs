//! Message history costs: how long a reconnecting client takes to recover N missed messages,
//! and what a stream costs in memory.
//!
//! ```text
//! cargo run --release --example history_bench -- [--missed 1000] [--runs 20] [--size 200] \
//!     [--streams 1000] [--per-stream 100] [--redis redis://127.0.0.1:6390]
//! ```
//!
//! With `--redis`, history lives in Redis Streams (the shared store `sealwire serve
//! --redis-url` uses) and memory is Redis's `used_memory` instead of this process's RSS; use a
//! private, empty Redis.
//!
//! Recovery: a server with history on `orders:*` (in this process, real WebSockets over
//! loopback); per run, `missed` messages of `size` bytes are published to a room while its
//! client is away, then a fresh encrypted client (compatibility profile) authenticates and joins with its last
//! position, and the time from sending the `join` to the `recovered` answer (every replayed
//! message decrypted on the way) is recorded. Memory: the process's RSS before and after
//! `streams` rooms receive `per-stream` messages each.

#[path = "common/proc.rs"]
mod proc;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use sealwire::crypto::{ClientHandshake, HandshakeConfig, Session};
use sealwire::publish::Publish;
use sealwire::server::{AuthRequest, GlobRooms, Identity, Server, ServerConfig};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_bytes() -> u64 {
    proc::rss_bytes("self").unwrap_or(0)
}

/// A compatibility-profile encrypted client: authenticate with `recover: {}`, read
/// `connected` and the first `recovered`.
async fn connect(url: &str, user: &str) -> anyhow::Result<(Ws, Session)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let hs = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
    let auth = json!({"event": "authenticate", "data": {
        "token": user, "publicKey": hs.public_key_base64(), "recover": {}}});
    ws.send(Message::text(auth.to_string())).await?;
    let connected: Value = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t)?,
        other => bail!("expected connected, got {other:?}"),
    };
    let d = &connected["data"];
    let mut session = hs.finish(
        d["serverPublicKey"].as_str().context("key")?,
        d["salt"].as_str().context("salt")?,
    )?;
    until_recovered(&mut ws, &mut session).await?;
    Ok((ws, session))
}

/// Reads (and decrypts) until `recovered`; returns the messages before it and the answer.
async fn until_recovered(ws: &mut Ws, session: &mut Session) -> anyhow::Result<(usize, Value)> {
    let mut n = 0;
    loop {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            bail!("connection ended before recovered");
        };
        let frame: Value = serde_json::from_str(&t)?;
        let payload = serde_json::from_value(frame["data"].clone())?;
        let inner: Value = serde_json::from_slice(&session.open(&payload)?)?;
        if inner["event"] == "recovered" {
            return Ok((n, inner["data"].clone()));
        }
        n += 1;
    }
}

async fn join(ws: &mut Ws, session: &mut Session, recover: &Value) -> anyhow::Result<()> {
    let inner = json!({"event": "join", "data": {"rooms": ["orders:bench"], "recover": recover}});
    let sealed = session.seal(inner.to_string().as_bytes())?;
    ws.send(Message::text(
        json!({"event": "encrypted", "data": sealed}).to_string(),
    ))
    .await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

/// Redis's `used_memory`, in bytes.
async fn redis_used_memory(url: &str) -> anyhow::Result<u64> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("used_memory in INFO")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let missed = arg("--missed", 1000);
    let runs = arg("--runs", 20);
    let size = arg("--size", 200);
    let streams = arg("--streams", 1000);
    let per_stream = arg("--per-stream", 100);

    let mut config = ServerConfig::default();
    config.history.rooms = vec!["orders:*".to_owned()];
    config.history.size = missed.max(per_stream);
    let redis_url = text_arg("--redis");
    let mut builder = Server::builder();
    if let Some(url) = &redis_url {
        use sealwire::bus::{RedisBus, RedisBusConfig};
        let bus = RedisBus::new(RedisBusConfig::new(url.as_str()))?;
        builder = builder
            .history_store(bus.history_store(config.history.size, config.history.ttl)?)
            .bus(bus);
    }
    let server = builder
        .config(config)
        .authenticate(|req: AuthRequest| async move { Ok(req.token.map(Identity::new)) })
        .validate_rooms(GlobRooms::new(["orders:*"])?)
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    tokio::spawn(sealwire::transport::serve(listener, server.clone()));
    while !server.is_ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pad = "x".repeat(size.saturating_sub(60));

    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let (mut ws, mut session) = connect(&url, "bench").await?;
        join(&mut ws, &mut session, &json!({})).await?;
        let (_, answer) = until_recovered(&mut ws, &mut session).await?;
        let position = answer["streams"][0].clone();
        drop(ws);
        for n in 0..missed {
            server
                .to_room("orders:bench")
                .emit("order", &json!({"run": run, "n": n, "p": pad}))
                .await?;
        }
        let (mut ws, mut session) = connect(&url, "bench").await?;
        let recover = json!({"room:orders:bench": {"offset": position["offset"], "epoch": position["epoch"]}});
        let started = Instant::now();
        join(&mut ws, &mut session, &recover).await?;
        let (replayed, answer) = until_recovered(&mut ws, &mut session).await?;
        let took = started.elapsed();
        if replayed != missed || answer["streams"][0]["recovered"] != true {
            bail!("run {run}: replayed {replayed} of {missed}: {answer}");
        }
        times.push(took);
    }
    times.sort();
    let store = if redis_url.is_some() {
        "Redis Streams"
    } else {
        "memory"
    };
    println!(
        "[{store}] recover {missed} missed messages of {size} B (compatibility-profile session, from join to recovered, every message decrypted): median {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms over {runs} runs",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.95).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );

    let memory = || async {
        match &redis_url {
            Some(url) => redis_used_memory(url).await,
            None => Ok(rss_bytes()),
        }
    };
    let before = memory().await?;
    for s in 0..streams {
        for n in 0..per_stream {
            server
                .to_room(format!("orders:mem{s}"))
                .emit("order", &json!({"n": n, "p": pad}))
                .await?;
        }
    }
    let after = memory().await?;
    let kept = (streams * per_stream) as f64;
    let what = if redis_url.is_some() {
        "Redis used_memory"
    } else {
        "RSS"
    };
    println!(
        "[{store}] memory: {streams} streams x {per_stream} messages of {size} B: {what} +{:.1} MiB, {:.0} B per kept message, {:.1} KiB per stream",
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / kept,
        (after - before) as f64 / streams as f64 / 1024.0,
    );
    Ok(())
}
