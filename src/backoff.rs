//! Jittered exponential backoff, the one curve behind the Redis bus's reconnects and the client
//! SDK's [`ReconnectPolicy`](crate::client::ReconnectPolicy).
//!
//! Pure: no I/O, no clock, no randomness of its own. The caller counts the retries, supplies a
//! uniform random number and sleeps; so both layers can use it without depending on each other.

use std::time::Duration;

/// A jittered exponential curve: the delay before retry `n` (0 for the first) is
/// `initial * multiplier^n`, capped at `max` and raised to `floor`, then the part above `floor`
/// is scaled by a random factor in `[1 - jitter, 1]`.
///
/// With `jitter = 1` and a `floor` this is "full jitter": a uniform delay in
/// `[floor, max(floor, min(max, initial * multiplier^n))]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ExponentialBackoff {
    /// Delay before the first retry (before jitter).
    pub(crate) initial: Duration,
    /// Longest delay.
    pub(crate) max: Duration,
    /// Growth factor per retry; values below 1 count as 1.
    pub(crate) multiplier: f64,
    /// Fraction of the delay above `floor` that is randomized, clamped to `0..=1`.
    pub(crate) jitter: f64,
    /// Shortest delay, so that a tight failure loop cannot spin.
    pub(crate) floor: Duration,
}

impl ExponentialBackoff {
    /// The delay before retry `retry` (0-based), with `random` a uniform number in `[0, 1)`.
    #[must_use]
    pub(crate) fn delay(&self, retry: u32, random: f64) -> Duration {
        let exp = i32::try_from(retry).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        let floor = self.floor.as_secs_f64();
        let capped = base.min(self.max.as_secs_f64()).max(floor);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter * random;
        Duration::from_secs_f64((floor + (capped - floor) * factor).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(jitter: f64, floor: Duration) -> ExponentialBackoff {
        ExponentialBackoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            multiplier: 2.0,
            jitter,
            floor,
        }
    }

    #[test]
    fn grows_and_is_capped() {
        let c = curve(0.0, Duration::ZERO);
        assert_eq!(c.delay(0, 0.5), Duration::from_millis(100));
        assert_eq!(c.delay(1, 0.5), Duration::from_millis(200));
        assert_eq!(c.delay(3, 0.5), Duration::from_millis(800));
        assert_eq!(c.delay(4, 0.5), Duration::from_secs(1));
        assert_eq!(c.delay(u32::MAX, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn jitter_scales_down_to_its_fraction() {
        let c = curve(0.5, Duration::ZERO);
        assert_eq!(c.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(c.delay(0, 1.0), Duration::from_millis(50));
    }

    #[test]
    fn full_jitter_stays_above_the_floor() {
        let c = curve(1.0, Duration::from_millis(10));
        assert_eq!(c.delay(0, 1.0), Duration::from_millis(10));
        assert_eq!(c.delay(0, 0.0), Duration::from_millis(100));
        let tiny = ExponentialBackoff {
            initial: Duration::ZERO,
            ..c
        };
        assert_eq!(tiny.delay(0, 0.3), Duration::from_millis(10));
    }
}
