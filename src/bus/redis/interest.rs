//! Interest mode's subscription bookkeeping: how many local members want each channel, which
//! channels changed since the subscriber last looked, bringing the subscriber's actual
//! subscriptions in line with them, and which ones Redis has confirmed (for
//! [`Bus::subscribed`](crate::server::Bus::subscribed)).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::PubSubSink;

use super::connect::timed;
use super::{Inner, SUBSCRIBE_CHUNK, lock};
use crate::bus::config::SubscriptionMode;

/// Desired subscriptions in interest mode. Counts rather than flags: the registry reports
/// gained/lost after releasing its lock, so two threads' reports may arrive in either order;
/// summing them is order-independent, and a target is wanted while its count is positive.
#[derive(Default)]
pub(super) struct InterestState {
    pub(super) counts: HashMap<String, i64>,
    pub(super) dirty: HashSet<String>,
}

impl Inner {
    pub(super) fn wanted_channels(&self) -> Vec<String> {
        let mut st = lock(&self.interest);
        st.dirty.clear();
        st.counts
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(ch, _)| ch.clone())
            .collect()
    }

    /// Whether the subscriber receives `channel` now.
    pub(super) fn is_confirmed(&self, channel: &str) -> bool {
        self.sub_up.load(Ordering::Acquire)
            && (self.mode == SubscriptionMode::Pattern
                || channel == crate::protocol::channel::BROADCAST
                || lock(&self.confirmed).contains(channel))
    }

    /// Records what the subscriber now receives (nothing after a lost connection).
    pub(super) fn confirm(&self, actual: Option<&HashSet<String>>) {
        let mut confirmed = lock(&self.confirmed);
        confirmed.clear();
        if let Some(actual) = actual {
            confirmed.extend(actual.iter().cloned());
        }
        drop(confirmed);
        self.confirmed_changed.notify_waiters();
    }

    /// Waits until the subscriber receives `channel`, or `within` has passed; says which.
    pub(super) async fn wait_confirmed(&self, channel: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.confirmed_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.is_confirmed(channel) {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.is_confirmed(channel);
            }
        }
    }

    pub(super) async fn apply_interest(
        &self,
        sink: &mut PubSubSink,
        actual: &mut HashSet<String>,
    ) -> Result<(), String> {
        let (add, remove) = {
            let mut st = lock(&self.interest);
            let dirty = std::mem::take(&mut st.dirty);
            let mut add = Vec::new();
            let mut remove = Vec::new();
            for ch in dirty {
                let wanted = st.counts.get(&ch).is_some_and(|c| *c > 0);
                match (wanted, actual.contains(&ch)) {
                    (true, false) => add.push(ch),
                    (false, true) => remove.push(ch),
                    _ => {}
                }
            }
            (add, remove)
        };
        let t = self.response_timeout;
        for chunk in add.chunks(SUBSCRIBE_CHUNK) {
            timed(t, sink.subscribe(chunk)).await?;
        }
        for chunk in remove.chunks(SUBSCRIBE_CHUNK) {
            timed(t, sink.unsubscribe(chunk)).await?;
        }
        actual.extend(add);
        for ch in &remove {
            actual.remove(ch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::bus::{RedisBus, RedisBusConfig, SubscriptionMode};
    use crate::protocol::BusTarget;
    use crate::server::{Bus, Interest};

    #[test]
    fn interest_counts_are_order_independent() {
        let bus = RedisBus::new(RedisBusConfig::new("redis://127.0.0.1:1")).expect("bus");
        let room = |n: &str| BusTarget::Room(n.to_owned());
        // Two threads report gained/lost for the same room in the "wrong" order.
        bus.interest(&Interest::Gained(room("a")));
        bus.interest(&Interest::Gained(room("a")));
        bus.interest(&Interest::Lost(room("a")));
        assert_eq!(bus.interest_count(), 1);
        bus.interest(&Interest::Lost(room("a")));
        assert_eq!(bus.interest_count(), 0);
        // A loss reported before its gain never leaves a stale subscription behind.
        bus.interest(&Interest::Lost(room("b")));
        bus.interest(&Interest::Gained(room("b")));
        assert_eq!(bus.interest_count(), 0);
        bus.interest(&Interest::Gained(room("b")));
        assert_eq!(bus.interest_count(), 1);
        // Broadcast is always subscribed and never counted; pattern mode ignores interests.
        bus.interest(&Interest::Gained(BusTarget::Broadcast));
        assert_eq!(bus.interest_count(), 1);
        let pattern = RedisBus::new(
            RedisBusConfig::new("redis://127.0.0.1:1").mode(SubscriptionMode::Pattern),
        )
        .expect("bus");
        pattern.interest(&Interest::Gained(room("a")));
        assert_eq!(pattern.interest_count(), 0);
        assert!(!bus.status().connected);
    }
}
