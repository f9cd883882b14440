//! The in-memory store: each instance keeps its own streams, the default (no Redis needed).
//!
//! Every publication on a stream with history is appended once, on delivery, and gets the
//! stream's next offset; the frame delivered to clients that asked for positions carries
//! `stream`, `offset` and `epoch`. A stream keeps at most `size` publications for at most
//! `ttl`. Its epoch is random, chosen when the stream is created, so offsets never carry over
//! a restart or a stream that expired. A publication always gets its stream; a lookup (a
//! client asking where a stream stands) creates one only while the server holds fewer than
//! `max_streams`, and is answered without a position past that.
//!
//! With several instances, each keeps its own streams and epochs, and a client recovers from
//! the instance it reconnects to (an offset from another instance's epoch is answered
//! `recovered: false`); a shared store ([`super::HistoryStore`]) lifts that. A held stream
//! keeps bus interest in its target until the sweep forgets it, so the instance goes on
//! receiving (and keeping) what others publish after its last local member left: without
//! that, an interest-mode bus would unsubscribe and a returning client would be told it
//! missed nothing.
//!
//! Ordering: [`History::deliver`] appends and queues the frame for its recipients under one
//! lock, and a recovering client reads the stream only after it has joined it, so every
//! publication reaches it exactly once: from the replay, or from its outbox, where the
//! connection drops what the replay already covered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{Gap, HistoryConfig, Kept};
use crate::protocol::{Position, is_room_stream, target_of};
use crate::server::outbox::Frame;
use crate::server::{Bus, Interest};

struct Stream {
    epoch: Arc<str>,
    /// Offset of the last publication.
    top: u64,
    /// The publications kept, oldest first, with their offsets and when they were appended.
    entries: VecDeque<(u64, Instant, Arc<Frame>)>,
    /// Last append or read; an empty stream idle for `ttl` is forgotten.
    used: Instant,
}

impl Stream {
    fn new(now: Instant) -> Self {
        let bytes: [u8; 8] = rand::RngExt::random(&mut rand::rng());
        let epoch: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            epoch: epoch.into(),
            top: 0,
            entries: VecDeque::new(),
            used: now,
        }
    }

    fn expire(&mut self, now: Instant, ttl: Duration) {
        while self
            .entries
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) > ttl)
        {
            self.entries.pop_front();
        }
    }

    fn position(&self) -> Position {
        Position {
            offset: self.top,
            epoch: self.epoch.to_string(),
        }
    }
}

/// The in-memory history of one server.
pub(crate) struct History {
    size: usize,
    ttl: Duration,
    /// Streams past which a lookup creates none ([`HistoryConfig::max_streams`]).
    max_streams: usize,
    streams: Mutex<HashMap<Arc<str>, Stream>>,
    /// Told of the interest each held stream keeps in its target.
    bus: Arc<dyn Bus>,
}

impl History {
    pub(crate) fn new(config: &HistoryConfig, bus: Arc<dyn Bus>) -> Self {
        Self {
            size: config.size,
            ttl: config.ttl,
            max_streams: config.max_streams,
            streams: Mutex::new(HashMap::new()),
            bus,
        }
    }

    /// The stream `name`, created (with a new epoch) if this server does not hold it. A new
    /// stream holds bus interest in its target until the sweep forgets it: an instance keeps
    /// receiving (and keeping) what other instances publish to a stream it holds, also after
    /// its last local member left, so that what it answers a recovering client is complete.
    fn stream<'a>(
        &self,
        streams: &'a mut HashMap<Arc<str>, Stream>,
        name: &Arc<str>,
        now: Instant,
    ) -> &'a mut Stream {
        streams.entry(Arc::clone(name)).or_insert_with(|| {
            if let Some(target) = target_of(name) {
                self.bus.interest(&Interest::Gained(target));
            }
            Stream::new(now)
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Stream>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `frame` (sent to everyone but `exclude`) to `stream` and runs `deliver` with
    /// the positioned frame while the stream is locked, so that publications reach every
    /// recipient in offset order.
    pub(crate) fn deliver<R>(
        &self,
        stream: String,
        frame: &Frame,
        exclude: &[String],
        deliver: impl FnOnce(&Arc<Frame>) -> R,
    ) -> R {
        let now = Instant::now();
        let name: Arc<str> = Arc::from(stream);
        let mut streams = self.lock();
        let s = self.stream(&mut streams, &name, now);
        s.top += 1;
        s.used = now;
        s.expire(now, self.ttl);
        while s.entries.len() >= self.size {
            s.entries.pop_front();
        }
        let positioned = frame.positioned(name, s.top, &s.epoch, exclude);
        s.entries.push_back((s.top, now, Arc::clone(&positioned)));
        deliver(&positioned)
    }

    /// The stream `name` for a lookup: the one held, or a new one; a new room stream only
    /// while the server holds fewer than `max_streams` (clients choose room names; user and
    /// broadcast streams are one per authenticated user, and one). `None` past that: the
    /// lookup is then answered without a position, so that what clients ask about cannot grow
    /// what the server holds.
    fn lookup<'a>(
        &self,
        streams: &'a mut HashMap<Arc<str>, Stream>,
        name: &str,
        now: Instant,
    ) -> Option<&'a mut Stream> {
        if is_room_stream(name) && streams.len() >= self.max_streams && !streams.contains_key(name)
        {
            return None;
        }
        let s = self.stream(streams, &Arc::from(name), now);
        s.used = now;
        Some(s)
    }

    /// Where `stream` stands now (created empty if unknown, within `max_streams`;
    /// [`Position::unheld`] past it).
    pub(crate) fn position(&self, stream: &str) -> Position {
        let now = Instant::now();
        let mut streams = self.lock();
        self.lookup(&mut streams, stream, now)
            .map_or_else(Position::unheld, |s| s.position())
    }

    /// The publications of `stream` after `since` (at most the stream's size), and where the
    /// stream stands; or the gap that makes that impossible, and where the stream stands.
    pub(crate) fn since(
        &self,
        stream: &str,
        since: &Position,
    ) -> (Result<Vec<Arc<Frame>>, Gap>, Position) {
        let now = Instant::now();
        let mut streams = self.lock();
        let Some(s) = self.lookup(&mut streams, stream, now) else {
            return (Err(Gap::Epoch), Position::unheld());
        };
        s.expire(now, self.ttl);
        let here = s.position();
        if *s.epoch != *since.epoch || since.offset > s.top {
            return (Err(Gap::Epoch), here);
        }
        if since.offset == s.top {
            return (Ok(Vec::new()), here);
        }
        // Every offset in (since, top] must still be kept.
        match s.entries.front() {
            Some((first, _, _)) if *first <= since.offset + 1 => {}
            _ => return (Err(Gap::Trimmed), here),
        }
        let frames = s
            .entries
            .iter()
            .filter(|(o, _, _)| *o > since.offset)
            .map(|(_, _, f)| Arc::clone(f))
            .collect();
        (Ok(frames), here)
    }

    /// Up to `limit` kept publications of `stream` after offset `since`, oldest first, and
    /// where the stream stands; `None` for a stream this server does not hold.
    pub(crate) fn read(
        &self,
        stream: &str,
        since: u64,
        limit: usize,
    ) -> Option<(Position, Vec<Kept>)> {
        let now = Instant::now();
        let mut streams = self.lock();
        let s = streams.get_mut(stream)?;
        s.expire(now, self.ttl);
        let page = s
            .entries
            .iter()
            .filter(|(o, _, _)| *o > since)
            .take(limit)
            .map(|(o, _, f)| (*o, Arc::clone(f)))
            .collect();
        Some((s.position(), page))
    }

    /// Drops expired publications and forgets streams that are empty and idle for `ttl`.
    /// Forgotten streams give up their bus interest.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let ttl = self.ttl;
        let mut forgotten = Vec::new();
        self.lock().retain(|name, s| {
            s.expire(now, ttl);
            let keep = !(s.entries.is_empty() && now.duration_since(s.used) > ttl);
            if !keep {
                forgotten.push(Arc::clone(name));
            }
            keep
        });
        for name in forgotten {
            if let Some(target) = target_of(&name) {
                self.bus.interest(&Interest::Lost(target));
            }
        }
    }

    /// Streams held and publications kept, for the metrics page.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let streams = self.lock();
        (
            streams.len(),
            streams.values().map(|s| s.entries.len()).sum(),
        )
    }
}
