//! [`RedisHistory`]: the core's [`HistoryStore`] in Redis Streams, shared by every instance
//! on the same Redis (the layout and scripts are in `streams.rs`).
//!
//! Appends go through one multiplexed connection, so concurrent publications are pipelined.
//! With a bus key, each entry is the sealed envelope: Redis keeps no plaintext, and entries
//! read back are opened by a [`KeptOpener`] (authentic, within the age bound, each once).
//! An append that fails may or may not have been kept, and its publication goes out live
//! only: the stream is marked, and it starts a new epoch as soon as Redis takes the command
//! (a task tries until it does), or at this instance's next append to it if that comes first.
//! So no client is told it recovered across what may be missing, on any instance: until the
//! new epoch, another instance's appends continue the old one, and a recovery there that
//! spans the lost publication is the one case still answered `true`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::lock;
use super::publisher::CHECK_AFTER_IDLE;
use super::reach::Reachability;
use super::streams::{self, RawPage};
use crate::bus::config::Backoff;
use crate::crypto::backplane::{BusKey, KeptOpener, MAX_SKEW_MS, Sealer, is_sealed};
use crate::protocol::{BusEnvelope, Position, target_of};
use crate::server::{BoxFuture, HistoryError, HistoryStore, KeptPage};

/// History in Redis Streams. Cheap to clone; every clone is the same store. Get one from
/// [`RedisBus::history_store`](super::RedisBus::history_store) so it shares the bus's Redis
/// and key, and hand it to
/// [`ServerBuilder::history_store`](crate::server::ServerBuilder::history_store).
#[derive(Clone)]
pub struct RedisHistory(Arc<Inner>);

struct Inner {
    conn: ConnectionManager,
    append: redis::Script,
    read: redis::Script,
    size: usize,
    ttl_ms: u64,
    sealer: Option<Mutex<Sealer>>,
    opener: Option<KeptOpener>,
    /// Streams with an append this instance could not confirm.
    tainted: Mutex<HashSet<String>>,
    /// The bus's count of Redis recoveries, and the last one this store checked its
    /// connection after.
    recoveries: Arc<AtomicU64>,
    checked: AtomicU64,
    /// Whether to try Redis at all.
    reach: Reachability,
    /// When the connection was last handed out for a command.
    last_used: Mutex<Instant>,
    /// The bus, whose `published` count takes the kept publications (the append script
    /// publishes them).
    bus: Arc<super::Inner>,
    restart: redis::Script,
    /// Whether the task that starts new epochs for the marked streams runs.
    restarting: AtomicBool,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("size", &self.0.size)
            .field("ttl_ms", &self.0.ttl_ms)
            .field("sealed", &self.0.sealer.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisHistory {
    /// A store on `client` keeping at least `size` publications per stream for `ttl`, sealed
    /// under `key` when given. Connects on first use, and again after a failure.
    ///
    /// # Errors
    /// The connection manager refused its configuration.
    pub(super) fn new(
        client: redis::Client,
        timeouts: (Duration, Duration),
        (size, ttl): (usize, Duration),
        key: Option<&BusKey>,
        bus: Arc<super::Inner>,
    ) -> redis::RedisResult<Self> {
        let recoveries = Arc::clone(&bus.recoveries);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.0))
            .set_response_timeout(Some(timeouts.1))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self(Arc::new(Inner {
            conn,
            append: streams::append_script(),
            read: streams::read_script(),
            size,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            sealer: key.map(|k| Mutex::new(Sealer::new(k.duplicate(), &mut rand::rng()))),
            opener: key.map(|k| KeptOpener::new(k.duplicate())),
            tainted: Mutex::new(HashSet::new()),
            checked: AtomicU64::new(recoveries.load(Ordering::Acquire)),
            recoveries,
            reach: Reachability::new(Arc::clone(&bus)),
            last_used: Mutex::new(Instant::now()),
            bus,
            restart: streams::restart_script(),
            restarting: AtomicBool::new(false),
        })))
    }

    /// The store's connection, checked first after Redis came back from an outage, and after
    /// it was idle for a second: the connection may be one opened before the outage, dead
    /// since, or one Redis (its `timeout`), a proxy or a NAT closed while idle, and a ping (not
    /// an append, which may or may not have run when it fails, or a read) is what should find
    /// that out. The connection manager reconnects on the failure, and the second ping waits
    /// for the new connection.
    ///
    /// # Errors
    /// The check failed (nothing else was sent): no answer in time (a hung Redis, which the
    /// command would wait out as long again), or two failures in a row.
    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let mut conn = self.0.conn.clone();
        let recoveries = self.0.recoveries.load(Ordering::Acquire);
        let idle = {
            let mut last = lock(&self.0.last_used);
            let idle = last.elapsed() >= CHECK_AFTER_IDLE;
            *last = Instant::now();
            idle
        };
        if self.0.checked.swap(recoveries, Ordering::AcqRel) != recoveries || idle {
            let mut failure = None;
            for _ in 0..2 {
                match redis::cmd("PING").query_async::<()>(&mut conn).await {
                    Ok(()) => {
                        failure = None;
                        break;
                    }
                    Err(e) if e.is_timeout() => return Err(e),
                    Err(e) => failure = Some(e),
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(conn)
    }
}

impl RedisHistory {
    /// Starts the task that gives every marked stream a new epoch, unless it runs.
    fn restart_marked(&self) {
        if self.0.restarting.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move { store.restart_until_done().await });
    }

    /// Takes the marked streams and starts a new epoch for each (a stream whose next append
    /// here came first was taken by it), trying again with backoff while Redis does not take
    /// them; ends once none is left, or with the bus.
    async fn restart_until_done(&self) {
        let inner = &self.0;
        // Retried often (a check of `reach` or one small script each time): until it runs,
        // another instance's recovery across the lost publication could be answered `true`.
        let most = inner.bus.backoff.1.min(RESTART_RETRY_AT_MOST);
        let mut backoff = Backoff::new(inner.bus.backoff.0.min(most), most);
        loop {
            let marked: Vec<String> = lock(&inner.tainted).iter().cloned().collect();
            if marked.is_empty() {
                inner.restarting.store(false, Ordering::Release);
                // One marked after the look and before the flag went down has no task yet.
                if lock(&inner.tainted).is_empty() || inner.restarting.swap(true, Ordering::AcqRel)
                {
                    return;
                }
                continue;
            }
            let mut failed = Vec::new();
            // Nothing is taken off the marks unless Redis is reached.
            let conn = match inner.reach.check() {
                Ok(()) => self.connection().await.map_err(|e| inner.reach.failed(&e)),
                Err(_) => Err(()),
            };
            let reached = conn.is_ok();
            if let Ok(mut conn) = conn {
                for stream in marked {
                    // Taken just before the script goes out, on the connection appends use
                    // (Redis runs them in order): an append that took it first started the
                    // new epoch itself, and one after this runs in the new epoch.
                    if !lock(&inner.tainted).remove(&stream) {
                        continue;
                    }
                    if let Err(e) = streams::restart(&mut conn, &inner.restart, &stream).await {
                        tracing::debug!(stream, error = %e, "new history epoch not started yet");
                        inner.reach.failed(&e);
                        failed.push(stream);
                    }
                }
            }
            if reached && failed.is_empty() {
                backoff.reset();
                continue;
            }
            lock(&inner.tainted).extend(failed);
            if !inner.bus.sleep_or_cancel(backoff.next_delay()).await {
                inner.restarting.store(false, Ordering::Release);
                return;
            }
        }
    }
}

/// The longest wait between two attempts to start new epochs for marked streams.
const RESTART_RETRY_AT_MOST: Duration = Duration::from_millis(250);

fn unavailable(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Refused(e.to_string())
}

/// Whether Redis may still run a command that failed with `e`: it was sent, but no answer
/// came back (a timeout, a dropped connection), as opposed to an error reply or a connection
/// that was never made.
fn may_still_run(e: &redis::RedisError) -> bool {
    (e.is_timeout() || e.is_io_error() || e.is_connection_dropped()) && !e.is_connection_refusal()
}

/// The error of a script that failed with `e`: [`HistoryError::Unconfirmed`] when Redis may
/// still run it, or ran it and answered in a shape this instance does not read (another
/// version's script, say).
fn failed(e: &redis::RedisError) -> HistoryError {
    let ran = matches!(
        e.kind(),
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
    );
    if ran || may_still_run(e) {
        HistoryError::Unconfirmed(e.to_string())
    } else {
        HistoryError::Refused(e.to_string())
    }
}

impl HistoryStore for RedisHistory {
    fn append(
        &self,
        stream: &str,
        mut envelope: BusEnvelope,
    ) -> BoxFuture<'_, Result<Position, HistoryError>> {
        let stream = stream.to_owned();
        Box::pin(async move {
            let inner = &self.0;
            if let Some(sealer) = &inner.sealer {
                lock(sealer).seal(&mut envelope).map_err(unavailable)?;
            }
            inner.reach.check()?;
            let reset = lock(&inner.tainted).remove(&stream);
            let mut conn = match self.connection().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Not kept, and nothing was sent: the stream starts a new epoch.
                    lock(&inner.tainted).insert(stream.clone());
                    inner.reach.failed(&e);
                    self.restart_marked();
                    return Err(unavailable(e));
                }
            };
            let r = streams::append(
                &mut conn,
                &inner.append,
                &stream,
                &envelope,
                (inner.size, inner.ttl_ms),
                reset,
            )
            .await;
            if r.is_ok() {
                inner.bus.stats.published.fetch_add(1, Ordering::Relaxed);
            }
            r.map(|(position, _)| position).map_err(|e| {
                lock(&inner.tainted).insert(stream.clone());
                inner.reach.failed(&e);
                self.restart_marked();
                failed(&e)
            })
        })
    }

    fn read(
        &self,
        stream: &str,
        since: u64,
        limit: usize,
        create: bool,
    ) -> BoxFuture<'_, Result<KeptPage, HistoryError>> {
        self.read_page(stream, (since, None), limit, create)
    }

    fn read_since(
        &self,
        stream: &str,
        (since, epoch): (u64, &str),
        limit: usize,
        create: bool,
    ) -> BoxFuture<'_, Result<KeptPage, HistoryError>> {
        self.read_page(stream, (since, Some(epoch)), limit, create)
    }
}

impl RedisHistory {
    /// A read of `stream` after `since`; with an epoch, the script reads no entry when the
    /// stream is in another epoch or holds more than `limit` after `since` (the recovery
    /// would be a gap: [`HistoryStore::read_since`]).
    fn read_page(
        &self,
        stream: &str,
        (since, epoch): (u64, Option<&str>),
        limit: usize,
        create: bool,
    ) -> BoxFuture<'_, Result<KeptPage, HistoryError>> {
        let stream = stream.to_owned();
        let epoch = epoch.map(str::to_owned);
        Box::pin(async move {
            let inner = &self.0;
            inner.reach.check()?;
            let mut conn = self.connection().await.map_err(|e| {
                inner.reach.failed(&e);
                unavailable(e)
            })?;
            let read = async |conn: &mut ConnectionManager| {
                streams::read(
                    conn,
                    &inner.read,
                    &stream,
                    (since, epoch.as_deref(), limit),
                    (inner.ttl_ms, create),
                )
                .await
            };
            let page = match read(&mut conn).await {
                // A read may run twice (it creates a missing stream at most once): one that
                // met a dropped connection is made again on the connection that replaces it.
                Err(e) if e.is_connection_dropped() && !e.is_timeout() => read(&mut conn).await,
                page => page,
            }
            .map_err(|e| {
                inner.reach.failed(&e);
                failed(&e)
            })?;
            Ok(self.open(&stream, page))
        })
    }
}

impl RedisHistory {
    /// The entries of `page` that are this stream's, within the age bound and (with a bus
    /// key) authentic; the others are left out, which the core reads as a gap.
    fn open(&self, stream: &str, page: RawPage) -> KeptPage {
        let inner = &self.0;
        let cutoff = page.now_ms.saturating_sub(inner.ttl_ms);
        let target = target_of(stream);
        let mut opened = inner.opener.as_ref().map(|o| {
            let now = crate::crypto::backplane::now_ms();
            o.read(now.saturating_sub(inner.ttl_ms.saturating_add(MAX_SKEW_MS)))
        });
        let mut entries = Vec::with_capacity(page.entries.len());
        for (offset, at, text) in page.entries {
            if at < cutoff {
                continue;
            }
            let Ok(mut env) = BusEnvelope::from_json(&text) else {
                continue;
            };
            if Some(&env.target) != target.as_ref() {
                continue;
            }
            let authentic = match opened.as_mut() {
                Some(read) => read.open(&mut env).is_ok(),
                None => !is_sealed(&env.data),
            };
            if !authentic {
                tracing::warn!(
                    stream,
                    offset,
                    "history entry not sealed with this bus key; left out"
                );
                continue;
            }
            env.kept = None;
            entries.push((offset, env));
        }
        KeptPage::new(page.position, entries).created(page.created)
    }
}
