//! [`Departed`]: engine.io sessions whose Socket.IO socket has left the namespace (the client's
//! `41`, the authentication timeout, a refusal, any disconnect), so that their session ends
//! too.
//!
//! socketioxide keeps an engine.io session open for as long as its client answers pings, with
//! or without a socket in a namespace, and gives a namespace socket no way to close it. A
//! session without a socket holds no place under the connection limits (its place went with
//! the socket), so a client could keep any number of them. So a session whose socket left is
//! done:
//!
//! - it cannot connect a socket again (its `CONNECT` is refused), nor move to WebSocket;
//! - over polling, after [`GRACE`] to collect the last words (`unauthenticated`, the `41`),
//!   every request naming it is refused the way engine.io refuses an unknown session (400
//!   `Session ID unknown`): the client can no longer answer a ping, and engine.io closes the
//!   session within its heartbeat;
//! - over WebSocket, after the same grace, its connection is closed from the server's side
//!   ([`CloseHandle`], learned when the session's WebSocket was opened).
//!
//! The server going away (a shutdown) ends a session the same way while its socket is still
//! connected ([`Departed::go_away`]): upgrades refused at once, polling requests after the
//! polls that collect what was emitted last, its WebSocket closed once written, with no `41`
//! (a plain socket.io-client reconnects after that, not after a `41`).
//!
//! ```text
//! socket leaves ---------------> left(sid): CONNECT and upgrades refused from now
//! now + GRACE -----------------> polling requests refused (400); its WebSocket closed
//! now + GRACE + heartbeat -----> forgotten (engine.io closed the session by then)
//! ```

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::time::{Duration, Instant};

use socketioxide::socket::Sid;

use crate::server::ConnectionSlot;
use crate::transport::closable::CloseHandle;

/// How long a departed session's requests are still served: enough for a client that polls
/// to collect what was emitted last (`unauthenticated`, `sealwire:close`, the `41`).
pub(super) const GRACE: Duration = Duration::from_secs(5);

/// The most sessions remembered at once (about 100 bytes each). Past it the oldest is
/// forgotten first (its session then ends on the client's own terms), so a flood of short
/// sessions costs a bounded amount of memory: at the default heartbeat this holds the
/// departures of about 5,000 sessions a second.
const MAX_REMEMBERED: usize = 262_144;

/// The WebSocket connections remembered before the gone ones are dropped from the list.
const FIRST_PRUNE: usize = 1024;

/// The sessions whose socket left, and the WebSocket connections of the sessions that have
/// one.
#[derive(Debug)]
pub(super) struct Departed {
    /// How long a session is remembered: [`GRACE`] plus the longest engine.io lets a session
    /// live without a pong.
    remember: Duration,
    /// Per session that left (or that the server went away from): from when its polling
    /// requests are refused, when it is forgotten, and the place it still holds under the connection limits until then (a
    /// polling session whose engine.io session may live on).
    left: HashMap<Sid, (Instant, Instant, Option<ConnectionSlot>)>,
    /// Oldest first: when each session is forgotten.
    order: VecDeque<(Instant, Sid)>,
    /// Per session over WebSocket that has not left: what closes its connection.
    websockets: HashMap<Sid, CloseHandle>,
    /// The size of `websockets` at which the handles of connections that ended are dropped.
    prune_at: usize,
    /// A task releases the places of forgotten sessions while any is held.
    pub(super) sweeping: bool,
}

/// `at + d`, or a day after `at` where that does not fit (a configured duration too large to
/// mean anything but "never").
fn after(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at + Duration::from_secs(86_400))
}

impl Departed {
    /// Remembers sessions for [`GRACE`] plus `heartbeat` (engine.io's ping interval and ping
    /// timeout) and a second.
    pub(super) fn new(heartbeat: Duration) -> Self {
        Self {
            remember: GRACE
                .saturating_add(heartbeat)
                .saturating_add(Duration::from_secs(1)),
            left: HashMap::new(),
            order: VecDeque::new(),
            websockets: HashMap::new(),
            prune_at: FIRST_PRUNE,
            sweeping: false,
        }
    }

    /// Session `sid` runs over the WebSocket connection `close` ends. Ignored for a session
    /// that left (the caller refuses its requests). Whether it was recorded.
    pub(super) fn websocket(&mut self, sid: Sid, close: CloseHandle, now: Instant) -> bool {
        if self.has_left(sid, now) {
            return false;
        }
        if self.websockets.len() >= self.prune_at {
            self.websockets.retain(|_, close| !close.is_gone());
            self.prune_at = (self.websockets.len() * 2).max(FIRST_PRUNE);
        }
        self.websockets.insert(sid, close);
        true
    }

    /// The socket of session `sid` left, at `now`, and `slot` is the place it held. Returns
    /// what closes the session's WebSocket connection, if it has one, with the place, for the
    /// caller to hold until that connection ends (closing it after [`GRACE`]); otherwise the
    /// place stays with the session's entry until it is forgotten.
    pub(super) fn left(
        &mut self,
        sid: Sid,
        slot: Option<ConnectionSlot>,
        now: Instant,
    ) -> Option<(CloseHandle, Option<ConnectionSlot>)> {
        self.forget_old(now);
        let refuse_from = after(now, GRACE);
        if let Some(close) = self.websockets.remove(&sid) {
            self.remember_left(sid, None, now, refuse_from);
            return Some((close, slot));
        }
        self.remember_left(sid, slot, now, refuse_from);
        None
    }

    /// The server is going away from session `sid`, whose socket stays until the session
    /// ends: a move to WebSocket is refused from now, its polling requests from
    /// `refuse_from` (after the polls that collect what was emitted last), and what closes its
    /// WebSocket connection, if it has one, is handed back to be closed once written.
    pub(super) fn go_away(
        &mut self,
        sid: Sid,
        now: Instant,
        refuse_from: Instant,
    ) -> Option<CloseHandle> {
        self.forget_old(now);
        self.remember_left(sid, None, now, refuse_from);
        self.websockets.remove(&sid)
    }

    /// A request of session `sid` asks to move to WebSocket over the connection `close`
    /// ends: refused (`true`) when the session's socket left or the server went away from
    /// it; otherwise the connection is the session's from now on. One step, so that a
    /// departure cannot fall between the check and the record.
    pub(super) fn upgrade(&mut self, sid: Sid, close: Option<CloseHandle>, now: Instant) -> bool {
        match close {
            Some(close) => !self.websocket(sid, close, now),
            None => self.has_left(sid, now),
        }
    }

    fn remember_left(
        &mut self,
        sid: Sid,
        slot: Option<ConnectionSlot>,
        now: Instant,
        refuse_from: Instant,
    ) {
        if self.order.len() >= MAX_REMEMBERED
            && let Some((until, oldest)) = self.order.pop_front()
            && self
                .left
                .get(&oldest)
                .is_some_and(|(_, at, _)| *at == until)
        {
            self.left.remove(&oldest);
        }
        if let Entry::Vacant(entry) = self.left.entry(sid) {
            let forget = after(now, self.remember);
            entry.insert((refuse_from, forget, slot));
            self.order.push_back((forget, sid));
        }
    }

    /// Forgets what is past its time (releasing the places the sessions held); whether any
    /// departed session still holds a place.
    pub(super) fn sweep(&mut self, now: Instant) -> bool {
        self.forget_old(now);
        self.left.values().any(|(_, _, slot)| slot.is_some())
    }

    /// Session `sid`'s client closed its engine.io session itself (a polling `close` packet,
    /// what `socket.close()` sends after its `41`): the place its departed socket still held
    /// is handed back, to be released now rather than when the session is forgotten. The
    /// entry stays, so its requests are refused as before.
    pub(super) fn closed(&mut self, sid: Sid) -> Option<ConnectionSlot> {
        self.left.get_mut(&sid).and_then(|(_, _, slot)| slot.take())
    }

    /// Whether session `sid`'s socket left (its `CONNECT` and its move to WebSocket are
    /// refused).
    pub(super) fn has_left(&mut self, sid: Sid, now: Instant) -> bool {
        self.forget_old(now);
        self.left.contains_key(&sid)
    }

    /// Whether a request naming session `sid` is refused at `now` (its grace is over).
    pub(super) fn refuses(&mut self, sid: Sid, now: Instant) -> bool {
        self.forget_old(now);
        self.left.get(&sid).is_some_and(|(from, _, _)| *from <= now)
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some((until, sid)) = self.order.front().copied() {
            if until > now {
                break;
            }
            self.order.pop_front();
            if self.left.get(&sid).is_some_and(|(_, at, _)| *at == until) {
                self.left.remove(&sid);
            }
        }
    }

    /// Sessions remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.left.len()
    }
}

/// The session a request's query names, read as engine.io reads it: the first `sid=` pair,
/// when its value is a well-formed session id (engine.io refuses a malformed one itself).
pub(super) fn named_session(query: &str) -> Option<Sid> {
    query
        .split('&')
        .find_map(|p| p.strip_prefix("sid="))
        .and_then(|sid| Sid::from_str(sid).ok())
}

/// Whether a request's query asks for the WebSocket transport.
pub(super) fn asks_websocket(query: &str) -> bool {
    query
        .split('&')
        .find_map(|p| p.strip_prefix("transport="))
        .is_some_and(|t| t == "websocket")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::closable::Closable;

    const HEARTBEAT: Duration = Duration::from_secs(45);

    #[test]
    fn a_departed_session_is_refused_after_the_grace_and_forgotten_later() {
        let mut departed = Departed::new(HEARTBEAT);
        let (sid, other) = (Sid::new(), Sid::new());
        let t0 = Instant::now();
        assert!(departed.left(sid, None, t0).is_none(), "no WebSocket known");
        assert!(departed.has_left(sid, t0), "no socket again, no upgrade");
        assert!(
            !departed.refuses(sid, t0),
            "the last words can be collected"
        );
        assert!(!departed.refuses(sid, t0 + GRACE - Duration::from_millis(1)));
        assert!(departed.refuses(sid, t0 + GRACE));
        assert!(!departed.refuses(other, t0 + GRACE), "only that session");
        assert!(!departed.has_left(other, t0 + GRACE));
        let later = t0 + GRACE + HEARTBEAT + Duration::from_secs(1);
        assert!(!departed.refuses(sid, later), "engine.io closed it by then");
        assert_eq!(departed.len(), 0);
    }

    #[test]
    fn a_departing_websocket_session_hands_back_what_closes_it() {
        let mut departed = Departed::new(HEARTBEAT);
        let (sid, other) = (Sid::new(), Sid::new());
        let t0 = Instant::now();
        let (_stream, close) = Closable::new(());
        departed.websocket(sid, close, t0);
        let (close, _slot) = departed.left(sid, None, t0).expect("its connection");
        assert!(!close.is_gone());
        // A session that left is not taken as a WebSocket one afterwards.
        let (_other_stream, late) = Closable::new(());
        departed.websocket(sid, late, t0);
        assert!(departed.websockets.is_empty());
        assert!(departed.left(other, None, t0).is_none());
    }

    #[test]
    fn a_session_gone_away_from_is_refused_after_its_last_polls_and_hands_back_its_connection() {
        let mut departed = Departed::new(HEARTBEAT);
        let (ws, polling) = (Sid::new(), Sid::new());
        let t0 = Instant::now();
        let (_stream, close) = Closable::new(());
        departed.websocket(ws, close, t0);
        let flush = t0 + Duration::from_secs(2);
        assert!(departed.go_away(ws, t0, flush).is_some(), "its connection");
        assert!(
            departed.go_away(polling, t0, flush).is_none(),
            "none over polling"
        );
        for sid in [ws, polling] {
            assert!(departed.has_left(sid, t0), "no move to WebSocket");
            assert!(!departed.refuses(sid, t0), "the last polls are served");
            assert!(departed.refuses(sid, flush));
        }
        // The socket leaves when engine.io ends the session: nothing more to close.
        assert!(departed.left(ws, None, t0).is_none());
        assert!(departed.refuses(ws, flush));
        // A move to WebSocket is checked and recorded in one step.
        let (_stream, late) = Closable::new(());
        assert!(departed.upgrade(polling, Some(late), t0), "refused");
        assert!(departed.websockets.is_empty());
        let fresh = Sid::new();
        let (_stream, close) = Closable::new(());
        assert!(!departed.upgrade(fresh, Some(close), t0));
        assert!(
            departed.go_away(fresh, t0, flush).is_some(),
            "its connection, recorded"
        );
    }

    #[test]
    fn ended_websocket_connections_are_dropped_from_the_list() {
        let mut departed = Departed::new(HEARTBEAT);
        let t0 = Instant::now();
        let mut live = Vec::new();
        for n in 0..FIRST_PRUNE * 3 {
            let (stream, close) = Closable::new(());
            departed.websocket(Sid::new(), close, t0);
            if n % 100 == 0 {
                live.push(stream);
            }
        }
        assert!(
            departed.websockets.len() < FIRST_PRUNE * 2,
            "pruned as it grew"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut departed = Departed::new(HEARTBEAT);
        let t0 = Instant::now();
        let first = Sid::new();
        departed.left(first, None, t0);
        for _ in 0..MAX_REMEMBERED {
            departed.left(Sid::new(), None, t0);
        }
        assert_eq!(departed.len(), MAX_REMEMBERED);
        assert!(
            !departed.refuses(first, t0 + GRACE),
            "the oldest was forgotten"
        );
    }

    #[test]
    fn leaving_twice_keeps_the_first_entry() {
        let mut departed = Departed::new(HEARTBEAT);
        let sid = Sid::new();
        let t0 = Instant::now();
        departed.left(sid, None, t0);
        departed.left(sid, None, t0 + Duration::from_secs(3));
        assert_eq!(departed.order.len(), 1);
        assert!(departed.refuses(sid, t0 + GRACE));
    }

    #[test]
    fn huge_heartbeats_do_not_overflow() {
        let mut departed = Departed::new(Duration::MAX);
        let sid = Sid::new();
        let t0 = Instant::now();
        departed.left(sid, None, t0);
        assert!(departed.refuses(sid, t0 + GRACE));
    }

    #[test]
    fn the_session_a_query_names_as_engine_io_reads_it() {
        let sid = Sid::new();
        let named = |q: &str| named_session(q);
        assert_eq!(
            named(&format!("EIO=4&transport=polling&sid={sid}")),
            Some(sid)
        );
        assert_eq!(named(&format!("sid={sid}&EIO=4")), Some(sid));
        assert_eq!(named("EIO=4&transport=polling"), None);
        assert_eq!(named("sid=short"), None);
        // The first `sid=` decides, as in engine.io: a second one cannot hide the session.
        assert_eq!(named(&format!("sid={sid}&sid=other")), Some(sid));
        assert!(asks_websocket("EIO=4&transport=websocket&sid=x"));
        assert!(!asks_websocket("EIO=4&transport=polling"));
    }
}
