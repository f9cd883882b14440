//! Measures the two Redis subscription modes against each other: several server instances in
//! one process, rooms spread over the instances (one member each), and pipelined emitter-style
//! envelopes published to those rooms. Each mode runs three times. Prints, per mode, how many messages the instances received from Redis in
//! total, the CPU time of this process (all instances) and of `redis-server`, and wall time.
//!
//! ```text
//! cargo run --release --example bus_modes                  # spawns redis-server on a free port
//! REDIS_URL=redis://127.0.0.1:6390 cargo run --release --example bus_modes
//! cargo run --release --example bus_modes -- 4 50 20000    # instances, rooms per instance, messages
//! ```
//!
//! `redis-server` must be installed. Figures vary between machines and runs; compare the modes
//! within one run.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sealwire::bus::{RedisBus, RedisBusConfig, SubscriptionMode};
use sealwire::server::{Identity, Server};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_tungstenite::tungstenite::Message;

fn process_cpu() -> Duration {
    // utime + stime from /proc/self/stat, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

async fn redis_cpu(client: &redis::Client) -> anyhow::Result<Duration> {
    let mut c = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut c).await?;
    let mut secs = 0.0;
    for line in info.lines() {
        if let Some(v) = line
            .strip_prefix("used_cpu_sys:")
            .or_else(|| line.strip_prefix("used_cpu_user:"))
        {
            secs += v.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    Ok(Duration::from_secs_f64(secs))
}

struct Run {
    received_from_redis: u64,
    delivered: u64,
    cpu: Duration,
    redis_cpu: Duration,
    wall: Duration,
}

async fn run(
    url: &str,
    mode: SubscriptionMode,
    instances: usize,
    rooms_per: usize,
    messages: usize,
) -> anyhow::Result<Run> {
    let delivered = Arc::new(AtomicU64::new(0));
    let mut servers = Vec::new();
    let mut buses = Vec::new();
    let mut rooms = Vec::new();
    for i in 0..instances {
        let bus = RedisBus::new(RedisBusConfig::new(url).mode(mode))?;
        buses.push(bus.clone());
        let server = Server::builder()
            .authenticate(|req: sealwire::server::AuthRequest| async move {
                Ok(req.token.map(Identity::new))
            })
            .bus(bus)
            .build()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(sealwire::transport::serve(listener, server.clone()));
        while !server.is_ready() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for r in 0..rooms_per {
            let room = format!("room-{i}-{r}");
            let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await?;
            let auth =
                serde_json::json!({"event":"authenticate","data":{"token": format!("u{i}-{r}")}});
            ws.send(Message::text(auth.to_string())).await?;
            let connected = ws.next().await.ok_or_else(|| anyhow::anyhow!("closed"))??;
            let v: serde_json::Value = serde_json::from_str(connected.to_text()?)?;
            let id = v["data"]["id"].as_str().unwrap_or_default().to_owned();
            let _ = server.join(&id, std::slice::from_ref(&room));
            rooms.push(room);
            let delivered = Arc::clone(&delivered);
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        servers.push(server);
    }
    // Let interest-mode subscriptions settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = redis::Client::open(url)?;
    let mut publisher = client.get_multiplexed_async_connection().await?;
    let received_before: u64 = buses.iter().map(RedisBus::received).sum();
    let (cpu0, rcpu0, t0) = (process_cpu(), redis_cpu(&client).await?, Instant::now());
    // Pipelined raw PUBLISHes of emitter envelopes, so the publishing side costs little and
    // the figures are dominated by Redis fan-out and the instances' receive path.
    let pad = "x".repeat(200);
    for chunk in (0..messages).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for n in chunk {
            let room = &rooms[(n * 7919) % rooms.len()];
            let env = serde_json::json!({"serverId": "emitter", "type": "room", "target": room,
                "event": "tick", "data": {"n": n, "pad": pad}});
            pipe.cmd("PUBLISH")
                .arg(format!("ws:room:{room}"))
                .arg(env.to_string())
                .ignore();
        }
        pipe.query_async::<()>(&mut publisher).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.load(Ordering::Relaxed) < messages as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let wall = t0.elapsed();
    let (cpu1, rcpu1) = (process_cpu(), redis_cpu(&client).await?);
    let received: u64 = buses.iter().map(RedisBus::received).sum::<u64>() - received_before;
    for s in servers {
        s.shutdown().await;
    }
    Ok(Run {
        received_from_redis: received,
        delivered: delivered.load(Ordering::Relaxed),
        cpu: cpu1.saturating_sub(cpu0),
        redis_cpu: rcpu1.saturating_sub(rcpu0),
        wall,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let instances = args.first().copied().unwrap_or(4);
    let rooms_per = args.get(1).copied().unwrap_or(50);
    let messages = args.get(2).copied().unwrap_or(20_000);

    let mut child = None;
    let url = match std::env::var("REDIS_URL") {
        Ok(u) => u,
        Err(_) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            child = Some(
                std::process::Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .stdout(std::process::Stdio::null())
                    .spawn()?,
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
            format!("redis://127.0.0.1:{port}")
        }
    };

    println!(
        "{instances} instances x {rooms_per} rooms (one member each), {messages} room messages (emitter envelopes)"
    );
    println!("mode      received-from-redis  delivered  process-cpu-ms  redis-cpu-ms  wall-ms");
    for mode in [
        SubscriptionMode::Pattern,
        SubscriptionMode::Interest,
        SubscriptionMode::Pattern,
        SubscriptionMode::Interest,
        SubscriptionMode::Pattern,
        SubscriptionMode::Interest,
    ] {
        let r = run(&url, mode, instances, rooms_per, messages).await?;
        println!(
            "{:<9} {:>19}  {:>9}  {:>14}  {:>12}  {:>7}",
            mode.as_str(),
            r.received_from_redis,
            r.delivered,
            r.cpu.as_millis(),
            r.redis_cpu.as_millis(),
            r.wall.as_millis()
        );
    }
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(())
}
