//! Load generator: drives a running server (sealwire or the IGNIS anchor) over real sockets
//! and prints one JSON result line on stdout (progress goes to stderr).
//!
//! Scenarios:
//! - `connect`: N clients connect, authenticate and (with `--encrypted`) handshake, with at
//!   most `--concurrency` in flight: handshakes/s and server CPU per handshake.
//! - `fanout`: N clients connect (joining `--room` when given), then `POST {control}/burst`
//!   makes the server send `--count` messages of `--size` bytes to the room (or everyone);
//!   reports delivered msgs/s, p50/p99/max latency (from each message's creation, and from the
//!   publish request), p50/p99/max over clients of the first delivery, losses, out-of-order deliveries
//!   (a sequence number not above the previous one the same client saw), decryption
//!   failures, plaintext frames on encrypted sessions, and server CPU per delivered message.
//! - `idle`: N clients connect and stay idle for `--hold-secs`: server RSS per connection.
//!
//! Server CPU is the utime+stime delta of `--server-pid` from /proc/<pid>/stat; RSS is VmRSS
//! from /proc/<pid>/status. Connections are spread over `--sources` loopback source
//! addresses (127.0.0.1, 127.0.0.2, ...) so that more than one ephemeral port range is
//! available, and the tool raises its own RLIMIT_NOFILE soft limit to the hard limit.
//!
//! ```text
//! cargo build --release --example bench_server --example loadgen
//! ulimit -n $(ulimit -Hn)
//! # sealwire
//! target/release/examples/bench_server --listen 127.0.0.1:8090 --control 127.0.0.1:8091 &
//! target/release/examples/loadgen --url ws://127.0.0.1:8090/ws --control http://127.0.0.1:8091 \
//!     --server-pid $! --scenario fanout --clients 1000 --encrypted 1 --count 1000 --size 200
//! # IGNIS anchor (MODE=encrypted LOG=off ./run.sh in a copy under /tmp)
//! target/release/examples/loadgen --url ws://127.0.0.1:3100/ws --control http://127.0.0.1:3100 \
//!     --server-pid $(pgrep -f 'bun run server.ts') --scenario fanout --clients 1000 --encrypted 1
//! # hardened-profile clients (sealwire only): add --profile hardened
//! # room keys: bench_server --room-keys 'bench*', loadgen --profile hardened --room bench --room-keys
//! # connect storm / idle memory
//! target/release/examples/loadgen ... --scenario connect --clients 10000 --encrypted 1
//! target/release/examples/loadgen ... --scenario idle --clients 19000 --encrypted 1 --sources 4
//! ```

#[path = "common/load.rs"]
mod load;
#[path = "common/proc.rs"]
mod proc;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use load::{clk_tck, cpu_secs, pct};
use sealwire::crypto::room::{self, RoomKeyring};
use sealwire::crypto::{ClientHandshake, HandshakeConfig, Session};
use sealwire::protocol::{ConnectedPayload, EncryptedPayload};
use serde::Deserialize;
use serde_json::{Value, json, value::RawValue};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Scenario {
    Connect,
    Fanout,
    Idle,
}

#[derive(Parser, Debug, Clone)]
#[command(about = "sealwire / IGNIS load generator")]
struct Args {
    /// WebSocket URL of the server.
    #[arg(long, default_value = "ws://127.0.0.1:8090/ws")]
    url: String,
    /// Base URL of the control API (`/burst`, `/stats`).
    #[arg(long)]
    control: Option<String>,
    /// Server process id, for CPU and RSS figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// What to measure.
    #[arg(long, value_enum, default_value = "fanout")]
    scenario: Scenario,
    /// Number of clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Fraction of clients that handshake (0 = all plaintext, 1 = all encrypted).
    #[arg(long, default_value_t = 0.0)]
    encrypted: f64,
    /// Messages per burst (fanout).
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Plaintext envelope size of each message in bytes (fanout).
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Room to join and send to (fanout); none = broadcast.
    #[arg(long)]
    room: Option<String>,
    /// Number of 127.0.0.x source addresses.
    #[arg(long, default_value_t = 1)]
    sources: u8,
    /// Connection attempts in flight.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Seconds to hold idle connections before measuring (idle).
    #[arg(long, default_value_t = 5)]
    hold_secs: u64,
    /// Give up waiting for deliveries after this many seconds without progress.
    #[arg(long, default_value_t = 15)]
    stall_secs: u64,
    /// Messages one client reads before it yields to the others (0: it reads all it has).
    /// Without turns, the client polled first drains its whole socket before the next one
    /// reads, and the tool's own scheduling decides the first-delivery figures.
    #[arg(long, default_value_t = 16)]
    read_turn: usize,
    /// Hardened clients ask for room keys (the server must run with `--room-keys` matching
    /// `--room`).
    #[arg(long)]
    room_keys: bool,
    /// With `--room-keys`: take room records as text frames instead of binary messages (as a
    /// client that does not ask for binary records; `docs/PROTOCOL.md` §14.6).
    #[arg(long)]
    text_room_records: bool,
    /// Crypto profile of the encrypted clients: `compat` (IGNIS) or `hardened` (sealwire-v2).
    #[arg(long, default_value = "compat")]
    profile: String,
    /// Free-form label copied into the result.
    #[arg(long, default_value = "")]
    label: String,
}

fn now_ms() -> f64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    d.as_micros() as f64 / 1000.0
}

/// VmRSS in bytes.
fn rss(pid: u32) -> Option<u64> {
    proc::rss_bytes(&pid.to_string())
}

struct Conn {
    ws: WebSocketStream<TcpStream>,
    session: Option<Session>,
    /// Room keys granted (hardened clients with `--room-keys`).
    ring: Option<RoomKeyring>,
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}

async fn connect_one(
    i: usize,
    args: &Args,
    addr: SocketAddr,
    encrypted: bool,
) -> anyhow::Result<Conn> {
    let src = IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (i % usize::from(args.sources.max(1))) as u8,
    ));
    let sock = TcpSocket::new_v4()?;
    // Zero linger: closing resets the connection, so runs leave no TIME_WAIT sockets behind
    // (thousands of them make every later bind-to-port-0 slow).
    sock.set_zero_linger()?;
    if args.sources > 1 {
        sock.bind(SocketAddr::new(src, 0))?;
    }
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(args.url.as_str(), stream, Some(ws_config()))
            .await?;
    let token = format!("u{i}");
    let mut ring = None;
    let session = if encrypted && args.profile == "hardened" {
        let (session, keys) =
            hardened_login(&mut ws, &token, args.room_keys, !args.text_room_records).await?;
        ring = keys;
        Some(session)
    } else {
        let hs =
            encrypted.then(|| ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng()));
        let mut auth = json!({"type": "Bearer", "token": token});
        if let Some(hs) = &hs {
            auth["publicKey"] = json!(hs.public_key_base64());
        }
        ws.send(Message::text(
            json!({"event": "authenticate", "data": auth}).to_string(),
        ))
        .await?;
        let connected = next_event(&mut ws, "connected").await?;
        match hs {
            None => None,
            Some(hs) => {
                let payload: ConnectedPayload = serde_json::from_value(connected["data"].clone())?;
                Some(hs.finish_connected(&payload)?.session)
            }
        }
    };
    let mut conn = Conn { ws, session, ring };
    if let Some(room) = &args.room {
        let inner = json!({"event": "join", "data": {"rooms": [room]}}).to_string();
        let frame = match &mut conn.session {
            Some(s) => sealwire::crypto::session::encrypted_frame(&s.seal(inner.as_bytes())?),
            None => inner,
        };
        conn.ws.send(Message::text(frame)).await?;
    }
    Ok(conn)
}

/// The next frame whose event is `name` (errors and closes end the attempt).
async fn next_event<S>(ws: &mut S, name: &str) -> anyhow::Result<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str())?;
                match v["event"].as_str() {
                    Some(e) if e == name => return Ok(v),
                    Some("error") => bail!("server error: {}", v["data"]),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// The hardened (`sealwire-v2`) login: hello exchange, key confirmation, sealed credentials,
/// sealed `connected`.
async fn hardened_login<S>(
    ws: &mut S,
    token: &str,
    room_keys: bool,
    binary_records: bool,
) -> anyhow::Result<(Session, Option<RoomKeyring>)>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
        + Unpin,
{
    let hs = ClientHandshake::new(HandshakeConfig::hardened(Vec::new()), &mut rand::rng());
    ws.send(Message::text(hs.hello_json())).await?;
    let hello = next_event(ws, "hello").await?;
    let hello: sealwire::protocol::HelloPayload = serde_json::from_value(hello["data"].clone())?;
    let done = hs.finish_hello(&hello)?;
    let mut session = done.session;
    if let Some(confirmation) = done.confirmation {
        ws.send(Message::text(confirmation)).await?;
    }
    let mut auth = json!({"event": "authenticate", "data": {"type": "Bearer", "token": token}});
    if room_keys {
        auth["data"]["roomKeys"] = json!(room::EXTENSION_ID);
        if binary_records {
            auth["data"]["roomRecords"] = json!(room::binary::RECORDS_BINARY);
        }
    }
    ws.send(Message::text(
        session.seal_frame(auth.to_string().as_bytes())?,
    ))
    .await?;
    let sealed = next_event(ws, "encrypted").await?;
    let payload: sealwire::protocol::EncryptedPayload =
        serde_json::from_value(sealed["data"].clone())?;
    let connected: Value = serde_json::from_slice(&session.open(&payload)?)?;
    if connected["event"] != "connected" {
        bail!("expected a sealed connected, got {connected}");
    }
    let ring = (connected["data"]["roomKeys"] == room::EXTENSION_ID).then(RoomKeyring::new);
    if room_keys && ring.is_none() {
        bail!("the server does not use room keys (start it with --room-keys)");
    }
    Ok((session, ring))
}

/// A `room-encrypted` record's fields.
#[derive(Deserialize)]
struct RoomRecord<'a> {
    #[serde(borrow)]
    room: std::borrow::Cow<'a, str>,
    epoch: u64,
    seq: u64,
    #[serde(borrow)]
    ct: std::borrow::Cow<'a, str>,
}

/// Opens a room record with the keys granted so far.
fn open_room(ring: Option<&mut RoomKeyring>, data: Option<&RawValue>) -> Option<Vec<u8>> {
    let r: RoomRecord<'_> = serde_json::from_str(data?.get()).ok()?;
    ring?.open(&r.room, r.epoch, r.seq, &r.ct).ok()
}

/// Opens a binary room record with the keys granted so far.
fn open_binary_room(ring: Option<&mut RoomKeyring>, message: &[u8]) -> Option<Vec<u8>> {
    let record = room::BinaryRecord::parse(message).ok()?;
    ring?.open_binary(&record).ok()
}

/// A `room-key` grant's fields.
#[derive(Deserialize)]
struct Grant<'a> {
    #[serde(borrow)]
    room: std::borrow::Cow<'a, str>,
    epoch: u64,
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
}

/// Takes a `room-key` grant (the `data` of an opened per-client record).
fn take_grant(ring: Option<&mut RoomKeyring>, data: Option<&RawValue>) {
    if let (Some(ring), Some(g)) = (
        ring,
        data.and_then(|d| serde_json::from_str::<Grant<'_>>(d.get()).ok()),
    ) {
        let _ = ring.grant(&g.room, g.epoch, &g.key, Default::default());
    }
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Bench {
    s: i64,
    t: f64,
}

#[derive(Default)]
struct Totals {
    delivered: AtomicU64,
    ooo: AtomicU64,
    decrypt_failures: AtomicU64,
    plaintext_on_encrypted: AtomicU64,
    closed: AtomicUsize,
    last_delivery_us: AtomicU64,
}

/// Reads one client's frames until `stop`; returns its latency samples (µs, from each
/// message's creation in the server) and arrival times (µs since `start`).
async fn receive(
    mut conn: Conn,
    totals: Arc<Totals>,
    start: Instant,
    stop: CancellationToken,
    turn: usize,
) -> (Vec<u32>, Vec<u32>) {
    let mut lat = Vec::new();
    let mut in_turn = 0usize;
    let mut arrivals = Vec::new();
    let mut prev: i64 = -1;
    let mut hb = tokio::time::interval(Duration::from_secs(20));
    hb.tick().await;
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            _ = hb.tick() => {
                let _ = conn.ws.send(Message::text(r#"{"event":"heartbeat"}"#)).await;
                continue;
            }
            m = conn.ws.next() => m,
        };
        let (text, binary) = match msg {
            Some(Ok(Message::Text(t))) => (t, None),
            Some(Ok(Message::Binary(b))) => (Utf8Bytes::from_static(""), Some(b)),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                totals.closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Some(Ok(_)) => continue,
        };
        let plain: std::borrow::Cow<'_, [u8]> = if let Some(b) = &binary {
            // The only binary message: a binary room record.
            match open_binary_room(conn.ring.as_mut(), b) {
                Some(pt) => pt.into(),
                None => {
                    totals.decrypt_failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        } else {
            let Ok(frame) = serde_json::from_str::<Frame<'_>>(text.as_str()) else {
                continue;
            };
            match (&mut conn.session, frame.event) {
                (Some(session), "encrypted") => {
                    let opened = frame
                        .data
                        .and_then(|d| serde_json::from_str::<EncryptedPayload>(d.get()).ok())
                        .and_then(|p| session.open(&p).ok());
                    match opened {
                        Some(pt) => pt.into(),
                        None => {
                            totals.decrypt_failures.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                }
                (Some(_), "room-encrypted") => match open_room(conn.ring.as_mut(), frame.data) {
                    Some(pt) => pt.into(),
                    None => {
                        totals.decrypt_failures.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                },
                (Some(_), _) => {
                    totals
                        .plaintext_on_encrypted
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                (None, _) => text.as_bytes().into(),
            }
        };
        let Ok(inner) = serde_json::from_slice::<Frame<'_>>(&plain) else {
            continue;
        };
        if inner.event == room::GRANT_EVENT {
            take_grant(conn.ring.as_mut(), inner.data);
            continue;
        }
        if inner.event != "bench" {
            continue;
        }
        let Some(b) = inner
            .data
            .and_then(|d| serde_json::from_str::<Bench>(d.get()).ok())
        else {
            continue;
        };
        let l = ((now_ms() - b.t) * 1000.0).max(0.0);
        lat.push(l.min(f64::from(u32::MAX)) as u32);
        if b.s <= prev {
            totals.ooo.fetch_add(1, Ordering::Relaxed);
        }
        prev = prev.max(b.s);
        totals.delivered.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        totals.last_delivery_us.fetch_max(us, Ordering::Relaxed);
        arrivals.push(u32::try_from(us).unwrap_or(u32::MAX));
        // One simulated device must not make the others wait: after `turn` messages the
        // client lets the next one read, as separate devices would read in parallel.
        in_turn += 1;
        if turn > 0 && in_turn >= turn {
            in_turn = 0;
            tokio::task::yield_now().await;
        }
    }
    (lat, arrivals)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if (nofile as usize) < args.clients + 64 {
        eprintln!(
            "warning: RLIMIT_NOFILE is {nofile}, fewer than {} clients need",
            args.clients
        );
    }
    let tck = clk_tck();
    let url = url_addr(&args.url)?;
    let http = reqwest::Client::new();
    let n_enc = ((args.clients as f64) * args.encrypted.clamp(0.0, 1.0)).round() as usize;
    // Encrypted clients are spread evenly among the plaintext ones.
    let is_enc =
        |i: usize| n_enc > 0 && (i * n_enc) / args.clients != ((i + 1) * n_enc) / args.clients;

    let rss0 = args.server_pid.and_then(rss);
    let cpu0 = cpu_secs(args.server_pid, tck);
    let self0 = cpu_secs(None, tck);
    let t_connect = Instant::now();
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let shared_args = Arc::new(args.clone());
    let mut handles = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let permit = Arc::clone(&sem).acquire_owned().await?;
        let a = Arc::clone(&shared_args);
        let enc = is_enc(i);
        handles.push(tokio::spawn(async move {
            let r =
                tokio::time::timeout(Duration::from_secs(60), connect_one(i, &a, url, enc)).await;
            drop(permit);
            match r {
                Ok(r) => r,
                Err(_) => bail!("connect timed out"),
            }
        }));
    }
    let mut conns = Vec::with_capacity(args.clients);
    let mut failures = 0usize;
    let mut first_error = None;
    for h in handles {
        match h.await? {
            Ok(c) => conns.push(c),
            Err(e) => {
                failures += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let connect_secs = t_connect.elapsed().as_secs_f64();
    let cpu1 = cpu_secs(args.server_pid, tck);
    let connected = conns.len();
    eprintln!("connected {connected} clients ({failures} failed) in {connect_secs:.2}s");

    let totals = Arc::new(Totals::default());
    let stop = CancellationToken::new();
    let start = Instant::now();
    let readers: Vec<_> = conns
        .into_iter()
        .map(|c| {
            tokio::spawn(receive(
                c,
                Arc::clone(&totals),
                start,
                stop.clone(),
                args.read_turn,
            ))
        })
        .collect();

    let server_cpu_connect = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let mut result = json!({
        "tool": "sealwire-loadgen",
        "label": args.label,
        "scenario": format!("{:?}", args.scenario).to_lowercase(),
        "url": args.url,
        "clients": args.clients,
        "encrypted_clients": n_enc,
        "connected": connected,
        "connect_failures": failures,
        "first_error": first_error,
        "connect_secs": connect_secs,
        "handshakes_per_s": connected as f64 / connect_secs,
        "server_cpu_us_per_connect": server_cpu_connect.map(|c| c * 1e6 / connected.max(1) as f64),
        "sources": args.sources,
    });

    match args.scenario {
        Scenario::Connect => {}
        Scenario::Idle => {
            tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
            let rss1 = args.server_pid.and_then(rss);
            let still = connected - totals.closed.load(Ordering::Relaxed);
            result["hold_secs"] = json!(args.hold_secs);
            result["server_rss_before"] = json!(rss0);
            result["server_rss_after"] = json!(rss1);
            result["still_connected"] = json!(still);
            result["server_rss_bytes_per_conn"] = json!(
                rss0.zip(rss1)
                    .map(|(a, b)| (b.saturating_sub(a)) as f64 / still.max(1) as f64)
            );
        }
        Scenario::Fanout => {
            let control = args
                .control
                .clone()
                .context("--control is required for fanout")?;
            // Let joins land.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let expected = connected as u64 * args.count;
            let c0 = cpu_secs(args.server_pid, tck);
            let s0 = cpu_secs(None, tck);
            let t0 = Instant::now();
            let since = t0.duration_since(start).as_micros() as u64;
            let mut body = json!({"count": args.count, "size": args.size});
            if let Some(room) = &args.room {
                body["room"] = json!(room);
            }
            let resp: Value = http
                .post(format!("{control}/burst"))
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            let mut last = 0u64;
            let mut last_change = Instant::now();
            loop {
                let d = totals.delivered.load(Ordering::Relaxed);
                if d >= expected {
                    break;
                }
                if d != last {
                    last = d;
                    last_change = Instant::now();
                } else if last_change.elapsed() > Duration::from_secs(args.stall_secs) {
                    eprintln!("stalled at {d} of {expected}");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let c1 = cpu_secs(args.server_pid, tck);
            let s1 = cpu_secs(None, tck);
            // What the connections keep after the burst, while they stay open and idle.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rss_after = args.server_pid.and_then(rss);
            result["server_rss_before"] = json!(rss0);
            result["server_rss_after_burst"] = json!(rss_after);
            result["server_rss_bytes_per_conn_after_burst"] = json!(
                rss0.zip(rss_after)
                    .map(|(a, b)| (b.saturating_sub(a)) as f64 / connected.max(1) as f64)
            );
            stop.cancel();
            let mut lat = Vec::with_capacity(expected as usize);
            // From the publish request (the same origin for every server): every message, and
            // each client's first.
            let mut from_request = Vec::with_capacity(expected as usize);
            let mut first = Vec::with_capacity(connected);
            let origin = u32::try_from(since).unwrap_or(u32::MAX);
            for r in readers {
                let (l, arrivals) = r.await?;
                lat.extend(l);
                if let Some(f) = arrivals.iter().min() {
                    first.push(f.saturating_sub(origin));
                }
                from_request.extend(arrivals.iter().map(|a| a.saturating_sub(origin)));
            }
            lat.sort_unstable();
            from_request.sort_unstable();
            first.sort_unstable();
            let delivered = totals.delivered.load(Ordering::Relaxed);
            let end_us = totals.last_delivery_us.load(Ordering::Relaxed);
            let secs = (end_us.saturating_sub(since)) as f64 / 1e6;
            let server_cpu = c0.zip(c1).map(|(a, b)| b - a);
            result["count"] = json!(args.count);
            result["size"] = json!(args.size);
            result["room"] = json!(args.room);
            result["burst_reply"] = resp;
            result["expected"] = json!(expected);
            result["delivered"] = json!(delivered);
            result["lost"] = json!(expected.saturating_sub(delivered));
            result["out_of_order"] = json!(totals.ooo.load(Ordering::Relaxed));
            result["decrypt_failures"] = json!(totals.decrypt_failures.load(Ordering::Relaxed));
            result["plaintext_on_encrypted"] =
                json!(totals.plaintext_on_encrypted.load(Ordering::Relaxed));
            result["fanout_secs"] = json!(secs);
            result["delivered_per_s"] = json!(delivered as f64 / secs.max(1e-9));
            result["latency_ms"] =
                json!({"p50": pct(&lat, 0.5), "p99": pct(&lat, 0.99), "max": pct(&lat, 1.0)});
            result["latency_from_request_ms"] = json!({"p50": pct(&from_request, 0.5), "p99": pct(&from_request, 0.99), "max": pct(&from_request, 1.0)});
            result["first_delivery_ms"] =
                json!({"p50": pct(&first, 0.5), "p99": pct(&first, 0.99), "max": pct(&first, 1.0)});
            result["server_cpu_secs"] = json!(server_cpu);
            result["server_cpu_us_per_msg"] =
                json!(server_cpu.map(|c| c * 1e6 / delivered.max(1) as f64));
            result["loadgen_cpu_secs"] = json!(s0.zip(s1).map(|(a, b)| b - a));
            println!("{result}");
            return Ok(());
        }
    }
    result["loadgen_cpu_secs"] = json!(self0.zip(cpu_secs(None, tck)).map(|(a, b)| b - a));
    println!("{result}");
    stop.cancel();
    for r in readers {
        let _ = r.await;
    }
    Ok(())
}

/// Resolves `ws://host:port/...` to a socket address.
fn url_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.strip_prefix("ws://").context("only ws:// URLs")?;
    let host = rest.split('/').next().unwrap_or(rest);
    host.parse()
        .with_context(|| format!("need an IP:port URL, got {host}"))
}
