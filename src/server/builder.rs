//! [`ServerBuilder`]: hooks and configuration in, a [`Server`] out.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::hooks::{
    Authenticator, ClientInfo, EcdhHandshake, Event, EventRoute, Handshake, Hooks, InboundMessage,
    OutboundTransformer, RoomValidator, Typed,
};
use super::{Bus, ConfigError, HistoryStore, LocalBus, Server, ServerConfig, Shared};
use crate::protocol::{CloseCode, event};

/// Inbound event names the server handles itself: a typed handler for one would never run.
const SYSTEM_EVENTS: [&str; 9] = [
    event::AUTHENTICATE,
    event::CONNECTED,
    event::DISCONNECT,
    event::ENCRYPTED,
    event::HEARTBEAT,
    event::JOIN,
    event::LEAVE,
    event::REFRESH,
    event::REFRESHED,
];

/// Builds a [`Server`]. Only the authenticate hook is required.
#[derive(Default)]
#[must_use]
pub struct ServerBuilder {
    config: ServerConfig,
    hooks: Hooks,
    custom_handshake: bool,
    bus: Option<Arc<dyn Bus>>,
    history_store: Option<Arc<dyn HistoryStore>>,
    server_id: Option<String>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`ServerConfig::require_encrypted_inbound`]: refuse plaintext application events
    /// from encrypted clients of every profile, not only the hardened one.
    pub fn require_encrypted_inbound(mut self, on: bool) -> Self {
        self.config.require_encrypted_inbound = on;
        self
    }

    /// Edits the configuration in place.
    pub fn configure(mut self, f: impl FnOnce(&mut ServerConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Sets `ServerConfig::max_connections_per_ip`: upgrades from an address that already
    /// has `max` WebSockets open are refused with HTTP 429.
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.config.max_connections_per_ip = Some(max);
        self
    }

    /// Sets the authenticate hook (required).
    pub fn authenticate(mut self, hook: impl Authenticator) -> Self {
        self.hooks.authenticator = Some(Arc::new(hook));
        self
    }

    /// Sets the room-validation hook; without one, clients cannot join rooms themselves.
    pub fn validate_rooms(mut self, hook: impl RoomValidator) -> Self {
        self.hooks.room_validator = Some(Arc::new(hook));
        self
    }

    /// Sets the client-connected hook ([`ConnectedHook`](super::ConnectedHook)). The closure's
    /// argument types are inferred: `.on_connected(|server, client| async move { .. })`.
    pub fn on_connected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Server, Arc<ClientInfo>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.connected = Some(Arc::new(hook));
        self
    }

    /// Sets the client-disconnected hook ([`DisconnectedHook`](super::DisconnectedHook)). The
    /// closure's argument types are inferred: `.on_disconnected(|client, code| async move { .. })`.
    pub fn on_disconnected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Arc<ClientInfo>, CloseCode) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.disconnected = Some(Arc::new(hook));
        self
    }

    /// Sets the catch-all handler for custom events
    /// ([`MessageHandler`](super::MessageHandler)): it gets every custom event that has no
    /// typed handler ([`ServerBuilder::on`]), with its payload as untyped JSON. The closure's
    /// argument types are inferred: `.on_message(|server, msg| async move { .. })`.
    pub fn on_message<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Server, InboundMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.message = Some(Arc::new(hook));
        self
    }

    /// Handles the custom event `event` with a typed payload: its `data` (`null` when absent)
    /// is decoded into `T` and the handler gets it as an [`Event<T>`]. Events with a typed
    /// handler never reach the catch-all [`ServerBuilder::on_message`]; registering the same
    /// name again replaces the handler.
    ///
    /// A payload that does not decode into `T` does not run the handler: the sender gets the
    /// error `Invalid message format` and the connection stays open (`docs/PROTOCOL.md`, §7).
    ///
    /// System event names (`join`, `leave`, `refresh`, `heartbeat`, `disconnect`,
    /// `authenticate`, `connected`, `encrypted`, `refreshed`) and names that are empty or
    /// longer than 256 characters make [`ServerBuilder::build`] fail with
    /// [`ConfigError::InvalidEvent`].
    ///
    /// ```
    /// use sealwire::publish::Publish;
    /// use sealwire::server::{Event, Server};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Chat {
    ///     room: String,
    ///     text: String,
    /// }
    ///
    /// # fn auth(_: sealwire::server::AuthRequest) -> std::future::Ready<Result<Option<sealwire::server::Identity>, sealwire::HookError>> { std::future::ready(Ok(None)) }
    /// let server = Server::builder()
    ///     .authenticate(auth)
    ///     .on("chat", |server, chat: Event<Chat>| async move {
    ///         let line = serde_json::json!({ "from": chat.client.user_id, "text": chat.data.text });
    ///         let _ = server.to_room(&chat.data.room).emit("chat", &line).await;
    ///     })
    ///     .build()?;
    /// # let _ = server;
    /// # Ok::<(), sealwire::ConfigError>(())
    /// ```
    pub fn on<T, F, Fut>(mut self, event: impl Into<String>, handler: F) -> Self
    where
        T: serde::de::DeserializeOwned + 'static,
        F: Fn(Server, Event<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let route: Arc<dyn EventRoute> = Arc::new(Typed::new(handler));
        self.hooks.events.insert(event.into(), route);
        self
    }

    /// Sets a per-client outbound transformer (runs before the built-in encryptor).
    pub fn outbound_transformer(mut self, hook: impl OutboundTransformer) -> Self {
        self.hooks.transformer = Some(Arc::new(hook));
        self
    }

    /// Replaces the built-in ECDH handshake. It runs only when the encryption policy allows a
    /// handshake, and cannot downgrade a client that offered key material (see
    /// [`EncryptionPolicy`](super::EncryptionPolicy)).
    pub fn handshake(mut self, hook: impl Handshake) -> Self {
        self.hooks.handshake = Some(Arc::new(hook));
        self.custom_handshake = true;
        self
    }

    /// Sets the bus (defaults to a private [`LocalBus`]).
    pub fn bus(mut self, bus: impl Bus) -> Self {
        self.bus = Some(Arc::new(bus));
        self
    }

    /// Sets the bus from a shared pointer.
    pub fn bus_arc(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Keeps history ([`ServerConfig::history`](super::ServerConfig::history)) in `store`,
    /// shared by every instance, instead of in process memory. The store publishes kept
    /// publications on the bus itself: give every instance the same store backend and the
    /// same bus (the Redis bus's [`history_store`](crate::bus::RedisBus::history_store)).
    pub fn history_store(mut self, store: impl HistoryStore) -> Self {
        self.history_store = Some(Arc::new(store));
        self
    }

    /// Fixes the server id (defaults to a random UUID).
    pub fn server_id(mut self, id: impl Into<String>) -> Self {
        self.server_id = Some(id.into());
        self
    }

    /// Validates and builds.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing authenticate hook or an invalid configuration.
    pub fn build(mut self) -> Result<Server, ConfigError> {
        self.config.validate()?;
        if self.hooks.authenticator.is_none() {
            return Err(ConfigError::MissingAuthenticator);
        }
        if let Some(name) = self.hooks.events.keys().find(|name| {
            name.is_empty() || name.chars().count() > 256 || SYSTEM_EVENTS.contains(&name.as_str())
        }) {
            return Err(ConfigError::InvalidEvent(name.clone()));
        }
        if !self.config.encryption.handshakes() {
            self.hooks.handshake = None;
        } else if !self.custom_handshake {
            let builtin = EcdhHandshake::new(self.config.handshake.clone());
            self.hooks.handshake = Some(Arc::new(builtin) as Arc<dyn Handshake>);
        }
        let bus = self.bus.unwrap_or_else(|| Arc::new(LocalBus::new()));
        let history = super::history::Keeper::new(
            self.config.history.clone(),
            Arc::clone(&bus),
            self.history_store,
        )
        .map_err(|e| ConfigError::InvalidHistoryPattern(e.to_string()))?;
        let room_keys = super::room_keys::RoomKeys::new(&self.config.room_keys)
            .map_err(|e| ConfigError::InvalidRoomKeyPattern(e.to_string()))?;
        Ok(Server(Arc::new(Shared {
            history,
            room_keys,
            turns: super::turns::Turns::default(),
            server_id: self
                .server_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            config: self.config,
            hooks: self.hooks,
            registry: Mutex::default(),
            bus,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            epoch: std::time::Instant::now(),
            started: tokio::sync::OnceCell::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            sockets: std::sync::atomic::AtomicUsize::new(0),
            per_ip: Mutex::default(),
            metrics: super::metrics::Metrics::new(),
        })))
    }
}
