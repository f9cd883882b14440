//! Whether the history store tries Redis at all. After one of its commands found Redis
//! unreachable (a refused connection, no answer in time) while the bus, too, has lost Redis,
//! it does not try again until the bus is connected again: a publication then goes out live
//! only at once, and a recovery is answered `recovered: false` at once, instead of each one
//! waiting out a connect or response timeout while Redis is away or hung. A failure the bus
//! does not share (the store's connection alone), and a bus whose subscription alone is down
//! (Redis reachable, the store's commands succeed), hold nothing back.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{Inner, lock};
use crate::server::HistoryError;

pub(super) struct Reachability {
    bus: Arc<Inner>,
    /// The bus's reconnections when a command last found Redis unreachable.
    failed: Mutex<Option<u64>>,
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
        let Some(reconnects) = *failed else {
            return Ok(());
        };
        let bus_connected =
            self.bus.sub_up.load(Ordering::Acquire) && self.bus.pub_up.load(Ordering::Acquire);
        if !bus_connected && reconnects == self.reconnects() {
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
            *lock(&self.failed) = Some(self.reconnects());
        }
    }

    fn reconnects(&self) -> u64 {
        self.bus.stats.reconnects.load(Ordering::Relaxed)
    }
}
