//! [`Allowance`]: how often one connection may ask for work whose cost it chooses (a token
//! bucket). A `refresh` runs the authenticate hook, and a recovery reads history: a client may
//! do either as often as it sends the request, so each connection gets an allowance that
//! refills at a fixed rate and holds at most a burst. What is over the allowance is answered
//! the way a failure is (`Refresh failed`; a stream `recovered: false`), without the work.

use std::time::{Duration, Instant};

/// A burst and the time one unit takes to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rate {
    /// The most units held (and so taken at once).
    pub(super) burst: u32,
    /// One unit comes back per this much time.
    pub(super) every: Duration,
}

/// `refresh` requests: a burst of 5, then one per 5 s. A session refreshes once per token
/// lifetime (the SDKs at 80% of it, and once more halfway to the expiry after a failure), so
/// only tokens shorter than about 6 s come near it.
pub(super) const REFRESHES: Rate = Rate {
    burst: 5,
    every: Duration::from_secs(5),
};

/// Streams a recovery reads with a position (`recover` at authentication or in a `join`):
/// a burst that covers one recovery of everything a client can be in (`max_rooms` rooms, its
/// user's stream and the broadcast stream), then one stream per second. A stream over the
/// allowance is answered `recovered: false` with where it stands, and is not read.
pub(super) fn recoveries(max_rooms: usize) -> Rate {
    Rate {
        burst: u32::try_from(max_rooms.saturating_add(2)).unwrap_or(u32::MAX),
        every: Duration::from_secs(1),
    }
}

/// Units left, as of `at`. Starts full.
#[derive(Debug, Clone)]
pub(super) struct Allowance {
    rate: Rate,
    /// Whole units left as of `at`; the time since `at` adds `elapsed / every` more.
    left: u32,
    at: Instant,
}

impl Allowance {
    /// A full allowance at `rate`.
    pub(super) fn new(rate: Rate) -> Self {
        Self {
            rate,
            left: rate.burst,
            at: Instant::now(),
        }
    }

    /// Takes up to `want` units now: how many were taken (fewer when fewer are left).
    pub(super) fn take(&mut self, want: u32) -> u32 {
        self.take_at(want, Instant::now())
    }

    /// [`Self::take`] at `now`.
    fn take_at(&mut self, want: u32, now: Instant) -> u32 {
        self.refill(now);
        let taken = want.min(self.left);
        self.left -= taken;
        taken
    }

    /// Adds the units that came back since `at`. A partly refilled unit is kept (`at`
    /// moves by whole units only), so asking often never slows the refill.
    fn refill(&mut self, now: Instant) {
        if self.left >= self.rate.burst {
            self.at = now;
            return;
        }
        let every = self.rate.every.as_nanos().max(1);
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        let back = elapsed / every;
        let room = u128::from(self.rate.burst - self.left);
        if back >= room {
            self.left = self.rate.burst;
            self.at = now;
        } else {
            // `back < room <= u32::MAX`, and `back * every <= elapsed`, a `Duration`.
            self.left += u32::try_from(back).unwrap_or(0);
            let moved = u64::try_from(back * every).unwrap_or(u64::MAX);
            self.at += Duration::from_nanos(moved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        burst: 3,
        every: Duration::from_secs(2),
    };

    #[test]
    fn a_burst_then_one_unit_per_period() {
        let mut a = Allowance::new(RATE);
        let t0 = a.at;
        assert_eq!(a.take_at(2, t0), 2);
        assert_eq!(a.take_at(5, t0), 1, "only what is left");
        assert_eq!(a.take_at(1, t0 + Duration::from_millis(1999)), 0);
        assert_eq!(a.take_at(1, t0 + Duration::from_secs(2)), 1);
        assert_eq!(a.take_at(1, t0 + Duration::from_secs(3)), 0);
        // Asking at 3 s did not lose the half unit: the next one is back at 4 s.
        assert_eq!(a.take_at(1, t0 + Duration::from_secs(4)), 1);
    }

    #[test]
    fn it_never_holds_more_than_the_burst() {
        let mut a = Allowance::new(RATE);
        let t0 = a.at;
        assert_eq!(a.take_at(1, t0), 1);
        assert_eq!(a.take_at(10, t0 + Duration::from_secs(3600)), 3);
        assert_eq!(a.take_at(1, t0 + Duration::from_secs(3600)), 0);
    }

    #[test]
    fn time_going_backwards_gives_nothing() {
        let mut a = Allowance::new(RATE);
        let t0 = a.at;
        assert_eq!(a.take_at(3, t0 + Duration::from_secs(10)), 3);
        assert_eq!(a.take_at(1, t0), 0);
    }
}
