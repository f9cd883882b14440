//! [`Emitter`]: publishes to sealwire (and IGNIS) servers through Redis from a process that
//! runs no server: workers, cron jobs, other services, the `sealwire emit` command.
//!
//! ```no_run
//! # async fn run() -> Result<(), sealwire::emitter::EmitError> {
//! use sealwire::emitter::{Emitter, EmitterConfig};
//!
//! let emitter = Emitter::connect(EmitterConfig::new("redis://127.0.0.1:6379")).await?;
//! emitter.to_user("alice", "report:ready", &serde_json::json!({"id": 7})).await?;
//! emitter.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Every envelope carries `serverId: "emitter"`, so every server delivers it. A call returns
//! once Redis has accepted the `PUBLISH`; a publish that could not be made is an error, never a
//! silent success. Like all Redis pub/sub traffic, delivery to clients is at-most-once.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde::Serialize;
use serde_json::value::RawValue;

use super::{connect_publisher, open_client, redact_url};
use crate::crypto::backplane::{BusKey, Sealer};
use crate::protocol::{BusEnvelope, BusTarget, EventName, SendError, channel};

/// Why an emit failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The event name is invalid or reserved, or the payload does not serialize.
    #[error(transparent)]
    Message(#[from] SendError),
    /// Redis could not be reached or refused the command; the message was not published.
    #[error("{0}")]
    Redis(String),
    /// The payload could not be sealed with the bus key.
    #[error("backplane encryption failed")]
    Seal,
    /// [`Emitter::shutdown`] was called.
    #[error("emitter is shut down")]
    Closed,
}

/// Configuration of an [`Emitter`].
#[derive(Debug)]
#[non_exhaustive]
pub struct EmitterConfig {
    /// Redis URL (`redis://`, `rediss://`, ACL credentials in the URL).
    pub url: String,
    /// PEM CA certificate(s) to trust for `rediss://` instead of the bundled web roots.
    /// Defaults to `None`.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Time allowed to connect. Defaults to 5 s.
    pub connect_timeout: Duration,
    /// Time allowed for a `PUBLISH` reply. Defaults to 5 s.
    pub response_timeout: Duration,
    /// Backplane key; must match the servers'. Defaults to `None` (plaintext, IGNIS-compatible).
    pub bus_key: Option<BusKey>,
}

impl EmitterConfig {
    /// Defaults with `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls_ca_pem: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            bus_key: None,
        }
    }

    /// Sets [`EmitterConfig::tls_ca_pem`].
    #[must_use]
    pub fn tls_ca_pem(mut self, pem: Option<Vec<u8>>) -> Self {
        self.tls_ca_pem = pem;
        self
    }

    /// Sets [`EmitterConfig::bus_key`].
    #[must_use]
    pub fn bus_key(mut self, key: Option<BusKey>) -> Self {
        self.bus_key = key;
        self
    }

    /// Sets [`EmitterConfig::connect_timeout`] and [`EmitterConfig::response_timeout`].
    #[must_use]
    pub fn timeouts(mut self, connect: Duration, response: Duration) -> Self {
        self.connect_timeout = connect;
        self.response_timeout = response;
        self
    }
}

/// A Redis-only publisher with serverId `emitter`. Share it behind an `Arc`; calls may run
/// concurrently. A broken connection is replaced on the next call.
pub struct Emitter {
    client: redis::Client,
    url_redacted: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    sealer: Option<Mutex<Sealer>>,
    closed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("url", &self.url_redacted)
            .field("encrypted", &self.sealer.is_some())
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// Connects to Redis.
    ///
    /// # Errors
    /// [`EmitError::Redis`] for an invalid URL or an unreachable Redis.
    pub async fn connect(config: EmitterConfig) -> Result<Self, EmitError> {
        let url_redacted = redact_url(&config.url);
        let client = open_client(&config.url, config.tls_ca_pem.as_deref())
            .map_err(|e| EmitError::Redis(format!("invalid Redis URL {url_redacted}: {e}")))?;
        let conn = connect_publisher(&client, config.connect_timeout, config.response_timeout)
            .await
            .map_err(|e| EmitError::Redis(format!("cannot reach Redis at {url_redacted}: {e}")))?;
        Ok(Self {
            client,
            url_redacted,
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
            conn: tokio::sync::Mutex::new(Some(conn)),
            sealer: config
                .bus_key
                .map(|k| Mutex::new(Sealer::new(k, &mut rand::rng()))),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sends to one client, on whichever server holds it. Returns how many Redis subscribers
    /// received the message (0 means no server currently listens for that target).
    ///
    /// # Errors
    /// [`EmitError`]: invalid event or payload, Redis unreachable, or shut down.
    pub async fn to_client(
        &self,
        client_id: &str,
        event: &str,
        data: &impl Serialize,
    ) -> Result<usize, EmitError> {
        self.emit(BusTarget::Client(client_id.to_owned()), event, data, &[])
            .await
    }

    /// Sends to every session of a user, on every server.
    ///
    /// # Errors
    /// As [`Emitter::to_client`].
    pub async fn to_user(
        &self,
        user_id: &str,
        event: &str,
        data: &impl Serialize,
    ) -> Result<usize, EmitError> {
        self.emit(BusTarget::User(user_id.to_owned()), event, data, &[])
            .await
    }

    /// Sends to every member of a room except the `exclude`d client ids.
    ///
    /// # Errors
    /// As [`Emitter::to_client`].
    pub async fn to_room(
        &self,
        room: &str,
        event: &str,
        data: &impl Serialize,
        exclude: &[String],
    ) -> Result<usize, EmitError> {
        self.emit(BusTarget::Room(room.to_owned()), event, data, exclude)
            .await
    }

    /// Sends to every authenticated client on every server, except `exclude`.
    ///
    /// # Errors
    /// As [`Emitter::to_client`].
    pub async fn broadcast(
        &self,
        event: &str,
        data: &impl Serialize,
        exclude: &[String],
    ) -> Result<usize, EmitError> {
        self.emit(BusTarget::Broadcast, event, data, exclude).await
    }

    /// Publishes to any target with already-serialized data.
    ///
    /// # Errors
    /// As [`Emitter::to_client`].
    pub async fn emit_raw(
        &self,
        target: BusTarget,
        event: &str,
        data: Box<RawValue>,
        exclude: &[String],
    ) -> Result<usize, EmitError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(EmitError::Closed);
        }
        EventName::check(event).map_err(SendError::from)?;
        let mut env = BusEnvelope {
            server_id: channel::EMITTER_SERVER_ID.to_owned(),
            target,
            event: event.to_owned(),
            data,
            exclude: exclude.to_vec(),
        };
        if let Some(sealer) = &self.sealer {
            sealer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .seal(&mut env)
                .map_err(|_| EmitError::Seal)?;
        }
        let channel = env.target.channel();
        let payload = env.to_json();
        let mut conn = {
            let mut guard = self.conn.lock().await;
            if guard.is_none() {
                let c =
                    connect_publisher(&self.client, self.connect_timeout, self.response_timeout)
                        .await
                        .map_err(|e| {
                            EmitError::Redis(format!(
                                "cannot reach Redis at {}: {e}",
                                self.url_redacted
                            ))
                        })?;
                *guard = Some(c);
            }
            guard.clone().ok_or(EmitError::Closed)?
        };
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&channel).arg(payload);
        let publish = cmd.query_async::<usize>(&mut conn);
        let result = match tokio::time::timeout(self.response_timeout, publish).await {
            Ok(Ok(n)) => return Ok(n),
            Ok(Err(e)) => format!("PUBLISH to {channel} failed: {e}"),
            Err(_) => format!("PUBLISH to {channel} timed out"),
        };
        // Replace the connection on the next call; this message is not retried, since it may
        // have reached Redis already.
        *self.conn.lock().await = None;
        Err(EmitError::Redis(result))
    }

    async fn emit(
        &self,
        target: BusTarget,
        event: &str,
        data: &impl Serialize,
        exclude: &[String],
    ) -> Result<usize, EmitError> {
        let raw = serde_json::value::to_raw_value(data).map_err(SendError::from)?;
        self.emit_raw(target, event, raw, exclude).await
    }

    /// Whether the emitter can still publish (not shut down).
    #[must_use]
    pub fn is_open(&self) -> bool {
        !self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Releases the Redis connection; later calls return [`EmitError::Closed`]. Publishes
    /// already acknowledged by Redis are unaffected.
    pub async fn shutdown(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.conn.lock().await.take();
    }
}
