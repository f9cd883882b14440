//! Hooks an embedding application provides. Each is a trait with a blanket impl for plain
//! closures, so `builder.authenticate(|req| async move { .. })` just works.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use serde_json::value::RawValue;

use super::Server;
pub use super::auth_request::{AuthRequest, UpgradeHead};
pub use super::hook_error::HookError;
use crate::crypto::{HandshakeConfig, ServerHello, Session, server_handshake};
use crate::protocol::{AuthenticatePayload, CloseCode};

/// A boxed, sendable future (what hook traits return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A successful authentication.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// User id the connection is indexed by (many sessions may share one).
    pub user_id: String,
    /// Application metadata, visible to later hooks and the admin API.
    pub metadata: Value,
    /// When the session these credentials open must end (close 4006) unless the client
    /// refreshes it with new credentials first. `None`: it does not expire. The JWT hook sets
    /// it to the token's `exp` plus the leeway.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// An identity without metadata or expiry.
    pub fn new(user_id: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            metadata: Value::Null,
            expires_at: None,
        }
    }

    /// The same identity, expiring at `at`.
    #[must_use]
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// An authenticated connection, as hooks see it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// Client id (a UUID).
    pub id: String,
    /// User id from the authenticate hook.
    pub user_id: String,
    /// Metadata from the authenticate hook.
    pub metadata: Value,
    /// Whether every frame to this client is encrypted.
    pub encrypted: bool,
    /// Peer address, when known.
    pub remote_addr: Option<SocketAddr>,
    /// When the WebSocket was accepted.
    pub connected_at: SystemTime,
    /// When the session ends unless refreshed (see [`Identity::expires_at`]).
    pub expires_at: Option<SystemTime>,
}

/// Decides who a connection is. `Ok(None)` rejects (close 4003 "Authentication failed");
/// `Err` closes 4003 "Authentication error". It also checks the token of a `refresh`: the
/// refresh is accepted only for an identity with the session's user id.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks the credentials.
    fn authenticate(
        &self,
        request: AuthRequest,
    ) -> BoxFuture<'static, Result<Option<Identity>, HookError>>;
}

impl<F, Fut> Authenticator for F
where
    F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Identity>, HookError>> + Send + 'static,
{
    fn authenticate(
        &self,
        request: AuthRequest,
    ) -> BoxFuture<'static, Result<Option<Identity>, HookError>> {
        Box::pin(self(request))
    }
}

/// Decides which of the requested rooms a client may join; returns the allowed subset.
/// Without this hook clients cannot join rooms themselves.
pub trait RoomValidator: Send + Sync + 'static {
    /// Filters `rooms` (already checked for length and the reserved `ws:` prefix).
    fn validate(
        &self,
        client: Arc<ClientInfo>,
        rooms: Vec<String>,
    ) -> BoxFuture<'static, Vec<String>>;
}

impl<F, Fut> RoomValidator for F
where
    F: Fn(Arc<ClientInfo>, Vec<String>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<String>> + Send + 'static,
{
    fn validate(
        &self,
        client: Arc<ClientInfo>,
        rooms: Vec<String>,
    ) -> BoxFuture<'static, Vec<String>> {
        Box::pin(self(client, rooms))
    }
}

/// Room validator that allows names matching any of a list of glob patterns.
#[derive(Debug, Clone)]
pub struct GlobRooms {
    patterns: Vec<glob::Pattern>,
}

impl GlobRooms {
    /// Compiles the patterns (`*`, `?`, `[..]`).
    ///
    /// # Errors
    /// Returns the pattern error for the first invalid pattern.
    pub fn new<I, S>(patterns: I) -> Result<Self, glob::PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let patterns = patterns
            .into_iter()
            .map(|p| glob::Pattern::new(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether `room` matches a pattern.
    #[must_use]
    pub fn allows(&self, room: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(room))
    }
}

impl RoomValidator for GlobRooms {
    fn validate(
        &self,
        _client: Arc<ClientInfo>,
        rooms: Vec<String>,
    ) -> BoxFuture<'static, Vec<String>> {
        let allowed = rooms.into_iter().filter(|r| self.allows(r)).collect();
        Box::pin(std::future::ready(allowed))
    }
}

/// Called once a client is authenticated and `connected` has been sent.
pub trait ConnectedHook: Send + Sync + 'static {
    /// Runs on the connection's task.
    fn on_connected(&self, server: Server, client: Arc<ClientInfo>) -> BoxFuture<'static, ()>;
}

impl<F, Fut> ConnectedHook for F
where
    F: Fn(Server, Arc<ClientInfo>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn on_connected(&self, server: Server, client: Arc<ClientInfo>) -> BoxFuture<'static, ()> {
        Box::pin(self(server, client))
    }
}

/// Called once an authenticated client is gone, with the close code that ended it.
///
/// Hooks come in pairs: it runs exactly once for every client whose [`ConnectedHook`] was
/// started (or, without one, that finished authenticating), and never for any other. When the
/// connection's task ended by a panic (in another hook, say), it still runs, on a task of its
/// own, with 1006.
pub trait DisconnectedHook: Send + Sync + 'static {
    /// Runs on the connection's task after it left every index.
    fn on_disconnected(&self, client: Arc<ClientInfo>, code: CloseCode) -> BoxFuture<'static, ()>;
}

impl<F, Fut> DisconnectedHook for F
where
    F: Fn(Arc<ClientInfo>, CloseCode) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn on_disconnected(&self, client: Arc<ClientInfo>, code: CloseCode) -> BoxFuture<'static, ()> {
        Box::pin(self(client, code))
    }
}

/// A custom (non-system) event from an authenticated client.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// The sender.
    pub client: Arc<ClientInfo>,
    /// Event name.
    pub event: String,
    /// Payload (`null` when absent).
    pub data: Value,
    /// Application message id, when sent.
    pub id: Option<String>,
    /// Whether it arrived inside an `encrypted` frame.
    pub was_encrypted: bool,
}

/// A custom event whose payload was decoded into `T`, as a handler registered with
/// [`ServerBuilder::on`](super::ServerBuilder::on) sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Event<T> {
    /// The sender.
    pub client: Arc<ClientInfo>,
    /// Event name.
    pub event: String,
    /// The decoded payload (an absent payload is decoded from `null`).
    pub data: T,
    /// Application message id, when sent.
    pub id: Option<String>,
    /// Whether it arrived inside an `encrypted` frame.
    pub was_encrypted: bool,
}

/// A per-event handler with its payload type erased: decodes, then runs the typed handler.
pub(crate) trait EventRoute: Send + Sync + 'static {
    /// The handler's future, or the decoding error for a payload that does not fit `T`.
    fn route(
        &self,
        server: Server,
        message: InboundMessage,
    ) -> Result<BoxFuture<'static, ()>, serde_json::Error>;
}

/// A typed handler for one event, as registered by [`ServerBuilder::on`](super::ServerBuilder::on).
pub(crate) struct Typed<T, F> {
    handler: F,
    payload: std::marker::PhantomData<fn() -> T>,
}

impl<T, F> Typed<T, F> {
    pub(crate) fn new(handler: F) -> Self {
        Self {
            handler,
            payload: std::marker::PhantomData,
        }
    }
}

impl<T, F, Fut> EventRoute for Typed<T, F>
where
    T: serde::de::DeserializeOwned + 'static,
    F: Fn(Server, Event<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn route(
        &self,
        server: Server,
        message: InboundMessage,
    ) -> Result<BoxFuture<'static, ()>, serde_json::Error> {
        let data = serde_json::from_value(message.data)?;
        let event = Event {
            client: message.client,
            event: message.event,
            data,
            id: message.id,
            was_encrypted: message.was_encrypted,
        };
        Ok(Box::pin((self.handler)(server, event)))
    }
}

/// Handles custom events that have no typed handler
/// ([`ServerBuilder::on`](super::ServerBuilder::on)). Runs on the sender's connection task,
/// in arrival order: spawn if the work is long. When the server shuts down, a handler still running is dropped at its
/// next `.await` so the connection can close with 1001 in time.
pub trait MessageHandler: Send + Sync + 'static {
    /// Handles one message.
    fn handle(&self, server: Server, message: InboundMessage) -> BoxFuture<'static, ()>;
}

impl<F, Fut> MessageHandler for F
where
    F: Fn(Server, InboundMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn handle(&self, server: Server, message: InboundMessage) -> BoxFuture<'static, ()> {
        Box::pin(self(server, message))
    }
}

/// Rewrites an outbound message for one client. Runs on that client's task, before the
/// built-in encryptor (which always runs last for encrypted clients, so a transformer can
/// never cause plaintext to reach one).
pub trait OutboundTransformer: Send + Sync + 'static {
    /// Returns `Some((event, data_json))` to replace the message, `None` to keep it.
    fn transform(
        &self,
        client: &ClientInfo,
        event: &str,
        data: &RawValue,
    ) -> Option<(String, Box<RawValue>)>;
}

impl<F> OutboundTransformer for F
where
    F: Fn(&ClientInfo, &str, &RawValue) -> Option<(String, Box<RawValue>)> + Send + Sync + 'static,
{
    fn transform(
        &self,
        client: &ClientInfo,
        event: &str,
        data: &RawValue,
    ) -> Option<(String, Box<RawValue>)> {
        self(client, event, data)
    }
}

/// Establishes a session from the client's key material: the compatibility profile's
/// `authenticate` payload, or the hardened `hello` (as a payload with `publicKey` and
/// `profile`). `Ok(None)` or `Err` for a client that sent a key: the handshake failed (close
/// 4004); a hook cannot turn such a client into a plaintext one.
pub trait Handshake: Send + Sync + 'static {
    /// Runs the server half of the handshake.
    ///
    /// # Errors
    /// [`HookError`] when the client's handshake material is invalid.
    fn handshake(
        &self,
        client_id: &str,
        payload: &AuthenticatePayload,
    ) -> Result<Option<(ServerHello, Session)>, HookError>;
}

/// The built-in handshake: ECDH P-256 + HKDF-SHA256 + AES-256-GCM, in the profile the client
/// asks for (`authenticate` without `profile`: compatibility; `hello` with `sealwire-v2`:
/// hardened).
#[derive(Debug, Clone, Default)]
pub struct EcdhHandshake {
    config: HandshakeConfig,
}

impl EcdhHandshake {
    /// A handshake with the given parameters.
    #[must_use]
    pub fn new(config: HandshakeConfig) -> Self {
        Self { config }
    }
}

impl Handshake for EcdhHandshake {
    fn handshake(
        &self,
        client_id: &str,
        payload: &AuthenticatePayload,
    ) -> Result<Option<(ServerHello, Session)>, HookError> {
        let Some(key) = payload.public_key.as_deref() else {
            return Ok(None);
        };
        let profile = payload.profile.as_deref();
        server_handshake(&self.config, client_id, key, profile, &mut rand::rng())
            .map(Some)
            .map_err(HookError::new)
    }
}

/// The hooks of one server.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) authenticator: Option<Arc<dyn Authenticator>>,
    pub(crate) room_validator: Option<Arc<dyn RoomValidator>>,
    pub(crate) connected: Option<Arc<dyn ConnectedHook>>,
    pub(crate) disconnected: Option<Arc<dyn DisconnectedHook>>,
    pub(crate) message: Option<Arc<dyn MessageHandler>>,
    /// Typed handlers by event name; they take precedence over `message`.
    pub(crate) events: std::collections::HashMap<String, Arc<dyn EventRoute>>,
    pub(crate) transformer: Option<Arc<dyn OutboundTransformer>>,
    pub(crate) handshake: Option<Arc<dyn Handshake>>,
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::HookError;

    #[test]
    fn hook_errors_show_their_message_and_keep_the_source_chain() {
        assert_eq!(HookError::new("boom").to_string(), "boom");
        assert!(HookError::from("boom").source().is_none());

        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such user");
        let wrapped = HookError::from(io);
        assert_eq!(wrapped.to_string(), "no such user");

        let cause = std::io::Error::other("connection reset");
        let e = HookError::context("user lookup failed", cause);
        assert_eq!(e.to_string(), "user lookup failed");
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("connection reset")
        );
    }
}
