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

use socketioxide::socket::Sid;

use super::departed::{Departed, GRACE, asks_websocket, named_session};
use crate::server::{ConnectionSlot, Server, SlotRefused};
use crate::transport::closable::CloseHandle;

/// A WebSocket connection the server goes away from is closed once no write has been made
/// for this long (engine.io's writer has written what was emitted)...
const FLUSH_QUIET: Duration = Duration::from_millis(100);
/// ... or after this long at the latest (the core's default shutdown timeout).
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

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
    /// such a client reconnects after. Its requests are refused from now; its WebSocket
    /// connection, if it has one, is closed once what was emitted to it has been written
    /// ([`CloseHandle::close_when_written`]). A polling client finds out at its next request,
    /// within engine.io's ping interval.
    pub(super) fn go_away(&self, sid: Sid) {
        let Some(close) = self.departed().go_away(sid, Instant::now()) else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    close.close_when_written(FLUSH_QUIET, FLUSH_LIMIT).await;
                });
            }
            Err(_) => close.close(),
        }
    }

    /// Session `sid` runs over the WebSocket connection `close` ends.
    pub(super) fn websocket(&self, sid: Sid, close: CloseHandle) {
        self.departed().websocket(sid, close, Instant::now());
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

/// The middleware in front of the Socket.IO service: a new session needs a slot.
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
                departed.has_left(sid, now)
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
        if upgrade && let Some(close) = req.extensions().get::<CloseHandle>() {
            admission.websocket(sid, close.clone());
        }
    }
    if opens_session(&req) {
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
mod tests {
    use super::*;
    use crate::server::{DevAuth, ServerConfig};

    const HEARTBEAT: Duration = Duration::from_secs(45);

    fn server(max: usize, per_ip: usize) -> Server {
        let config = ServerConfig {
            max_connections: Some(max),
            max_connections_per_ip: Some(per_ip),
            ..ServerConfig::default()
        };
        Server::builder()
            .config(config)
            .authenticate(DevAuth)
            .build()
            .expect("server")
    }

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[tokio::test]
    async fn handshakes_hold_places_until_their_socket_takes_them() {
        let admission = Admission::new(server(3, 2), Duration::from_secs(60), HEARTBEAT);
        admission.open(ip(1)).expect("first");
        admission.open(ip(1)).expect("second");
        assert_eq!(admission.open(ip(1)), Err(SlotRefused::PerIp));
        admission.open(ip(2)).expect("another address");
        assert_eq!(admission.open(ip(3)), Err(SlotRefused::Full));
        assert_eq!(admission.pending(), 3);
        // A socket takes its handshake's slot: no new place is counted.
        let slot = admission.take(ip(1)).expect("taken");
        assert_eq!(admission.pending(), 2);
        assert_eq!(admission.open(ip(3)), Err(SlotRefused::Full));
        drop(slot);
        admission.open(ip(3)).expect("a place was freed");
    }

    #[test]
    fn unused_handshake_slots_expire() {
        let admission = Admission::new(server(1, 1), Duration::ZERO, HEARTBEAT);
        admission.open(ip(1)).expect("first");
        // Expired at once: the next handshake's sweep releases it.
        admission.lock().swept = None;
        admission
            .open(ip(1))
            .expect("the expired slot was released");
        // A socket whose slot expired reserves a fresh one when there is room.
        admission.lock().swept = None;
        let slot = admission.take(ip(1)).expect("fresh slot");
        assert_eq!(admission.pending(), 0);
        drop(slot);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_slots_are_released_without_another_request() {
        let server = server(1, 1);
        let admission = Admission::new(server.clone(), Duration::from_millis(100), HEARTBEAT);
        admission.open(ip(1)).expect("first");
        assert_eq!(
            server.try_reserve_slot(ip(2)).err(),
            Some(SlotRefused::Full)
        );
        // Real time: `Instant::now()` decides expiry; the sweeper's sleep is paused time.
        std::thread::sleep(Duration::from_millis(150));
        tokio::time::sleep(SWEEP_EVERY * 2).await;
        assert_eq!(admission.pending(), 0);
        assert!(server.try_reserve_slot(ip(2)).is_ok(), "the place is free");
        assert!(!admission.lock().sweeper, "the sweeper stopped");
    }

    #[test]
    fn only_get_requests_without_a_session_id_open_sessions() {
        let req = |method: &str, uri: &str| {
            Request::builder()
                .method(method)
                .uri(uri)
                .body(axum::body::Body::empty())
                .expect("request")
        };
        assert!(opens_session(&req("GET", "/io/?EIO=4&transport=polling")));
        assert!(opens_session(&req("GET", "/io/?EIO=4&transport=websocket")));
        let sid = "ABCDEFGHIJ_-1234";
        assert!(!opens_session(&req(
            "GET",
            &format!("/io/?EIO=4&transport=websocket&sid={sid}")
        )));
        assert!(!opens_session(&req(
            "GET",
            &format!("/io/?sid={sid}&EIO=4")
        )));
        assert!(!opens_session(&req("POST", "/io/?EIO=4&transport=polling")));
        // engine.io refuses these (no such session): they open nothing and need no slot.
        for query in ["sid=abc", "sid=", "sid=ABCDEFGHIJ_-123!", "sid=x&sid=y"] {
            assert!(
                !opens_session(&req(
                    "GET",
                    &format!("/io/?EIO=4&transport=polling&{query}")
                )),
                "{query}"
            );
        }
        // Not a `sid=` pair: a handshake.
        for query in ["sid", "xsid=ABCDEFGHIJ_-1234"] {
            assert!(
                opens_session(&req(
                    "GET",
                    &format!("/io/?EIO=4&transport=polling&{query}")
                )),
                "{query}"
            );
        }
    }
}
