//! The Socket.IO endpoint's settings.

use std::time::Duration;

/// Where the Socket.IO endpoint listens and how it treats its sockets.
///
/// The defaults are those of the IGNIS `SocketIOServerHelper`, so its clients need no change.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SocketIoConfig {
    /// Request path of the endpoint (engine.io serves `{path}/`). Defaults to `/io`.
    pub path: String,
    /// A socket that has not authenticated this long after connecting is disconnected.
    /// Defaults to 10 s.
    pub auth_timeout: Duration,
    /// Interval of the application-level `ping {time}` event sent to authenticated sockets.
    /// Defaults to 30 s.
    pub ping_interval: Duration,
    /// engine.io heartbeat interval. Defaults to 25 s.
    pub eio_ping_interval: Duration,
    /// engine.io heartbeat timeout. Defaults to 20 s.
    pub eio_ping_timeout: Duration,
    /// Rooms every Socket.IO socket joins once authenticated, instead of the server's
    /// `default_rooms`. Defaults to `io-default` and `io-notification`.
    pub default_rooms: Vec<String>,
    /// Packets an engine.io connection may buffer. When the buffer is full, the socket holds
    /// the message it could not emit and tries again shortly, and the messages after it wait
    /// in the connection's outbox, whose bounds (`ServerConfig::outbox_messages` and
    /// `outbox_bytes`) decide, as on `/ws`, when a client is a slow consumer. Defaults to 256.
    pub max_buffer_packets: usize,
    /// Inbound events that may wait for the connection task. Past that, an IGNIS-path
    /// socket's newer events are dropped, and a hardened socket is disconnected (a dropped
    /// record would leave a gap its record layer refuses anyway). Defaults to 64.
    pub inbound_queue: usize,
    /// Origins (`scheme://host[:port]`) a Socket.IO connection may come from, by the same rule
    /// as `HttpConfig::allowed_origins` for `/ws`: with a list, a connection without exactly
    /// one listed `Origin` is refused. Empty, the default, allows any.
    pub allowed_origins: Vec<String>,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            path: "/io".to_owned(),
            auth_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(30),
            eio_ping_interval: Duration::from_secs(25),
            eio_ping_timeout: Duration::from_secs(20),
            default_rooms: vec!["io-default".to_owned(), "io-notification".to_owned()],
            max_buffer_packets: 256,
            inbound_queue: 64,
            allowed_origins: Vec::new(),
        }
    }
}

impl SocketIoConfig {
    /// Sets [`SocketIoConfig::path`].
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets [`SocketIoConfig::auth_timeout`].
    #[must_use]
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// Sets [`SocketIoConfig::ping_interval`].
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets [`SocketIoConfig::default_rooms`].
    #[must_use]
    pub fn default_rooms<I, R>(mut self, rooms: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        self.default_rooms = rooms.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`SocketIoConfig::allowed_origins`].
    #[must_use]
    pub fn allowed_origins<I, O>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<String>,
    {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// The path without a trailing slash (`/` stays `/`).
    pub(super) fn base_path(&self) -> &str {
        let trimmed = self.path.trim_end_matches('/');
        if trimmed.is_empty() { "/" } else { trimmed }
    }
}
