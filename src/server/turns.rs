//! Publishing turns: how a burst of publications shares the runtime with the connections that
//! deliver it.
//!
//! Queuing a message for a recipient is far cheaper than writing it to the recipient's socket,
//! so a publisher in a tight loop (a thousand publications to a room of a thousand clients)
//! would otherwise fill every outbox before most connection tasks run, and each connection
//! would then drain its whole backlog in one go: the first recipients get everything, the last
//! ones wait for all of that. Publishers therefore yield to the connection tasks once they have
//! queued a turn's worth of messages. A burst's first turn is short (4,096 messages: four
//! publications to a room of a thousand), so that every recipient gets its first messages
//! early; each turn is four times as long as the one before, so that a long burst yields only
//! a few times and is still written in large batches. A publication after a pause starts a
//! new burst. Publications that queue less than a turn in all (most traffic) never yield.
//! See BENCHMARKS.md, "Fair bursts".
//!
//! The turns belong to the server, not to a thread or a task: concurrent publishers share
//! them, and a publisher that resumes on another worker thread after yielding keeps its place.
//! Publications arriving from the bus count too: the bus's receive loop yields through
//! [`BusInbox::deliver_paced`](super::BusInbox::deliver_paced) when a turn is over.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Messages queued in a burst's first turn.
const FIRST_TURN: usize = 4096;
/// How much longer each turn is than the one before.
const GROWTH: usize = 4;
/// A publication this long after the previous one (not counting a yield) starts a new burst.
const BURST_GAP: Duration = Duration::from_millis(2);

#[derive(Debug)]
struct Turn {
    queued: usize,
    size: usize,
    last: Option<Instant>,
    /// The previous publication ended a turn: the time since was spent yielding.
    yielded: bool,
}

/// The publishing turns of one server.
#[derive(Debug)]
pub(crate) struct Turns(Mutex<Turn>);

impl Default for Turns {
    fn default() -> Self {
        Self(Mutex::new(Turn {
            queued: 0,
            size: FIRST_TURN,
            last: None,
            yielded: false,
        }))
    }
}

impl Turns {
    /// Counts `queued` messages against the current turn; true when the turn is over and the
    /// publisher must yield before it goes on.
    pub(crate) fn queued(&self, queued: usize) -> bool {
        if queued == 0 {
            return false;
        }
        let now = Instant::now();
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !t.yielded
            && t.last
                .is_none_or(|last| now.duration_since(last) > BURST_GAP)
        {
            t.queued = 0;
            t.size = FIRST_TURN;
        }
        t.last = Some(now);
        t.queued += queued;
        let over = t.queued >= t.size;
        if over {
            t.queued = 0;
            t.size = t.size.saturating_mul(GROWTH);
        }
        t.yielded = over;
        over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_start_short_and_grow() {
        let t = Turns::default();
        let mut ends = Vec::new();
        let mut queued = 0;
        while ends.len() < 5 {
            queued += 1000;
            if t.queued(1000) {
                ends.push(queued);
            }
        }
        // Turn lengths: the first one, then each `GROWTH` times the one before.
        let lengths: Vec<usize> = ends
            .iter()
            .scan(0, |prev, &end| {
                let len = end - *prev;
                *prev = end;
                Some(len)
            })
            .collect();
        assert!(
            lengths[0] >= FIRST_TURN && lengths[0] < FIRST_TURN + 1000,
            "{lengths:?}"
        );
        let mut size = FIRST_TURN;
        for len in &lengths {
            assert!(*len >= size && *len < size + 1000, "{lengths:?}");
            size *= GROWTH;
        }
        assert!(!t.queued(0), "nothing queued ends no turn");
    }

    #[test]
    fn a_pause_starts_a_new_burst() {
        let t = Turns::default();
        while !t.queued(1000) {}
        while !t.queued(1000) {}
        // The next publication comes after a yield: no reset however long it took.
        std::thread::sleep(BURST_GAP * 2);
        let mut n = 0;
        while !t.queued(1000) {
            n += 1000;
        }
        assert!(
            n + 1000 >= FIRST_TURN * GROWTH * GROWTH,
            "the third turn is longer again ({n})"
        );
        // A pause without a yield before it: a short turn again.
        t.queued(1);
        std::thread::sleep(BURST_GAP * 2);
        let mut n = 0;
        while !t.queued(1000) {
            n += 1000;
        }
        assert!(n < FIRST_TURN, "a new burst's first turn ({n})");
    }
}
