//! [`RedisBus`]: the core's [`Bus`] over Redis pub/sub.
//!
//! Two connections, each owned by one task:
//! - the **publisher** drains a bounded queue and sends `PUBLISH`es in pipelined batches, so
//!   [`Bus::publish`] never waits for Redis and one instance's messages keep their order;
//! - the **subscriber** holds the pub/sub connection, applies subscription changes and hands
//!   every envelope to the server's [`BusInbox`].
//!
//! Either task reconnects on its own with jittered exponential backoff; the subscriber then
//! resubscribes everything this instance needs. Local clients are served throughout: an outage
//! only stops cross-instance traffic, and [`Bus::status`] says so.
//!
//! This file holds the bus handle, its shared state and the [`Bus`] implementation; the
//! `connect`, `publisher`, `subscriber` and `interest` submodules hold the rest.

mod connect;
mod health;
mod history;
mod interest;
mod publisher;
mod reach;
mod socket_ids;
pub(crate) mod streams;
mod subscriber;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{Backoff, RedisBusConfig, StartupPolicy, SubscriptionMode};
use crate::crypto::backplane::{BusKey, Opener, Sealer};
use crate::protocol::{BusEnvelope, BusTarget};
use crate::server::{BoxFuture, Bus, BusError, BusInbox, BusStats, BusStatus, Interest};
pub(crate) use connect::{connect_publisher, open_client, redact_url};
use connect::{connect_subscriber, refused_credentials, refused_database};
use health::{Health, Stats};
pub use history::RedisHistory;
use interest::InterestState;
use publisher::Queued;
use socket_ids::SocketIds;

/// Channels per SUBSCRIBE/UNSUBSCRIBE command when many change at once.
const SUBSCRIBE_CHUNK: usize = 512;

/// Redis pub/sub bus. Cheap to clone; every clone is the same bus. Hand one to
/// [`ServerBuilder::bus`](crate::server::ServerBuilder::bus).
#[derive(Clone)]
pub struct RedisBus(Arc<Inner>);

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("url", &self.0.url_redacted)
            .field("mode", &self.0.mode)
            .finish_non_exhaustive()
    }
}

struct Inner {
    client: redis::Client,
    url_redacted: String,
    mode: SubscriptionMode,
    startup: StartupPolicy,
    backoff: (Duration, Duration),
    connect_timeout: Duration,
    response_timeout: Duration,
    ping_interval: Duration,
    publish_max_age: Duration,
    publish_queue: usize,
    queue_tx: mpsc::Sender<Queued>,
    /// Taken by `start`.
    parts: Mutex<Option<StartParts>>,
    health: Mutex<Health>,
    sub_up: AtomicBool,
    pub_up: AtomicBool,
    stats: Stats,
    interest: Mutex<InterestState>,
    interest_changed: Notify,
    /// Counts the subscriber's connection failures: the publisher's connection to the
    /// same Redis is most likely dead too, so it reconnects before the next publish (unless
    /// it connected since).
    publisher_reset: watch::Sender<u64>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    encrypted: bool,
    /// The bus key, for history stores made from this bus.
    history_key: Option<BusKey>,
    /// How many times Redis came back after an outage: history stores check their own
    /// connection after each (it may be one left over from before).
    recoveries: Arc<AtomicU64>,
    /// Channels the subscriber has confirmed (interest mode), and a signal when they change.
    confirmed: Mutex<HashSet<String>>,
    confirmed_changed: Notify,
    /// How far the publisher has got through the queue ([`Bus::flushed`]).
    handoff: publisher::Handoff,
    /// The socket ids held here, reserved in Redis ([`Bus::names_in_use`]).
    socket_ids: SocketIds,
}

struct StartParts {
    queue_rx: mpsc::Receiver<Queued>,
    sealer: Option<Sealer>,
    /// The bus key for the opener, which is created when the bus starts.
    opener_key: Option<BusKey>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RedisBus {
    /// Validates the configuration. Nothing connects until [`Bus::start`].
    ///
    /// # Errors
    /// [`BusError`] for a URL the Redis client does not accept.
    pub fn new(config: RedisBusConfig) -> Result<Self, BusError> {
        let url_redacted = redact_url(&config.url);
        let client = open_client(&config.url, config.tls_ca_pem.as_deref())
            .map_err(|e| BusError::Config(format!("invalid Redis URL {url_redacted}: {e}")))?;
        let (queue_tx, queue_rx) = mpsc::channel(config.publish_queue.max(1));
        let encrypted = config.bus_key.is_some();
        let (sealer, opener_key) = match config.bus_key {
            Some(key) => {
                let sealer = Sealer::new(key.duplicate(), &mut rand::rng());
                (Some(sealer), Some(key))
            }
            None => (None, None),
        };
        let history_key = opener_key.as_ref().map(BusKey::duplicate);
        let timeouts = (config.connect_timeout, config.response_timeout);
        let socket_ids = SocketIds::new(
            client.clone(),
            timeouts,
            (config.restart_grace, config.socket_id_retention),
        );
        Ok(Self(Arc::new(Inner {
            client,
            url_redacted,
            mode: config.mode,
            startup: config.startup,
            backoff: (config.backoff_initial, config.backoff_max),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            ping_interval: config.ping_interval,
            publish_max_age: config.publish_max_age,
            publish_queue: config.publish_queue.max(1),
            queue_tx,
            parts: Mutex::new(Some(StartParts {
                queue_rx,
                sealer,
                opener_key,
            })),
            health: Mutex::new(Health {
                last_error: Some("not started".to_owned()),
                down_since: None,
            }),
            sub_up: AtomicBool::new(false),
            pub_up: AtomicBool::new(false),
            stats: Stats::default(),
            interest: Mutex::new(InterestState::default()),
            interest_changed: Notify::new(),
            publisher_reset: watch::Sender::new(0),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            encrypted,
            history_key,
            recoveries: Arc::default(),
            confirmed: Mutex::new(HashSet::new()),
            confirmed_changed: Notify::new(),
            handoff: publisher::Handoff::default(),
            socket_ids,
        })))
    }

    /// The subscription mode in force.
    #[must_use]
    pub fn mode(&self) -> SubscriptionMode {
        self.0.mode
    }

    /// Envelopes received from Redis so far (including this server's own and rejected ones).
    #[must_use]
    pub fn received(&self) -> u64 {
        self.0.stats.received.load(Ordering::Relaxed)
    }

    /// Messages published to Redis so far.
    #[must_use]
    pub fn published(&self) -> u64 {
        self.0.stats.published.load(Ordering::Relaxed)
    }

    /// Messages dropped without being published (queue full, or Redis down for longer than
    /// `publish_max_age`, or a failed PUBLISH).
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.0.stats.dropped_full.load(Ordering::Relaxed)
            + self.0.stats.dropped_failed.load(Ordering::Relaxed)
    }

    /// A history store in Redis Streams on this bus's Redis, sealed under its bus key when it
    /// has one, keeping at least `size` publications per stream for `ttl`. Kept publications
    /// are published on this bus's channels.
    ///
    /// # Errors
    /// [`BusError::Config`] if the Redis client refuses the store's connection settings.
    pub fn history_store(&self, size: usize, ttl: Duration) -> Result<RedisHistory, BusError> {
        RedisHistory::new(
            self.0.client.clone(),
            (self.0.connect_timeout, self.0.response_timeout),
            (size, ttl),
            self.0.history_key.as_ref(),
            Arc::clone(&self.0),
        )
        .map_err(|e| BusError::Config(format!("history store: {e}")))
    }

    /// Channels this instance is subscribed to in interest mode (wanted ones, whether or not
    /// Redis is currently reachable).
    #[must_use]
    pub fn interest_count(&self) -> usize {
        lock(&self.0.interest)
            .counts
            .values()
            .filter(|c| **c > 0)
            .count()
    }
}

impl Inner {
    /// The error of a Redis that could not be reached (or did not answer).
    fn unreachable(&self, e: &redis::RedisError) -> BusError {
        BusError::Unreachable {
            backend: "Redis",
            url: self.url_redacted.clone(),
            reason: e.to_string(),
        }
    }

    async fn sleep_or_cancel(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }
}

impl Bus for RedisBus {
    fn start(&self, inbox: BusInbox) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(async move {
            let Some(parts) = lock(&self.0.parts).take() else {
                return Ok(());
            };
            let inner = &self.0;
            // Targets the server already has members for (normally none at start).
            if inner.mode == SubscriptionMode::Interest {
                let mut st = lock(&inner.interest);
                for t in inbox.interests() {
                    *st.counts.entry(t.channel()).or_insert(0) += 1;
                }
            }
            let mut backoff = Backoff::new(inner.backoff.0, inner.backoff.1);
            let (sub, publ) = loop {
                let attempt = async {
                    let s = connect_subscriber(&inner.client, inner.connect_timeout).await?;
                    let p = connect_publisher(
                        &inner.client,
                        inner.connect_timeout,
                        inner.response_timeout,
                    )
                    .await?;
                    Ok::<_, redis::RedisError>((s, p))
                };
                match attempt.await {
                    Ok(pair) => break pair,
                    Err(e) => {
                        let msg = format!("cannot reach Redis at {}: {e}", inner.url_redacted);
                        inner.set_down(&inner.sub_up, msg.clone());
                        if refused_credentials(&e) {
                            // Waiting cannot fix a configuration error: say so at once.
                            return Err(BusError::AuthRefused {
                                backend: "Redis",
                                url: inner.url_redacted.clone(),
                                reason: e.to_string(),
                            });
                        }
                        if refused_database(&e) {
                            return Err(BusError::Config(format!(
                                "Redis at {} refused the URL's database ({e}); retrying cannot help",
                                inner.url_redacted
                            )));
                        }
                        if inner.startup == StartupPolicy::FailFast {
                            return Err(inner.unreachable(&e));
                        }
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %msg, retry_ms = delay.as_millis() as u64, "Redis not reachable at start; retrying");
                        if !inner.sleep_or_cancel(delay).await {
                            return Err(BusError::Closed { backend: "Redis" });
                        }
                    }
                }
            };
            inner.set_up(&inner.pub_up, "publisher");
            let me = Arc::clone(&self.0);
            let StartParts {
                queue_rx,
                sealer,
                opener_key,
            } = parts;
            inner
                .tasks
                .spawn(Arc::clone(&me).publisher(publ, queue_rx, sealer));
            // The opener starts now, before subscribing: it refuses every envelope stamped
            // before this instant, which an earlier run of this instance may have delivered.
            let opener = opener_key.map(Opener::new);
            // Subscribe before returning so that nothing published after start is missed.
            let first = me.subscribe_all(sub).await;
            inner.tasks.spawn(Arc::clone(&me).keep_socket_ids());
            inner.tasks.spawn(me.subscriber(first, inbox, opener));
            tracing::info!(url = %inner.url_redacted, mode = inner.mode.as_str(), encrypted = inner.encrypted, "Redis bus started");
            Ok(())
        })
    }

    fn publish(&self, envelope: BusEnvelope) {
        let queued = Queued {
            env: envelope,
            at: Instant::now(),
        };
        self.0.handoff.enter();
        if self.0.queue_tx.try_send(queued).is_err() {
            self.0.handoff.finish(1);
            let n = self.0.stats.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "Redis publish queue full; messages dropped");
            }
        }
    }

    fn flushed(&self, within: Duration) -> BoxFuture<'_, ()> {
        // With the publisher down, what is queued leaves only after a reconnect (or not at
        // all): a kept publication does not wait for it (its append fails the same way).
        if !self.0.pub_up.load(Ordering::Acquire) {
            return Box::pin(std::future::ready(()));
        }
        Box::pin(self.0.handoff.wait(within))
    }

    fn confirms_subscriptions(&self) -> bool {
        self.0.mode == SubscriptionMode::Interest
    }

    fn subscribed(&self, target: &BusTarget, within: Duration) -> BoxFuture<'_, bool> {
        // With the subscriber down, no confirmation comes before it reconnects: a connection
        // or a join does not wait out `within` for it (the catch-up after the reconnection
        // covers what kept streams missed).
        if !self.0.sub_up.load(Ordering::Acquire) {
            return Box::pin(std::future::ready(false));
        }
        let channel = target.channel();
        Box::pin(async move { self.0.wait_confirmed(&channel, within).await })
    }

    fn interest(&self, change: &Interest) {
        if self.0.mode != SubscriptionMode::Interest {
            return;
        }
        let (target, delta) = match change {
            Interest::Gained(t) => (t, 1),
            Interest::Lost(t) => (t, -1),
        };
        if *target == BusTarget::Broadcast {
            return;
        }
        let ch = target.channel();
        let mut st = lock(&self.0.interest);
        let count = st.counts.entry(ch.clone()).or_insert(0);
        let before = *count > 0;
        *count += delta;
        let after = *count > 0;
        if *count == 0 {
            st.counts.remove(&ch);
        }
        if before != after {
            st.dirty.insert(ch.clone());
            drop(st);
            // Unconfirmed until applied: an UNSUBSCRIBE of a loss just before may be on its way.
            if after {
                lock(&self.0.confirmed).remove(&ch);
            }
            self.0.interest_changed.notify_one();
        }
    }

    fn reserve_name(&self, name: &str) -> BoxFuture<'_, Result<(), BusError>> {
        let name = name.to_owned();
        Box::pin(async move {
            self.0
                .socket_ids
                .reserve(&name)
                .await
                .map_err(|e| self.0.unreachable(&e))
        })
    }

    fn release_name(&self, name: &str) {
        self.0.socket_ids.release(name);
    }

    fn names_in_use(&self, names: Vec<String>) -> BoxFuture<'_, Result<HashSet<String>, BusError>> {
        Box::pin(async move {
            self.0
                .socket_ids
                .in_use(names)
                .await
                .map_err(|e| self.0.unreachable(&e))
        })
    }

    fn stats(&self) -> Option<BusStats> {
        let s = &self.0.stats;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(BusStats::new(
            n(&s.published),
            n(&s.received),
            n(&s.rejected),
            n(&s.dropped_full) + n(&s.dropped_failed),
            n(&s.reconnects),
        ))
    }

    fn status(&self) -> BusStatus {
        self.0.status(self.interest_count())
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.0.cancel.cancel();
            self.0.tasks.close();
            if tokio::time::timeout(
                self.0.response_timeout + Duration::from_secs(1),
                self.0.tasks.wait(),
            )
            .await
            .is_err()
            {
                tracing::warn!("Redis bus tasks did not stop in time");
            }
            self.0.sub_up.store(false, Ordering::Release);
            self.0.pub_up.store(false, Ordering::Release);
            lock(&self.0.health).last_error = Some("shut down".to_owned());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_url_is_an_error() {
        assert!(RedisBus::new(RedisBusConfig::new("http://nope")).is_err());
    }
}
