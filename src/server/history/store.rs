//! [`HistoryStore`]: a history kept outside the process and shared by every instance, so a
//! client that reconnects to *another* instance recovers too. The core owns the trait and
//! never names a backend; the Redis Streams store plugs in from `crate::bus`.

use super::super::hooks::BoxFuture;
use crate::protocol::{BusEnvelope, Position};

/// A page read from a shared store ([`HistoryStore::read`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct KeptPage {
    /// Where the stream stands: its epoch and the offset of its last publication.
    pub position: Position,
    /// Kept publications after the offset asked for, oldest first, each with its offset.
    /// Only those still within the history's age bound, and (with a bus key) only those that
    /// open as sealed by a key holder.
    pub entries: Vec<(u64, BusEnvelope)>,
}

impl KeptPage {
    /// A page at `position` holding `entries`.
    #[must_use]
    pub fn new(position: Position, entries: Vec<(u64, BusEnvelope)>) -> Self {
        Self { position, entries }
    }
}

/// A shared store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The store answered with an error, or was never reached: nothing was kept or published.
    #[error("history store refused: {0}")]
    Refused(String),
    /// No answer (a timeout, a dropped connection): the store may still keep and publish
    /// the publication later.
    #[error("history store did not answer: {0}")]
    Unconfirmed(String),
}

/// A history store shared by every instance.
///
/// The core keeps the rules (which streams keep history, gap detection, sealing replays per
/// client); a store keeps offsets, epochs and entries. A stream's epoch must change whenever
/// the store may have lost entries of it (a restart without persistence, an expired stream,
/// an append this instance could not confirm), so that no offset from before is trusted.
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends `envelope` to `stream` and publishes it on the bus, to every instance this one
    /// included, with `kept` set to the position it got. Offset allocation, the append and the
    /// publish are one atomic step, so every instance receives a stream's publications in
    /// offset order.
    ///
    /// # Errors
    /// [`HistoryError::Refused`] when nothing was kept or published;
    /// [`HistoryError::Unconfirmed`] when it may still be. Either way the store must start a
    /// new epoch for `stream` at its next append.
    fn append(
        &self,
        stream: &str,
        envelope: BusEnvelope,
    ) -> BoxFuture<'_, Result<Position, HistoryError>>;

    /// Where `stream` stands (created, in a new epoch, if the store does not hold it) and up
    /// to `limit` kept publications after offset `since`, oldest first.
    ///
    /// # Errors
    /// [`HistoryError`] when the store cannot be reached.
    fn read(
        &self,
        stream: &str,
        since: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<KeptPage, HistoryError>>;
}
