//! [`Departed`]: engine.io sessions whose Socket.IO socket has left the namespace (the client's
//! `41`, the authentication timeout, a refusal, any disconnect), so that their session ends
//! too.
//!
//! socketioxide keeps an engine.io session open for as long as its client answers pings, with
//! or without a socket in a namespace, and gives a namespace socket no way to close it. A
//! session without a socket holds no place under the connection limits (its place went with
//! the socket), so a client could keep any number of them. Over polling, a session lives only
//! through its requests: once its socket has left, and after [`GRACE`] to collect the last
//! words (`unauthenticated`, the `41`), every request naming the session is refused the way
//! engine.io refuses an unknown one (400 `Session ID unknown`). The client can then no longer
//! answer a ping, and engine.io closes the session within its ping interval and timeout.
//!
//! A session upgraded to WebSocket is not reached this way (it sends no more requests); its TCP
//! connection stays counted under `max_tcp_connections` (and `max_tcp_connections_per_ip`).
//!
//! ```text
//! socket leaves ----------> departed(sid): refused from now + GRACE
//! request ?sid=<sid> -----> within GRACE: passed on; after: 400, engine.io's own answer
//! now + GRACE + heartbeat -> forgotten (engine.io closed the session by then)
//! ```

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::str::FromStr;
use std::time::{Duration, Instant};

use socketioxide::socket::Sid;

/// How long a departed session's requests are still served: enough for a client that polls
/// to collect what was emitted last (`unauthenticated`, `sealwire:close`, the `41`).
pub(super) const GRACE: Duration = Duration::from_secs(5);

/// The most sessions remembered at once. Past it the oldest is forgotten first (its session
/// then ends on the client's own terms, as before), so a flood of short sessions costs a
/// bounded amount of memory.
const MAX_REMEMBERED: usize = 65_536;

/// The sessions whose socket left, and from when their requests are refused.
#[derive(Debug)]
pub(super) struct Departed {
    /// How long a session is remembered: [`GRACE`] plus the longest engine.io lets a session
    /// live without a pong.
    remember: Duration,
    /// Per session: from when its requests are refused, and when it is forgotten.
    refused_from: HashMap<Sid, (Instant, Instant)>,
    /// Oldest first: when each session is forgotten.
    order: VecDeque<(Instant, Sid)>,
}

impl Departed {
    /// Remembers sessions for [`GRACE`] plus `heartbeat` (engine.io's ping interval and ping
    /// timeout) and a second.
    pub(super) fn new(heartbeat: Duration) -> Self {
        Self {
            remember: GRACE + heartbeat + Duration::from_secs(1),
            refused_from: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The socket of session `sid` left, at `now`.
    pub(super) fn left(&mut self, sid: Sid, now: Instant) {
        self.forget_old(now);
        if self.order.len() >= MAX_REMEMBERED
            && let Some((until, oldest)) = self.order.pop_front()
            && self
                .refused_from
                .get(&oldest)
                .is_some_and(|(_, at)| *at == until)
        {
            self.refused_from.remove(&oldest);
        }
        if let Entry::Vacant(entry) = self.refused_from.entry(sid) {
            let forget = now + self.remember;
            entry.insert((now + GRACE, forget));
            self.order.push_back((forget, sid));
        }
    }

    /// A socket connected on session `sid` again (a client that left the namespace and came
    /// back on the same session): its requests are served.
    pub(super) fn arrived(&mut self, sid: Sid) {
        self.refused_from.remove(&sid);
    }

    /// Whether a request naming session `sid` is refused at `now`.
    pub(super) fn refuses(&mut self, sid: Sid, now: Instant) -> bool {
        self.forget_old(now);
        self.refused_from
            .get(&sid)
            .is_some_and(|(from, _)| *from <= now)
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some((until, sid)) = self.order.front().copied() {
            if until > now {
                break;
            }
            self.order.pop_front();
            // Unless the session left again since (and is remembered from then).
            if self
                .refused_from
                .get(&sid)
                .is_some_and(|(_, at)| *at == until)
            {
                self.refused_from.remove(&sid);
            }
        }
    }

    /// Sessions remembered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.refused_from.len()
    }
}

/// The session a request's query names, when it names exactly one that is well formed
/// (engine.io refuses the others itself).
pub(super) fn named_session(query: &str) -> Option<Sid> {
    let mut named = query.split('&').filter_map(|p| p.strip_prefix("sid="));
    match (named.next(), named.next()) {
        (Some(sid), None) => Sid::from_str(sid).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: Duration = Duration::from_secs(45);

    #[test]
    fn a_departed_session_is_refused_after_the_grace_and_forgotten_later() {
        let mut departed = Departed::new(HEARTBEAT);
        let (sid, other) = (Sid::new(), Sid::new());
        let t0 = Instant::now();
        departed.left(sid, t0);
        assert!(
            !departed.refuses(sid, t0),
            "the last words can be collected"
        );
        assert!(!departed.refuses(sid, t0 + GRACE - Duration::from_millis(1)));
        assert!(departed.refuses(sid, t0 + GRACE));
        assert!(!departed.refuses(other, t0 + GRACE), "only that session");
        let later = t0 + GRACE + HEARTBEAT + Duration::from_secs(1);
        assert!(!departed.refuses(sid, later), "engine.io closed it by then");
        assert_eq!(departed.len(), 0);
    }

    #[test]
    fn a_session_whose_socket_came_back_is_served_until_it_leaves_again() {
        let mut departed = Departed::new(HEARTBEAT);
        let sid = Sid::new();
        let t0 = Instant::now();
        departed.left(sid, t0);
        departed.arrived(sid);
        assert!(!departed.refuses(sid, t0 + GRACE));
        // It leaves again later: refused a grace after that, and remembered from then on,
        // although the first departure's time to be forgotten comes meanwhile.
        let t1 = t0 + HEARTBEAT;
        departed.left(sid, t1);
        assert!(!departed.refuses(sid, t1 + GRACE - Duration::from_millis(1)));
        assert!(departed.refuses(sid, t1 + GRACE + Duration::from_secs(2)));
    }

    #[test]
    fn memory_is_bounded() {
        let mut departed = Departed::new(HEARTBEAT);
        let t0 = Instant::now();
        let first = Sid::new();
        departed.left(first, t0);
        for _ in 0..MAX_REMEMBERED {
            departed.left(Sid::new(), t0);
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
        departed.left(sid, t0);
        departed.left(sid, t0 + Duration::from_secs(3));
        assert_eq!(departed.order.len(), 1);
        assert!(departed.refuses(sid, t0 + GRACE));
    }

    #[test]
    fn the_session_a_query_names() {
        let sid = Sid::new();
        let named = |q: &str| named_session(q);
        assert_eq!(
            named(&format!("EIO=4&transport=polling&sid={sid}")),
            Some(sid)
        );
        assert_eq!(named(&format!("sid={sid}&EIO=4")), Some(sid));
        assert_eq!(named("EIO=4&transport=polling"), None);
        assert_eq!(named("sid=short"), None);
        assert_eq!(named(&format!("sid={sid}&sid={sid}")), None);
    }
}
