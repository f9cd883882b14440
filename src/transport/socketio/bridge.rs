//! One Socket.IO socket as a client of the core: its events become the core's inbound frames,
//! the core's frames become its emits ([`super::translate`]).
//!
//! ```text
//! connect (handshake auth, headers, query)   -> held until `authenticate`, auth timer starts
//! authenticate                               -> core connection starts with
//!                                               authenticate {token, publicKey?, ...auth}
//! core: connected                            -> ping {time}, authenticated {id, time, ...}
//!                                               (encrypted: authenticated, then a sealed ping)
//! core: error + close before authentication  -> unauthenticated {message, time}, disconnect
//! core: close 1001 (the server shuts down)   -> its transport ends, no `41`: a plain
//!                                               socket.io-client reconnects by itself
//! join / leave / other events                -> core frames (dropped before authentication)
//! core: {"event":E,"data":D}                 -> emit E with D (encrypted {iv, ct} when sealed),
//!                                               from the core connection's task, D as written
//!
//! hardened (auth {profile: "sealwire-v2"}):  see [`super::tunnel`]
//! sealwire {hello}                           -> core connection starts with the hello
//! sealwire {frame}                           -> the frame, as is
//! core: hello / sealed records / close       -> sealwire {frame}, sealwire:close {code, reason}
//! ```
//!
//! The core connection writes into the socket directly ([`super::socket`], [`super::outlet`]):
//! a delivery wakes the connection's task and engine.io's writer, nothing in between. A small
//! task per socket ([`super::keepalive`]) sends the periodic `ping` and `heartbeat`.
//!
//! A socket holds a connection slot (`max_connections`, `max_connections_per_ip`, shared
//! with `/ws`) from its engine.io handshake ([`super::admission`]) to its disconnect. The
//! core connection starts only with `authenticate`, so until then the socket is in no index;
//! the bridge's own timer ([`super::SocketIoConfig::auth_timeout`], from the namespace
//! `CONNECT`) disconnects a socket that has not authenticated by then, hook included.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;
use socketioxide::socket::Sid;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::SocketIoConfig;
use super::admission::{Admission, origin_allowed};
use super::credentials;
use super::departed::{asks_websocket, named_session};
use super::farewell::disconnect;
use super::opening::{Doorstep, Refusal, Setup};
use super::outlet::{Live, emit_now};
use super::socket::BridgeSocket;
use super::{keepalive, lenient::Lenient, tunnel};
use crate::protocol::{CloseCode, event, now_iso8601};
use crate::server::{ConnectionSlot, Incoming, Server, UpgradeHead};
use crate::transport::closable::CloseHandle;

/// Which bridge a socket belongs to (kept in the socket's extensions; weak, so that the
/// socket does not keep its bridge alive, nor the bridge's allocation another's address).
#[derive(Clone)]
struct BridgeOf(Weak<Bridge>);

/// What the handshake left for the first `authenticate`.
struct Pending {
    auth: Option<Value>,
    head: Arc<UpgradeHead>,
    remote: Option<SocketAddr>,
}

/// The glue between one Socket.IO socket and its core connection.
pub(super) struct Bridge {
    server: Server,
    config: Arc<SocketIoConfig>,
    /// Reached through the `SocketIo` handle rather than held, so that the socket's handlers,
    /// which hold the bridge, do not keep the socket alive in a cycle.
    io: SocketIo,
    sid: Sid,
    pending: Mutex<Option<Pending>>,
    /// Released when the socket disconnects.
    slot: Mutex<Option<ConnectionSlot>>,
    to_core: Mutex<Option<mpsc::Sender<Incoming>>>,
    /// The core's client id, once authenticated (a hardened socket: from the server hello).
    client_id: OnceLock<String>,
    authenticated: AtomicBool,
    /// Signalled when the core admits the client: the keepalive timers start.
    admission: Notify,
    /// The IGNIS-path client's frames are sealed (its `ping` goes through the core).
    encrypted: AtomicBool,
    /// Cancelled when the socket disconnects or its core connection ends.
    gone: CancellationToken,
    /// The engine.io sessions of this door ([`Bridge::go_away`]).
    sessions: Arc<Admission>,
    /// The server went away from the socket: its transport ends, it is not disconnected.
    went_away: AtomicBool,
    /// The socket asked for the hardened profile ([`tunnel::selects_hardened`]): its frames
    /// travel in `sealwire` events.
    hardened: bool,
    /// The client's events until the socket is connected ([`super::opening`]).
    doorstep: Doorstep<(String, Option<Value>)>,
}

/// Sets up a socket that is connecting to the namespace: checks its origin and the server's
/// readiness, takes its connection slot, registers its handlers and starts its
/// authentication timer. Runs before socketioxide acknowledges the connect (a connect
/// middleware, [`super::opening`]), so that the handlers are in place before the client can
/// send its first event; what the connect handler must do once the socket is connected is
/// returned.
pub(super) fn connect(
    server: &Server,
    config: &Arc<SocketIoConfig>,
    admission: &Arc<Admission>,
    io: SocketIo,
    socket: &SocketRef,
    auth: Option<Value>,
) -> Setup {
    let parts = socket.req_parts();
    // A session opened straight over WebSocket: its connection is the request's, to be
    // closed when the socket leaves (also when it is refused below).
    let query = parts.uri.query().unwrap_or("");
    if asks_websocket(query)
        && named_session(query).is_none()
        && let Some(close) = parts.extensions.get::<CloseHandle>()
    {
        admission.websocket(socket.id, close.clone());
    }
    let remote = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if !origin_allowed(&parts.headers, &config.allowed_origins) {
        tracing::debug!(?remote, "socket.io connection refused (origin)");
        admission.left(socket.id, None);
        return Setup::Refused(Refusal::Quiet);
    }
    if !server.is_ready() {
        // A session opened before the shutdown began: it ends, and its client reconnects.
        return Setup::Refused(Refusal::Unavailable);
    }
    let slot = match admission.take(remote.map(|a| a.ip())) {
        Ok(slot) => slot,
        Err(refused) => {
            tracing::debug!(?remote, ?refused, "socket.io connection over the limits");
            admission.left(socket.id, None);
            return Setup::Refused(Refusal::Unauthenticated("Connection limit reached"));
        }
    };
    let head = Arc::new(UpgradeHead::new(parts.uri.clone(), parts.headers.clone()));
    let hardened = tunnel::selects_hardened(auth.as_ref());
    let bridge = Arc::new(Bridge {
        server: server.clone(),
        config: Arc::clone(config),
        io,
        sid: socket.id,
        pending: Mutex::new(Some(Pending { auth, head, remote })),
        slot: Mutex::new(Some(slot)),
        to_core: Mutex::new(None),
        client_id: OnceLock::new(),
        authenticated: AtomicBool::new(false),
        admission: Notify::new(),
        encrypted: AtomicBool::new(false),
        gone: CancellationToken::new(),
        sessions: Arc::clone(admission),
        went_away: AtomicBool::new(false),
        hardened,
        doorstep: Doorstep::default(),
    });
    socket.extensions.insert(BridgeOf(Arc::downgrade(&bridge)));
    let on_event = Arc::clone(&bridge);
    // Handlers run their synchronous part in arrival order: events reach the core in order
    // (those that come before the socket is connected wait at the doorstep).
    socket.on_fallback(
        move |socketioxide::extract::Event(name): socketioxide::extract::Event,
              socketioxide::extract::TryData::<Lenient>(data)| {
            let bridge = &on_event;
            let data = data.ok().map(Lenient::into_inner);
            bridge
                .doorstep
                .receive((name, data), |(name, data)| bridge.on_event(&name, data));
            std::future::ready(())
        },
    );
    let on_gone = Arc::clone(&bridge);
    let departures = Arc::clone(admission);
    socket.on_disconnect(move |reason: DisconnectReason| {
        let slot = on_gone.on_disconnect();
        // The engine.io session goes too ([`super::departed`]). When it may outlive the
        // socket (a namespace disconnect, either side's), it keeps the socket's place until
        // it is over; when the transport itself ended, the place is free now.
        let lives_on = matches!(
            reason,
            DisconnectReason::ClientNSDisconnect | DisconnectReason::ServerNSDisconnect
        );
        departures.left(on_gone.sid, slot.filter(|_| lives_on));
        std::future::ready(())
    });
    keepalive::start_auth_timer(&bridge);
    Setup::Ready(bridge)
}

impl Bridge {
    /// The socket is connected: the events it sent before go to the core, in order, and so
    /// does every later one.
    pub(super) fn open(self: &Arc<Self>) {
        self.doorstep
            .open(|(name, data)| self.on_event(&name, data));
    }

    /// The socket this bridge was made for, while it is in the namespace. Looked up by its id,
    /// and checked to be this bridge's own: a client can connect the same engine.io session
    /// again after leaving the namespace (`41`, then `40`), and the socket under that id is
    /// then another bridge's, which this one must never emit on or disconnect.
    pub(super) fn socket(&self) -> Option<SocketRef> {
        let socket = self.io.get_socket(self.sid)?;
        let ours = socket
            .extensions
            .get::<BridgeOf>()
            .is_some_and(|of| std::ptr::eq(of.0.as_ptr(), self));
        ours.then_some(socket)
    }

    /// What the socket brought to its handshake, the first time it is asked for (`None`
    /// after that: a connection starts once).
    fn take_pending(&self) -> Option<Pending> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(super) fn is_hardened(&self) -> bool {
        self.hardened
    }

    pub(super) fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    pub(super) fn config(&self) -> &SocketIoConfig {
        &self.config
    }

    pub(super) fn server(&self) -> &Server {
        &self.server
    }

    /// Disconnects the socket from the namespace (`41`), if it is still this bridge's.
    pub(super) fn disconnect(&self) {
        if let Some(socket) = self.socket() {
            disconnect(socket);
        }
    }

    /// The server shuts down: the socket's transport ends, which a plain socket.io-client
    /// reconnects after (a namespace disconnect would be final for it).
    pub(super) fn go_away(&self) {
        self.went_away.store(true, Ordering::Release);
        match self.socket() {
            Some(socket) => self.sessions.end_transport(&socket),
            None => {
                self.sessions.go_away(self.sid);
            }
        }
    }

    /// The engine.io session id (the socket's id).
    pub(super) fn sid(&self) -> Sid {
        self.sid
    }

    /// Cancelled when the socket disconnects or its core connection ends.
    pub(super) fn gone(&self) -> &CancellationToken {
        &self.gone
    }

    /// Resolves once the core has admitted the client.
    pub(super) async fn admission(&self) {
        let admitted = self.admission.notified();
        if !self.is_authenticated() {
            admitted.await;
        }
    }

    /// An event from the client.
    fn on_event(self: &Arc<Self>, name: &str, data: Option<Value>) {
        if self.hardened {
            self.on_tunnel_event(name, data);
            return;
        }
        if name == event::AUTHENTICATE {
            let pending = self.take_pending();
            match pending {
                Some(p) => {
                    let token =
                        credentials::token(p.auth.as_ref(), &p.head.headers, p.head.query());
                    let data = credentials::authenticate_data(p.auth.as_ref(), token);
                    let frame = json!({ "event": event::AUTHENTICATE, "data": data });
                    self.start(p, &frame);
                }
                // As IGNIS: a second `authenticate` is ignored.
                None => tracing::debug!(sid = %self.sid, "repeated authenticate ignored"),
            }
            return;
        }
        if !self.authenticated.load(Ordering::Acquire) {
            // As IGNIS: events before authentication are dropped, not queued.
            tracing::debug!(sid = %self.sid, event = %name, "event before authentication dropped");
            return;
        }
        let frame = match data {
            Some(data) => json!({ "event": name, "data": data }),
            None => json!({ "event": name }),
        };
        let _ = self.to_core(Incoming::Text(frame.to_string().into()));
    }

    /// An event from a hardened socket: only `sealwire` frames count. The first must be the
    /// client `hello`, which starts the core connection; every later one goes to it as is,
    /// and the core's state machine (key confirmation, sealed `authenticate`, record layer)
    /// decides, exactly as on `/ws`.
    fn on_tunnel_event(self: &Arc<Self>, name: &str, data: Option<Value>) {
        if name != tunnel::FRAME_EVENT {
            // No plaintext application event from a hardened socket: everything it means to
            // say travels sealed inside `sealwire`.
            tracing::debug!(sid = %self.sid, event = %name, "event outside the tunnel dropped");
            return;
        }
        let frame = data.unwrap_or(Value::Null);
        let pending = self.take_pending();
        match pending {
            Some(p) if tunnel::is_hello(&frame) => self.start(p, &frame),
            Some(_) => {
                tracing::debug!(sid = %self.sid, "first tunnel frame is not a hello");
                let (error, close) = tunnel::refusal();
                if let Some(socket) = self.socket() {
                    let _ = socket.emit(tunnel::FRAME_EVENT, &error);
                    let _ = socket.emit(tunnel::CLOSE_EVENT, &close);
                    disconnect(socket);
                }
            }
            None => {
                // A record dropped here would leave a gap the core's record layer refuses
                // anyway (4004); disconnect now instead of losing it quietly.
                if !self.to_core(Incoming::Text(frame.to_string().into())) {
                    self.disconnect();
                }
            }
        }
    }

    /// Hands a frame to the core connection; dropped (and logged) when its queue is full or
    /// the connection is gone: then `false`.
    pub(super) fn to_core(&self, msg: Incoming) -> bool {
        let sender = self
            .to_core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(sender) = sender else {
            return false;
        };
        if sender.try_send(msg).is_err() {
            tracing::debug!(sid = %self.sid, "inbound queue full or closed; event dropped");
            return false;
        }
        true
    }

    /// Starts the core connection with its first frame: the `authenticate` built from the
    /// handshake's credentials, or a hardened socket's `hello`.
    fn start(self: &Arc<Self>, pending: Pending, first: &Value) {
        let Pending { head, remote, .. } = pending;
        // Looked up once: the core connection's task emits on it directly.
        let Some(io_socket) = self.socket() else {
            return;
        };
        let outlet = Live::new(Arc::clone(self), io_socket);
        let (socket, to_core) = BridgeSocket::new(outlet, self.hardened, self.config.inbound_queue);
        // A fresh channel has room for the first frame.
        let _ = to_core.try_send(Incoming::Text(first.to_string().into()));
        *self.to_core.lock().unwrap_or_else(PoisonError::into_inner) = Some(to_core);
        if self.gone.is_cancelled() {
            // Disconnected meanwhile: its close found no sender yet, so end it here (its
            // place went with the disconnect).
            drop(self.on_disconnect());
        }
        let conn = self.server.serve_upgraded(socket, remote, head);
        let ended = Arc::clone(self);
        self.server.spawn_tracked(async move {
            Box::pin(conn).await;
            ended.ended();
        });
        self.server
            .spawn_tracked(keepalive::keepalive(Arc::clone(self)));
    }

    /// The core connection ended (and dropped its socket): the timers stop, the socket
    /// disconnects if it has not already (its transport ends instead when the server is
    /// going away).
    fn ended(&self) {
        self.gone.cancel();
        if self.went_away.load(Ordering::Acquire) {
            return;
        }
        // Ended while the server shuts down (its close was not delivered, e.g. a held emit
        // outlasted the shutdown timeout): the client is to reconnect elsewhere.
        if !self.server.is_ready() && self.socket().is_some() {
            self.go_away();
        } else {
            self.disconnect();
        }
    }

    /// The socket is gone (the client left, the engine.io heartbeat failed, or the server
    /// disconnected it): the core connection ends as if the peer had closed. Returns the place
    /// the socket held.
    fn on_disconnect(&self) -> Option<ConnectionSlot> {
        self.gone.cancel();
        self.take_pending();
        let slot = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let sender = self
            .to_core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            // When the queue is full, dropping the sender ends the connection all the same.
            let _ = sender.try_send(Incoming::Close(Some(CloseCode::Normal.code())));
        }
        slot
    }

    /// A hardened socket's client id, as the server `hello` named it.
    pub(super) fn set_tunnel_id(&self, id: &str) {
        let _ = self.client_id.set(id.to_owned());
    }

    /// The core admitted the client `id` (a hardened socket: its sealed `connected` is on its
    /// way): marks the socket authenticated and swaps the server's default rooms for the
    /// Socket.IO ones.
    pub(super) fn admitted(&self, id: &str) {
        let _ = self.client_id.set(id.to_owned());
        // The Socket.IO default rooms replace the server's.
        let io_rooms = &self.config.default_rooms;
        let ws_rooms: Vec<String> = self
            .server
            .config()
            .default_rooms
            .iter()
            .filter(|r| !io_rooms.contains(r))
            .cloned()
            .collect();
        let _ = self.server.leave(id, &ws_rooms);
        let _ = self.server.join(id, io_rooms);
        // As on IGNIS, the `socket.id` the client sees reaches it too (`to(socket.id)`).
        let _ = self.server.alias_client(id, self.sid.as_str());
        self.authenticated.store(true, Ordering::Release);
        self.admission.notify_one();
    }

    /// The core authenticated an IGNIS-path client: `authenticated` (and the first `ping`).
    pub(super) fn authenticated(
        &self,
        socket: &SocketRef,
        payload: &Value,
        encrypted: bool,
    ) -> bool {
        let Some(id) = payload.get("id").and_then(Value::as_str) else {
            return false;
        };
        self.encrypted.store(encrypted, Ordering::Release);
        self.admitted(id);
        if encrypted {
            // `authenticated` is the handshake reply the client derives its key from, so it is
            // plaintext (as `connected` on /ws); every later frame is sealed, pings included.
            if !emit_now(socket, "authenticated", payload) {
                return false;
            }
            keepalive::ping(self);
            true
        } else {
            // As IGNIS: the first ping comes before `authenticated`.
            emit_now(socket, "ping", &json!({ "time": now_iso8601() }))
                && emit_now(socket, "authenticated", payload)
        }
    }

    /// The client's frames are sealed (its `ping` goes through the core).
    pub(super) fn is_encrypted(&self) -> bool {
        self.encrypted.load(Ordering::Acquire)
    }

    /// The core's client id, once admitted.
    pub(super) fn client_id(&self) -> Option<&str> {
        self.client_id.get().map(String::as_str)
    }
}
