//! The socket ids the clients of an in-process hub hold, and those they held lately.
//!
//! A `socket.id` names a room that is its socket's alone. Once the socket has gone, a send
//! that still names it (a backend that looked the id up a moment earlier) must reach nobody,
//! so the name stays unjoinable for [`RETIRED_NAMES_KEPT_FOR`] after its socket left. The
//! in-process hub keeps at most [`RETIRED_NAMES_MAX`] of them (the oldest go first), a few
//! megabytes; the Redis bus keeps them as keys with that expiry.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a `socket.id` stays unjoinable after its socket left (both buses' default).
pub const RETIRED_NAMES_KEPT_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// The most retired names the in-process hub remembers.
pub const RETIRED_NAMES_MAX: usize = 200_000;

/// Held names, and retired ones with the time they may be forgotten.
#[derive(Default)]
pub(super) struct HeldNames {
    held: HashSet<String>,
    /// A retired name and until when it stays unjoinable.
    retired: HashMap<String, Instant>,
    /// The retired names in the order they retired (an entry whose name retired again later,
    /// or was held again, is skipped when it comes up).
    order: VecDeque<(Instant, String)>,
}

impl HeldNames {
    /// `name` is held (its socket is here).
    pub(super) fn hold(&mut self, name: &str) {
        self.retired.remove(name);
        self.held.insert(name.to_owned());
    }

    /// `name`'s socket left at `now`: it stays unjoinable for [`RETIRED_NAMES_KEPT_FOR`].
    pub(super) fn retire(&mut self, name: &str, now: Instant) {
        if !self.held.remove(name) {
            return;
        }
        let until = now + RETIRED_NAMES_KEPT_FOR;
        self.retired.insert(name.to_owned(), until);
        self.order.push_back((until, name.to_owned()));
        self.forget(now);
    }

    /// Which of `names` are held or retired, as of `now`.
    pub(super) fn in_use(&mut self, names: Vec<String>, now: Instant) -> HashSet<String> {
        self.forget(now);
        names
            .into_iter()
            .filter(|n| self.held.contains(n) || self.retired.contains_key(n))
            .collect()
    }

    /// Forgets the retired names past their time, and the oldest past the cap.
    fn forget(&mut self, now: Instant) {
        while let Some((until, name)) = self.order.front() {
            let expired = *until <= now;
            if !expired && self.retired.len() <= RETIRED_NAMES_MAX {
                break;
            }
            // Only the entry that set the name's current expiry removes it.
            if self.retired.get(name) == Some(until) {
                self.retired.remove(name);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_name_stays_in_use_for_a_day_after_it_is_given_up() {
        let t0 = Instant::now();
        let mut n = HeldNames::default();
        n.hold("a");
        assert_eq!(n.in_use(names(&["a", "b"]), t0).len(), 1);
        n.retire("a", t0);
        let later = t0 + RETIRED_NAMES_KEPT_FOR - Duration::from_secs(1);
        assert!(n.in_use(names(&["a"]), later).contains("a"));
        assert!(
            n.in_use(names(&["a"]), t0 + RETIRED_NAMES_KEPT_FOR)
                .is_empty()
        );
        assert!(n.retired.is_empty() && n.order.is_empty());
        // A name never held is not retired by a release.
        n.retire("never", t0);
        assert!(n.in_use(names(&["never"]), t0).is_empty());
    }

    #[test]
    fn a_name_held_again_is_not_forgotten_by_its_old_retirement() {
        let t0 = Instant::now();
        let mut n = HeldNames::default();
        n.hold("a");
        n.retire("a", t0);
        n.hold("a");
        let after = t0 + RETIRED_NAMES_KEPT_FOR + Duration::from_secs(1);
        assert!(n.in_use(names(&["a"]), after).contains("a"));
        n.retire("a", after);
        assert!(
            n.in_use(names(&["a"]), after + Duration::from_secs(1))
                .contains("a")
        );
    }

    #[test]
    fn the_oldest_retired_names_go_first_past_the_cap() {
        let t0 = Instant::now();
        let mut n = HeldNames::default();
        for i in 0..=RETIRED_NAMES_MAX {
            let name = format!("n{i}");
            n.hold(&name);
            n.retire(&name, t0);
        }
        assert_eq!(n.retired.len(), RETIRED_NAMES_MAX);
        let in_use = n.in_use(names(&["n0", "n1", &format!("n{RETIRED_NAMES_MAX}")]), t0);
        assert_eq!(in_use.len(), 2, "{in_use:?}");
        assert!(!in_use.contains("n0"));
    }
}
