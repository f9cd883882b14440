//! Whether the history store tries Redis at all. After one of its commands found Redis
//! unreachable (a refused connection, no answer in time), it does not try again until there
//! is proof that Redis answers: the bus reconnected, or Redis answered the bus's publisher (a
//! ping, a batch of publications; a publication the store refused goes out through it). A
//! publication then goes out live only at once, and a recovery is answered
//! `recovered: false` at once, instead of each one waiting out a connect or response timeout
//! while Redis is away or hung: only the command that found out waits. A bus whose
//! subscription alone is down (Redis reachable, the store's commands succeed) holds nothing
//! back.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{Inner, lock};
use crate::server::HistoryError;

pub(super) struct Reachability {
    bus: Arc<Inner>,
    /// The bus's reconnections and answered round trips when a command last found Redis
    /// unreachable.
    failed: Mutex<Option<(u64, u64)>>,
}

impl Reachability {
    pub(super) fn new(bus: Arc<Inner>) -> Self {
        Self {
            bus,
            failed: Mutex::new(None),
        }
    }

    /// `Err` (nothing was sent, so nothing was kept) when Redis is not to be tried now.
    pub(super) fn check(&self) -> Result<(), HistoryError> {
        let mut failed = lock(&self.failed);
        let Some(then) = *failed else {
            return Ok(());
        };
        if then == self.progress() {
            return Err(HistoryError::Refused("Redis is unreachable".to_owned()));
        }
        *failed = None;
        Ok(())
    }

    /// Takes note of a command's failure: one that did not reach Redis, or got no answer.
    pub(super) fn failed(&self, e: &redis::RedisError) {
        if e.is_timeout()
            || e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            *lock(&self.failed) = Some(self.progress());
        }
    }

    /// The bus's reconnections and the round trips Redis answered it.
    fn progress(&self) -> (u64, u64) {
        let stats = &self.bus.stats;
        (
            stats.reconnects.load(Ordering::Relaxed),
            stats.answered.load(Ordering::Relaxed),
        )
    }
}
