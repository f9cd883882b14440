//! The Rust client SDK: connect, authenticate, handshake, then a typed stream of events.
//!
//! ```no_run
//! use sealwire::client::{Client, Encryption, Event};
//!
//! # async fn run() -> Result<(), sealwire::client::ClientError> {
//! let (client, mut events) = Client::builder("ws://127.0.0.1:8080/ws")
//!     .token("alice")
//!     .encryption(Encryption::default()) // hardened `sealwire-v2`, no pinned keys
//!     .connect()
//!     .await?;
//! client.join(["chat:lobby"]).await?;
//! client.send("chat:message", &serde_json::json!({"text": "hi"})).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Message(m) => println!("{}: {}", m.event, m.data),
//!         Event::Disconnected { reason, retry_in } => {
//!             println!("disconnected: {reason} (retry in {retry_in:?})");
//!         }
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! [`Encryption::Hardened`] selects the hardened `sealwire-v2` profile (key confirmation,
//! strict record order, rekeying) and, with `pinned_server_keys`, authenticates the server by
//! its identity key; [`Encryption::Compat`] speaks the IGNIS-compatible profile.
//!
//! # Design
//! One connection task owns the WebSocket and the crypto [`Session`](crate::crypto::Session).
//! The [`Client`] handle talks to it through a bounded command queue; the task hands the
//! application [`Event`]s through a bounded event queue. When the application stops reading
//! events the task stops reading the socket, and the server eventually closes the connection
//! as a slow consumer (4005), which is reported like every other disconnect.
//!
//! Every heartbeat (default 25 s) is a `heartbeat` event plus a WebSocket ping. The server's
//! WebSocket layer answers the ping, so a server that sends nothing for `server_timeout`
//! (by default twice the heartbeat interval plus 10 s) is dead or unreachable even if the TCP connection never reports an error:
//! the task drops the connection ([`DisconnectReason::Network`]) and reconnects.
//!
//! In the hardened profile the key exchange (`hello`) comes first and the token is sent only
//! sealed, after the server's identity (when pinned) and key confirmation have been checked;
//! the `connected` that tells the client its user id is sealed too.
//!
//! Credentials can come from a [`TokenProvider`] instead of a fixed token: it is asked on
//! every (re)connect, and, when the server announces an expiry, again at about 80% of the
//! session's remaining lifetime, whose answer is sent as a `refresh` ([`Event::Refreshed`]).
//! A refresh that fails ([`Event::RefreshFailed`]) is tried again halfway to the expiry, as
//! long as at least a second of the session is left.
//!
//! After a disconnect the task reconnects with jittered exponential backoff
//! ([`ReconnectPolicy`]): a new WebSocket, a new handshake (fresh keys), authentication with
//! the same token (or a fresh one from the provider), then every room the application joined
//! is joined again. A connection that ends within [`ReconnectPolicy::min_uptime`] of its
//! `connected` counts as a failed attempt, so a server or a path that ends sessions as soon
//! as they start meets growing delays and `max_attempts`. Messages sent
//! meanwhile wait in the command queue; one that was being written when the connection
//! broke is reported as [`Event::SendFailed`] rather than sent twice. Authentication failures (4003) and encryption
//! failures (4004) are final: retrying them with the same credentials cannot succeed. A
//! hardened client takes as final only what the server said inside the record layer (a 4003
//! after its sealed refusal of the credentials): a close code or a `hello` can be forged on the path, so the
//! rest is retried ([`DisconnectReason::Handshake`], `docs/PROTOCOL.md` §10.9).

mod builder;
mod config;
mod connection;
mod event;
mod inbound;
mod lifetime;
mod login;
mod recovery;

pub use builder::ClientBuilder;
pub use config::{ClientConfig, Encryption, ReconnectPolicy, TokenProvider};
pub use event::{DisconnectReason, Event, Message};

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not a `ws://` or `wss://` URL, or a setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The WebSocket could not be opened.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The server ended the first connection before it was established.
    #[error("disconnected: {0}")]
    Disconnected(DisconnectReason),
    /// The event name is empty, too long, or a protocol event.
    #[error("invalid event name {0:?}")]
    InvalidEvent(String),
    /// The payload does not serialize to JSON.
    #[error("payload is not serializable: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The client was closed (or gave up reconnecting); nothing more can be sent.
    #[error("client is closed")]
    Closed,
    /// The command queue is full ([`Client::try_send`] only).
    #[error("send queue is full")]
    QueueFull,
    /// The message could take more than the server's limit on the wire (announced in its
    /// `connected`): the server would close the connection and the message would be lost.
    /// Nothing was sent.
    #[error("message of up to {size} bytes on the wire; the server takes at most {max}")]
    TooLarge {
        /// At most this many bytes on the wire.
        size: usize,
        /// The server's limit.
        max: usize,
    },
}

/// What the application asks the connection task to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send an application event.
    Send {
        /// Its name, to report a send that failed ([`Event::SendFailed`]).
        event: String,
        /// The inner plaintext envelope.
        frame: String,
    },
    /// Join rooms.
    Join(Vec<String>),
    /// Leave rooms.
    Leave(Vec<String>),
}

/// State shared between the handle and the connection task.
#[derive(Debug, Default)]
pub(crate) struct SharedState {
    /// Rooms the application asked to be in; joined again after every reconnect.
    pub(crate) rooms: Mutex<BTreeSet<String>>,
    /// The last position received in each stream with history (with `recover` on).
    pub(crate) positions: Mutex<crate::protocol::RecoverRequest>,
    /// The last connection's message limit and whether it was encrypted ([`Client::send`]
    /// checks against it, between connections too).
    pub(crate) limit: Mutex<Option<(usize, bool)>>,
}

impl SharedState {
    /// Keeps a connection's message limit for [`Client::send`].
    pub(crate) fn remember_limit(&self, info: &ConnectionInfo) {
        *self.limit.lock().unwrap_or_else(PoisonError::into_inner) =
            info.max_message_bytes.map(|max| (max, info.encrypted));
    }

    pub(crate) fn positions(&self) -> std::sync::MutexGuard<'_, crate::protocol::RecoverRequest> {
        self.positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a position: a later offset, or any offset of another epoch. An unheld
    /// position (epoch `""`) is recorded only where none is held: it marks a stream the
    /// server could not track this client in, and never replaces a position the client has
    /// (a gap answered for a room joined twice, or while the store was out of reach).
    pub(crate) fn advance(&self, stream: &str, offset: u64, epoch: &str) {
        let mut positions = self.positions();
        match positions.get_mut(stream) {
            Some(p) if (p.epoch == epoch && p.offset >= offset) || epoch.is_empty() => {}
            Some(p) => {
                p.offset = offset;
                epoch.clone_into(&mut p.epoch);
            }
            None => {
                positions.insert(
                    stream.to_owned(),
                    crate::protocol::Position {
                        offset,
                        epoch: epoch.to_owned(),
                    },
                );
            }
        }
    }

    pub(crate) fn rooms(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Identity of the current connection, as announced by `connected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Client id the server assigned (changes on every reconnect).
    pub client_id: String,
    /// User id the server's authenticate hook returned.
    pub user_id: String,
    /// Whether the session is encrypted.
    pub encrypted: bool,
    /// When the server ends the session (4006) unless it is refreshed; `None`: never.
    pub expires_at: Option<std::time::SystemTime>,
    /// The largest message the server takes from the client, as its `connected` announced
    /// (`None` from a server that announces none).
    pub max_message_bytes: Option<usize>,
}

/// A handle to a connected client. Cheap to clone; every clone drives the same connection.
///
/// Dropping every handle closes the connection (as [`Client::close`] does), reconnect loop
/// included.
#[derive(Debug, Clone)]
pub struct Client {
    commands: mpsc::Sender<Command>,
    shared: Arc<SharedState>,
    info: watch::Receiver<Option<ConnectionInfo>>,
    stop: CancellationToken,
    /// Cancels `stop` when the last handle goes.
    _owner: Arc<tokio_util::sync::DropGuard>,
}

/// The events of one client, in the order they happened. Also a [`futures_util::Stream`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event; `None` once the client is closed for good.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for Events {
    type Item = Event;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

fn outbound_frame(event: &str, data: &impl Serialize) -> Result<String, ClientError> {
    if crate::protocol::EventName::check_client_outbound(event).is_err() {
        return Err(ClientError::InvalidEvent(event.to_owned()));
    }
    let data = serde_json::to_string(data)?;
    Ok(crate::protocol::frame_json(event, &data))
}

impl Client {
    /// Starts configuring a client for `url` (e.g. `ws://127.0.0.1:8080/ws`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// Sends an application event: sealed when the session is encrypted, plain otherwise.
    /// Waits for room in the command queue; while reconnecting the message waits there and
    /// goes out on the new connection. Returns once the message is queued: a message that
    /// then could not be written (the connection broke under it) is reported as
    /// [`Event::SendFailed`] and not sent again, since it may have reached the server.
    ///
    /// # Errors
    /// [`ClientError::InvalidEvent`] for an empty, over-long or protocol event name
    /// (`join`/`leave` have their own methods), [`ClientError::Serialize`], or
    /// [`ClientError::Closed`] once the client is closed.
    pub async fn send(&self, event: &str, data: &impl Serialize) -> Result<(), ClientError> {
        let frame = outbound_frame(event, data)?;
        self.check_size(&frame)?;
        self.commands
            .send(Command::Send {
                event: event.to_owned(),
                frame,
            })
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// As [`Client::send`] without waiting.
    ///
    /// # Errors
    /// As [`Client::send`], plus [`ClientError::QueueFull`].
    pub fn try_send(&self, event: &str, data: &impl Serialize) -> Result<(), ClientError> {
        let frame = outbound_frame(event, data)?;
        self.check_size(&frame)?;
        self.commands
            .try_send(Command::Send {
                event: event.to_owned(),
                frame,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ClientError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => ClientError::Closed,
            })
    }

    /// Joins rooms (the server's room validator decides which). Remembered, and joined again
    /// after every reconnect; between connections nothing is sent, since the next connection
    /// starts by joining every room asked for and not left.
    ///
    /// # Errors
    /// [`ClientError::Closed`] once the client is closed.
    pub async fn join<I, S>(&self, rooms: I) -> Result<(), ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let rooms: Vec<String> = rooms.into_iter().map(Into::into).collect();
        self.shared.rooms().extend(rooms.iter().cloned());
        if !self.connected() {
            return self.closed_or_ok();
        }
        self.commands
            .send(Command::Join(rooms))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Refuses a frame that could exceed the server's announced limit once sealed (base64 of
    /// the ciphertext and tag, and the record's fields).
    fn check_size(&self, frame: &str) -> Result<(), ClientError> {
        let limit = *self
            .shared
            .limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some((max, encrypted)) = limit else {
            return Ok(());
        };
        let n = frame.len();
        let size = if encrypted {
            4 * (n + 16).div_ceil(3) + 128
        } else {
            n + 32
        };
        if size > max {
            return Err(ClientError::TooLarge { size, max });
        }
        Ok(())
    }

    /// Whether a connection is up now (room changes then go out; between connections the
    /// next connection's re-join carries them).
    fn connected(&self) -> bool {
        self.info.borrow().is_some()
    }

    fn closed_or_ok(&self) -> Result<(), ClientError> {
        if self.is_closed() {
            Err(ClientError::Closed)
        } else {
            Ok(())
        }
    }

    /// Leaves rooms and forgets them for reconnects.
    ///
    /// # Errors
    /// [`ClientError::Closed`] once the client is closed.
    pub async fn leave<I, S>(&self, rooms: I) -> Result<(), ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let rooms: Vec<String> = rooms.into_iter().map(Into::into).collect();
        {
            let mut joined = self.shared.rooms();
            for r in &rooms {
                joined.remove(r);
            }
        }
        if !self.connected() {
            return self.closed_or_ok();
        }
        self.commands
            .send(Command::Leave(rooms))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Rooms the client asked to join (and has not left).
    #[must_use]
    pub fn rooms(&self) -> Vec<String> {
        self.shared.rooms().iter().cloned().collect()
    }

    /// The last position received in each stream with history (with
    /// [`ClientBuilder::recover`] on), as sent on the next reconnect.
    #[must_use]
    pub fn positions(&self) -> crate::protocol::RecoverRequest {
        self.shared.positions().clone()
    }

    /// The current connection, `None` while disconnected.
    #[must_use]
    pub fn connection(&self) -> Option<ConnectionInfo> {
        self.info.borrow().clone()
    }

    /// Closes the connection (close code 1000) and stops reconnecting. The event stream ends
    /// after a final [`Event::Disconnected`] with [`DisconnectReason::ClientClosed`].
    pub fn close(&self) {
        self.stop.cancel();
    }

    /// Whether the client is closed for good.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unheld_position_is_recorded_only_where_none_is_held() {
        let shared = SharedState::default();
        shared.advance("room:a", 0, "");
        assert_eq!(
            shared.positions()["room:a"].epoch,
            "",
            "recorded: nothing was held"
        );
        shared.advance("room:a", 2, "e1");
        shared.advance("room:a", 0, "");
        let held = shared.positions()["room:a"].clone();
        assert_eq!(
            (held.offset, held.epoch.as_str()),
            (2, "e1"),
            "never replaced by one"
        );
        shared.advance("room:a", 1, "e1");
        assert_eq!(shared.positions()["room:a"].offset, 2, "never moves back");
        shared.advance("room:a", 1, "e2");
        assert_eq!(
            shared.positions()["room:a"].epoch,
            "e2",
            "another epoch replaces it"
        );
    }
}
