//! [`ClientBuilder`]: a consuming builder over [`ClientConfig`] that connects and starts the
//! connection task.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::{ClientConfig, Encryption, ReconnectPolicy, TokenProvider};
use super::connection::Task;
use super::{Client, ClientError, Events, SharedState};
use crate::crypto::HandshakeConfig;

/// Builds a [`Client`]. Obtain one from [`Client::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    config: ClientConfig,
}

impl ClientBuilder {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            config: ClientConfig::new(url),
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets a token provider, asked for a token on every (re)connect and for every refresh.
    pub fn token_provider<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.config.token_provider = Some(TokenProvider::new(f));
        self
    }

    /// Sets the token sent in `authenticate`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = token.into();
        self
    }

    /// Sets the encryption profile.
    pub fn encryption(mut self, encryption: Encryption) -> Self {
        self.config.encryption = encryption;
        self
    }

    /// Sets the handshake parameters.
    pub fn handshake(mut self, handshake: HandshakeConfig) -> Self {
        self.config.handshake = handshake;
        self
    }

    /// Sets how often a heartbeat is sent.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self
    }

    /// Sets the time allowed to connect and authenticate.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Sets the longest silence from the server before reconnecting (see
    /// [`ClientConfig::server_timeout`]).
    pub fn server_timeout(mut self, timeout: Duration) -> Self {
        self.config.server_timeout = Some(timeout);
        self
    }

    /// Sets the reconnect policy.
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.config.reconnect = policy;
        self
    }

    /// Sets the event queue size.
    pub fn event_queue(mut self, n: usize) -> Self {
        self.config.event_queue = n;
        self
    }

    /// Sets the command (send) queue size.
    pub fn send_queue(mut self, n: usize) -> Self {
        self.config.send_queue = n;
        self
    }

    /// Tracks the position of every message on a stream with history, and recovers what was
    /// missed on every reconnect: the server replays it before live delivery resumes, and
    /// [`super::Event::Recovered`] says, per stream, whether the gap was filled
    /// (`docs/PROTOCOL.md` §12).
    pub fn recover(mut self, on: bool) -> Self {
        self.config.recover = on;
        self
    }

    /// Hardened profile: whether to ask for room keys (on by default; `docs/PROTOCOL.md` §14).
    pub fn room_keys(mut self, on: bool) -> Self {
        self.config.room_keys = on;
        self
    }

    /// With room keys: whether to ask for room records as binary messages (on by default;
    /// `docs/PROTOCOL.md` §14.6).
    pub fn binary_room_records(mut self, on: bool) -> Self {
        self.config.binary_room_records = on;
        self
    }

    /// Attaches the raw wire frame to every message event.
    pub fn capture_raw_frames(mut self, on: bool) -> Self {
        self.config.capture_raw_frames = on;
        self
    }

    /// Connects, authenticates and (when encryption is on) completes the handshake, then
    /// hands the connection to its task. The first [`Event`](super::Event) is
    /// [`Event::Connected`](super::Event::Connected).
    ///
    /// # Errors
    /// [`ClientError::Config`] for a bad configuration, [`ClientError::Connect`] when the
    /// socket cannot be opened, [`ClientError::Disconnected`] when the server refuses the
    /// client (e.g. 4003, 4004) or the handshake fails. The first connection is not retried.
    pub async fn connect(self) -> Result<(Client, Events), ClientError> {
        let config = self.config;
        config.validate()?;
        let (cmd_tx, cmd_rx) = mpsc::channel(config.send_queue);
        let (ev_tx, ev_rx) = mpsc::channel(config.event_queue);
        let (info_tx, info_rx) = watch::channel(None);
        let shared = Arc::new(SharedState::default());
        let stop = CancellationToken::new();
        let mut task = Task::new(
            config,
            Arc::clone(&shared),
            cmd_rx,
            ev_tx,
            info_tx,
            stop.clone(),
        );
        let live = task.first_connect().await?;
        tokio::spawn(task.run(live));
        Ok((
            Client {
                commands: cmd_tx,
                shared,
                info: info_rx,
                _owner: Arc::new(stop.clone().drop_guard()),
                stop,
            },
            Events { rx: ev_rx },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_url_is_a_config_error() {
        let err = Client::builder("http://x")
            .connect()
            .await
            .expect_err("bad url");
        assert!(matches!(err, ClientError::Config(_)));
    }
}
