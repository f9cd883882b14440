//! [`RedisBusConfig`]: where Redis is and how the bus behaves when it is not.

use std::time::Duration;

use crate::backoff::ExponentialBackoff;
use crate::crypto::backplane::BusKey;

/// How a server subscribes to the per-target channels.
///
/// Both modes use the same channel names and envelope, so servers in either mode, IGNIS servers
/// and emitters interoperate on one Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SubscriptionMode {
    /// `SUBSCRIBE ws:broadcast` plus one `SUBSCRIBE` per room, user and client this instance
    /// has a local member for, added and removed as members come and go. Redis only sends an
    /// instance the messages it can deliver. The default.
    #[default]
    Interest,
    /// The IGNIS way: `SUBSCRIBE ws:broadcast` and `PSUBSCRIBE ws:room:* ws:client:* ws:user:*`.
    /// Every instance receives every message and discards those it has no member for.
    Pattern,
}

impl std::str::FromStr for SubscriptionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "interest" => Ok(Self::Interest),
            "pattern" => Ok(Self::Pattern),
            other => Err(format!(
                "unknown subscription mode {other:?} (expected interest or pattern)"
            )),
        }
    }
}

impl SubscriptionMode {
    /// `interest` or `pattern`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Interest => "interest",
            Self::Pattern => "pattern",
        }
    }
}

/// What [`Bus::start`](crate::server::Bus::start) does when Redis cannot be reached. Either
/// way, start fails at once when Redis refuses the URL's credentials (wrong or missing
/// password, or an ACL user lacking `SUBSCRIBE`/`PUBLISH`): waiting cannot fix that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartupPolicy {
    /// Log each failure and retry with backoff until Redis answers (or the server shuts down).
    /// The default.
    #[default]
    Wait,
    /// Return an error after the first failed attempt.
    FailFast,
}

/// Configuration of a [`RedisBus`](super::RedisBus) (and, for the connection fields, of the
/// [`Emitter`](crate::emitter::Emitter)).
#[derive(Debug)]
#[non_exhaustive]
pub struct RedisBusConfig {
    /// Redis URL: `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. ACL
    /// credentials go in the URL. Defaults to `redis://127.0.0.1:6379`.
    pub url: String,
    /// PEM CA certificate(s) to trust for `rediss://` instead of the bundled web roots (a
    /// private CA). Defaults to `None`.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Subscription strategy. Defaults to [`SubscriptionMode::Interest`].
    pub mode: SubscriptionMode,
    /// Behaviour when Redis is unreachable at start. Defaults to [`StartupPolicy::Wait`].
    pub startup: StartupPolicy,
    /// First reconnect delay; doubled after every failure up to `backoff_max`, with full
    /// jitter. Defaults to 100 ms.
    pub backoff_initial: Duration,
    /// Longest reconnect delay. Defaults to 5 s.
    pub backoff_max: Duration,
    /// Time allowed to connect (TCP, TLS, AUTH). Defaults to 5 s.
    pub connect_timeout: Duration,
    /// Time allowed for a command reply (PUBLISH pipeline, SUBSCRIBE, PING). Defaults to 5 s.
    pub response_timeout: Duration,
    /// How often the subscriber connection is checked with a PING, so a silently dead
    /// connection is noticed. Defaults to 10 s.
    pub ping_interval: Duration,
    /// Messages waiting to be published before further publishes are dropped (and counted).
    /// Defaults to 65,536.
    pub publish_queue: usize,
    /// A message not published within this time (Redis down) is dropped instead of being sent
    /// late. Defaults to 5 s.
    pub publish_max_age: Duration,
    /// Backplane encryption key; `None` (the default) publishes plaintext, IGNIS-compatible
    /// envelopes.
    pub bus_key: Option<BusKey>,
    /// For how long after Redis (re)started every Socket.IO `socket.id`-shaped room name
    /// counts as another client's ([`Bus::names_in_use`](crate::server::Bus::names_in_use)):
    /// a Redis that restarted without its data lost the names, and each instance writes its
    /// own again once it has reconnected. Longer than `backoff_max` plus a reconnection.
    /// Defaults to 30 s.
    pub restart_grace: Duration,
    /// For how long a Socket.IO `socket.id` stays unjoinable after its socket left (a retired
    /// name's key lives this long, about 130 bytes of Redis memory each), so that a late send
    /// to the departed socket's id reaches nobody. Zero deletes the key at once. Defaults to
    /// [`RETIRED_NAMES_KEPT_FOR`](crate::server::RETIRED_NAMES_KEPT_FOR) (24 h).
    pub socket_id_retention: Duration,
}

impl Default for RedisBusConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            tls_ca_pem: None,
            mode: SubscriptionMode::default(),
            startup: StartupPolicy::default(),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            publish_queue: 65_536,
            publish_max_age: Duration::from_secs(5),
            bus_key: None,
            restart_grace: Duration::from_secs(30),
            socket_id_retention: crate::server::RETIRED_NAMES_KEPT_FOR,
        }
    }
}

impl RedisBusConfig {
    /// Defaults with `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Sets [`RedisBusConfig::tls_ca_pem`].
    #[must_use]
    pub fn tls_ca_pem(mut self, pem: Option<Vec<u8>>) -> Self {
        self.tls_ca_pem = pem;
        self
    }

    /// Sets [`RedisBusConfig::mode`].
    #[must_use]
    pub fn mode(mut self, mode: SubscriptionMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`RedisBusConfig::startup`].
    #[must_use]
    pub fn startup(mut self, startup: StartupPolicy) -> Self {
        self.startup = startup;
        self
    }

    /// Sets [`RedisBusConfig::backoff_initial`] and [`RedisBusConfig::backoff_max`].
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// Sets [`RedisBusConfig::connect_timeout`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`RedisBusConfig::response_timeout`].
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`RedisBusConfig::ping_interval`].
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets [`RedisBusConfig::restart_grace`].
    #[must_use]
    pub fn restart_grace(mut self, grace: Duration) -> Self {
        self.restart_grace = grace;
        self
    }

    /// Sets [`RedisBusConfig::socket_id_retention`].
    #[must_use]
    pub fn socket_id_retention(mut self, retention: Duration) -> Self {
        self.socket_id_retention = retention;
        self
    }

    /// Sets [`RedisBusConfig::publish_queue`].
    #[must_use]
    pub fn publish_queue(mut self, messages: usize) -> Self {
        self.publish_queue = messages.max(1);
        self
    }

    /// Sets [`RedisBusConfig::publish_max_age`].
    #[must_use]
    pub fn publish_max_age(mut self, age: Duration) -> Self {
        self.publish_max_age = age;
        self
    }

    /// Sets [`RedisBusConfig::bus_key`].
    #[must_use]
    pub fn bus_key(mut self, key: Option<BusKey>) -> Self {
        self.bus_key = key;
        self
    }
}

/// The bus's reconnect backoff: [`ExponentialBackoff`] doubling per failure with full jitter
/// (a uniform delay in `[10 ms, min(max, base*2^n)]`: never below 10 ms so a tight failure
/// loop cannot spin), counting the failures since the last [`Backoff::reset`].
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    curve: ExponentialBackoff,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            curve: ExponentialBackoff {
                initial,
                max: max.max(initial),
                multiplier: 2.0,
                jitter: 1.0,
                floor: Duration::from_millis(10),
            },
            attempt: 0,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let retry = self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        self.curve.delay(retry, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for _ in 0..50 {
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn mode_parses() {
        assert_eq!(
            "Pattern".parse::<SubscriptionMode>(),
            Ok(SubscriptionMode::Pattern)
        );
        assert!("x".parse::<SubscriptionMode>().is_err());
    }
}
