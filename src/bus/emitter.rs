//! [`Emitter`]: publishes to sealwire (and IGNIS) servers through Redis from a process that
//! runs no server: workers, cron jobs, other services, the `sealwire emit` command.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use sealwire::emitter::{Emitter, EmitterConfig};
//! use sealwire::publish::Publish;
//!
//! let emitter = Emitter::connect(EmitterConfig::new("redis://127.0.0.1:6379")).await?;
//! let receipt = emitter.to_user("alice").emit("report:ready", &serde_json::json!({"id": 7})).await?;
//! println!("{:?} instance(s) listening", receipt.instances);
//! emitter.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! It publishes through [`Publish`], exactly as a server handle does. Every envelope carries
//! `serverId: "emitter"`, so every server delivers it. A publish returns once Redis has
//! accepted the `PUBLISH`; a publish that could not be made is an error, never a
//! silent success. Like all Redis pub/sub traffic, delivery to clients is at-most-once.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::MultiplexedConnection;

use super::redis::streams;
use super::{connect_publisher, open_client, redact_url};
use crate::crypto::backplane::{BusKey, Sealer};
use crate::protocol::{BusEnvelope, HistoryConfig, KeepRules, channel};
use crate::publish::{Publication, Publish, PublishError, Receipt};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why an emitter could not be created. Publishing reports [`PublishError`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmitError {
    /// The URL is invalid or Redis could not be reached.
    #[error("{0}")]
    Redis(String),
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
    /// Which publications the servers keep in their shared history (Redis Streams); must
    /// match the servers' `--history-*` settings. Kept publications are appended exactly as
    /// a server appends them and their receipts carry the offset. Defaults to keeping
    /// nothing.
    pub history: HistoryConfig,
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
            history: HistoryConfig::default(),
        }
    }

    /// Sets [`EmitterConfig::history`].
    #[must_use]
    pub fn history(mut self, history: HistoryConfig) -> Self {
        self.history = history;
        self
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
    /// What is kept, the append script, and streams whose last append failed (their next
    /// append starts a new epoch).
    kept: Option<Kept>,
}

struct Kept {
    rules: KeepRules,
    size: usize,
    ttl_ms: u64,
    script: redis::Script,
    tainted: Mutex<HashSet<String>>,
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
        let kept = if config.history.enabled() {
            let rules = KeepRules::new(&config.history)
                .map_err(|e| EmitError::Redis(format!("invalid history room pattern: {e}")))?;
            Some(Kept {
                rules,
                size: config.history.size,
                ttl_ms: u64::try_from(config.history.ttl.as_millis()).unwrap_or(u64::MAX),
                script: streams::append_script(),
                tainted: Mutex::new(HashSet::new()),
            })
        } else {
            None
        };
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
            kept,
        })
    }

    /// Publishes one message: seals it with the bus key if there is one, then `PUBLISH`es it
    /// and waits for Redis's answer (how many instances listen on the channel).
    async fn publish_one(&self, p: Publication) -> Result<Receipt, PublishError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(PublishError::Closed);
        }
        let mut env = BusEnvelope {
            server_id: channel::EMITTER_SERVER_ID.to_owned(),
            target: p.target,
            event: p.event.into_string(),
            data: p.data,
            exclude: p.exclude,
            kept: None,
        };
        if let Some(sealer) = &self.sealer {
            lock(sealer)
                .seal(&mut env)
                .map_err(|_| PublishError::Seal)?;
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
                            PublishError::Unavailable(format!(
                                "cannot reach Redis at {}: {e}",
                                self.url_redacted
                            ))
                        })?;
                *guard = Some(c);
            }
            guard.clone().ok_or(PublishError::Closed)?
        };
        let kept = self
            .kept
            .as_ref()
            .and_then(|k| Some((k, k.rules.stream_for(&env.target)?)));
        let result = if let Some((k, stream)) = kept {
            let reset = lock(&k.tainted).remove(&stream);
            let append = streams::append(
                &mut conn,
                &k.script,
                &stream,
                &env,
                (k.size, k.ttl_ms),
                reset,
            );
            let why = match tokio::time::timeout(self.response_timeout, append).await {
                Ok(Ok((position, n))) => {
                    let mut receipt = Receipt::remote(n);
                    receipt.offset = Some(position.offset);
                    return Ok(receipt);
                }
                Ok(Err(e)) => format!("appending to {stream} failed: {e}"),
                Err(_) => format!("appending to {stream} timed out"),
            };
            // It may have been kept or not: the stream's next append starts a new epoch.
            lock(&k.tainted).insert(stream);
            why
        } else {
            let mut cmd = redis::cmd("PUBLISH");
            cmd.arg(&channel).arg(payload);
            let publish = cmd.query_async::<usize>(&mut conn);
            match tokio::time::timeout(self.response_timeout, publish).await {
                Ok(Ok(n)) => return Ok(Receipt::remote(n)),
                Ok(Err(e)) => format!("PUBLISH to {channel} failed: {e}"),
                Err(_) => format!("PUBLISH to {channel} timed out"),
            }
        };
        // Replace the connection on the next call; this message is not retried, since it may
        // have reached Redis already.
        *self.conn.lock().await = None;
        Err(PublishError::Unavailable(result))
    }

    /// Whether the emitter can still publish (not shut down).
    #[must_use]
    pub fn is_open(&self) -> bool {
        !self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Releases the Redis connection; later publishes fail with [`PublishError::Closed`]. Publishes
    /// already acknowledged by Redis are unaffected.
    pub async fn shutdown(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.conn.lock().await.take();
    }
}

/// `PUBLISH`es each message and reports how many instances received it
/// ([`Receipt::instances`]); a message Redis did not accept is an error, never a silent
/// success.
impl Publish for Emitter {
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<Receipt, PublishError>> {
        Box::pin(self.publish_one(publication))
    }

    fn is_ready(&self) -> bool {
        self.is_open()
    }
}
