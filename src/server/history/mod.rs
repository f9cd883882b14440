//! Message history: a bounded stream per delivery target, so that a client that reconnects
//! gets what it missed ([`crate::protocol::RecoverRequest`]).
//!
//! The rules live here: which targets keep history ([`HistoryConfig`]), and whether the gap
//! since a client's position can be filled ([`Gap`]). Two stores keep the streams:
//! - `memory.rs`: in process memory, each instance its own (the default, no Redis needed);
//! - a [`HistoryStore`] shared by every instance (Redis Streams, from `crate::bus`): offsets
//!   are allocated where the entries are kept, and a kept publication reaches every instance,
//!   the publishing one included, through the bus with its position, in offset order.

mod budget;
mod echo;
mod memory;
mod store;
mod tails;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use budget::Budget;

pub(crate) use echo::Echoes;
pub(crate) use memory::History;
pub use store::{HistoryError, HistoryStore, KeptPage};
pub(crate) use tails::Tails;

use super::outbox::Frame;
pub use crate::protocol::HistoryConfig;
use crate::protocol::{BusEnvelope, BusTarget, KeepRules, Position, is_room_stream};

/// Why the gap since a position cannot be filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gap {
    /// The stream's epoch is not the position's.
    Epoch,
    /// Publications after the position were trimmed or expired.
    Trimmed,
    /// The store could not be read.
    Unavailable,
}

/// A kept publication and its offset.
pub(crate) type Kept = (u64, Arc<Frame>);

/// The publications after a position (or the gap), and where the stream stands.
pub(crate) type Since = (Result<Vec<Arc<Frame>>, Gap>, Position);

/// Where streams are kept.
enum Store {
    Memory(History),
    Shared(Arc<dyn HistoryStore>),
}

/// The history of one server: which streams keep history, and the store that keeps them.
pub(crate) struct Keeper {
    config: HistoryConfig,
    rules: KeepRules,
    store: Store,
    /// Streams this instance may still create in the shared store for lookups.
    budget: Budget,
    /// Lookups answered without a position (the stream budget spent).
    unheld: AtomicU64,
    /// Kept publications of this instance on their way back from the shared store.
    echoes: Echoes,
    /// Per stream of the shared store, the last kept publication delivered here.
    tails: Tails,
}

impl Keeper {
    /// `None` when `config` keeps nothing. Streams are kept in `shared` when given, else in
    /// memory (with `bus` told of the interest each held stream keeps).
    ///
    /// # Errors
    /// An invalid room pattern.
    pub(crate) fn new(
        config: HistoryConfig,
        bus: Arc<dyn super::Bus>,
        shared: Option<Arc<dyn HistoryStore>>,
    ) -> Result<Option<Self>, glob::PatternError> {
        if !config.enabled() {
            return Ok(None);
        }
        let rules = KeepRules::new(&config)?;
        let store = match shared {
            Some(s) => Store::Shared(s),
            None => Store::Memory(History::new(&config, bus)),
        };
        Ok(Some(Self {
            budget: Budget::new(config.max_streams, config.ttl),
            config,
            rules,
            store,
            unheld: AtomicU64::new(0),
            echoes: Echoes::default(),
            tails: Tails::default(),
        }))
    }

    /// The in-memory store, when streams are kept in this process.
    pub(crate) fn memory(&self) -> Option<&History> {
        match &self.store {
            Store::Memory(h) => Some(h),
            Store::Shared(_) => None,
        }
    }

    /// The shared store, when there is one.
    pub(crate) fn shared(&self) -> Option<&Arc<dyn HistoryStore>> {
        match &self.store {
            Store::Shared(s) => Some(s),
            Store::Memory(_) => None,
        }
    }

    /// This instance's kept publications on their way back from the shared store.
    pub(crate) fn echoes(&self) -> &Echoes {
        &self.echoes
    }

    /// Per stream of the shared store, the last kept publication delivered here.
    pub(crate) fn tails(&self) -> &Tails {
        &self.tails
    }

    /// The stream `target` publishes to, if it keeps history.
    pub(crate) fn stream_for(&self, target: &BusTarget) -> Option<String> {
        self.rules.stream_for(target)
    }

    /// The streams with history of `rooms`, and with `user` also of that user's stream and
    /// the broadcast stream.
    pub(crate) fn streams_of(&self, user: Option<&str>, rooms: &[String]) -> Vec<String> {
        let own = user
            .into_iter()
            .flat_map(|u| [BusTarget::Broadcast, BusTarget::User(u.to_owned())]);
        own.chain(rooms.iter().map(|r| BusTarget::Room(r.clone())))
            .filter_map(|t| self.stream_for(&t))
            .collect()
    }

    /// Where `stream` stands now: created empty if unknown and the stream budget allows
    /// ([`HistoryConfig::max_streams`]); [`Position::unheld`] if it does not, or if the
    /// shared store cannot be reached.
    pub(crate) async fn position(&self, stream: &str) -> Position {
        let here = match &self.store {
            Store::Memory(h) => h.position(stream),
            Store::Shared(s) => match self.lookup(s, stream, (u64::MAX, None), 0).await {
                Ok(page) => page.position,
                Err(e) => {
                    tracing::warn!(stream, error = %e, "cannot read a stream's position");
                    return Position::unheld();
                }
            },
        };
        self.count_unheld(stream, &here);
        here
    }

    /// The publications of `stream` after `since` (at most the stream's size), and where the
    /// stream stands; or the gap that makes that impossible.
    pub(crate) async fn since(&self, stream: &str, since: &Position) -> Since {
        let (frames, here) = match &self.store {
            Store::Memory(h) => h.since(stream, since),
            Store::Shared(s) => {
                let from = (since.offset, Some(since.epoch.as_str()));
                match self.lookup(s, stream, from, self.config.size).await {
                    Ok(page) => {
                        let here = page.position.clone();
                        (fill(stream, since, page, self.config.size), here)
                    }
                    Err(e) => {
                        tracing::warn!(stream, error = %e, "cannot read history to recover");
                        return (Err(Gap::Unavailable), Position::unheld());
                    }
                }
            }
        };
        self.count_unheld(stream, &here);
        (frames, here)
    }

    /// A read of the shared store for a lookup, creating the stream if it is not held: a room
    /// stream within the budget (clients choose room names), a user's or the broadcast stream
    /// always (one per authenticated user, and one). `from` is the offset to read after, and
    /// for a recovery the epoch it is in ([`HistoryStore::read_since`]).
    async fn lookup(
        &self,
        store: &Arc<dyn HistoryStore>,
        stream: &str,
        from: (u64, Option<&str>),
        limit: usize,
    ) -> Result<KeptPage, HistoryError> {
        let read = |create| match from {
            (since, Some(epoch)) => store.read_since(stream, (since, epoch), limit, create),
            (since, None) => store.read(stream, since, limit, create),
        };
        if !is_room_stream(stream) {
            return read(true).await;
        }
        let window = self.budget.take();
        let page = read(window.is_some()).await;
        let made = match &page {
            Ok(p) => p.created,
            // The store may still have run the read, and created the stream.
            Err(HistoryError::Unconfirmed(_)) => true,
            Err(HistoryError::Refused(_)) => false,
        };
        if let (Some(window), false) = (window, made) {
            self.budget.give_back(window);
        }
        page
    }

    /// Counts a lookup answered without a position because the budget is spent; the first
    /// one and every 10,000th after it are logged.
    fn count_unheld(&self, stream: &str, here: &Position) {
        if !here.is_unheld() {
            return;
        }
        let n = self.unheld.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(10_000) {
            tracing::warn!(
                stream,
                max_streams = self.config.max_streams,
                unheld = n + 1,
                "stream budget spent: lookups of streams not held are answered without a position"
            );
        }
    }

    /// Lookups answered without a position so far, for the metrics page.
    pub(crate) fn unheld(&self) -> u64 {
        self.unheld.load(Ordering::Relaxed)
    }

    /// Up to `limit` kept publications of `stream` after offset `since`, oldest first, and
    /// where the stream stands; `None` for a stream this server does not hold (or cannot
    /// read).
    pub(crate) async fn read(
        &self,
        stream: &str,
        since: u64,
        limit: usize,
    ) -> Option<(Position, Vec<Kept>)> {
        match &self.store {
            Store::Memory(h) => h.read(stream, since, limit),
            Store::Shared(s) => {
                let page = s.read(stream, since, limit, false).await.ok()?;
                if page.position.is_unheld() {
                    return None;
                }
                let name: Arc<str> = Arc::from(stream);
                let epoch: Arc<str> = Arc::from(page.position.epoch.as_str());
                let kept = page
                    .entries
                    .into_iter()
                    .map(|(o, env)| (o, positioned(&name, o, &epoch, env)))
                    .collect();
                Some((page.position, kept))
            }
        }
    }

    /// Drops what expired from memory (a shared store expires on its own).
    pub(crate) fn sweep(&self) {
        if let Store::Memory(h) = &self.store {
            h.sweep();
        }
    }

    /// Streams held and publications kept in memory, for the metrics page.
    pub(crate) fn sizes(&self) -> Option<(usize, usize)> {
        self.memory().map(History::sizes)
    }
}

/// A kept envelope as the frame a client receives.
pub(crate) fn positioned(
    stream: &Arc<str>,
    offset: u64,
    epoch: &Arc<str>,
    env: BusEnvelope,
) -> Arc<Frame> {
    Frame::new(&env.event, env.data).positioned(Arc::clone(stream), offset, epoch, &env.exclude)
}

/// Whether `page` fills the gap since `since`: same epoch, and every offset up to the top
/// still kept (no more than `size` of them).
fn fill(
    stream: &str,
    since: &Position,
    page: KeptPage,
    size: usize,
) -> Result<Vec<Arc<Frame>>, Gap> {
    let top = page.position.offset;
    // An unheld position matches nothing: what its stream held meanwhile is unknown.
    if since.is_unheld() || page.position.epoch != since.epoch || since.offset > top {
        return Err(Gap::Epoch);
    }
    let missed = top - since.offset;
    if missed > size as u64 {
        return Err(Gap::Trimmed);
    }
    let contiguous = page
        .entries
        .iter()
        .zip(since.offset + 1..)
        .all(|((o, _), want)| *o == want);
    if !contiguous || page.entries.len() as u64 != missed {
        return Err(Gap::Trimmed);
    }
    let name: Arc<str> = Arc::from(stream);
    let epoch: Arc<str> = Arc::from(page.position.epoch.as_str());
    Ok(page
        .entries
        .into_iter()
        .map(|(o, env)| positioned(&name, o, &epoch, env))
        .collect())
}
