//! Connection limits for Socket.IO sessions from their first request.
//!
//! An engine.io session exists from its handshake (a polling `GET` or a WebSocket upgrade
//! without `sid`), but its socket reaches the bridge ([`super::bridge`]) only once the client
//! sends the Socket.IO `CONNECT`. A session that never does would hold a file descriptor (and,
//! over WebSocket, a task) counted by no limit until engine.io's connect timeout. So the
//! handshake itself reserves the session's place under `max_connections` and
//! `max_connections_per_ip`, shared with `/ws`:
//!
//! ```text
//! GET {path}/?EIO=4&transport=…  (no sid)   -> reserve a slot (refused: 503, nothing opened)
//!                                              held as pending for the connect timeout
//! CONNECT (the bridge's connect handler)    -> takes a pending slot of the same address
//! no CONNECT within the connect timeout     -> engine.io closes the session; the pending
//!                                              slot is released
//! ```
//!
//! Pending slots are matched by address, not by session: a session that connects may take
//! the slot another session of its address reserved first. The counts stay right: every
//! connected socket holds one slot, every session still within its connect window one more.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use socketioxide::TransportType;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;

use super::departed::{Departed, GRACE, asks_websocket, named_session};
use super::farewell::disconnect;
use crate::server::{ConnectionSlot, Server, SlotRefused};
use crate::transport::closable::CloseHandle;

/// A WebSocket connection the server goes away from is closed once no write has been made
/// for this long (engine.io's writer has written what was emitted), or after the core's
/// `shutdown_timeout` at the latest.
const FLUSH_QUIET: Duration = Duration::from_millis(100);

/// How often expired pending slots are looked for (at most; on the next request).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How much longer than the connect timeout a handshake's slot is held: past engine.io's own
/// deadline, so a session is never uncounted while it can still connect.
pub(super) const HOLD_MARGIN: Duration = Duration::from_secs(1);

/// Slots reserved by engine.io handshakes whose socket has not connected yet, and the
/// sessions whose socket has left ([`Departed`]).
pub(super) struct Admission {
    server: Server,
    /// How long a handshake's slot waits for its socket: engine.io's connect timeout.
    hold: Duration,
    state: Mutex<Pending>,
    departed: Mutex<Departed>,
}

#[derive(Default)]
struct Pending {
    /// Per address, oldest first: when each slot expires, and the slot.
    slots: HashMap<Option<IpAddr>, VecDeque<(Instant, ConnectionSlot)>>,
    swept: Option<Instant>,
    /// A task releases expired slots while any are pending (so that they free their places
    /// for `/ws` too, without waiting for the next Socket.IO request).
    sweeper: bool,
}

impl Pending {
    /// Releases the slots whose session can no longer connect (at most once a
    /// [`SWEEP_EVERY`] on the request path).
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|at| now.duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.sweep_now(now);
    }

    fn sweep_now(&mut self, now: Instant) {
        self.swept = Some(now);
        self.slots.retain(|_, queue| {
            while queue.front().is_some_and(|(until, _)| *until <= now) {
                queue.pop_front();
            }
            !queue.is_empty()
        });
    }
}

impl Admission {
    /// Admission for `server`'s Socket.IO sessions, each handshake holding its slot for
    /// `hold` (the connect timeout) unless its socket takes it earlier; `heartbeat` is the
    /// longest engine.io keeps a session that does not answer its pings.
    pub(super) fn new(server: Server, hold: Duration, heartbeat: Duration) -> Arc<Self> {
        Arc::new(Self {
            server,
            hold,
            state: Mutex::new(Pending::default()),
            departed: Mutex::new(Departed::new(heartbeat)),
        })
    }

    fn departed(&self) -> MutexGuard<'_, Departed> {
        self.departed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The socket of session `sid` left the namespace, and `slot` is the place it held: the
    /// session ends ([`super::departed`]). Its `CONNECT` and upgrades are refused from now
    /// on; after [`GRACE`] its polling requests are refused and its WebSocket connection, if
    /// it has one, is closed. The place stays taken until the session is over: until its
    /// WebSocket connection ends, or for a polling session until it is forgotten (engine.io
    /// ended it by then), so that sessions left behind cannot exceed the connection limits.
    pub(super) fn left(self: &Arc<Self>, sid: Sid, slot: Option<ConnectionSlot>) {
        self.server.release_socket_id(sid.as_str());
        let holds = slot.is_some();
        let Some((close, slot)) = self.departed().left(sid, slot, Instant::now()) else {
            if holds {
                self.sweep_departed();
            }
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            close.close();
            return;
        };
        runtime.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(GRACE) => {
                    tracing::debug!(%sid, "closing the websocket of a session whose socket left");
                    close.close();
                }
                () = close.gone() => {}
            }
            // Held until the connection is over.
            drop(slot);
        });
    }

    /// Releases the places of departed polling sessions as they are forgotten, every
    /// [`SWEEP_EVERY`], while any is held.
    fn sweep_departed(self: &Arc<Self>) {
        let mut departed = self.departed();
        if departed.sweeping {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        departed.sweeping = true;
        let admission = Arc::clone(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let mut departed = admission.departed();
                if !departed.sweep(Instant::now()) {
                    departed.sweeping = false;
                    return;
                }
            }
        });
    }

    /// Whether session `sid`'s socket left: a `CONNECT` on it is refused.
    pub(super) fn has_left(&self, sid: Sid) -> bool {
        self.departed().has_left(sid, Instant::now())
    }

    /// The server is going away from session `sid` (a shutdown): instead of a namespace
    /// disconnect, which a plain socket.io-client takes as final, its transport ends, which
    /// such a client reconnects after. A move to WebSocket is refused from now, its polling
    /// requests once the polls that collect what was emitted last have had the core's
    /// `shutdown_timeout`; its WebSocket connection, if one is known, is closed once what was
    /// emitted to it has been written ([`CloseHandle::close_when_written`], within the same
    /// time), by a task the shutdown waits for. Whether a WebSocket connection was known (a
    /// router served without the door's own listener has none to close).
    pub(super) fn go_away(&self, sid: Sid) -> bool {
        let flush = self.server.config().shutdown_timeout;
        let now = Instant::now();
        let Some(close) = self.departed().go_away(sid, now, now + flush) else {
            // A polling session: the shutdown waits out its last polls (the process would
            // otherwise exit under them).
            self.server.spawn_tracked(tokio::time::sleep(flush));
            return false;
        };
        self.server.spawn_tracked(async move {
            close.close_when_written(FLUSH_QUIET, flush).await;
        });
        true
    }

    /// Ends `socket`'s transport as the server goes away ([`Admission::go_away`]); a socket
    /// over a WebSocket connection the door cannot close (a router served by the embedding
    /// application's own listener) is disconnected from the namespace instead.
    pub(super) fn end_transport(&self, socket: &SocketRef) {
        if !self.go_away(socket.id) && socket.transport_type() == TransportType::Websocket {
            disconnect(socket.clone());
        }
    }

    /// Session `sid` runs over the WebSocket connection `close` ends.
    pub(super) fn websocket(&self, sid: Sid, close: CloseHandle) {
        let _ = self.departed().websocket(sid, close, Instant::now());
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new engine.io session from `ip`: reserves its place, or says why not.
    pub(super) fn open(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<(), SlotRefused> {
        let now = Instant::now();
        let mut pending = self.lock();
        pending.sweep(now);
        let slot = self.server.try_reserve_slot(ip)?;
        pending
            .slots
            .entry(ip)
            .or_default()
            .push_back((now + self.hold, slot));
        if !pending.sweeper
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            pending.sweeper = true;
            runtime.spawn(Arc::clone(self).sweeper());
        }
        Ok(())
    }

    /// Releases expired slots every [`SWEEP_EVERY`] until none is pending.
    async fn sweeper(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            let mut pending = self.lock();
            pending.sweep_now(Instant::now());
            if pending.slots.is_empty() {
                pending.sweeper = false;
                return;
            }
        }
    }

    /// A socket from `ip` connected to the namespace: the slot its handshake reserved (the
    /// oldest pending one of its address), or a fresh one when there is none (a session
    /// that connected after its slot expired).
    pub(super) fn take(&self, ip: Option<IpAddr>) -> Result<ConnectionSlot, SlotRefused> {
        let now = Instant::now();
        let mut pending = self.lock();
        pending.sweep(now);
        if let Some(queue) = pending.slots.get_mut(&ip) {
            while let Some((until, slot)) = queue.pop_front() {
                if until > now {
                    if queue.is_empty() {
                        pending.slots.remove(&ip);
                    }
                    return Ok(slot);
                }
            }
            pending.slots.remove(&ip);
        }
        drop(pending);
        self.server.try_reserve_slot(ip)
    }

    /// Slots held for sessions that have not connected (for tests and metrics).
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.lock().slots.values().map(VecDeque::len).sum()
    }
}

/// The same rule as the WebSocket upgrade: with an allowlist, exactly one `Origin`, listed.
pub(super) fn origin_allowed(headers: &http::HeaderMap, allowed: &[String]) -> bool {
    let mut origins = headers.get_all(http::header::ORIGIN).iter();
    allowed.is_empty()
        || matches!((origins.next(), origins.next()), (Some(o), None)
            if crate::transport::config::origin_listed(o.as_bytes(), allowed))
}

/// Whether `req` opens a new engine.io session: a `GET` without a session id (a polling
/// handshake or a WebSocket upgrade straight away). Everything else belongs to a session
/// that exists, or is refused by engine.io.
///
/// The session id is read as engine.io reads it: a `sid=` pair names a session, and one
/// whose value is empty or malformed names none that exists, so engine.io refuses the request
/// (400 `Session ID unknown`) instead of opening a session. Only a `GET` without any `sid=`
/// pair opens one, and takes a slot.
fn opens_session(req: &Request) -> bool {
    req.method() == axum::http::Method::GET && !names_a_session(req.uri().query().unwrap_or(""))
}

/// Whether `query` names an engine.io session (well formed or not).
fn names_a_session(query: &str) -> bool {
    query.split('&').any(|pair| pair.starts_with("sid="))
}

/// The largest polling `POST` body read to see whether it closes its session: a close is
/// `1`, or the last packet of a small payload (`41` + `\x1e` + `1` from `socket.close()`).
const CLOSE_PEEK_BYTES: usize = 64;

/// A small polling `POST` of session `sid`, read whole: whether it carries engine.io's
/// `close` packet, and the request to pass on. Other requests pass as they are.
async fn peek_close(req: Request) -> Result<(Request, bool), Response> {
    let small = req.method() == axum::http::Method::POST
        && req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .is_some_and(|n| n <= CLOSE_PEEK_BYTES);
    if !small {
        return Ok((req, false));
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, CLOSE_PEEK_BYTES).await else {
        return Err(StatusCode::BAD_REQUEST.into_response());
    };
    let closes = bytes.split(|b| *b == 0x1e).any(|packet| packet == b"1");
    Ok((
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        closes,
    ))
}

/// The middleware in front of the Socket.IO service: a new session needs a slot, and a
/// departed session that its client closes gives its place back at once.
pub(super) async fn admit(
    State(admission): State<Arc<Admission>>,
    req: Request,
    next: Next,
) -> Response {
    let query = req.uri().query().unwrap_or("");
    if let Some(sid) = named_session(query) {
        let upgrade = asks_websocket(query);
        let refused = {
            let mut departed = admission.departed();
            let now = Instant::now();
            // Polling requests get the grace; a move to WebSocket would outlive it.
            if upgrade {
                departed.upgrade(sid, req.extensions().get::<CloseHandle>().cloned(), now)
            } else {
                departed.refuses(sid, now)
            }
        };
        if refused {
            tracing::debug!(%sid, "request of a session whose socket left refused");
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(serde_json::json!({ "code": "1", "message": "Session ID unknown" })),
            )
                .into_response();
        }
        let (req, closes) = match peek_close(req).await {
            Ok(peeked) => peeked,
            Err(refused) => return refused,
        };
        let response = next.run(req).await;
        if closes && response.status().is_success() {
            // Released outside the lock (a slot's release takes the server's).
            let slot = admission.departed().closed(sid);
            drop(slot);
        }
        return response;
    }
    if opens_session(&req) {
        // Not started, or shutting down: engine.io-client tries again later (a session opened
        // now would be refused at its `CONNECT`, with a `41` that ends its reconnecting).
        if !admission.server.is_ready() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "message": "Server unavailable" })),
            )
                .into_response();
        }
        let ip = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Err(refused) = admission.open(ip) {
            tracing::debug!(
                ?ip,
                ?refused,
                "socket.io session over the connection limits"
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "message": "Connection limit reached" })),
            )
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests;
