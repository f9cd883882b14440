//! Prometheus metrics: one registry per [`Server`](super::Server), created by its builder
//! and rendered by the transport at `GET /metrics`.
//!
//! The hot path (frames in and out) only bumps atomic counters; gauges that describe the
//! whole server (connections by state, the bus) are sampled when the page is rendered.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use super::socket::Incoming;
use crate::crypto::Profile;
use crate::protocol::{CloseCode, Text};

/// The content type of the rendered page (the Prometheus text format).
pub(super) const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The session profile of an authenticated connection, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnProfile {
    /// No encryption.
    Plaintext,
    /// The compatibility profile.
    Compat,
    /// The hardened profile.
    Hardened,
}

impl ConnProfile {
    /// The profile of a connection with (or without) a session of `profile`.
    pub(crate) fn of(profile: Option<Profile>) -> Self {
        match profile {
            None => Self::Plaintext,
            Some(Profile::Compat) => Self::Compat,
            Some(Profile::Hardened) => Self::Hardened,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    const ALL: [Self; 3] = [Self::Plaintext, Self::Compat, Self::Hardened];

    fn label(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Compat => "compat",
            Self::Hardened => "hardened",
        }
    }
}

/// The numbers sampled when the page is rendered.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sample {
    /// Open connections not authenticated yet.
    pub(crate) authenticating: usize,
    /// Authenticated connections.
    pub(crate) authenticated: usize,
    /// The bus's counters, when it keeps any.
    pub(crate) bus: Option<super::BusStats>,
    /// Whether the bus reaches other instances.
    pub(crate) bus_connected: bool,
    /// Messages waiting in every outbox, their bytes, and the deepest single outbox.
    pub(crate) outbox: OutboxSample,
    /// The history store, when history is on.
    pub(crate) history: Option<HistorySample>,
    /// Stream lookups answered without a position so far (the stream budget spent).
    pub(crate) history_unheld: u64,
}

/// Outbox depths summed over the connections at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OutboxSample {
    /// Messages queued, all connections.
    pub(crate) messages: usize,
    /// Bytes queued, all connections.
    pub(crate) bytes: usize,
    /// Messages queued in the fullest outbox.
    pub(crate) deepest: usize,
}

/// The history store at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HistorySample {
    /// Streams held.
    pub(crate) streams: usize,
    /// Publications kept, all streams.
    pub(crate) entries: usize,
}

/// The metrics of one server.
pub(crate) struct Metrics {
    registry: Registry,
    /// One render at a time: the bus counters are mirrored by read-then-add.
    render_lock: std::sync::Mutex<()>,
    connections: IntGaugeVec,
    by_profile: IntGaugeVec,
    /// Authenticated connections by profile, kept up to date by the connections.
    profiles: [AtomicI64; 3],
    handshakes: IntCounter,
    authentications: IntCounter,
    auth_failures: IntCounterVec,
    closes: IntCounterVec,
    slow_consumer: IntCounter,
    auth_seconds: Histogram,
    messages_out: IntCounter,
    bytes_out: IntCounter,
    messages_in: IntCounter,
    bytes_in: IntCounter,
    bus_connected: IntGauge,
    outbox: IntGaugeVec,
    bus_published: IntCounter,
    bus_received: IntCounter,
    bus_rejected: IntCounter,
    bus_dropped: IntCounter,
    bus_reconnects: IntCounter,
    recoveries: IntCounterVec,
    replayed: IntCounter,
    history_unheld: IntCounter,
    history: IntGaugeVec,
    appends: IntCounterVec,
    room_key_epochs: IntCounter,
    room_key_grants: IntCounter,
}

/// What the metric definitions below need: the names and buckets are constants, so a failure
/// is a bug caught by any test that builds a server.
const VALID: &str = "metric definitions are valid";

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect(VALID);
    registry.register(Box::new(c.clone())).expect(VALID);
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect(VALID);
    registry.register(Box::new(c.clone())).expect(VALID);
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &[label]).expect(VALID);
    registry.register(Box::new(g.clone())).expect(VALID);
    g
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let r = Registry::new_custom(Some("sealwire".to_owned()), None).expect(VALID);
        let auth_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "auth_duration_seconds",
                "Time from the first hello or authenticate to connected",
            )
            // 1 ms .. about 16 s.
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 15).expect(VALID)),
        )
        .expect(VALID);
        r.register(Box::new(auth_seconds.clone())).expect(VALID);
        let bus_connected = IntGauge::new(
            "bus_connected",
            "Whether the bus reaches other instances (1) or not (0)",
        )
        .expect(VALID);
        r.register(Box::new(bus_connected.clone())).expect(VALID);
        Self {
            outbox: gauge_vec(
                &r,
                "outbox",
                "Outbound queues at scrape time: queued messages and bytes over all connections, and the messages in the fullest one",
                "measure",
            ),
            connections: gauge_vec(
                &r,
                "connections",
                "Open WebSocket connections by state (authenticating: not authenticated yet)",
                "state",
            ),
            by_profile: gauge_vec(
                &r,
                "connections_by_profile",
                "Authenticated connections by session profile",
                "profile",
            ),
            profiles: Default::default(),
            handshakes: counter(
                &r,
                "handshakes_total",
                "Key exchanges completed (compatibility and hardened profiles)",
            ),
            authentications: counter(&r, "authentications_total", "Connections authenticated"),
            auth_failures: counter_vec(
                &r,
                "auth_failures_total",
                "Connections closed by the server before authentication completed, by close code",
                "code",
            ),
            closes: counter_vec(
                &r,
                "server_closes_total",
                "Connections closed by the server, by close code",
                "code",
            ),
            slow_consumer: counter(
                &r,
                "slow_consumer_closes_total",
                "Connections closed because the client did not read (4005)",
            ),
            auth_seconds,
            messages_out: counter(&r, "messages_out_total", "WebSocket data messages written"),
            bytes_out: counter(
                &r,
                "bytes_out_total",
                "Payload bytes of the WebSocket data messages written",
            ),
            messages_in: counter(&r, "messages_in_total", "WebSocket data messages read"),
            bytes_in: counter(
                &r,
                "bytes_in_total",
                "Payload bytes of the WebSocket data messages read",
            ),
            bus_connected,
            bus_published: counter(&r, "bus_published_total", "Envelopes published on the bus"),
            bus_received: counter(&r, "bus_received_total", "Envelopes received from the bus"),
            bus_rejected: counter(
                &r,
                "bus_rejected_total",
                "Envelopes received from the bus and rejected (bad seal, bad shape)",
            ),
            bus_dropped: counter(
                &r,
                "bus_dropped_total",
                "Envelopes dropped before publishing (queue full or publish failed)",
            ),
            bus_reconnects: counter(
                &r,
                "bus_reconnects_total",
                "Reconnections of the bus to its backend",
            ),
            recoveries: counter_vec(
                &r,
                "recoveries_total",
                "Streams a reconnecting client asked to recover, by result (recovered, gap)",
                "result",
            ),
            replayed: counter(
                &r,
                "replayed_messages_total",
                "Publications replayed to reconnecting clients",
            ),
            history_unheld: counter(
                &r,
                "history_unheld_lookups_total",
                "Stream lookups answered without a position because the stream budget (--history-max-streams) was spent",
            ),
            room_key_epochs: counter(&r, "room_key_epochs_total", "Room key epochs started"),
            room_key_grants: counter(
                &r,
                "room_key_grants_total",
                "Room keys handed to members (one per member per epoch)",
            ),
            history: gauge_vec(
                &r,
                "history",
                "The history store at scrape time: streams held and publications kept",
                "measure",
            ),
            appends: counter_vec(
                &r,
                "history_appends_total",
                "Publications appended to the shared history store, by result (kept, failed: delivered live only)",
                "result",
            ),
            registry: r,
            render_lock: std::sync::Mutex::new(()),
        }
    }

    /// Counts a data message about to be written and hands it back.
    #[inline]
    pub(crate) fn out(&self, text: Text) -> Text {
        self.messages_out.inc();
        self.bytes_out.inc_by(text.len() as u64);
        text
    }

    /// Counts `messages` data messages of `bytes` in all, written in one batch.
    #[inline]
    pub(crate) fn out_batch(&self, messages: u32, bytes: u32) {
        if messages > 0 {
            self.messages_out.inc_by(u64::from(messages));
            self.bytes_out.inc_by(u64::from(bytes));
        }
    }

    /// Counts a message read from a client.
    #[inline]
    pub(crate) fn inbound(&self, frame: &Incoming) {
        let len = match frame {
            Incoming::Text(text) => text.len(),
            Incoming::Binary(bytes) => bytes.len(),
            Incoming::Close(_) | Incoming::Alive => return,
        };
        self.messages_in.inc();
        self.bytes_in.inc_by(len as u64);
    }

    /// A key exchange succeeded.
    pub(crate) fn handshake(&self) {
        self.handshakes.inc();
    }

    /// A connection authenticated in `profile`, `elapsed` after its first hello or
    /// authenticate.
    pub(crate) fn authenticated(&self, profile: ConnProfile, elapsed: Option<std::time::Duration>) {
        self.authentications.inc();
        self.profiles[profile.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(d) = elapsed {
            self.auth_seconds.observe(d.as_secs_f64());
        }
    }

    /// An authenticated connection of `profile` ended.
    pub(crate) fn disconnected(&self, profile: ConnProfile) {
        self.profiles[profile.index()].fetch_sub(1, Ordering::Relaxed);
    }

    /// A recovery replayed `replayed` publications; `asked` streams were asked for and `gaps`
    /// of them could not be filled.
    pub(crate) fn recovered(&self, asked: usize, gaps: usize, replayed: usize) {
        self.recoveries
            .with_label_values(&["recovered"])
            .inc_by(asked.saturating_sub(gaps) as u64);
        self.recoveries
            .with_label_values(&["gap"])
            .inc_by(gaps as u64);
        self.replayed.inc_by(replayed as u64);
    }

    /// A room key epoch started and was handed to `grants` members.
    pub(crate) fn room_key_epoch(&self, grants: usize) {
        self.room_key_epochs.inc();
        self.room_key_grants.inc_by(grants as u64);
    }

    /// A publication was appended to the shared history store (`kept`), or could not be.
    /// Returns how many appends with that result there have been.
    pub(crate) fn appended(&self, kept: bool) -> u64 {
        let result = if kept { "kept" } else { "failed" };
        let counter = self.appends.with_label_values(&[result]);
        counter.inc();
        counter.get()
    }

    /// The server closed a connection with `code`; `authenticated` tells whether the client
    /// had authenticated.
    pub(crate) fn closed(&self, code: CloseCode, authenticated: bool) {
        let label = code.code().to_string();
        self.closes.with_label_values(&[&label]).inc();
        if code == CloseCode::SlowConsumer {
            self.slow_consumer.inc();
        }
        if !authenticated && code != CloseCode::GoingAway {
            self.auth_failures.with_label_values(&[&label]).inc();
        }
    }

    /// Renders the page in the Prometheus text format, after setting the sampled gauges.
    pub(crate) fn render(&self, sample: &Sample) -> String {
        let _one = self
            .render_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.connections
            .with_label_values(&["authenticating"])
            .set(gauge(sample.authenticating));
        self.connections
            .with_label_values(&["authenticated"])
            .set(gauge(sample.authenticated));
        for p in ConnProfile::ALL {
            self.by_profile
                .with_label_values(&[p.label()])
                .set(self.profiles[p.index()].load(Ordering::Relaxed).max(0));
        }
        self.bus_connected.set(i64::from(sample.bus_connected));
        for (measure, value) in [
            ("messages", sample.outbox.messages),
            ("bytes", sample.outbox.bytes),
            ("deepest_messages", sample.outbox.deepest),
        ] {
            self.outbox.with_label_values(&[measure]).set(gauge(value));
        }
        raise(&self.history_unheld, sample.history_unheld);
        if let Some(h) = sample.history {
            self.history
                .with_label_values(&["streams"])
                .set(gauge(h.streams));
            self.history
                .with_label_values(&["entries"])
                .set(gauge(h.entries));
        }
        if let Some(b) = sample.bus {
            raise(&self.bus_published, b.published);
            raise(&self.bus_received, b.received);
            raise(&self.bus_rejected, b.rejected);
            raise(&self.bus_dropped, b.dropped);
            raise(&self.bus_reconnects, b.reconnects);
        }
        let mut page = String::new();
        // Writing into a `String` cannot fail, and every family is well formed.
        let _ = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut page);
        page
    }
}

/// Moves a counter mirroring a monotonic count kept elsewhere up to `value`.
fn raise(counter: &IntCounter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
