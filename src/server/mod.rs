//! The server core: the cheap-clone [`Server`] handle, its builder, the connection actor and
//! fan-out. Transport-agnostic: a connection runs on any [`FrameSocket`] (frames in, frames
//! out, close), whichever door it came through.

mod allowance;
mod auth;
mod auth_request;
mod builder;
mod bus;
mod catch_up;
mod config;
mod connection;
mod delivery;
mod dispatch;
mod history;
mod hook_error;
mod hooks;
mod jwks;
mod login;
mod metrics;
mod outbox;
mod policy;
mod recovery;
mod registry;
mod render;
mod room_keys;
mod socket;
mod socket_ids;
mod sweep;
mod turns;
mod write;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{DevAuth, JwtAuth, JwtRules};
pub use builder::ServerBuilder;
pub use bus::{
    Bus, BusError, BusInbox, BusStats, BusStatus, LocalBus, RETIRED_NAMES_KEPT_FOR,
    RETIRED_NAMES_MAX,
};
pub use config::{
    ConfigError, MIN_MAX_CONNECTIONS, RESERVED_FDS, ServerConfig, default_max_connections,
};
pub use delivery::{HistoryEntry, HistoryPage, SendError};
pub use history::{HistoryConfig, HistoryError, HistoryStore, KeptPage};
pub use hooks::{
    AuthRequest, Authenticator, BoxFuture, ClientInfo, ConnectedHook, DisconnectedHook,
    EcdhHandshake, Event, GlobRooms, Handshake, HookError, Identity, InboundMessage,
    MessageHandler, OutboundTransformer, RoomValidator, UpgradeHead,
};
pub use jwks::{JwksAuth, JwksError, JwksOptions};
pub use policy::{EncryptionPolicy, Offer};
pub use registry::{
    ClientSnapshot, ClientState, Counts, Interest, MAX_ROOM_NAME, is_client_id_shaped,
    joinable_room_name, valid_room_name,
};
pub use room_keys::RoomKeyConfig;
pub use socket::{FrameSocket, Incoming, Outgoing, SocketError, WrittenWith};

use crate::protocol::BusTarget;
use hooks::Hooks;
use registry::Registry;

/// A running sealwire server. Cheap to clone: every clone is the same server.
///
/// Build one with [`Server::builder`], mount it with [`crate::transport::router`], and use it
/// anywhere to send messages.
#[derive(Clone)]
pub struct Server(Arc<Shared>);

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("id", &self.0.server_id)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) server_id: String,
    pub(crate) config: ServerConfig,
    pub(crate) hooks: Hooks,
    registry: Mutex<Registry>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) epoch: Instant,
    /// Set once the bus has started and the sweeper runs.
    started: tokio::sync::OnceCell<()>,
    /// A graceful shutdown is closing clients gradually (`ServerConfig::drain`).
    draining: std::sync::atomic::AtomicBool,
    /// WebSocket connections accepted by the transport and not yet finished, counted from
    /// the upgrade on (the registry only sees them once the upgrade completes).
    sockets: std::sync::atomic::AtomicUsize,
    /// Connections counted as `sockets`, by peer address; only kept when
    /// `max_connections_per_ip` is set. An address leaves the map with its last connection.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// This server's metrics (`GET /metrics`).
    pub(crate) metrics: metrics::Metrics,
    /// Message history, when any stream keeps it.
    pub(crate) history: Option<history::Keeper>,
    /// Room keys, when some rooms use them.
    pub(crate) room_keys: Option<room_keys::RoomKeys>,
    /// Publishing turns: publishers yield to the connections during a burst.
    pub(crate) turns: turns::Turns,
}

/// A reserved place under `ServerConfig::max_connections` (and `max_connections_per_ip`),
/// held by a connection from its upgrade until its task ends.
pub(crate) struct ConnectionSlot {
    shared: Arc<Shared>,
    /// The address counted under `max_connections_per_ip`, if any.
    ip: Option<IpAddr>,
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSlot")
            .field("ip", &self.ip)
            .finish()
    }
}

/// Why [`Server::try_reserve_slot`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotRefused {
    /// `max_connections` reached.
    Full,
    /// `max_connections_per_ip` reached for the peer's address.
    PerIp,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self.shared.per_ip_counts();
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        self.shared
            .sockets
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Server {
    /// Starts building a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// This instance's random id (the `serverId` on the bus).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.0.server_id
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    /// Connects the bus and starts the heartbeat sweeper. Called by the transport's `serve`
    /// and `router`; call it yourself first to handle a start error. Idempotent.
    ///
    /// # Errors
    /// [`BusError`] when the bus cannot start.
    ///
    /// The server reports ready only once the bus has started; a failed start can be retried.
    pub async fn start(&self) -> Result<(), BusError> {
        self.0.started.get_or_try_init(|| self.start_once()).await?;
        Ok(())
    }

    async fn start_once(&self) -> Result<(), BusError> {
        if self.0.config.encryption.handshakes() {
            let backend = self.0.config.handshake.backend;
            // The first handshake would otherwise pay for the backend's one-time setup.
            let _ = tokio::task::spawn_blocking(move || backend.warm_up()).await;
        }
        let weak = Arc::downgrade(&self.0);
        let weak2 = weak.clone();
        let weak3 = weak.clone();
        let inbox = BusInbox::paced(
            move |env| {
                weak.upgrade()
                    .is_some_and(|shared| Server(shared).deliver_remote(env))
            },
            move || {
                weak2
                    .upgrade()
                    .map(|s| s.registry().interests())
                    .unwrap_or_default()
            },
        )
        .on_resubscribed(move || {
            let server = weak3.upgrade().map(Server);
            Box::pin(async move {
                if let Some(server) = server {
                    server.catch_up().await;
                }
            })
        });
        self.0.bus.start(inbox).await?;
        let me = self.clone();
        self.0.tracker.spawn(async move { me.sweep_loop().await });
        Ok(())
    }

    /// Whether the server is accepting connections (started and not shutting down).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.0.started.initialized()
            && !self.0.shutdown.is_cancelled()
            && !self.0.draining.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Reserves a place for one more WebSocket from `remote`, refused at `max_connections`
    /// or at `max_connections_per_ip` for that address (when both are known). Checking and
    /// counting in one atomic step keeps a burst of concurrent upgrades under the limits.
    pub(crate) fn try_reserve_slot(
        &self,
        remote: Option<IpAddr>,
    ) -> Result<ConnectionSlot, SlotRefused> {
        let max = self.0.config.max_connections.unwrap_or(usize::MAX);
        let ip = self
            .0
            .config
            .max_connections_per_ip
            .and(remote)
            .map(|ip| ip.to_canonical());
        // Held while counting, so the per-address count and the total agree.
        let mut per_ip = ip.map(|_| self.0.per_ip_counts());
        if let (Some(ip), Some(counts), Some(cap)) =
            (ip, per_ip.as_ref(), self.0.config.max_connections_per_ip)
            && counts.get(&ip).copied().unwrap_or(0) >= cap
        {
            return Err(SlotRefused::PerIp);
        }
        self.0
            .sockets
            .fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |n| (n < max).then_some(n + 1),
            )
            .map_err(|_| SlotRefused::Full)?;
        if let (Some(ip), Some(counts)) = (ip, per_ip.as_mut()) {
            *counts.entry(ip).or_insert(0) += 1;
        }
        drop(per_ip);
        Ok(ConnectionSlot {
            shared: Arc::clone(&self.0),
            ip,
        })
    }

    /// The metrics page in the Prometheus text format (what `GET /metrics` serves), and its
    /// content type.
    #[must_use]
    pub fn render_metrics(&self) -> (String, &'static str) {
        let counts = self.counts();
        // Each queue is read under its own short lock, after the registry's is released.
        let mut outbox = metrics::OutboxSample::default();
        let handles = self.0.registry().handles();
        for h in handles {
            let (messages, bytes) = h.queued();
            outbox.messages += messages;
            outbox.bytes += bytes;
            outbox.deepest = outbox.deepest.max(messages);
        }
        let sample = metrics::Sample {
            authenticating: counts.clients.saturating_sub(counts.authenticated),
            authenticated: counts.authenticated,
            bus: self.0.bus.stats(),
            bus_connected: self.0.bus.status().connected,
            outbox,
            history: self.0.history.as_ref().and_then(|h| {
                let (streams, entries) = h.sizes()?;
                Some(metrics::HistorySample { streams, entries })
            }),
            history_unheld: self.0.history.as_ref().map_or(0, |h| h.unheld()),
        };
        (self.0.metrics.render(&sample), metrics::CONTENT_TYPE)
    }

    /// Bus health.
    #[must_use]
    pub fn bus_status(&self) -> BusStatus {
        self.0.bus.status()
    }

    /// The bus's counters (publishes, receipts, rejections, reconnects), when it keeps any.
    #[must_use]
    pub fn bus_stats(&self) -> Option<BusStats> {
        self.0.bus.stats()
    }

    /// Runs one connection to completion on `socket`: a transport of the embedder's own, or a
    /// tungstenite WebSocket wrapped in `transport::WsSocket` (tests do this).
    ///
    /// When the server closes the client as a slow consumer (4005), it drops the messages still
    /// queued for it and asks the socket to drop what it buffers but has not sent
    /// ([`FrameSocket::discard_unsent`]); a socket that cannot makes the close frame wait
    /// behind that, and a client that reads again late may see the connection end without it
    /// (`docs/PROTOCOL.md`, "Slow consumers").
    pub fn serve_socket<S>(
        &self,
        socket: S,
        remote_addr: Option<SocketAddr>,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        S: FrameSocket + 'static,
    {
        connection::run(self.clone(), socket, remote_addr, None)
    }

    /// Like [`Server::serve_socket`], for a socket opened by the HTTP request `upgrade`:
    /// the authenticate hook gets it in [`AuthRequest::upgrade`].
    pub fn serve_upgraded<S>(
        &self,
        socket: S,
        remote_addr: Option<SocketAddr>,
        upgrade: Arc<UpgradeHead>,
    ) -> impl Future<Output = ()> + Send + 'static
    where
        S: FrameSocket + 'static,
    {
        connection::run(self.clone(), socket, remote_addr, Some(upgrade))
    }

    /// Spawns a task the shutdown waits for (connection tasks use this).
    pub fn spawn_tracked<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.tracker.spawn(fut);
    }

    /// Counts of clients, users and rooms on this instance.
    #[must_use]
    pub fn counts(&self) -> Counts {
        self.0.registry().counts()
    }

    /// Every client on this instance.
    #[must_use]
    pub fn clients(&self) -> Vec<ClientSnapshot> {
        self.0.registry().snapshot()
    }

    /// Rooms of one client, named by its id or alias (`None` for an unknown client).
    #[must_use]
    pub fn client_rooms(&self, client_id: &str) -> Option<Vec<String>> {
        let reg = self.0.registry();
        reg.rooms_of(&reg.canonical(client_id)?)
    }

    /// Info of an authenticated client, named by its id or alias.
    #[must_use]
    pub fn client_info(&self, client_id: &str) -> Option<Arc<ClientInfo>> {
        let reg = self.0.registry();
        reg.info(&reg.canonical(client_id)?)
    }

    /// A future that resolves once shutdown has begun.
    pub fn shutdown_started(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.0.shutdown.clone().cancelled_owned()
    }

    /// Closes every socket with 1001 after what was queued for it, waits for the connection
    /// tasks and their disconnect hooks, then stops the bus. What has not ended within
    /// `shutdown_timeout` (a slow hook, a client that does not read) is closed at once, and
    /// given one more second.
    pub async fn shutdown(&self) {
        use crate::protocol::CloseCode::GoingAway;
        if !self.0.shutdown.is_cancelled() {
            self.drain().await;
        }
        // Connection tasks learn of the shutdown through their outbox; one registered after
        // this sweep checks the cancellation itself (`connection::run`).
        self.0.shutdown.cancel();
        for h in self.0.registry().handles() {
            h.close_after_flush(GoingAway);
        }
        self.0.tracker.close();
        let wait = |limit| tokio::time::timeout(limit, self.0.tracker.wait());
        if wait(self.0.config.shutdown_timeout).await.is_err() {
            for h in self.0.registry().handles() {
                h.close(GoingAway);
            }
            if wait(Duration::from_secs(1)).await.is_err() {
                tracing::warn!(
                    remaining = self.0.tracker.len(),
                    "connection tasks still running after the shutdown timeout"
                );
            }
        }
        self.0.bus.shutdown().await;
    }

    /// The drain phase of a graceful shutdown: stop reporting ready, then close the
    /// connected clients (1001, after what is queued for them) in slices spread over
    /// `ServerConfig::drain`. Delivery goes on meanwhile for the clients not yet closed.
    async fn drain(&self) {
        let over = self.0.config.drain;
        if over.is_zero()
            || self
                .0
                .draining
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let handles = self.0.registry().handles();
        // A slice every 50 ms at most, so that thousands of clients do not mean thousands of
        // timer wake-ups.
        let slices = usize::try_from(over.as_millis() / 50)
            .unwrap_or(usize::MAX)
            .clamp(1, handles.len().max(1));
        let per_slice = handles.len().div_ceil(slices).max(1);
        let pause = over / u32::try_from(slices).unwrap_or(u32::MAX);
        tracing::info!(clients = handles.len(), ?over, slices, "draining");
        for slice in handles.chunks(per_slice) {
            for h in slice {
                h.close_after_flush(crate::protocol::CloseCode::GoingAway);
            }
            tokio::time::sleep(pause).await;
        }
    }
}

impl Shared {
    /// Locks the indexes. Never hold the guard across an `.await`.
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the indexes half-updated in a way that
        // matters more than losing the server, so poisoning is ignored.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn per_ip_counts(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the indexes under the registry lock, releases the lock, then forwards the
    /// interest changes `f` recorded to the bus. Every registry mutation that can gain or
    /// lose a room/user/client goes through here, so no change is forgotten and the bus is
    /// never called with the lock held.
    pub(crate) fn update_registry<R>(
        &self,
        f: impl FnOnce(&mut Registry, &mut Vec<Interest>) -> R,
    ) -> R {
        let mut changes = Vec::new();
        let out = f(&mut self.registry(), &mut changes);
        self.apply_interest(&changes);
        out
    }

    /// Forwards interest changes to the bus (after the registry lock is released), and wipes
    /// the room key of a room this instance no longer has a member of.
    fn apply_interest(&self, changes: &[Interest]) {
        for c in changes {
            if let (Some(keys), Interest::Lost(BusTarget::Room(room))) = (&self.room_keys, c) {
                keys.forget(room);
            }
            self.bus.interest(c);
        }
    }
}
