//! The replay window: which counters of one publisher key an opener has already accepted.

use super::REPLAY_WINDOW;

/// Which counters of one publisher key an opener has accepted: the highest, and a bitmap of
/// the [`REPLAY_WINDOW`] counters below it (bit `i` is counter `highest - i`).
#[derive(Debug, Default)]
pub(super) struct ReplayWindow {
    highest: Option<u64>,
    seen: [u64; WINDOW_WORDS],
}

const WINDOW_WORDS: usize = (REPLAY_WINDOW / 64) as usize;

impl ReplayWindow {
    fn bit(&self, i: u64) -> bool {
        // i < REPLAY_WINDOW, so the word index is below WINDOW_WORDS.
        self.seen[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// Whether `counter` is new: above the highest, or within the window and not seen.
    pub(super) fn is_fresh(&self, counter: u64) -> bool {
        match self.highest {
            None => true,
            Some(h) if counter > h => true,
            Some(h) => h - counter < REPLAY_WINDOW && !self.bit(h - counter),
        }
    }

    /// Records `counter` (which [`Self::is_fresh`] accepted).
    pub(super) fn record(&mut self, counter: u64) {
        let h = match self.highest {
            Some(h) if counter <= h => {
                let i = h - counter;
                self.seen[(i / 64) as usize] |= 1 << (i % 64);
                return;
            }
            Some(h) => h,
            None => counter,
        };
        self.shift(counter - h);
        self.highest = Some(counter);
        self.seen[0] |= 1;
    }

    /// Moves every bit `by` places up (towards older counters).
    fn shift(&mut self, by: u64) {
        if by == 0 {
            return;
        }
        if by >= REPLAY_WINDOW {
            self.seen = [0; WINDOW_WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for w in (0..WINDOW_WORDS).rev() {
            let mut v = 0;
            if let Some(src) = w.checked_sub(words) {
                v = self.seen[src] << bits;
                if bits > 0 && src > 0 {
                    v |= self.seen[src - 1] >> (64 - bits);
                }
            }
            self.seen[w] = v;
        }
    }
}
