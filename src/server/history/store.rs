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
    /// Whether this read created the stream ([`HistoryStore::read`] with `create`).
    pub created: bool,
}

impl KeptPage {
    /// A page at `position` holding `entries`, of a stream the read did not create.
    #[must_use]
    pub fn new(position: Position, entries: Vec<(u64, BusEnvelope)>) -> Self {
        Self {
            position,
            entries,
            created: false,
        }
    }

    /// The same page, marked as that of a stream the read created.
    #[must_use]
    pub fn created(mut self, created: bool) -> Self {
        self.created = created;
        self
    }

    /// The page of a stream the store does not hold and did not create: epoch `""`,
    /// offset 0, no entries. A position no recovery matches.
    #[must_use]
    pub fn unheld() -> Self {
        Self::new(Position::unheld(), Vec::new())
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

    /// Where `stream` stands and up to `limit` kept publications after offset `since`, oldest
    /// first. A stream the store does not hold is created in a new epoch when `create` is
    /// set, and the page must say so ([`KeptPage::created`]: the core counts room streams
    /// created against its budget,
    /// [`HistoryConfig::max_streams`](crate::protocol::HistoryConfig::max_streams), and a
    /// store that never reports a creation is not bounded by it). Without `create`, nothing
    /// is kept and the answer is [`KeptPage::unheld`]. A read must not extend the life of a
    /// stream nothing was ever appended to: such a stream expires a TTL after it was created,
    /// however often it is read.
    ///
    /// # Errors
    /// [`HistoryError::Refused`] when the store did not run the read;
    /// [`HistoryError::Unconfirmed`] when it may have (and so may have created the stream).
    fn read(
        &self,
        stream: &str,
        since: u64,
        limit: usize,
        create: bool,
    ) -> BoxFuture<'_, Result<KeptPage, HistoryError>>;

    /// [`Self::read`] for a recovery from offset `since` of `epoch`, which the core answers
    /// with a gap when the stream is in another epoch or holds more than `limit` publications
    /// after `since`. A store may then leave the page's entries out (a page whose entries are
    /// missing is a gap as well), so that a client asking from a stale position costs it no
    /// read of the publications. The default reads them.
    ///
    /// # Errors
    /// As [`Self::read`].
    fn read_since(
        &self,
        stream: &str,
        (since, epoch): (u64, &str),
        limit: usize,
        create: bool,
    ) -> BoxFuture<'_, Result<KeptPage, HistoryError>> {
        let _ = epoch;
        self.read(stream, since, limit, create)
    }
}
