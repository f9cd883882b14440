//! Client configuration: the encryption profile, the reconnect policy, the token provider and
//! [`ClientConfig`], a plain struct with documented defaults.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::ClientError;
use crate::backoff::ExponentialBackoff;
use crate::crypto::HandshakeConfig;

/// Whether and how the client encrypts its session.
///
/// Marked `#[non_exhaustive]`: further profiles are added as new variants without breaking
/// existing code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encryption {
    /// No handshake: the session is plaintext.
    Off,
    /// The IGNIS compatibility profile: P-256 ECDH inside `authenticate`, HKDF-SHA256,
    /// AES-256-GCM with random 96-bit IVs. The server is not authenticated by the handshake
    /// itself (use `wss://` for that). For servers that speak only the IGNIS protocol.
    Compat,
    /// The hardened `sealwire-v2` profile: directional keys, strict in-order records with
    /// rekeying, key confirmation, and, when `pinned_server_keys` is not empty, a server
    /// signature over the handshake by one of those identity keys (otherwise the connection
    /// is refused with [`DisconnectReason::Handshake`](super::DisconnectReason::Handshake),
    /// before the token is sent, and retried).
    Hardened {
        /// Accepted server identity keys (current and next, for rotation). Empty: the
        /// server is not authenticated by the handshake (use `wss://`).
        pinned_server_keys: Vec<crate::crypto::PeerPublicKey>,
    },
}

/// The default is the hardened profile without pinned keys: every sealwire server speaks it.
/// Add pins ([`Encryption::Hardened`]) to authenticate the server, or choose
/// [`Encryption::Compat`] for an IGNIS server.
impl Default for Encryption {
    fn default() -> Self {
        Self::Hardened {
            pinned_server_keys: Vec::new(),
        }
    }
}

/// How the client reconnects after a retryable disconnect.
///
/// The delay before attempt `n` (from 1) is `initial_delay * multiplier^(n-1)`, capped at
/// `max_delay`, then scaled by a random factor in `[1 - jitter, 1]` so that many clients
/// dropped at once do not come back in lockstep.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// Reconnect at all. Defaults to `true`.
    pub enabled: bool,
    /// Delay before the first attempt. Defaults to 250 ms.
    pub initial_delay: Duration,
    /// Longest delay. Defaults to 30 s.
    pub max_delay: Duration,
    /// Growth factor per failed attempt. Defaults to 2.
    pub multiplier: f64,
    /// Fraction of the delay that is randomized, 0..=1. Defaults to 0.5.
    pub jitter: f64,
    /// Give up after this many consecutive failed attempts. Defaults to `None` (never).
    pub max_attempts: Option<u32>,
    /// How long a connection must last after `connected` to count as a success, which starts
    /// the attempt count again. Defaults to 5 s. One that ends sooner (a server or a path that
    /// ends sessions right after they start) counts as a failed attempt, so delays keep growing
    /// and `max_attempts` applies.
    pub min_uptime: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: None,
            min_uptime: Duration::from_secs(5),
        }
    }
}

impl ReconnectPolicy {
    /// Never reconnect.
    #[must_use]
    pub fn never() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Sets `initial_delay`.
    #[must_use]
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// Sets `max_delay`.
    #[must_use]
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Sets `max_attempts`.
    #[must_use]
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }

    /// Sets `min_uptime`.
    #[must_use]
    pub fn min_uptime(mut self, d: Duration) -> Self {
        self.min_uptime = d;
        self
    }

    /// The jittered delay before attempt `attempt` (1-based); `None` when the policy gives up.
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        if !self.enabled || self.max_attempts.is_some_and(|m| attempt > m) {
            return None;
        }
        let curve = ExponentialBackoff {
            initial: self.initial_delay,
            max: self.max_delay,
            multiplier: self.multiplier,
            jitter: self.jitter,
            floor: Duration::ZERO,
        };
        Some(curve.delay(attempt.saturating_sub(1), rand::random::<f64>()))
    }
}

/// Supplies credentials: called on every (re)connect and before the session expires. Return
/// the token, or an error message (a failed refresh is reported as
/// [`Event::RefreshFailed`](super::Event::RefreshFailed); a failed connect is retried like a
/// network failure).
#[derive(Clone)]
pub struct TokenProvider(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

/// What a [`TokenProvider`] returns.
type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

impl TokenProvider {
    /// Wraps an async function returning a token.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(f())))
    }

    /// Asks for a token.
    pub(crate) async fn token(&self) -> Result<String, String> {
        (self.0)().await
    }
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenProvider(..)")
    }
}

/// Everything tunable about a [`Client`](super::Client). Its `Debug` output shows whether a
/// token is set, never the token.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Server URL, `ws://` or `wss://`, path included.
    pub url: String,
    /// Token sent in `authenticate`. Defaults to empty.
    pub token: String,
    /// Token type sent as `type`. Defaults to `Bearer`.
    pub token_type: String,
    /// Where tokens come from; when set, `token` is not used. Defaults to `None`.
    pub token_provider: Option<TokenProvider>,
    /// Encryption profile. Defaults to [`Encryption::Hardened`] without pinned keys.
    pub encryption: Encryption,
    /// Handshake parameters (compatibility HKDF info string, ECDH backend). Its `profile` is
    /// taken from `encryption`; its `pinned_server_keys` are accepted besides those of
    /// [`Encryption::Hardened`], and refused by
    /// [`ClientBuilder::connect`](super::ClientBuilder::connect)
    /// with any other profile (pins need the hardened profile). Defaults to the IGNIS values.
    pub handshake: HandshakeConfig,
    /// How often a `heartbeat` is sent. Defaults to 25 s (below the server's default sweep).
    pub heartbeat_interval: Duration,
    /// Time to open the socket and finish authentication. Defaults to 10 s.
    pub connect_timeout: Duration,
    /// Longest silence from the server before the connection counts as dead and a reconnect
    /// starts (reported as [`DisconnectReason::Network`](super::DisconnectReason::Network)).
    /// Every heartbeat also carries a WebSocket ping, which a live server answers at once, so
    /// this only has to exceed `heartbeat_interval` plus a round trip. `None` (the default)
    /// means twice `heartbeat_interval` plus 10 s: 60 s with the default interval.
    pub server_timeout: Option<Duration>,
    /// Reconnect policy. Defaults to [`ReconnectPolicy::default`].
    pub reconnect: ReconnectPolicy,
    /// Events buffered for the application. Defaults to 1024.
    pub event_queue: usize,
    /// Commands (sends, joins) buffered for the connection task. Defaults to 256.
    pub send_queue: usize,
    /// Attach the raw wire frame to every [`Message`](super::Message). Defaults to `false`.
    pub capture_raw_frames: bool,
    /// Track stream positions and recover missed messages on every reconnect
    /// (`docs/PROTOCOL.md` §12). Defaults to `false`.
    pub recover: bool,
    /// Hardened profile: ask for room keys (`docs/PROTOCOL.md` §14), so that the server can
    /// seal a room's publications once for all its members. Defaults to `true`.
    pub room_keys: bool,
    /// With room keys: ask for room records as binary WebSocket messages (`docs/PROTOCOL.md`
    /// §14.6), a third smaller than the text form. Defaults to `true`; a server or door that
    /// does not agree sends text records, which the client takes either way.
    pub binary_room_records: bool,
    /// Largest message accepted from the server. Defaults to 16 MiB.
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("token", &token)
            .field("token_type", &self.token_type)
            .field("token_provider", &self.token_provider)
            .field("encryption", &self.encryption)
            .field("handshake", &self.handshake)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("server_timeout", &self.server_timeout)
            .field("reconnect", &self.reconnect)
            .field("event_queue", &self.event_queue)
            .field("send_queue", &self.send_queue)
            .field("capture_raw_frames", &self.capture_raw_frames)
            .field("recover", &self.recover)
            .field("room_keys", &self.room_keys)
            .field("binary_room_records", &self.binary_room_records)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish()
    }
}

impl ClientConfig {
    /// Defaults for `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: String::new(),
            token_type: "Bearer".to_owned(),
            token_provider: None,
            encryption: Encryption::default(),
            handshake: HandshakeConfig::default(),
            heartbeat_interval: Duration::from_secs(25),
            connect_timeout: Duration::from_secs(10),
            server_timeout: None,
            reconnect: ReconnectPolicy::default(),
            event_queue: 1024,
            send_queue: 256,
            capture_raw_frames: false,
            recover: false,
            room_keys: true,
            binary_room_records: true,
            max_message_bytes: 16 * 1024 * 1024,
        }
    }

    /// The server silence after which the connection counts as dead.
    pub(crate) fn effective_server_timeout(&self) -> Duration {
        self.server_timeout.unwrap_or_else(|| {
            self.heartbeat_interval
                .saturating_mul(2)
                .saturating_add(Duration::from_secs(10))
        })
    }

    /// The server identity keys a hardened connection accepts: `encryption`'s pins and
    /// those of `handshake`.
    pub(super) fn pins(
        &self,
        encryption_pins: &[crate::crypto::PeerPublicKey],
    ) -> Vec<crate::crypto::PeerPublicKey> {
        let mut pins = encryption_pins.to_vec();
        for key in &self.handshake.pinned_server_keys {
            if !pins.contains(key) {
                pins.push(key.clone());
            }
        }
        pins
    }

    pub(super) fn validate(&self) -> Result<(), ClientError> {
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return Err(ClientError::Config(format!(
                "url must start with ws:// or wss://: {:?}",
                self.url
            )));
        }
        if self.event_queue == 0 || self.send_queue == 0 {
            return Err(ClientError::Config("queue sizes must be at least 1".into()));
        }
        if self.heartbeat_interval.is_zero() || self.connect_timeout.is_zero() {
            return Err(ClientError::Config(
                "heartbeat_interval and connect_timeout must be non-zero".into(),
            ));
        }
        if !self.handshake.pinned_server_keys.is_empty()
            && !matches!(self.encryption, Encryption::Hardened { .. })
        {
            // Only the hardened profile authenticates the server: pins anywhere else would
            // look like protection and be none.
            return Err(ClientError::Config(
                "pinned server keys need the hardened profile (Encryption::Hardened)".into(),
            ));
        }
        if self
            .server_timeout
            .is_some_and(|t| t <= self.heartbeat_interval)
        {
            return Err(ClientError::Config(
                "server_timeout must be longer than heartbeat_interval".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timeout_follows_the_heartbeat_unless_set() {
        let mut c = ClientConfig::new("ws://127.0.0.1:1/ws");
        assert_eq!(c.effective_server_timeout(), Duration::from_secs(60));
        c.heartbeat_interval = Duration::from_secs(60);
        assert_eq!(c.effective_server_timeout(), Duration::from_secs(130));
        assert!(c.validate().is_ok());
        c.server_timeout = Some(Duration::from_secs(60));
        assert!(matches!(c.validate(), Err(ClientError::Config(_))));
        c.server_timeout = Some(Duration::from_secs(61));
        assert_eq!(c.effective_server_timeout(), Duration::from_secs(61));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let p = ReconnectPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1));
        for attempt in 1..=10 {
            let d = p.delay(attempt).expect("retries forever");
            let full = (0.1 * 2f64.powi(attempt as i32 - 1)).min(1.0);
            assert!(d.as_secs_f64() <= full + 1e-9, "{attempt}: {d:?}");
            assert!(d.as_secs_f64() >= full * 0.5 - 1e-9, "{attempt}: {d:?}");
        }
        assert_eq!(ReconnectPolicy::never().delay(1), None);
        let limited = ReconnectPolicy::default().max_attempts(Some(2));
        assert!(limited.delay(2).is_some());
        assert!(limited.delay(3).is_none());
    }

    #[test]
    fn pins_in_the_handshake_config_pin_or_are_refused() {
        use crate::crypto::ServerIdentity;
        let key = |b: u8| {
            ServerIdentity::from_bytes(&[b; 32])
                .expect("key")
                .public_key()
        };
        let mut c = ClientConfig::new("ws://127.0.0.1:1/ws");
        c.handshake = HandshakeConfig::hardened(vec![key(1), key(2)]);
        assert!(c.validate().is_ok());
        assert_eq!(c.pins(&[key(2), key(3)]), vec![key(2), key(3), key(1)]);
        for encryption in [Encryption::Compat, Encryption::Off] {
            c.encryption = encryption;
            assert!(matches!(c.validate(), Err(ClientError::Config(_))));
        }
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let mut config = ClientConfig::new("ws://127.0.0.1:1/ws");
        config.token = "s3cret-bearer-token".to_owned();
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let builder =
            crate::client::Client::builder("ws://127.0.0.1:1/ws").token("s3cret-bearer-token");
        assert!(!format!("{builder:?}").contains("s3cret"));
    }
}
