//! The RSS table and the final report.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::Args;
use crate::cluster::{self, Cluster};
use crate::fleet::Live;
use crate::ledger::{PublishLog, Tally, Window};

/// One RSS sample of both instances.
pub(crate) struct Sample {
    at: Duration,
    /// Soak messages delivered to the clients so far.
    delivered: u64,
    /// Decryption failures so far.
    decrypt_failures: u64,
    /// Per instance: authenticated connections, VmRSS.
    inst: Vec<(Option<u64>, Option<u64>)>,
    redis: &'static str,
}

fn per_conn(rss: Option<u64>, base: Option<u64>, conns: Option<u64>) -> Option<u64> {
    let (rss, base, conns) = (rss?, base?, conns?);
    (conns > 0).then(|| rss.saturating_sub(base) / conns)
}

fn mib(b: Option<u64>) -> String {
    b.map_or("-".into(), |b| format!("{:.1}", b as f64 / 1_048_576.0))
}

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

pub(crate) fn print_header(n: usize) {
    let mut h = format!("{:>6} {:>10} {:>7}", "t(s)", "delivered", "decfail");
    for i in 1..=n {
        h.push_str(&format!(
            " {:>8} {:>9} {:>9}",
            format!("conns{i}"),
            format!("rss{i}MiB"),
            format!("B/conn{i}")
        ));
    }
    println!("{h} {:>13}", "redis");
}

pub(crate) fn print_row(s: &Sample, base: &[Option<u64>]) {
    let mut row = format!(
        "{:>6.0} {:>10} {:>7}",
        s.at.as_secs_f64(),
        s.delivered,
        s.decrypt_failures
    );
    for (i, (conns, rss)) in s.inst.iter().enumerate() {
        row.push_str(&format!(
            " {:>8} {:>9} {:>9}",
            opt(*conns),
            mib(*rss),
            opt(per_conn(*rss, base[i], *conns))
        ));
    }
    println!("{row} {:>13}", s.redis);
}

pub(crate) async fn sample(cluster: &Cluster, at: Duration, live: &Live) -> Sample {
    let mut inst = Vec::new();
    for i in 0..cluster.len() {
        inst.push((cluster.authenticated(i).await, cluster.rss(i)));
    }
    Sample {
        at,
        delivered: live.delivered.load(Ordering::Relaxed),
        decrypt_failures: live.decrypt_failures.load(Ordering::Relaxed),
        inst,
        redis: cluster::redis_state(),
    }
}

pub(crate) struct Report<'a> {
    pub(crate) args: &'a Args,
    pub(crate) t0: Instant,
    pub(crate) tally: &'a Tally,
    pub(crate) log: &'a PublishLog,
    pub(crate) windows: &'a [Window],
    pub(crate) samples: &'a [Sample],
    pub(crate) base: &'a [Option<u64>],
    pub(crate) churned: u64,
    pub(crate) connect_failures: u64,
    pub(crate) alive: &'a [bool],
    /// Each instance's bus status detail at the end (reconnects, drops).
    pub(crate) buses: &'a [String],
    /// Per instance, bus reconnection attempts outside the restarts (`None`: unknown).
    pub(crate) reconnects_outside: &'a [Option<u64>],
}

/// Prints the findings and the summary line; `true` when the run passed.
pub(crate) fn report(r: &Report<'_>) -> bool {
    let t = r.tally;
    let secs = |i: Instant| (i - r.t0).as_secs_f64();
    println!();
    for (i, (w, loss)) in r.windows.iter().zip(&t.windows).enumerate() {
        println!(
            "restart {}: killed at {:.1} s, answering at {:.1} s, buses connected at {:.1} s; window [{:.1} s, {:.1} s]: lost {} of {} expected ({} through Redis, {} local); bus reconnection attempts {:?}",
            i + 1,
            secs(w.kill),
            secs(w.restarted),
            secs(w.recovered),
            secs(w.kill) - r.args.window_before_ms as f64 / 1000.0,
            secs(w.recovered) + r.args.window_after_ms as f64 / 1000.0,
            loss.local + loss.cross,
            loss.expected,
            loss.cross,
            loss.local,
            w.reconnects
        );
    }
    let mut outside: Vec<_> = t.outside.iter().collect();
    outside.sort_by_key(|(_, (_, at))| *at);
    for ((v, k, seq), (clients, at)) in outside.iter().take(20) {
        println!(
            "lost outside the windows: {} #{seq} published through instance {} at {:.2} s, by {clients} clients",
            if *k == 0 { "broadcast" } else { "room message" },
            v + 1,
            secs(*at)
        );
    }
    if outside.len() > 20 {
        println!(
            "lost outside the windows: ... {} messages in all",
            outside.len()
        );
    }
    for (i, b) in r.buses.iter().enumerate() {
        println!("instance {} bus at the end: {b}", i + 1);
    }
    // RSS per connection after the warm-up, per instance: first and last sample, range.
    let warmup = Duration::from_secs(r.args.rss_warmup_secs.min(r.args.duration_secs / 3));
    let mut rss_summary = Vec::new();
    for i in 0..r.base.len() {
        let v: Vec<u64> = r
            .samples
            .iter()
            .filter(|s| s.at >= warmup)
            .filter_map(|s| per_conn(s.inst[i].1, r.base[i], s.inst[i].0))
            .collect();
        if let (Some(first), Some(last), Some(lo), Some(hi)) =
            (v.first(), v.last(), v.iter().min(), v.iter().max())
        {
            let drift = (*last as f64 / (*first).max(1) as f64 - 1.0) * 100.0;
            rss_summary.push(format!(
                "rss_per_conn{}={first}->{last}B({drift:+.0}%,range={lo}-{hi},from={}s)",
                i + 1,
                warmup.as_secs()
            ));
        }
    }
    let crashed = r.alive.iter().filter(|a| !**a).count();
    let failures = [
        (t.lost_outside > 0, "losses outside the restart windows"),
        (t.decrypt_failures > 0, "decryption failures"),
        (t.plaintext > 0, "plaintext frames on encrypted sessions"),
        (
            t.duplicates + t.out_of_order > 0,
            "duplicate or reordered messages",
        ),
        (t.misrouted > 0, "misrouted messages"),
        (r.log.failed() > 0, "failed publish requests"),
        (
            r.windows.len() < r.args.redis_restarts as usize,
            "missing Redis restarts",
        ),
        (crashed > 0, "an instance exited"),
        (
            r.reconnects_outside
                .iter()
                .any(|n| n.is_some_and(|n| n > 0)),
            "bus reconnections while Redis was up",
        ),
        (t.expected == 0, "nothing was expected"),
    ];
    let why: Vec<&str> = failures.iter().filter(|f| f.0).map(|f| f.1).collect();
    println!(
        "soak: {} duration={}s clients={} churned={} client_sessions={} ticks={} expected={} delivered={} lost_outside_windows={} lost_in_windows={}[{}] decrypt_failures={} plaintext={} duplicates={} out_of_order={} misrouted={} unexpected_disconnects={} server_errors={} connect_failures={} publish_failures={} bus_reconnects_outside_windows=[{}] {}{}",
        if why.is_empty() { "PASS" } else { "FAIL" },
        r.args.duration_secs,
        r.args.clients,
        r.churned,
        t.clients,
        r.log.ticks(),
        t.expected,
        t.delivered,
        t.lost_outside,
        t.lost_in_windows(),
        t.windows
            .iter()
            .map(|w| (w.local + w.cross).to_string())
            .collect::<Vec<_>>()
            .join(","),
        t.decrypt_failures,
        t.plaintext,
        t.duplicates,
        t.out_of_order,
        t.misrouted,
        t.disconnects,
        t.server_errors,
        r.connect_failures,
        r.log.failed(),
        r.reconnects_outside
            .iter()
            .map(|n| n.map_or("?".into(), |n| n.to_string()))
            .collect::<Vec<_>>()
            .join(","),
        rss_summary.join(" "),
        if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join("; "))
        }
    );
    why.is_empty()
}
