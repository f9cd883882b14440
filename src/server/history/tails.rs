//! Where each stream of the shared store stands on this instance: the last kept publication
//! it delivered. After its bus subscription was down (a Redis restart, a dropped pub/sub
//! connection), the instance reads what came after from the store and delivers it (a
//! catch-up, `Server::catch_up`) before anything newer, and skips the live copies of what the
//! catch-up delivered.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::protocol::Position;

/// One stream's tail.
struct Tail {
    /// The last kept publication delivered here.
    last: Position,
    /// Whether `last` came from a catch-up: until a newer publication arrives live, live
    /// copies at or below it are the catch-up's, and skipped.
    caught_up: bool,
}

/// Per stream, the last kept publication this instance delivered.
#[derive(Default)]
pub(crate) struct Tails(Mutex<HashMap<String, Tail>>);

impl Tails {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Tail>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A kept publication at `at` arrived live: `false` when a catch-up delivered it already
    /// (skip it), else `true`, and it becomes the stream's tail.
    pub(crate) fn arrived(&self, stream: &str, at: &Position) -> bool {
        let mut tails = self.lock();
        if let Some(tail) = tails.get_mut(stream) {
            if tail.caught_up && tail.last.epoch == at.epoch && at.offset <= tail.last.offset {
                return false;
            }
            tail.last.clone_from(at);
            tail.caught_up = false;
        } else {
            let tail = Tail {
                last: at.clone(),
                caught_up: false,
            };
            tails.insert(stream.to_owned(), tail);
        }
        true
    }

    /// A catch-up delivered up to `at`.
    pub(crate) fn caught_up(&self, stream: &str, at: &Position) {
        let tail = Tail {
            last: at.clone(),
            caught_up: true,
        };
        self.lock().insert(stream.to_owned(), tail);
    }

    /// Every stream's tail.
    pub(crate) fn snapshot(&self) -> Vec<(String, Position)> {
        self.lock()
            .iter()
            .map(|(stream, tail)| (stream.clone(), tail.last.clone()))
            .collect()
    }

    /// Forgets the streams `keep` says no: those with no recipient here any more.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.lock().retain(|stream, _| keep(stream));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, offset: u64) -> Position {
        Position {
            offset,
            epoch: epoch.to_owned(),
        }
    }

    #[test]
    fn live_copies_of_what_a_catch_up_delivered_are_skipped_until_a_newer_one() {
        let tails = Tails::default();
        assert!(tails.arrived("s", &at("e", 1)));
        // Out of order arrivals (a publication delivered ahead) are not skipped by themselves.
        assert!(tails.arrived("s", &at("e", 3)));
        assert!(tails.arrived("s", &at("e", 2)));
        tails.caught_up("s", &at("f", 5));
        assert!(!tails.arrived("s", &at("f", 4)));
        assert!(!tails.arrived("s", &at("f", 5)));
        assert!(tails.arrived("s", &at("f", 6)));
        // Past the catch-up, nothing is skipped.
        assert!(tails.arrived("s", &at("f", 5)));
        assert_eq!(tails.snapshot(), vec![("s".to_owned(), at("f", 5))]);
        tails.retain(|_| false);
        assert!(tails.snapshot().is_empty());
    }

    #[test]
    fn another_epoch_is_not_the_catch_ups() {
        let tails = Tails::default();
        tails.caught_up("s", &at("f", 5));
        assert!(tails.arrived("s", &at("g", 1)));
    }
}
