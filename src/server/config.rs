//! Server configuration: a plain struct with documented defaults.

use std::time::Duration;

use super::history::HistoryConfig;
use super::policy::EncryptionPolicy;
use crate::crypto::HandshakeConfig;

/// Everything tunable about a [`Server`](super::Server). Every abuse-relevant limit is here.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Who must encrypt, and in which profile (see [`EncryptionPolicy`] for the table).
    /// Defaults to [`EncryptionPolicy::Optional`].
    pub encryption: EncryptionPolicy,
    /// Refuse plaintext application events (`join`, `leave`, custom events) from encrypted
    /// clients of every profile with `Encrypted message required`; `heartbeat` and `disconnect`
    /// may still be plaintext. Hardened-profile clients are always held to this; IGNIS
    /// compatibility-profile clients never encrypt inbound, so turning this on shuts them out
    /// of rooms and custom events. Defaults to `false`.
    pub require_encrypted_inbound: bool,
    /// Time a new connection has to send `authenticate`; authentication plus handshake must
    /// then finish within three times this. Replies to a client that has not sent
    /// `authenticate` must be written by then too, so a client that floods without reading
    /// is closed at this deadline (plus `shutdown_timeout` for the close). Defaults to 5 s.
    pub auth_timeout: Duration,
    /// How often idle connections are swept and pinged. Defaults to 30 s.
    pub heartbeat_interval: Duration,
    /// A connection that sent no message for this long is closed with 4002. Defaults to 90 s.
    pub heartbeat_timeout: Duration,
    /// Largest inbound WebSocket message (and frame) in bytes. Defaults to 128 KiB.
    pub max_message_bytes: usize,
    /// Rooms every authenticated client joins. Defaults to
    /// [`protocol::DEFAULT_ROOMS`](crate::protocol::DEFAULT_ROOMS): `ws-default`,
    /// `ws-notification`.
    pub default_rooms: Vec<String>,
    /// Most rooms one client may be in (own-id and default rooms included). Defaults to 256.
    pub max_rooms_per_client: usize,
    /// Most messages queued for one client before it is closed as a slow consumer (4005).
    /// Defaults to 4096.
    pub outbox_messages: usize,
    /// Most plaintext bytes queued for one client before it is closed as a slow consumer
    /// (4005). Also the largest message that can be sent: a bigger one is refused with
    /// `SendError::TooLarge` (the admin API answers 400). Defaults to 4 MiB.
    pub outbox_bytes: usize,
    /// Most concurrent WebSocket connections; further upgrades get HTTP 503. `None` means no
    /// limit but file descriptors. Defaults to [`default_max_connections`]: the process's
    /// soft `RLIMIT_NOFILE` when the configuration is made, less [`RESERVED_FDS`] for
    /// everything else (HTTP connections, Redis, logs), and at least [`MIN_MAX_CONNECTIONS`].
    pub max_connections: Option<usize>,
    /// Most concurrent WebSocket connections from one IP address (IPv4-mapped IPv6 addresses
    /// count as their IPv4 address); further upgrades from it get HTTP 429. Only enforced where
    /// the transport knows the peer address (the built-in accept loop; the router mounted in
    /// an app with `ConnectInfo`). Behind a proxy every client shares the proxy's address, so
    /// this defaults to `None` (no per-address limit).
    pub max_connections_per_ip: Option<usize>,
    /// Time each socket gets to receive its close frame (at shutdown and at every other
    /// close), and the most a reply sent straight to an authenticating or authenticated
    /// client (an error, `connected`) may take to be written: a client that does not read it
    /// in time is closed with 4005. Defaults to 2 s.
    pub shutdown_timeout: Duration,
    /// How long a graceful shutdown spends closing clients (1001) before the rest is closed
    /// at once: the server stops reporting ready (health 503, upgrades 503), then closes its
    /// clients in slices spread over this time, so that they reconnect to other instances
    /// gradually rather than all at once. Messages still reach clients not yet closed, and
    /// each client gets what was queued for it before its close frame. Defaults to zero
    /// (close everyone at once).
    pub drain: Duration,
    /// Parameters of the built-in ECDH handshake (compatibility HKDF info, rekey budget,
    /// server identity key). Whether it runs, and for whom, is `encryption`'s call. Defaults
    /// to [`HandshakeConfig::default`].
    pub handshake: HandshakeConfig,
    /// Message history and recovery on reconnect (`docs/PROTOCOL.md`, §12). Defaults to
    /// [`HistoryConfig::default`]: off.
    pub history: HistoryConfig,
    /// Room keys for large encrypted rooms (`docs/PROTOCOL.md`, §14). Defaults to
    /// [`RoomKeyConfig::default`](super::RoomKeyConfig::default): off.
    pub room_keys: super::RoomKeyConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            encryption: EncryptionPolicy::Optional,
            require_encrypted_inbound: false,
            auth_timeout: Duration::from_secs(5),
            heartbeat_interval: Duration::from_secs(30),
            heartbeat_timeout: Duration::from_secs(90),
            max_message_bytes: 128 * 1024,
            default_rooms: crate::protocol::DEFAULT_ROOMS.map(str::to_owned).to_vec(),
            max_rooms_per_client: 256,
            outbox_messages: 4096,
            outbox_bytes: 4 * 1024 * 1024,
            max_connections: Some(default_max_connections()),
            max_connections_per_ip: None,
            shutdown_timeout: Duration::from_secs(2),
            drain: Duration::ZERO,
            handshake: HandshakeConfig::default(),
            history: HistoryConfig::default(),
            room_keys: super::RoomKeyConfig::default(),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No authenticate hook was given.
    #[error("an authenticate hook is required")]
    MissingAuthenticator,
    /// A limit is zero or out of range.
    #[error("invalid limit: {0}")]
    InvalidLimit(&'static str),
    /// A default room name is not a valid room name, or is shaped like a client id.
    #[error("invalid default room name: {0:?}")]
    InvalidRoom(String),
    /// A typed event handler was registered for a system event, or for an empty or overlong
    /// name (see [`ServerBuilder::on`](super::ServerBuilder::on)).
    #[error("cannot handle event {0:?}: a system event, or an empty or overlong name")]
    InvalidEvent(String),
    /// A history room pattern is not a valid glob.
    #[error("invalid history room pattern: {0}")]
    InvalidHistoryPattern(String),
    /// A room-key room pattern is not a valid glob.
    #[error("invalid room-key room pattern: {0}")]
    InvalidRoomKeyPattern(String),
}

/// File descriptors [`default_max_connections`] leaves for everything but WebSockets.
pub const RESERVED_FDS: usize = 256;

/// The least [`default_max_connections`] returns, however low the descriptor limit.
pub const MIN_MAX_CONNECTIONS: usize = 64;

/// Used by [`default_max_connections`] where the descriptor limit cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 10_000;

/// The default `max_connections`: the soft `RLIMIT_NOFILE` of the process now, less
/// [`RESERVED_FDS`], and at least [`MIN_MAX_CONNECTIONS`]; 10,000 where the limit cannot be
/// read. Each WebSocket holds one descriptor, so past this the server would start failing
/// `accept` (EMFILE) for everyone, admin API and health included; refusing upgrades with 503
/// first keeps the rest working. Raise the soft limit (`ulimit -n`, `LimitNOFILE=`) before
/// the configuration is made to raise this.
#[must_use]
pub fn default_max_connections() -> usize {
    #[cfg(unix)]
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX));
    #[cfg(not(unix))]
    let soft: Option<usize> = None;
    soft.map_or(FALLBACK_MAX_CONNECTIONS, |n| {
        n.saturating_sub(RESERVED_FDS).max(MIN_MAX_CONNECTIONS)
    })
}

impl ServerConfig {
    /// Checks the values for consistency.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let limits = [
            (self.auth_timeout.is_zero(), "auth_timeout"),
            (self.heartbeat_interval.is_zero(), "heartbeat_interval"),
            (self.heartbeat_timeout.is_zero(), "heartbeat_timeout"),
            (
                self.heartbeat_timeout < self.heartbeat_interval,
                "heartbeat_timeout (at least heartbeat_interval, whose sweep applies it)",
            ),
            (
                self.history.size == 0
                    && (!self.history.rooms.is_empty()
                        || self.history.users
                        || self.history.broadcast),
                "history size (at least 1 where history is kept)",
            ),
            (
                self.max_message_bytes < 64,
                "max_message_bytes (at least 64)",
            ),
            (self.outbox_messages == 0, "outbox_messages"),
            (self.outbox_bytes == 0, "outbox_bytes"),
            (self.max_rooms_per_client == 0, "max_rooms_per_client"),
            (self.max_connections == Some(0), "max_connections"),
            (
                self.max_connections_per_ip == Some(0),
                "max_connections_per_ip",
            ),
        ];
        if let Some((_, name)) = limits.iter().find(|(bad, _)| *bad) {
            return Err(ConfigError::InvalidLimit(name));
        }
        if let Some(bad) = self
            .default_rooms
            .iter()
            .find(|r| !super::registry::joinable_room_name(r))
        {
            return Err(ConfigError::InvalidRoom(bad.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits() {
        let c = ServerConfig::default();
        assert!(c.max_connections.is_some_and(|n| n >= MIN_MAX_CONNECTIONS));
        assert_eq!(c.max_connections_per_ip, None);
        let c = ServerConfig {
            max_connections_per_ip: Some(0),
            ..ServerConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::InvalidLimit(_))));
    }

    #[test]
    fn timeouts_and_history_sizes_that_cannot_work_are_refused() {
        let c = ServerConfig {
            heartbeat_interval: Duration::from_secs(8),
            heartbeat_timeout: Duration::from_secs(1),
            ..ServerConfig::default()
        };
        assert!(matches!(c.validate(), Err(ConfigError::InvalidLimit(_))));
        let mut c = ServerConfig::default();
        c.history.size = 0;
        assert_eq!(
            c.validate(),
            Ok(()),
            "no history kept: its size does not matter"
        );
        c.history.users = true;
        assert!(matches!(c.validate(), Err(ConfigError::InvalidLimit(_))));
    }

    #[test]
    fn client_id_shaped_default_rooms_are_refused() {
        let id = uuid::Uuid::new_v4().to_string();
        let c = ServerConfig {
            default_rooms: vec![id.clone()],
            ..ServerConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::InvalidRoom(id)));
    }
}
