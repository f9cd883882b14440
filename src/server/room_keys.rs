//! Room keys on the server (`docs/PROTOCOL.md` §14): per room epoch, one random key, handed to
//! each member that takes room keys inside its own session, and one seal per publication.
//!
//! ```text
//! publish to room R (R matches a --room-keys glob)
//!   lock R's state                      (one publication of R at a time: records stay in order)
//!     snapshot R in the registry        generation, recipients
//!     new epoch?  no epoch, the generation moved (a join or a leave), the message or
//!                 time budget is spent  -> fresh secret, grant queued to every holder
//!     seal the publication once         -> Frame { room: RoomRecord }
//!     queue it to every recipient       (each connection sends the record to a holder of
//!                                        that epoch, and seals its own copy otherwise)
//! ```
//!
//! Epochs start lazily, at the next publication, so a burst of joins costs one new epoch.
//! Secrets never leave the instance: every instance runs its own epochs for its own members.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::outbox::{Frame, RoomRecord};
use super::registry::RoomSnapshot;
use crate::crypto::AeadBackend;
use crate::crypto::room::{self, RoomSealer, RoomSecret};

/// Which rooms use room keys, and how long an epoch lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomKeyConfig {
    /// Rooms that use room keys, as glob patterns (`orders:*`). Defaults to none: every
    /// encrypted member is sealed for individually.
    pub rooms: Vec<String>,
    /// Records sealed under one epoch key before the next publication starts a new epoch.
    /// Defaults to 1,000,000; at most 2^32.
    pub max_messages: u64,
    /// Age of an epoch after which the next publication starts a new one. Defaults to 600 s.
    pub max_age: Duration,
}

impl Default for RoomKeyConfig {
    fn default() -> Self {
        Self {
            rooms: Vec::new(),
            max_messages: 1_000_000,
            max_age: Duration::from_secs(600),
        }
    }
}

impl RoomKeyConfig {
    /// Whether any room uses room keys.
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.rooms.is_empty()
    }
}

/// A room epoch's secret on its way to one member's connection, which seals it under the
/// member's session ([`room::grant_json`]). Wiped when the last connection has sent it.
pub(crate) struct RoomGrant {
    pub(crate) room: Arc<str>,
    pub(crate) epoch: u64,
    secret: RoomSecret,
}

impl std::fmt::Debug for RoomGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomGrant")
            .field("room", &self.room)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl RoomGrant {
    /// The `room-key` event to seal for the member.
    pub(crate) fn json(&self) -> Zeroizing<String> {
        room::grant_json(&self.room, self.epoch, &self.secret)
    }
}

/// One room on this instance.
#[derive(Default)]
struct RoomState {
    epoch: Option<Epoch>,
    /// The generation at which the room was found to have no holder here (so that its
    /// publications do not look for holders again until its membership changes).
    no_holder_at: Option<u64>,
}

/// One room's current epoch.
struct Epoch {
    sealer: RoomSealer,
    /// The room's membership generation when the epoch started.
    generation: u64,
    started: Instant,
}

/// The room keys of one server.
pub(crate) struct RoomKeys {
    rules: Vec<glob::Pattern>,
    max_messages: u64,
    max_age: Duration,
    aead: AeadBackend,
    /// The next epoch number (instance-wide, so never reused for a room).
    next_epoch: AtomicU64,
    rooms: Mutex<HashMap<Arc<str>, Arc<Mutex<RoomState>>>>,
}

impl std::fmt::Debug for RoomKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomKeys")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover the data if that ever changes.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RoomKeys {
    /// Room keys for `config`; `None` when no room uses them.
    ///
    /// # Errors
    /// A pattern that is not a valid glob.
    pub(crate) fn new(config: &RoomKeyConfig) -> Result<Option<Self>, glob::PatternError> {
        if !config.enabled() {
            return Ok(None);
        }
        let rules = config
            .rooms
            .iter()
            .map(|p| glob::Pattern::new(p))
            .collect::<Result<_, _>>()?;
        Ok(Some(Self {
            rules,
            max_messages: config.max_messages.clamp(1, room::MAX_EPOCH_RECORDS),
            max_age: config.max_age,
            aead: AeadBackend::default(),
            next_epoch: AtomicU64::new(1),
            rooms: Mutex::default(),
        }))
    }

    /// Whether `room` uses room keys.
    pub(crate) fn covers(&self, room: &str) -> bool {
        self.rules.iter().any(|p| p.matches(room))
    }

    /// Queues `frame` to the recipients of `room`, sealed once under the room's current epoch
    /// for the members holding its key; returns how many recipients it was queued for.
    /// `snapshot(holders)` reads the room in the registry (with the key holders when asked);
    /// `started(grants)` is told of each new epoch.
    pub(crate) fn deliver(
        &self,
        room: &str,
        frame: &Arc<Frame>,
        snapshot: impl Fn(bool) -> RoomSnapshot,
        started: impl FnOnce(usize),
    ) -> usize {
        let state = {
            let mut rooms = lock(&self.rooms);
            match rooms.get(room) {
                Some(state) => Arc::clone(state),
                None => Arc::clone(rooms.entry(Arc::from(room)).or_default()),
            }
        };
        let mut state = lock(&state);
        let mut snap = snapshot(false);
        if self.must_rotate(&state, snap.generation) {
            snap = snapshot(true);
            state.epoch = self.rotate(room, &snap);
            state.no_holder_at = state.epoch.is_none().then_some(snap.generation);
            if state.epoch.is_some() {
                started(snap.holders.len());
            }
        }
        let frame = match state.epoch.as_mut() {
            Some(current) => self.seal(room, current, frame),
            None => Arc::clone(frame),
        };
        let queued = snap.recipients.iter().filter(|r| r.push(&frame)).count();
        if snap.generation == 0 && state.epoch.is_none() {
            // No member here at all (generation 0: the registry does not know the room):
            // keep no state for it, whatever is published to it.
            drop(state);
            lock(&self.rooms).remove(room);
        }
        queued
    }

    fn must_rotate(&self, state: &RoomState, generation: u64) -> bool {
        match &state.epoch {
            Some(e) => {
                e.generation != generation
                    || e.sealer.sealed() >= self.max_messages
                    || e.started.elapsed() >= self.max_age
            }
            None => state.no_holder_at != Some(generation),
        }
    }

    /// Starts a new epoch and queues its grant to every holder; `None` (and the old secret
    /// wiped) when the room has no holder here.
    fn rotate(&self, room: &str, snap: &RoomSnapshot) -> Option<Epoch> {
        if snap.holders.is_empty() {
            return None;
        }
        let secret = RoomSecret::random(&mut rand::rng());
        let number = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        let sealer = match RoomSealer::new(room, number, &secret, self.aead) {
            Ok(sealer) => sealer,
            Err(e) => {
                tracing::warn!(room, error = %e, "room key not started; members get per-client records");
                return None;
            }
        };
        let grant = Arc::new(RoomGrant {
            room: Arc::from(room),
            epoch: number,
            secret,
        });
        for holder in &snap.holders {
            holder.push_grant(&grant);
        }
        tracing::debug!(
            room,
            epoch = number,
            holders = snap.holders.len(),
            "room key epoch started"
        );
        Some(Epoch {
            sealer,
            generation: snap.generation,
            started: Instant::now(),
        })
    }

    /// `frame` with its room record; `frame` as it is (every member then seals its own copy)
    /// if sealing fails.
    fn seal(&self, room: &str, epoch: &mut Epoch, frame: &Arc<Frame>) -> Arc<Frame> {
        let plaintext = frame.position.as_ref().map_or(&frame.json, |p| &p.json);
        match epoch.sealer.seal(plaintext.as_bytes()) {
            Ok(frames) => frame.with_room(RoomRecord {
                room: Arc::from(room),
                epoch: epoch.sealer.epoch(),
                json: frames.text.into(),
                binary: frames.binary.into(),
            }),
            Err(e) => {
                tracing::warn!(room, error = %e, "room record not sealed; members get per-client records");
                Arc::clone(frame)
            }
        }
    }

    /// Wipes the secret of every room in which no member holds room keys any more
    /// (`has_holder(room)` asks the registry). Run periodically: a room whose last key holder
    /// left while other members stay keeps its secret no longer than one sweep. The next
    /// publication to a room that has holders again starts a new epoch.
    pub(crate) fn wipe_unheld(&self, has_holder: impl Fn(&str) -> bool) {
        let rooms: Vec<(Arc<str>, Arc<Mutex<RoomState>>)> = lock(&self.rooms)
            .iter()
            .map(|(room, state)| (Arc::clone(room), Arc::clone(state)))
            .collect();
        for (room, state) in rooms {
            // The registry is asked before the room's state is locked: a publication locks
            // them the other way round.
            if has_holder(&room) {
                continue;
            }
            if lock(&state).epoch.take().is_some() {
                tracing::debug!(room = %room, "room key wiped: no member holds it any more");
            }
        }
    }

    /// Wipes a room's secret (the instance has no member of it left).
    pub(crate) fn forget(&self, room: &str) {
        lock(&self.rooms).remove(room);
    }
}

#[cfg(test)]
mod tests;
