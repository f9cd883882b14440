//! The Redis bus's health (which connection is up, since when it is down, the last error)
//! and counters, and the status built from them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::{Inner, lock};
use crate::bus::config::SubscriptionMode;
use crate::server::BusStatus;

#[derive(Default)]
pub(super) struct Health {
    pub(super) last_error: Option<String>,
    pub(super) down_since: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) published: AtomicU64,
    pub(super) dropped_full: AtomicU64,
    pub(super) dropped_failed: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) reconnects: AtomicU64,
    /// Round trips Redis answered on the publisher's connection (pings, batches): proof
    /// that it answers, for the history store's [`super::reach`].
    pub(super) answered: AtomicU64,
}

impl Inner {
    pub(super) fn set_down(&self, which: &AtomicBool, error: String) {
        let was_up = which.swap(false, Ordering::AcqRel);
        let mut h = lock(&self.health);
        if was_up {
            tracing::warn!(url = %self.url_redacted, error = %error, "Redis connection lost; cross-instance delivery paused");
        }
        h.down_since.get_or_insert_with(Instant::now);
        h.last_error = Some(error);
    }

    pub(super) fn set_up(&self, which: &AtomicBool, what: &str) {
        which.store(true, Ordering::Release);
        if self.sub_up.load(Ordering::Acquire) && self.pub_up.load(Ordering::Acquire) {
            let mut h = lock(&self.health);
            if let Some(since) = h.down_since.take() {
                tracing::info!(url = %self.url_redacted, what, outage_ms = since.elapsed().as_millis() as u64, "Redis connected");
                self.recoveries.fetch_add(1, Ordering::AcqRel);
                self.socket_ids.rewrite_all();
            }
            h.last_error = None;
        }
    }

    fn publish_state(&self) -> &'static str {
        if self.pub_up.load(Ordering::Acquire) {
            "up"
        } else {
            "down"
        }
    }

    /// The bus's health and counters ([`Bus::status`](crate::server::Bus::status)), with
    /// `subscriptions` channels wanted in interest mode.
    pub(super) fn status(&self, subscriptions: usize) -> BusStatus {
        let i = self;
        let connected = i.sub_up.load(Ordering::Acquire) && i.pub_up.load(Ordering::Acquire);
        let h = lock(&i.health);
        let mut detail = format!(
            "mode={}; encrypted={}; published={}; received={}; dropped={}; reconnects={}",
            i.mode.as_str(),
            i.encrypted,
            i.stats.published.load(Ordering::Relaxed),
            i.stats.received.load(Ordering::Relaxed),
            i.stats.dropped_full.load(Ordering::Relaxed)
                + i.stats.dropped_failed.load(Ordering::Relaxed),
            i.stats.reconnects.load(Ordering::Relaxed),
        );
        if i.mode == SubscriptionMode::Interest {
            detail.push_str(&format!("; subscriptions={}", subscriptions + 1));
        }
        if i.stats.rejected.load(Ordering::Relaxed) > 0 {
            detail.push_str(&format!(
                "; rejected={}",
                i.stats.rejected.load(Ordering::Relaxed)
            ));
        }
        if let Some(since) = h.down_since {
            detail.push_str(&format!(
                "; down for {} ms (publisher {})",
                since.elapsed().as_millis(),
                i.publish_state()
            ));
        }
        if let Some(e) = &h.last_error {
            detail.push_str("; last error: ");
            detail.push_str(e);
        }
        BusStatus {
            kind: "redis",
            connected,
            detail: Some(detail),
        }
    }
}
