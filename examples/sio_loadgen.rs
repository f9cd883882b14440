//! Socket.IO fan-out load tool in Rust: the same measurement as `benches/sio/load.mjs`, with
//! clients cheap enough that the server, not the tool, sets the pace on a shared box.
//!
//! N clients speak Socket.IO v4 over the engine.io websocket transport
//! (`{url}{path}/?EIO=4&transport=websocket`) and authenticate the IGNIS way: credentials in
//! the `CONNECT` auth (`{token}`), then `authenticate` with no arguments, answered by
//! `authenticated {id, time}`. Then `--count` broadcasts of `--size` bytes go out through the
//! server's REST API (`POST {rest}/broadcast {topic: "bench", data: {s, t, p}}`, the same
//! endpoint on sealwire and on the IGNIS Socket.IO anchor) with `--concurrency` requests in
//! flight, and every client counts what it receives. Prints one JSON line: delivered msgs/s,
//! losses, out-of-order deliveries, latency from each publish request (p50/p99/max), first
//! delivery per client (p50/p99), and the server's CPU per delivered message (utime+stime from
//! `/proc/<pid>/stat`).
//!
//! `--encrypted`: every client offers a P-256 `publicKey` in its auth, derives the
//! compatibility-profile key from `serverPublicKey`/`salt` of `authenticated`, and opens every
//! `encrypted {iv, ct}` event. A message that does not open counts in `decrypt_failures`; any
//! other event on an encrypted socket counts in `plaintext_events`.
//!
//! `--door ws`: the same clients, credentials, burst and counting over sealwire's `/ws`
//! (`{"event":"authenticate","data":{token, publicKey}}`, answered by `connected`), so that
//! the two doors of one server are compared under one client load.
//!
//! ```text
//! cargo build --release --all-features --bins --example sio_loadgen
//! target/release/sealwire serve --dev --listen 127.0.0.1:18100 --admin-token benchtoken &
//! target/release/examples/sio_loadgen --url http://127.0.0.1:18100 --admin-token benchtoken \
//!     --server-pid $! --clients 500 --count 1000 [--encrypted] [--door ws]
//! # the IGNIS anchor: a copy of shared/anchors/ignis-sio, REDIS_PORT=6395 PORT=3200 LOG=off ./run.sh
//! target/release/examples/sio_loadgen --url http://127.0.0.1:3200 --server-pid <node pid> ...
//! ```

#[path = "common/load.rs"]
mod load;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use load::{clk_tck, cpu_secs, pct};
use sealwire::crypto::{ClientHandshake, HandshakeConfig, Session};
use sealwire::protocol::EncryptedPayload;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Door {
    /// Socket.IO v4 over the engine.io websocket transport.
    Io,
    /// sealwire's WebSocket door.
    Ws,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "Socket.IO fan-out load tool (sealwire or the IGNIS Socket.IO anchor)")]
struct Args {
    /// Base HTTP URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:18100")]
    url: String,
    /// Socket.IO path.
    #[arg(long, default_value = "/io")]
    path: String,
    /// Which door the clients use.
    #[arg(long, value_enum, default_value = "io")]
    door: Door,
    /// WebSocket path (`--door ws`).
    #[arg(long, default_value = "/ws")]
    ws_path: String,
    /// Base URL of the REST API; `{url}/socket` when absent.
    #[arg(long)]
    rest: Option<String>,
    /// Bearer token for the REST API.
    #[arg(long)]
    admin_token: Option<String>,
    /// Server process id, for the CPU figure.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Number of clients.
    #[arg(long, default_value_t = 500)]
    clients: usize,
    /// Broadcasts in the burst.
    #[arg(long, default_value_t = 200)]
    count: u64,
    /// Approximate size of each broadcast's `data` in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Publish requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Connection attempts in flight.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Clients handshake and open every message.
    #[arg(long)]
    encrypted: bool,
    /// Messages one client reads before it lets the others read.
    #[arg(long, default_value_t = 16)]
    read_turn: usize,
    /// Give up waiting for deliveries after this many seconds without progress.
    #[arg(long, default_value_t = 10)]
    stall_secs: u64,
    /// Free-form label copied into the result.
    #[arg(long, default_value = "")]
    label: String,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Wall-clock milliseconds since the epoch (the `t` of each publication).
fn wall_ms() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as f64 / 1000.0
}

/// One event as a client sees it: its name and its one argument.
struct Event<'a> {
    name: Cow<'a, str>,
    data: Option<&'a RawValue>,
}

/// A Socket.IO `EVENT` packet of the default namespace: `42["name", data]`.
#[derive(Deserialize)]
struct SioEvent<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow, default)] Option<&'a RawValue>,
);

/// A `/ws` frame: `{"event": ..., "data": ...}`.
#[derive(Deserialize)]
struct WsFrame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// What one text message from the server is.
enum Packet<'a> {
    /// An engine.io ping: the client must answer `3`.
    Ping,
    /// An event.
    Event(Event<'a>),
    /// The server ended the session (engine.io close, Socket.IO disconnect or connect error).
    Gone,
    /// Anything else (the engine.io open packet, the `CONNECT` answer, noise).
    Other,
}

fn parse(door: Door, text: &str) -> Packet<'_> {
    match door {
        Door::Io => match text.as_bytes() {
            b"2" => Packet::Ping,
            [b'1', ..] | [b'4', b'1', ..] | [b'4', b'4', ..] => Packet::Gone,
            [b'4', b'2', ..] => match serde_json::from_str::<SioEvent<'_>>(&text[2..]) {
                Ok(SioEvent(name, data)) => Packet::Event(Event { name, data }),
                Err(_) => Packet::Other,
            },
            _ => Packet::Other,
        },
        Door::Ws => match serde_json::from_str::<WsFrame<'_>>(text) {
            Ok(f) => Packet::Event(Event {
                name: f.event,
                data: f.data,
            }),
            Err(_) => Packet::Other,
        },
    }
}

/// Reads until an event named one of `names` (answering engine.io pings); returns its name
/// and argument.
async fn wait_for(ws: &mut Ws, door: Door, names: &[&str]) -> anyhow::Result<(String, Value)> {
    loop {
        let msg = ws.next().await.context("closed")??;
        let Message::Text(text) = msg else {
            if msg.is_close() {
                bail!("closed: {msg:?}");
            }
            continue;
        };
        match parse(door, text.as_str()) {
            Packet::Ping => ws.send(Message::text("3")).await?,
            Packet::Gone => bail!("the server ended the session: {}", text.as_str()),
            Packet::Event(e) if names.contains(&e.name.as_ref()) => {
                let data = match e.data {
                    Some(d) => serde_json::from_str(d.get())?,
                    None => Value::Null,
                };
                return Ok((e.name.into_owned(), data));
            }
            Packet::Event(_) | Packet::Other => {}
        }
    }
}

/// `fut`, or an error naming the step of the connection that did not finish in time.
async fn stage<F: std::future::Future>(what: &str, fut: F) -> anyhow::Result<F::Output> {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .map_err(|_| anyhow::anyhow!("no {what} within 20 s"))
}

struct Client {
    ws: Ws,
    session: Option<Session>,
}

async fn connect_one(i: usize, args: &Args) -> anyhow::Result<Client> {
    let base = args.url.replacen("http", "ws", 1);
    let target = match args.door {
        Door::Io => format!(
            "{base}{}/?EIO=4&transport=websocket",
            args.path.trim_end_matches('/')
        ),
        Door::Ws => format!("{base}{}", args.ws_path),
    };
    let (mut ws, _) = stage(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(target),
    )
    .await??;
    let hs = args
        .encrypted
        .then(|| ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng()));
    let mut auth = json!({"token": format!("load-{i}")});
    if let Some(hs) = &hs {
        auth["publicKey"] = json!(hs.public_key_base64());
    }
    let payload = match args.door {
        Door::Io => {
            ws.send(Message::text(format!("40{auth}"))).await?;
            // The `CONNECT` answer (`40{"sid":..}`) carries no event: wait for it, then ask.
            loop {
                let msg = stage("the CONNECT answer", ws.next())
                    .await?
                    .context("closed before CONNECT")??;
                let text = msg.to_text().unwrap_or_default();
                if text.starts_with("40") {
                    break;
                }
                if text.starts_with("44") || text.starts_with('1') {
                    bail!("connect refused: {text}");
                }
            }
            ws.send(Message::text(r#"42["authenticate"]"#)).await?;
            let (name, data) = stage(
                "authenticated",
                wait_for(&mut ws, Door::Io, &["authenticated", "unauthenticated"]),
            )
            .await??;
            if name != "authenticated" {
                bail!("unauthenticated: {data}");
            }
            data
        }
        Door::Ws => {
            let frame = json!({"event": "authenticate", "data": auth});
            ws.send(Message::text(frame.to_string())).await?;
            let (name, data) = wait_for(&mut ws, Door::Ws, &["connected", "error"]).await?;
            if name != "connected" {
                bail!("refused: {data}");
            }
            data
        }
    };
    let session = match hs {
        None => None,
        Some(hs) => {
            let field = |k: &str| payload[k].as_str().context(format!("no {k}"));
            Some(hs.finish(field("serverPublicKey")?, field("salt")?)?)
        }
    };
    Ok(Client { ws, session })
}

#[derive(Default)]
struct Totals {
    delivered: AtomicU64,
    out_of_order: AtomicU64,
    decrypt_failures: AtomicU64,
    plaintext_events: AtomicU64,
    last_delivery_us: AtomicU64,
}

#[derive(Deserialize)]
struct Bench {
    s: i64,
    t: f64,
}

/// Reads one client's messages until `stop`; returns its latencies from each publish request
/// (µs).
async fn receive(
    mut c: Client,
    door: Door,
    totals: Arc<Totals>,
    start: Instant,
    stop: CancellationToken,
    turn: usize,
) -> Vec<u32> {
    let mut lat = Vec::new();
    let mut prev = -1i64;
    let mut in_turn = 0usize;
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            m = c.ws.next() => m,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let at = wall_ms();
        let event = match parse(door, text.as_str()) {
            Packet::Ping => {
                let _ = c.ws.send(Message::text("3")).await;
                continue;
            }
            Packet::Gone => break,
            Packet::Other => continue,
            Packet::Event(e) => e,
        };
        let opened;
        let (name, data) = match &mut c.session {
            Some(session) if event.name == "encrypted" => {
                opened = event
                    .data
                    .and_then(|d| serde_json::from_str::<EncryptedPayload>(d.get()).ok())
                    .and_then(|p| session.open(&p).ok());
                let inner = opened
                    .as_deref()
                    .and_then(|pt| serde_json::from_slice::<WsFrame<'_>>(pt).ok());
                match inner {
                    Some(f) => (f.event, f.data),
                    None => {
                        totals.decrypt_failures.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            Some(_) => {
                totals.plaintext_events.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            None => (event.name, event.data),
        };
        if name != "bench" {
            continue;
        }
        let Some(b) = data.and_then(|d| serde_json::from_str::<Bench>(d.get()).ok()) else {
            continue;
        };
        lat.push(((at - b.t) * 1000.0).clamp(0.0, f64::from(u32::MAX)) as u32);
        if b.s <= prev {
            totals.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        prev = prev.max(b.s);
        totals.delivered.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        totals.last_delivery_us.fetch_max(us, Ordering::Relaxed);
        // One simulated device must not make the others wait (as in `loadgen`).
        in_turn += 1;
        if turn > 0 && in_turn >= turn {
            in_turn = 0;
            tokio::task::yield_now().await;
        }
    }
    let _ = c.ws.close(None).await;
    lat
}

/// Posts the burst: `count` broadcasts, `concurrency` requests in flight.
async fn publish(args: &Args) -> anyhow::Result<()> {
    let rest = args
        .rest
        .clone()
        .unwrap_or_else(|| format!("{}/socket", args.url));
    let http = reqwest::Client::new();
    let pad = "x".repeat(args.size.saturating_sub(60));
    let next = AtomicU64::new(0);
    let worker = || async {
        loop {
            let s = next.fetch_add(1, Ordering::Relaxed);
            if s >= args.count {
                return Ok::<_, anyhow::Error>(());
            }
            let body = json!({"topic": "bench", "data": {"s": s, "t": wall_ms(), "p": pad}});
            let mut req = http.post(format!("{rest}/broadcast")).json(&body);
            if let Some(t) = &args.admin_token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await?;
            if !res.status().is_success() {
                bail!("broadcast {s}: HTTP {}", res.status());
            }
            res.bytes().await?;
        }
    };
    futures_util::future::try_join_all((0..args.concurrency.max(1)).map(|_| worker())).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let t_connect = Instant::now();
    let sem = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut handles = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let permit = Arc::clone(&sem).acquire_owned().await?;
        let a = Arc::clone(&args);
        handles.push(tokio::spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(30), connect_one(i, &a)).await;
            drop(permit);
            r.map_err(|_| anyhow::anyhow!("connect timed out"))?
        }));
    }
    let mut clients = Vec::with_capacity(args.clients);
    let mut first_error = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await? {
            Ok(c) => clients.push(c),
            Err(e) => {
                first_error.get_or_insert_with(|| format!("client {i}: {e:#}"));
            }
        }
    }
    let connected = clients.len();
    let connect_secs = t_connect.elapsed().as_secs_f64();
    eprintln!("connected {connected} clients in {connect_secs:.2}s");
    if connected == 0 {
        bail!("no client connected: {}", first_error.unwrap_or_default());
    }
    // Let the joins and the first app pings land.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let totals = Arc::new(Totals::default());
    let stop = CancellationToken::new();
    let start = Instant::now();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|c| {
            tokio::spawn(receive(
                c,
                args.door,
                Arc::clone(&totals),
                start,
                stop.clone(),
                args.read_turn,
            ))
        })
        .collect();

    let expected = connected as u64 * args.count;
    let tck = clk_tck();
    let (cpu0, self0) = (cpu_secs(args.server_pid, tck), cpu_secs(None, tck));
    publish(&args).await?;
    let (mut last, mut since) = (0, Instant::now());
    loop {
        let d = totals.delivered.load(Ordering::Relaxed);
        if d >= expected {
            break;
        }
        if d != last {
            (last, since) = (d, Instant::now());
        } else if since.elapsed() > Duration::from_secs(args.stall_secs) {
            eprintln!("stalled at {d} of {expected}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (cpu1, self1) = (cpu_secs(args.server_pid, tck), cpu_secs(None, tck));
    stop.cancel();
    let mut all = Vec::with_capacity(expected as usize);
    let mut firsts = Vec::with_capacity(connected);
    for r in readers {
        let lat = r.await?;
        if let Some(f) = lat.iter().min() {
            firsts.push(*f);
        }
        all.extend(lat);
    }
    all.sort_unstable();
    firsts.sort_unstable();
    let delivered = totals.delivered.load(Ordering::Relaxed);
    let secs = totals.last_delivery_us.load(Ordering::Relaxed) as f64 / 1e6;
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let result = json!({
        "tool": "sealwire-sio-loadgen",
        "label": args.label,
        "door": format!("{:?}", args.door).to_lowercase(),
        "encrypted": args.encrypted,
        "clients": args.clients,
        "connected": connected,
        "connect_failures": args.clients - connected,
        "first_error": first_error,
        "count": args.count,
        "size": args.size,
        "concurrency": args.concurrency,
        "connect_secs": connect_secs,
        "expected": expected,
        "delivered": delivered,
        "lost": expected.saturating_sub(delivered),
        "out_of_order": totals.out_of_order.load(Ordering::Relaxed),
        "decrypt_failures": totals.decrypt_failures.load(Ordering::Relaxed),
        "plaintext_events": totals.plaintext_events.load(Ordering::Relaxed),
        "delivered_per_s": delivered as f64 / secs.max(1e-9),
        "latency_from_request_ms": {"p50": pct(&all, 0.5), "p99": pct(&all, 0.99), "max": pct(&all, 1.0)},
        "first_delivery_ms": {"p50": pct(&firsts, 0.5), "p99": pct(&firsts, 0.99)},
        "server_cpu_secs": server_cpu,
        "server_cpu_us_per_msg": server_cpu.map(|c| c * 1e6 / delivered.max(1) as f64),
        "loadgen_cpu_secs": self0.zip(self1).map(|(a, b)| b - a),
    });
    println!("{result}");
    Ok(())
}
