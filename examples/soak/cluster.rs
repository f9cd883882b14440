//! The two server instances (admin API, /proc figures) and the Redis server between them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::ledger::Window;

/// The instances under test, by index (0 and 1).
pub(crate) struct Cluster {
    http: reqwest::Client,
    /// `http://host:port` of each instance.
    bases: Vec<String>,
    pids: Vec<u32>,
    admin_token: String,
}

impl Cluster {
    pub(crate) fn new(
        urls: &[String],
        pids: Vec<u32>,
        admin_token: String,
    ) -> anyhow::Result<Self> {
        let bases = urls
            .iter()
            .map(|u| {
                let rest = u.strip_prefix("ws://").context("only ws:// URLs")?;
                let host = rest.split('/').next().unwrap_or(rest);
                Ok(format!("http://{host}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if bases.len() != pids.len() {
            bail!("one --pids entry per --urls entry");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            http,
            bases,
            pids,
            admin_token,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.bases.len()
    }

    async fn get(&self, i: usize, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.bases[i]))
            .bearer_auth(&self.admin_token)
            .send()
            .await?;
        Ok(resp.json().await?)
    }

    /// Whether instance `i` reports its bus connected (`GET /socket/health`).
    pub(crate) async fn bus_connected(&self, i: usize) -> bool {
        self.get(i, "/socket/health")
            .await
            .is_ok_and(|v| v["bus"]["connected"] == true)
    }

    /// The bus status detail of instance `i` (mode, published, dropped, reconnects, ...).
    pub(crate) async fn bus_detail(&self, i: usize) -> String {
        match self.get(i, "/socket/health").await {
            Ok(v) => v["bus"]["detail"].as_str().unwrap_or("-").to_owned(),
            Err(e) => format!("unavailable: {e}"),
        }
    }

    /// Every instance's bus reconnection count (`reconnects=` in the bus status detail:
    /// connection attempts of its subscriber and publisher after a connection was lost).
    pub(crate) async fn bus_reconnects(&self) -> Vec<Option<u64>> {
        let mut all = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            let detail = self.bus_detail(i).await;
            all.push(
                detail
                    .split("; ")
                    .find_map(|f| f.strip_prefix("reconnects="))
                    .and_then(|n| n.parse().ok()),
            );
        }
        all
    }

    /// Authenticated connections of instance `i` (`GET /socket/info`).
    pub(crate) async fn authenticated(&self, i: usize) -> Option<u64> {
        self.get(i, "/socket/info").await.ok()?["authenticated"].as_u64()
    }

    /// `POST /socket/batch` on instance `i`; `Ok` only for a 2xx answer.
    pub(crate) async fn batch(&self, i: usize, body: &Value) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/socket/batch", self.bases[i]))
            .bearer_auth(&self.admin_token)
            .json(body)
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "batch: HTTP {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Waits until every instance reports its bus connected.
    pub(crate) async fn wait_connected(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut all = true;
            for i in 0..self.len() {
                all &= self.bus_connected(i).await;
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the instances' buses did not connect within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// VmRSS of instance `i` in bytes (from /proc).
    pub(crate) fn rss(&self, i: usize) -> Option<u64> {
        crate::proc::rss_bytes(&self.pids[i].to_string())
    }

    /// Whether every instance's process is still there (and not a zombie).
    pub(crate) fn alive(&self) -> Vec<bool> {
        self.pids
            .iter()
            .map(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .ok()
                    .and_then(|s| {
                        let rest = &s[s.rfind(')')? + 1..];
                        Some(!rest.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(false)
            })
            .collect()
    }
}

/// Redis state for the RSS table: up, killed, or restarted and waiting for the instances.
pub(crate) static REDIS_STATE: AtomicU8 = AtomicU8::new(0);

pub(crate) fn redis_state() -> &'static str {
    match REDIS_STATE.load(Ordering::Relaxed) {
        0 => "up",
        1 => "down",
        _ => "resubscribing",
    }
}

/// The Redis server the script started (daemonized, with a pid file), restarted on the same
/// port from the same configuration file.
pub(crate) struct Redis {
    pub(crate) server_bin: String,
    pub(crate) conf: PathBuf,
    pub(crate) pidfile: PathBuf,
    pub(crate) port: u16,
    pub(crate) down: Duration,
}

impl Redis {
    fn pid(&self) -> anyhow::Result<u32> {
        let text = std::fs::read_to_string(&self.pidfile)
            .with_context(|| format!("reading {}", self.pidfile.display()))?;
        Ok(text.trim().parse()?)
    }

    async fn answers(&self) -> bool {
        tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_ok()
    }

    /// Kills Redis (SIGKILL), waits `down`, starts it again, and waits until every instance
    /// reports its bus connected again.
    pub(crate) async fn restart(&self, cluster: &Cluster) -> anyhow::Result<Window> {
        let pid = self.pid()?;
        let before = cluster.bus_reconnects().await;
        let kill = Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -KILL {pid} failed");
        }
        REDIS_STATE.store(1, Ordering::Relaxed);
        while self.answers().await {
            if kill.elapsed() > Duration::from_secs(10) {
                bail!("Redis still answers 10 s after SIGKILL");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(self.down).await;
        let status = std::process::Command::new(&self.server_bin)
            .arg(&self.conf)
            .status()
            .with_context(|| format!("starting {}", self.server_bin))?;
        if !status.success() {
            bail!(
                "{} {} failed: {status}",
                self.server_bin,
                self.conf.display()
            );
        }
        let started = Instant::now();
        while !self.answers().await {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("Redis does not answer 10 s after its restart");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let restarted = Instant::now();
        REDIS_STATE.store(2, Ordering::Relaxed);
        cluster.wait_connected(Duration::from_secs(60)).await?;
        REDIS_STATE.store(0, Ordering::Relaxed);
        let recovered = Instant::now();
        let after = cluster.bus_reconnects().await;
        Ok(Window {
            kill,
            restarted,
            recovered,
            reconnects: before
                .iter()
                .zip(&after)
                .map(|(b, a)| a.zip(*b).map_or(0, |(a, b)| a.saturating_sub(b)))
                .collect(),
        })
    }
}

/// The body of one tick's batch: a broadcast and one message per room.
pub(crate) fn tick_batch(via: u8, seq: u32, rooms: u32) -> Value {
    use crate::ledger::{EVENT, Payload};
    let mut messages = Vec::with_capacity(rooms as usize + 1);
    let broadcast = Payload {
        v: via,
        k: 0,
        r: None,
        s: seq,
    };
    messages.push(json!({"topic": EVENT, "data": broadcast}));
    for r in 0..rooms {
        let data = Payload {
            v: via,
            k: 1,
            r: Some(r),
            s: seq,
        };
        messages
            .push(json!({"destination": crate::fleet::room_name(r), "topic": EVENT, "data": data}));
    }
    json!({ "messages": messages })
}
