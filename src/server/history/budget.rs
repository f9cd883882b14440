//! [`Budget`]: how many streams this instance may create in a shared store for lookups.
//!
//! A lookup (a client joining a stream with history asks where it stands) creates the stream
//! if the store does not hold it, and the stream then lives in the store for the history TTL.
//! Without a bound, a client free to choose room names could make the store hold streams at
//! the rate it sends joins. So each instance creates at most `max` streams by lookup per
//! window of one TTL; past that, a lookup of a stream the store does not hold is answered
//! without a position. The store does not extend the life of a stream nothing was appended to
//! ([`super::HistoryStore::read`]), so the streams this instance made for lookups and that
//! are still held were made in the last TTL: at most two windows' worth, `2 * max`.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Creations left in the current window.
#[derive(Debug)]
pub(super) struct Budget {
    max: usize,
    window: Duration,
    /// When the current window started, and the creations counted in it.
    state: Mutex<(Instant, usize)>,
}

impl Budget {
    /// `max` creations per `window`.
    pub(super) fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Takes one creation: the window it was taken from, or `None` when this window's are
    /// spent.
    pub(super) fn take(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if now.duration_since(state.0) >= self.window {
            *state = (now, 0);
        }
        if state.1 >= self.max {
            return None;
        }
        state.1 += 1;
        Some(state.0)
    }

    /// Gives back a creation taken from `window` that was not made (the stream was held
    /// already, or the store refused the read). Nothing, once a new window has started.
    pub(super) fn give_back(&self, window: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 == window {
            state.1 = state.1.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_max_creations_and_takes_back_what_was_not_made() {
        let budget = Budget::new(2, Duration::from_secs(3600));
        let window = budget.take().expect("first");
        assert!(budget.take().is_some());
        assert!(budget.take().is_none(), "spent");
        budget.give_back(window);
        assert!(budget.take().is_some(), "one given back");
        assert!(budget.take().is_none());
    }

    #[test]
    fn a_new_window_starts_afresh_and_keeps_what_an_old_one_gives_back() {
        let budget = Budget::new(1, Duration::ZERO);
        let old = budget.take().expect("first");
        let new = budget
            .take()
            .expect("every take starts a new zero-length window");
        assert_ne!(old, new);
        let none = Budget::new(0, Duration::from_secs(3600));
        assert!(none.take().is_none(), "a budget of 0 creates nothing");
        // A unit given back to a window that has ended does not count in the current one.
        let budget = Budget::new(1, Duration::from_secs(3600));
        let window = budget.take().expect("taken");
        budget.give_back(window - Duration::from_secs(1));
        assert!(budget.take().is_none(), "not given back to this window");
    }
}
