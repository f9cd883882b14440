//! Soak driver for two `sealwire serve` instances sharing one Redis: holds many encrypted SDK
//! clients, churns them, publishes sequence-numbered messages continuously, restarts Redis, and
//! counts every loss and decryption failure. `benches/soak.sh` starts Redis and the instances
//! and runs this; see `docs/OPERATIONS.md`, "Soak test".
//!
//! - Clients: `--clients` SDK clients (hardened, compat or mixed profile), client `i` on
//!   instance `i % 2`, in room `soak-<(i / 2) % rooms>`, authenticated with an HS256 JWT.
//! - Churn: `--churn` of the clients per minute are closed and replaced by fresh clients, one
//!   at a time, spread evenly over the minute.
//! - Publishing: every `--publish-ms` one `POST /socket/batch` through instance 1 and 2 in turn,
//!   a broadcast plus one message per room, numbered per instance (`ledger.rs`).
//! - Redis: killed (SIGKILL) and started again `--redis-restarts` times, evenly spaced.
//! - Memory: each instance's VmRSS from /proc every `--sample-secs`, per connection.
//!
//! Exits 1 when a message is lost outside the restart windows, on any decryption failure or
//! plaintext frame on an encrypted session, and on duplicates, reordering, misrouted messages
//! or failed publish requests; 2 when the run itself could not be made.

mod cluster;
mod fleet;
mod ledger;
#[path = "../common/proc.rs"]
mod proc;
mod report;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::RngExt as _;

use cluster::{Cluster, Redis};
use fleet::{Live, Member, Profile, Spec};
use ledger::{Margins, Publish, PublishLog, Window};
use report::{Report, print_header, print_row, report, sample};

#[derive(Parser, Debug)]
#[command(about = "sealwire soak driver (run through benches/soak.sh)")]
pub(crate) struct Args {
    /// WebSocket URLs of the instances, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) urls: Vec<String>,
    /// Process ids of the instances (same order), for /proc figures.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) pids: Vec<u32>,
    /// Admin token of the instances.
    #[arg(long, env = "SOAK_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: String,
    /// HS256 secret the instances verify client JWTs with.
    #[arg(long, env = "SOAK_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: String,
    /// Clients held at once.
    #[arg(long, default_value_t = 5000)]
    pub(crate) clients: u64,
    /// Seconds of the run after the clients connected.
    #[arg(long, default_value_t = 600)]
    pub(crate) duration_secs: u64,
    /// Fraction of the clients replaced per minute.
    #[arg(long, default_value_t = 0.10)]
    pub(crate) churn: f64,
    /// Rooms (each client is in one); at most 999.
    #[arg(long, default_value_t = 50)]
    pub(crate) rooms: u32,
    /// Milliseconds between publish ticks.
    #[arg(long, default_value_t = 500)]
    pub(crate) publish_ms: u64,
    /// Client encryption profile.
    #[arg(long, value_enum, default_value = "mixed")]
    pub(crate) profile: Profile,
    /// Connects in flight while the clients are first connected.
    #[arg(long, default_value_t = 100)]
    pub(crate) concurrency: usize,
    /// Redis restarts, evenly spaced over the run.
    #[arg(long, default_value_t = 2)]
    pub(crate) redis_restarts: u32,
    /// Redis configuration file (restarts run `redis-server <conf>`; it must daemonize).
    #[arg(long)]
    pub(crate) redis_conf: std::path::PathBuf,
    /// Pid file named in that configuration.
    #[arg(long)]
    pub(crate) redis_pidfile: std::path::PathBuf,
    /// Redis port.
    #[arg(long)]
    pub(crate) redis_port: u16,
    /// redis-server binary.
    #[arg(long, default_value = "redis-server")]
    pub(crate) redis_server: String,
    /// Seconds Redis stays down at each restart.
    #[arg(long, default_value_t = 3)]
    pub(crate) redis_down_secs: u64,
    /// Losses of messages published this long before a kill belong to its window.
    #[arg(long, default_value_t = 2000)]
    pub(crate) window_before_ms: u64,
    /// ... and this long after both instances reported their bus connected again.
    #[arg(long, default_value_t = 3000)]
    pub(crate) window_after_ms: u64,
    /// A client expects the messages published from this long after it joined its room until
    /// this long before it was closed.
    #[arg(long, default_value_t = 1000)]
    pub(crate) grace_ms: u64,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 30)]
    pub(crate) sample_secs: u64,
    /// RSS samples taken this long into the run (at most a third of it) or later make the
    /// summary's per-connection figures: the first traffic and heartbeat settle before.
    #[arg(long, default_value_t = 60)]
    pub(crate) rss_warmup_secs: u64,
    /// Seconds to wait for deliveries after the last publish.
    #[arg(long, default_value_t = 5)]
    pub(crate) drain_secs: u64,
}

#[tokio::main]
async fn main() {
    match run(Args::parse()).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: run failed: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs the soak; `Ok(false)` when it found a failure.
async fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.urls.len() == 2, "--urls needs two instances");
    anyhow::ensure!((1..=999).contains(&args.rooms), "--rooms must be 1..=999");
    anyhow::ensure!(args.publish_ms > 0 && args.clients > 0, "nothing to run");
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    if nofile < args.clients + 256 {
        eprintln!(
            "soak: warning: RLIMIT_NOFILE is {nofile}, too low for {} clients",
            args.clients
        );
    }
    let cluster = Arc::new(Cluster::new(
        &args.urls,
        args.pids.clone(),
        args.admin_token.clone(),
    )?);
    cluster.wait_connected(Duration::from_secs(60)).await?;
    let base: Vec<Option<u64>> = (0..cluster.len()).map(|i| cluster.rss(i)).collect();
    let duration = Duration::from_secs(args.duration_secs);
    let spec = Arc::new(Spec {
        urls: args.urls.clone(),
        rooms: args.rooms,
        profile: args.profile,
        jwt_secret: args.jwt_secret.clone(),
        token_secs: args.duration_secs + 3600,
    });
    let live = Arc::new(Live::default());
    let connect_failures = Arc::new(AtomicU64::new(0));

    let ramp_start = Instant::now();
    let members = fleet::ramp(
        &spec,
        0..args.clients,
        args.concurrency,
        &live,
        &connect_failures,
    )
    .await;
    eprintln!(
        "soak: {} of {} clients connected in {:.1} s ({} connect failures)",
        members.len(),
        args.clients,
        ramp_start.elapsed().as_secs_f64(),
        connect_failures.load(Ordering::Relaxed)
    );
    anyhow::ensure!(!members.is_empty(), "no client could connect");

    let t0 = Instant::now();
    let end = t0 + duration;
    println!(
        "soak: {} clients on {} instances, {} s, churn {:.0}%/min, {} rooms, a tick every {} ms, {} Redis restarts",
        members.len(),
        cluster.len(),
        args.duration_secs,
        args.churn * 100.0,
        args.rooms,
        args.publish_ms,
        args.redis_restarts
    );
    print_header(cluster.len());

    let reconnects_start = cluster.bus_reconnects().await;
    let publisher = tokio::spawn(publish(
        Arc::clone(&cluster),
        args.rooms,
        args.publish_ms,
        end,
    ));
    let redis = Redis {
        server_bin: args.redis_server.clone(),
        conf: args.redis_conf.clone(),
        pidfile: args.redis_pidfile.clone(),
        port: args.redis_port,
        down: Duration::from_secs(args.redis_down_secs),
    };
    let restarts = tokio::spawn(restart_redis(
        Arc::clone(&cluster),
        redis,
        args.redis_restarts,
        t0,
        duration,
    ));
    let churner = tokio::spawn(churn(
        members,
        Arc::clone(&spec),
        args.clients,
        args.churn,
        end,
        Arc::clone(&live),
        Arc::clone(&connect_failures),
    ));

    // RSS samples until the end, with a last one after the drain.
    let mut samples = Vec::new();
    let every = Duration::from_secs(args.sample_secs.max(1));
    let mut next = t0;
    while next <= end {
        tokio::time::sleep_until(next.into()).await;
        let s = sample(&cluster, t0.elapsed(), &live).await;
        print_row(&s, &base);
        samples.push(s);
        next += every;
    }
    let log = publisher.await??;
    let windows = restarts.await??;
    let (members, closed, churned) = churner.await??;
    tokio::time::sleep(Duration::from_secs(args.drain_secs)).await;
    let s = sample(&cluster, t0.elapsed(), &live).await;
    print_row(&s, &base);
    samples.push(s);
    let alive = cluster.alive();
    let reconnects_end = cluster.bus_reconnects().await;
    // Bus reconnections that no Redis restart explains: the bus lost a healthy Redis.
    let reconnects_outside: Vec<Option<u64>> = (0..cluster.len())
        .map(|i| {
            let (a, b) = (reconnects_start[i]?, reconnects_end[i]?);
            let during: u64 = windows.iter().map(|w| w.reconnects[i]).sum();
            Some(b.saturating_sub(a).saturating_sub(during))
        })
        .collect();
    let mut buses = Vec::new();
    for i in 0..cluster.len() {
        buses.push(cluster.bus_detail(i).await);
    }

    let mut lives = Vec::with_capacity(members.len() + closed.len());
    let closing: Vec<_> = members.into_iter().map(Member::close).collect();
    for c in closed.into_iter().chain(closing) {
        lives.push(c.finish().await?);
    }
    let margins = Margins {
        grace: Duration::from_millis(args.grace_ms),
        before: Duration::from_millis(args.window_before_ms),
        after: Duration::from_millis(args.window_after_ms),
    };
    let tally = ledger::tally(&log, &lives, &windows, margins);
    Ok(report(&Report {
        args: &args,
        t0,
        tally: &tally,
        log: &log,
        windows: &windows,
        samples: &samples,
        base: &base,
        churned,
        connect_failures: connect_failures.load(Ordering::Relaxed),
        alive: &alive,
        buses: &buses,
        reconnects_outside: &reconnects_outside,
    }))
}

/// Publishes one tick every `publish_ms` until `end`, through each instance in turn.
async fn publish(
    cluster: Arc<Cluster>,
    rooms: u32,
    publish_ms: u64,
    end: Instant,
) -> anyhow::Result<PublishLog> {
    let mut log = PublishLog::default();
    let mut tick = tokio::time::interval(Duration::from_millis(publish_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut errors = 0u32;
    for n in 0u64.. {
        tick.tick().await;
        if Instant::now() >= end {
            break;
        }
        let via = (n % 2) as u8;
        let body = cluster::tick_batch(via, log.next_seq(via), rooms);
        let start = Instant::now();
        let result = cluster.batch(usize::from(via), &body).await;
        if let Err(e) = &result {
            errors += 1;
            if errors <= 5 {
                eprintln!("soak: publish through instance {} failed: {e:#}", via + 1);
            }
        }
        log.push(
            via,
            Publish {
                start,
                end: Instant::now(),
                ok: result.is_ok(),
            },
        );
    }
    Ok(log)
}

/// Restarts Redis `count` times, evenly spaced over the run.
async fn restart_redis(
    cluster: Arc<Cluster>,
    redis: Redis,
    count: u32,
    t0: Instant,
    duration: Duration,
) -> anyhow::Result<Vec<Window>> {
    let mut windows = Vec::new();
    for k in 1..=count {
        tokio::time::sleep_until((t0 + duration * k / (count + 1)).into()).await;
        let w = redis.restart(&cluster).await?;
        eprintln!(
            "soak: Redis restart {k} at {:.0} s: answering after {:.1} s, both buses connected after {:.1} s",
            (w.kill - t0).as_secs_f64(),
            (w.restarted - w.kill).as_secs_f64(),
            (w.recovered - w.kill).as_secs_f64()
        );
        windows.push(w);
    }
    Ok(windows)
}

/// Replaces `churn * clients` clients per minute until `end`; returns the clients still
/// connected, the closed ones, and how many were replaced.
async fn churn(
    mut members: Vec<Member>,
    spec: Arc<Spec>,
    clients: u64,
    churn: f64,
    end: Instant,
    live: Arc<Live>,
    failures: Arc<AtomicU64>,
) -> anyhow::Result<(Vec<Member>, Vec<fleet::Closed>, u64)> {
    let mut closed = Vec::new();
    let per_min = churn * clients as f64;
    if per_min <= 0.0 {
        tokio::time::sleep_until(end.into()).await;
        return Ok((members, closed, 0));
    }
    let every = Duration::from_secs_f64(60.0 / per_min);
    let mut next_id = clients;
    let mut next = Instant::now() + every;
    let mut churned = 0;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        if members.is_empty() {
            continue;
        }
        let i = rand::rng().random_range(0..members.len());
        closed.push(members.swap_remove(i).close());
        if let Some(m) = fleet::connect_retrying(&spec, next_id, &live, &failures).await {
            members.push(m);
        }
        next_id += 1;
        churned += 1;
    }
    Ok((members, closed, churned))
}
