//! A session's lifetime as the client tracks it: when the session ends and when to ask the
//! token provider for a `refresh` (`docs/PROTOCOL.md` §11). Both come from two timestamps of the
//! server's own clock (`time` and `expiresAt` of `connected` or `refreshed`), so the client's
//! clock does not matter. A refresh that fails is tried again halfway to the expiry, while at
//! least [`MIN_RETRY_LEFT`] is left (a token service that failed for a moment does not cost
//! the connection).

use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::parse_iso8601;

/// Fraction of the remaining session lifetime after which the client refreshes.
const REFRESH_AT: f64 = 0.8;
/// After a failed refresh, try again only if at least this much of the session is left.
pub(super) const MIN_RETRY_LEFT: Duration = Duration::from_secs(1);
/// The soonest a refresh follows the answer to the last one: a server that grants sessions
/// with no time left cannot make the client ask its token provider in a loop.
const MIN_REFRESH_DELAY: Duration = Duration::from_secs(1);

/// How long a session has left: `expiresAt − time`, both read from the server's clock
/// (`None`: it does not expire, or a timestamp does not parse).
pub(super) fn session_left(time: &str, expires_at: Option<&str>) -> Option<Duration> {
    let now = parse_iso8601(time)?;
    let end = parse_iso8601(expires_at?)?;
    Some(end.duration_since(now).unwrap_or_default())
}

/// When the current session ends and when to refresh it.
#[derive(Debug)]
pub(super) struct Lifetime {
    /// Whether the client can refresh at all (only a token provider gives fresh tokens).
    refreshes: bool,
    /// When the server ends the session (4006); `None`: never.
    deadline: Option<Instant>,
    /// When to refresh next; `None`: not armed (no expiry, no provider, or one in flight).
    refresh_at: Option<Instant>,
}

impl Lifetime {
    /// A session with `left` to live (`None`: it does not expire).
    pub(super) fn new(left: Option<Duration>, refreshes: bool) -> Self {
        let mut lifetime = Self {
            refreshes,
            deadline: None,
            refresh_at: None,
        };
        lifetime.renewed(left);
        lifetime
    }

    /// The server extended the session (`refreshed`): it now has `left` to live.
    pub(super) fn renewed(&mut self, left: Option<Duration>) {
        let now = Instant::now();
        self.deadline = left.and_then(|l| now.checked_add(l));
        self.refresh_at = left
            .filter(|_| self.refreshes)
            .and_then(|l| now.checked_add(l.mul_f64(REFRESH_AT).max(MIN_REFRESH_DELAY)));
    }

    /// A refresh failed (the token provider, or the server's `Refresh failed`): tries again
    /// halfway to the expiry, unless less than [`MIN_RETRY_LEFT`] is left or a refresh is
    /// armed already.
    pub(super) fn failed(&mut self) {
        if !self.refreshes || self.refresh_at.is_some() {
            return;
        }
        let Some(deadline) = self.deadline else {
            return;
        };
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        self.refresh_at = (left >= MIN_RETRY_LEFT).then(|| now + left / 2);
    }

    /// When the next refresh is due; `None` when none is armed (no expiry, no provider, or
    /// one is out and its answer re-arms it: [`Self::renewed`] or [`Self::failed`]).
    pub(super) fn next_refresh(&self) -> Option<Instant> {
        self.refresh_at
    }

    /// The refresh that was due is being made: disarmed until its answer.
    pub(super) fn refreshing(&mut self) {
        self.refresh_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits for the armed refresh, as the connection task does.
    async fn due(lifetime: &mut Lifetime) {
        let at = lifetime.next_refresh().expect("a refresh is armed");
        tokio::time::sleep_until(at).await;
        lifetime.refreshing();
    }

    #[test]
    fn the_lifetime_is_read_from_the_server_clock() {
        let left = session_left("2026-01-01T00:00:00.000Z", Some("2026-01-01T00:00:10.000Z"));
        assert_eq!(left, Some(Duration::from_secs(10)));
        assert_eq!(session_left("2026-01-01T00:00:00.000Z", None), None);
        // An expiry before `time` leaves nothing, not a panic.
        let past = session_left("2026-01-01T00:00:10.000Z", Some("2026-01-01T00:00:00.000Z"));
        assert_eq!(past, Some(Duration::ZERO));
        assert_eq!(
            session_left("not a time", Some("2026-01-01T00:00:00.000Z")),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_granted_with_no_time_left_is_not_refreshed_in_a_loop() {
        let mut lifetime = Lifetime::new(Some(Duration::from_secs(10)), true);
        due(&mut lifetime).await;
        lifetime.renewed(Some(Duration::ZERO));
        assert_eq!(
            lifetime.next_refresh(),
            Some(Instant::now() + MIN_REFRESH_DELAY)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_is_armed_at_four_fifths_and_retried_halfway_after_a_failure() {
        let start = Instant::now();
        let mut lifetime = Lifetime::new(Some(Duration::from_secs(10)), true);
        assert_eq!(
            lifetime.next_refresh(),
            Some(start + Duration::from_secs(8))
        );
        due(&mut lifetime).await;
        assert_eq!(Instant::now(), start + Duration::from_secs(8));
        assert_eq!(
            lifetime.next_refresh(),
            None,
            "disarmed while the refresh is out"
        );
        // 2 s left: the retry comes after 1 s; then 1 s left: after 0.5 s; then no more.
        lifetime.failed();
        assert_eq!(
            lifetime.next_refresh(),
            Some(start + Duration::from_secs(9))
        );
        due(&mut lifetime).await;
        lifetime.failed();
        assert_eq!(
            lifetime.next_refresh(),
            Some(start + Duration::from_millis(9500))
        );
        due(&mut lifetime).await;
        lifetime.failed();
        assert_eq!(lifetime.next_refresh(), None, "under a second left");
        // A success re-arms from the new lifetime.
        lifetime.renewed(Some(Duration::from_secs(5)));
        assert_eq!(
            lifetime.next_refresh(),
            Some(Instant::now() + Duration::from_secs(4))
        );
    }

    #[test]
    fn nothing_is_armed_without_a_provider_or_an_expiry() {
        let mut fixed = Lifetime::new(Some(Duration::from_secs(10)), false);
        assert_eq!(fixed.next_refresh(), None);
        fixed.failed();
        assert_eq!(fixed.next_refresh(), None);
        let mut endless = Lifetime::new(None, true);
        endless.failed();
        assert_eq!(endless.next_refresh(), None);
        // A far-future expiry neither panics nor arms anything odd.
        let far = Lifetime::new(Some(Duration::from_secs(u64::MAX / 4)), true);
        assert!(far.deadline.is_none() || far.next_refresh().is_some());
    }
}
