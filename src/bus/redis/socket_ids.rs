//! The Socket.IO `socket.id`s this instance's clients hold, reserved in Redis so that every
//! instance can answer [`Bus::names_in_use`](crate::server::Bus::names_in_use).
//!
//! A held name is the key `sealwire:socket-id:{name}` (value `1`), written before its socket's
//! connect is acknowledged ([`SocketIds::reserve`]), which lives [`TTL`] and is written again
//! every [`REFRESH`] while the name is held. When the socket goes the key is written as retired
//! (value `0`) to live the retention
//! ([`RedisBusConfig::socket_id_retention`](crate::bus::RedisBusConfig::socket_id_retention)),
//! so that the name stays unjoinable that long. The names of an instance that died expire on
//! their own, and all are written again when Redis comes back from an outage (it may have
//! restarted without them). One task writes (pipelined, retried with backoff while Redis is
//! away); a check reads the keys on a connection of its own.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{Notify, OnceCell};

use super::{Inner, lock};
use crate::bus::config::Backoff;

/// Where a held name is kept.
pub(crate) const KEY_PREFIX: &str = "sealwire:socket-id:";
/// How long a held name's key lives without being written again.
const TTL: Duration = Duration::from_secs(30 * 60);
/// How often the held names' keys are written again.
const REFRESH: Duration = Duration::from_secs(10 * 60);

fn key(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// The names held here, and the writes Redis has not confirmed yet.
pub(super) struct SocketIds {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Made on first use (making one needs the runtime, which the bus's constructor does not).
    conn: OnceCell<ConnectionManager>,
    /// [`RedisBusConfig::restart_grace`](crate::bus::RedisBusConfig::restart_grace).
    restart_grace: Duration,
    /// [`RedisBusConfig::socket_id_retention`](crate::bus::RedisBusConfig::socket_id_retention).
    retention: Duration,
    pending: Mutex<Pending>,
    changed: Notify,
}

#[derive(Default)]
struct Pending {
    held: HashSet<String>,
    set: HashSet<String>,
    retire: HashSet<String>,
}

impl SocketIds {
    /// Connects to `client` on first use, with the bus's timeouts; `restart_grace` and
    /// `retention` as configured.
    pub(super) fn new(
        client: redis::Client,
        (connect, response): (Duration, Duration),
        (restart_grace, retention): (Duration, Duration),
    ) -> Self {
        Self {
            client,
            config: ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect))
                .set_response_timeout(Some(response))
                .set_number_of_retries(1),
            conn: OnceCell::new(),
            restart_grace,
            retention,
            pending: Mutex::new(Pending::default()),
            changed: Notify::new(),
        }
    }

    /// The connection (it reconnects by itself after a failure).
    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        self.conn
            .get_or_try_init(|| async {
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
            })
            .await
            .cloned()
    }

    /// Reserves `name` now (a `SET`); on a failure the writer task tries again.
    pub(super) async fn reserve(&self, name: &str) -> redis::RedisResult<()> {
        {
            let mut p = lock(&self.pending);
            p.held.insert(name.to_owned());
            p.retire.remove(name);
        }
        let written = async {
            let mut conn = self.connection().await?;
            redis::cmd("SET")
                .arg(key(name))
                .arg(1)
                .arg("EX")
                .arg(TTL.as_secs())
                .query_async::<()>(&mut conn)
                .await
        }
        .await;
        if written.is_err() {
            let mut p = lock(&self.pending);
            if p.held.contains(name) {
                p.set.insert(name.to_owned());
            }
            drop(p);
            self.changed.notify_one();
        }
        written
    }

    /// Gives `name` up: the writer task marks its key retired, to live the retention (or
    /// deletes it without one).
    pub(super) fn release(&self, name: &str) {
        let mut p = lock(&self.pending);
        if !p.held.remove(name) {
            return;
        }
        p.set.remove(name);
        p.retire.insert(name.to_owned());
        drop(p);
        self.changed.notify_one();
    }

    /// Writes every held name again: Redis came back, maybe restarted without them.
    pub(super) fn rewrite_all(&self) {
        let mut p = lock(&self.pending);
        p.set = p.held.clone();
        drop(p);
        self.changed.notify_one();
    }

    /// Which of `names` some instance holds or held lately (its key exists). All of them while Redis has
    /// been up for less than `restart_grace`: a Redis that restarted without its data has
    /// lost the keys, and each instance writes its names again only once it has reconnected.
    pub(super) async fn in_use(&self, names: Vec<String>) -> redis::RedisResult<HashSet<String>> {
        if names.is_empty() {
            return Ok(HashSet::new());
        }
        let mut conn = self.connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await?;
        let uptime = info
            .lines()
            .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if Duration::from_secs(uptime) < self.restart_grace {
            return Ok(names.into_iter().collect());
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.exists(key(name));
        }
        let exists: Vec<bool> = pipe.query_async(&mut conn).await?;
        Ok(names
            .into_iter()
            .zip(exists)
            .filter_map(|(name, held)| held.then_some(name))
            .collect())
    }

    /// The writes to make now (every held name again on a refresh).
    fn take(&self, refresh: bool) -> (Vec<String>, Vec<String>) {
        let mut p = lock(&self.pending);
        if refresh {
            p.set = p.held.clone();
        }
        let set = std::mem::take(&mut p.set).into_iter().collect();
        let retire = std::mem::take(&mut p.retire).into_iter().collect();
        (set, retire)
    }

    /// Writes that failed, to be tried again (unless the name changed hands meanwhile).
    fn put_back(&self, set: Vec<String>, retire: Vec<String>) {
        let mut p = lock(&self.pending);
        for name in set {
            if p.held.contains(&name) {
                p.set.insert(name);
            }
        }
        for name in retire {
            if !p.held.contains(&name) {
                p.retire.insert(name);
            }
        }
    }
}

impl Inner {
    /// Keeps the held names' keys in Redis until the bus shuts down.
    pub(super) async fn keep_socket_ids(self: Arc<Self>) {
        let ids = &self.socket_ids;
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        let mut next_refresh = tokio::time::Instant::now() + REFRESH;
        loop {
            let refresh = tokio::select! {
                () = self.cancel.cancelled() => return,
                () = ids.changed.notified() => false,
                () = tokio::time::sleep_until(next_refresh) => true,
            };
            if refresh {
                next_refresh = tokio::time::Instant::now() + REFRESH;
            }
            let (set, retire) = ids.take(refresh);
            if set.is_empty() && retire.is_empty() {
                continue;
            }
            let mut pipe = redis::pipe();
            for name in &set {
                pipe.set_ex(key(name), 1, TTL.as_secs()).ignore();
            }
            // At least a second: SET EX takes whole seconds, and 0 is an error.
            let retention = ids.retention.as_secs().max(1);
            for name in &retire {
                if ids.retention.is_zero() {
                    pipe.del(key(name)).ignore();
                } else {
                    pipe.set_ex(key(name), 0, retention).ignore();
                }
            }
            let written = match ids.connection().await {
                Ok(mut conn) => pipe.query_async::<()>(&mut conn).await,
                Err(e) => Err(e),
            };
            match written {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::debug!(error = %e, names = set.len() + retire.len(), "socket ids not written to Redis; retrying");
                    ids.put_back(set, retire);
                    if !self.sleep_or_cancel(backoff.next_delay()).await {
                        return;
                    }
                    ids.changed.notify_one();
                }
            }
        }
    }
}
