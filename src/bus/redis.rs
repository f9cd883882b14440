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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{Backoff, RedisBusConfig, StartupPolicy, SubscriptionMode};
use crate::crypto::CryptoError;
use crate::crypto::backplane::{BusKey, Opener, Sealer, is_sealed};
use crate::protocol::{BusEnvelope, BusTarget, channel};
use crate::server::{BoxFuture, Bus, BusError, BusInbox, BusStatus, Interest};

/// Channels per SUBSCRIBE/UNSUBSCRIBE command when many change at once.
const SUBSCRIBE_CHUNK: usize = 512;
/// Messages per PUBLISH pipeline.
const PUBLISH_BATCH: usize = 256;

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
    /// Raised by the subscriber when its connection fails: the publisher's connection to the
    /// same Redis is most likely dead too, so it reconnects before the next publish rather
    /// than losing that publish on a dead socket.
    publisher_reset: Notify,
    cancel: CancellationToken,
    tasks: TaskTracker,
    encrypted: bool,
}

struct StartParts {
    queue_rx: mpsc::Receiver<Queued>,
    sealer: Option<Sealer>,
    /// The bus key for the opener, which is created when the bus starts.
    opener_key: Option<BusKey>,
}

#[derive(Default)]
struct Health {
    last_error: Option<String>,
    down_since: Option<Instant>,
}

#[derive(Default)]
struct Stats {
    published: AtomicU64,
    dropped_full: AtomicU64,
    dropped_failed: AtomicU64,
    received: AtomicU64,
    rejected: AtomicU64,
    reconnects: AtomicU64,
}

/// Desired subscriptions in interest mode. Counts rather than flags: the registry reports
/// gained/lost after releasing its lock, so two threads' reports may arrive in either order;
/// summing them is order-independent, and a target is wanted while its count is positive.
#[derive(Default)]
struct InterestState {
    counts: HashMap<String, i64>,
    dirty: HashSet<String>,
}

struct Queued {
    env: BusEnvelope,
    at: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `redis://user:secret@host` -> `redis://***@host`, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

fn conn_config(connect: Duration, response: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect))
        .set_response_timeout(Some(response))
}

/// Opens a Redis client for `url`, making sure rustls has a crypto provider for `rediss://`.
/// `ca_pem`, when given, replaces the bundled web roots as the trusted CA(s).
pub(crate) fn open_client(url: &str, ca_pem: Option<&[u8]>) -> redis::RedisResult<redis::Client> {
    if url.starts_with("rediss://") {
        // Fails only when a provider is already installed, which is what we need anyway.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    match ca_pem {
        Some(pem) if url.starts_with("rediss://") => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            },
        ),
        _ => redis::Client::open(url),
    }
}

/// Opens a multiplexed connection for publishing (also used by the emitter).
pub(crate) async fn connect_publisher(
    client: &redis::Client,
    connect: Duration,
    response: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let config = conn_config(connect, response);
    let fut = client.get_multiplexed_async_connection_with_config(&config);
    match tokio::time::timeout(connect + response, fut).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))),
    }
}

async fn connect_subscriber(
    client: &redis::Client,
    connect: Duration,
) -> redis::RedisResult<(PubSubSink, PubSubStream)> {
    match tokio::time::timeout(connect, client.get_async_pubsub()).await {
        Ok(r) => r.map(redis::aio::PubSub::split),
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        ))),
    }
}

async fn timed<T>(
    limit: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
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
            publisher_reset: Notify::new(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            encrypted,
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

/// Whether Redis refused the URL's credentials (wrong or missing password, or an ACL user
/// without the commands the bus needs): an error that retrying with the same URL cannot fix.
fn refused_credentials(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

impl Inner {
    fn set_down(&self, which: &AtomicBool, error: String) {
        let was_up = which.swap(false, Ordering::AcqRel);
        let mut h = lock(&self.health);
        if was_up {
            tracing::warn!(url = %self.url_redacted, error = %error, "Redis connection lost; cross-instance delivery paused");
        }
        h.down_since.get_or_insert_with(Instant::now);
        h.last_error = Some(error);
    }

    fn set_up(&self, which: &AtomicBool, what: &str) {
        which.store(true, Ordering::Release);
        if self.sub_up.load(Ordering::Acquire) && self.pub_up.load(Ordering::Acquire) {
            let mut h = lock(&self.health);
            if let Some(since) = h.down_since.take() {
                tracing::info!(url = %self.url_redacted, what, outage_ms = since.elapsed().as_millis() as u64, "Redis connected");
            }
            h.last_error = None;
        }
    }

    async fn sleep_or_cancel(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    fn wanted_channels(&self) -> Vec<String> {
        let mut st = lock(&self.interest);
        st.dirty.clear();
        st.counts
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(ch, _)| ch.clone())
            .collect()
    }

    fn publish_state(&self) -> &'static str {
        if self.pub_up.load(Ordering::Acquire) {
            "up"
        } else {
            "down"
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
                    let mut p = connect_publisher(
                        &inner.client,
                        inner.connect_timeout,
                        inner.response_timeout,
                    )
                    .await?;
                    // Connecting is not logging in: without a password Redis accepts the
                    // connection and refuses the first command (NOAUTH).
                    redis::cmd("PING").query_async::<()>(&mut p).await?;
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
                        if inner.startup == StartupPolicy::FailFast {
                            return Err(BusError::Unreachable {
                                backend: "Redis",
                                url: inner.url_redacted.clone(),
                                reason: e.to_string(),
                            });
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
        if self.0.queue_tx.try_send(queued).is_err() {
            let n = self.0.stats.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "Redis publish queue full; messages dropped");
            }
        }
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
            st.dirty.insert(ch);
            drop(st);
            self.0.interest_changed.notify_one();
        }
    }

    fn status(&self) -> BusStatus {
        let i = &self.0;
        let connected = i.sub_up.load(Ordering::Acquire) && i.pub_up.load(Ordering::Acquire);
        let h = lock(&i.health);
        let mut detail = format!(
            "mode={}; encrypted={}; published={}; received={}; dropped={}; reconnects={}",
            i.mode.as_str(),
            i.encrypted,
            i.stats.published.load(Ordering::Relaxed),
            i.stats.received.load(Ordering::Relaxed),
            i.stats.dropped_full.load(Ordering::Relaxed)
                + i.stats.dropped_failed.load(Ordering::Relaxed),
            i.stats.reconnects.load(Ordering::Relaxed),
        );
        if i.mode == SubscriptionMode::Interest {
            detail.push_str(&format!("; subscriptions={}", self.interest_count() + 1));
        }
        if i.stats.rejected.load(Ordering::Relaxed) > 0 {
            detail.push_str(&format!(
                "; rejected={}",
                i.stats.rejected.load(Ordering::Relaxed)
            ));
        }
        if let Some(since) = h.down_since {
            detail.push_str(&format!(
                "; down for {} ms (publisher {})",
                since.elapsed().as_millis(),
                i.publish_state()
            ));
        }
        if let Some(e) = &h.last_error {
            detail.push_str("; last error: ");
            detail.push_str(e);
        }
        BusStatus {
            kind: "redis",
            connected,
            detail: Some(detail),
        }
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

/// A connected, fully subscribed pub/sub connection (or why it is not).
type Subscribed = Result<(PubSubSink, PubSubStream, HashSet<String>), String>;

impl Inner {
    /// Subscribes a fresh connection to everything this instance needs.
    async fn subscribe_all(
        self: &Arc<Self>,
        (mut sink, stream): (PubSubSink, PubSubStream),
    ) -> Subscribed {
        let t = self.response_timeout;
        timed(t, sink.subscribe(channel::BROADCAST)).await?;
        let mut actual = HashSet::new();
        match self.mode {
            SubscriptionMode::Pattern => {
                timed(
                    t,
                    sink.psubscribe(&[
                        channel::ROOM_PATTERN,
                        channel::CLIENT_PATTERN,
                        channel::USER_PATTERN,
                    ]),
                )
                .await?;
            }
            SubscriptionMode::Interest => {
                let wanted = self.wanted_channels();
                for chunk in wanted.chunks(SUBSCRIBE_CHUNK) {
                    timed(t, sink.subscribe(chunk)).await?;
                }
                actual.extend(wanted);
            }
        }
        self.set_up(&self.sub_up, "subscriber");
        Ok((sink, stream, actual))
    }

    async fn subscriber(
        self: Arc<Self>,
        first: Subscribed,
        inbox: BusInbox,
        mut opener: Option<Opener>,
    ) {
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        let mut current = first;
        loop {
            match current {
                Ok((sink, stream, actual)) => {
                    backoff.reset();
                    let why = self.pump(sink, stream, actual, &inbox, &mut opener).await;
                    match why {
                        None => return,
                        Some(e) => {
                            self.set_down(&self.sub_up, format!("subscriber: {e}"));
                            self.publisher_reset.notify_one();
                        }
                    }
                }
                Err(e) => self.set_down(&self.sub_up, format!("subscriber: {e}")),
            }
            if !self.sleep_or_cancel(backoff.next_delay()).await {
                return;
            }
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            current = match connect_subscriber(&self.client, self.connect_timeout).await {
                Ok(pair) => self.subscribe_all(pair).await,
                Err(e) => Err(e.to_string()),
            };
        }
    }

    /// Runs one subscriber connection until it fails (`Some(reason)`) or the bus stops (`None`).
    async fn pump(
        &self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        mut actual: HashSet<String>,
        inbox: &BusInbox,
        opener: &mut Option<Opener>,
    ) -> Option<String> {
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        // Changes that raced with the initial subscription.
        if self.mode == SubscriptionMode::Interest
            && let Err(e) = self.apply_interest(&mut sink, &mut actual).await
        {
            return Some(e);
        }
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return None,
                msg = stream.next() => match msg {
                    Some(msg) => self.handle(&msg, inbox, opener),
                    None => return Some("connection closed".to_owned()),
                },
                () = self.interest_changed.notified(), if self.mode == SubscriptionMode::Interest => {
                    if let Err(e) = self.apply_interest(&mut sink, &mut actual).await {
                        return Some(e);
                    }
                }
                _ = ping.tick() => {
                    if let Err(e) = timed(self.response_timeout, sink.ping::<String>()).await {
                        return Some(format!("ping failed: {e}"));
                    }
                }
            }
        }
    }

    async fn apply_interest(
        &self,
        sink: &mut PubSubSink,
        actual: &mut HashSet<String>,
    ) -> Result<(), String> {
        let (add, remove) = {
            let mut st = lock(&self.interest);
            let dirty = std::mem::take(&mut st.dirty);
            let mut add = Vec::new();
            let mut remove = Vec::new();
            for ch in dirty {
                let wanted = st.counts.get(&ch).is_some_and(|c| *c > 0);
                match (wanted, actual.contains(&ch)) {
                    (true, false) => add.push(ch),
                    (false, true) => remove.push(ch),
                    _ => {}
                }
            }
            (add, remove)
        };
        let t = self.response_timeout;
        for chunk in add.chunks(SUBSCRIBE_CHUNK) {
            timed(t, sink.subscribe(chunk)).await?;
        }
        for chunk in remove.chunks(SUBSCRIBE_CHUNK) {
            timed(t, sink.unsubscribe(chunk)).await?;
        }
        actual.extend(add);
        for ch in &remove {
            actual.remove(ch);
        }
        Ok(())
    }

    fn handle(&self, msg: &redis::Msg, inbox: &BusInbox, opener: &mut Option<Opener>) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let reject = |why: &str| {
            let n = self.stats.rejected.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    channel = msg.get_channel_name(),
                    reason = why,
                    rejected = n,
                    "dropping bus message"
                );
            } else {
                tracing::debug!(
                    channel = msg.get_channel_name(),
                    reason = why,
                    "dropping bus message"
                );
            }
        };
        let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else {
            return reject("payload is not UTF-8");
        };
        let mut env = match BusEnvelope::from_json(text) {
            Ok(env) => env,
            Err(_) => return reject("malformed envelope"),
        };
        if env.target.channel() != msg.get_channel_name() {
            return reject("envelope target does not match its channel");
        }
        match opener {
            Some(opener) => match opener.open(&mut env) {
                Ok(()) => {}
                Err(CryptoError::Replay) => return reject("replayed or stale sealed envelope"),
                Err(_) => return reject("not sealed with this bus key"),
            },
            None => {
                if is_sealed(&env.data) {
                    return reject("sealed envelope but no bus key configured");
                }
            }
        }
        inbox.deliver(env);
    }

    async fn publisher(
        self: Arc<Self>,
        first: MultiplexedConnection,
        mut rx: mpsc::Receiver<Queued>,
        mut sealer: Option<Sealer>,
    ) {
        let mut conn = Some(first);
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        let mut pending: VecDeque<Queued> = VecDeque::new();
        let mut closing = false;
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            let Some(c) = conn.as_mut() else {
                if closing {
                    while let Ok(q) = rx.try_recv() {
                        pending.push_back(q);
                    }
                    if !pending.is_empty() {
                        self.count_failed(pending.len());
                    }
                    return;
                }
                // Reconnect, keeping what is queued until it gets too old.
                if !self.sleep_or_cancel(backoff.next_delay()).await {
                    closing = true;
                    continue;
                }
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                match connect_publisher(&self.client, self.connect_timeout, self.response_timeout)
                    .await
                {
                    Ok(c) => {
                        backoff.reset();
                        conn = Some(c);
                        self.set_up(&self.pub_up, "publisher");
                    }
                    Err(e) => self.set_down(&self.pub_up, format!("publisher: {e}")),
                }
                while let Ok(q) = rx.try_recv() {
                    pending.push_back(q);
                }
                self.drop_stale(&mut pending);
                continue;
            };
            if pending.is_empty() && !closing {
                tokio::select! {
                    () = self.cancel.cancelled() => closing = true,
                    q = rx.recv() => match q {
                        Some(q) => pending.push_back(q),
                        None => closing = true,
                    },
                    () = self.publisher_reset.notified() => {
                        self.set_down(&self.pub_up, "publisher: connection lost".to_owned());
                        conn = None;
                        continue;
                    }
                    _ = ping.tick() => {
                        let cmd = redis::cmd("PING");
                        let r = timed(self.response_timeout, cmd.query_async::<String>(c)).await;
                        if let Err(e) = r {
                            self.set_down(&self.pub_up, format!("publisher: ping failed: {e}"));
                            conn = None;
                        }
                        continue;
                    }
                }
            }
            while pending.len() < PUBLISH_BATCH {
                match rx.try_recv() {
                    Ok(q) => pending.push_back(q),
                    Err(_) => break,
                }
            }
            self.drop_stale(&mut pending);
            if pending.is_empty() {
                if closing {
                    return;
                }
                continue;
            }
            let mut pipe = redis::pipe();
            let mut n = 0u64;
            let take = pending.len().min(PUBLISH_BATCH);
            for mut q in pending.drain(..take) {
                if let Some(s) = sealer.as_mut()
                    && s.seal(&mut q.env).is_err()
                {
                    self.count_failed(1);
                    continue;
                }
                pipe.cmd("PUBLISH")
                    .arg(q.env.target.channel())
                    .arg(q.env.to_json())
                    .ignore();
                n += 1;
            }
            if n == 0 {
                continue;
            }
            match timed(self.response_timeout, pipe.query_async::<()>(c)).await {
                Ok(()) => {
                    self.stats.published.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    // The batch may or may not have reached Redis: it is not retried
                    // (at-most-once, never duplicated).
                    self.count_failed(usize::try_from(n).unwrap_or(usize::MAX));
                    self.set_down(&self.pub_up, format!("publisher: {e}"));
                    conn = None;
                }
            }
        }
    }

    fn drop_stale(&self, pending: &mut VecDeque<Queued>) {
        let mut stale = 0;
        while pending.len() > self.publish_queue
            || pending
                .front()
                .is_some_and(|q| q.at.elapsed() > self.publish_max_age)
        {
            pending.pop_front();
            stale += 1;
        }
        if stale > 0 {
            self.count_failed(stale);
        }
    }

    fn count_failed(&self, n: usize) {
        let total = self
            .stats
            .dropped_failed
            .fetch_add(n as u64, Ordering::Relaxed)
            + n as u64;
        tracing::warn!(
            dropped = n,
            total,
            "bus messages not published (Redis unavailable)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(redact_url("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact_url("rediss://:p@h"), "rediss://***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn interest_counts_are_order_independent() {
        let bus = RedisBus::new(RedisBusConfig::new("redis://127.0.0.1:1")).expect("bus");
        let room = |n: &str| BusTarget::Room(n.to_owned());
        // Two threads report gained/lost for the same room in the "wrong" order.
        bus.interest(&Interest::Gained(room("a")));
        bus.interest(&Interest::Gained(room("a")));
        bus.interest(&Interest::Lost(room("a")));
        assert_eq!(bus.interest_count(), 1);
        bus.interest(&Interest::Lost(room("a")));
        assert_eq!(bus.interest_count(), 0);
        // A loss reported before its gain never leaves a stale subscription behind.
        bus.interest(&Interest::Lost(room("b")));
        bus.interest(&Interest::Gained(room("b")));
        assert_eq!(bus.interest_count(), 0);
        bus.interest(&Interest::Gained(room("b")));
        assert_eq!(bus.interest_count(), 1);
        // Broadcast is always subscribed and never counted; pattern mode ignores interests.
        bus.interest(&Interest::Gained(BusTarget::Broadcast));
        assert_eq!(bus.interest_count(), 1);
        let pattern = RedisBus::new(
            RedisBusConfig::new("redis://127.0.0.1:1").mode(SubscriptionMode::Pattern),
        )
        .expect("bus");
        pattern.interest(&Interest::Gained(room("a")));
        assert_eq!(pattern.interest_count(), 0);
        assert!(!bus.status().connected);
    }

    #[test]
    fn bad_url_is_an_error() {
        assert!(RedisBus::new(RedisBusConfig::new("http://nope")).is_err());
    }
}
