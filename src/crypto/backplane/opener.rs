//! [`Opener`]: opens sealed envelopes, caching each publisher's derived key and replay state,
//! and refuses replayed and stale envelopes (the rules are in the module docs of
//! [`crypto::backplane`](super)).

use std::collections::HashMap;

use aes_gcm::Aes256Gcm;

use super::envelope::Parts;
use super::replay::ReplayWindow;
use super::{
    BusKey, FIRST_CONTACT_SLACK_MS, KID_LEN, MAX_AGE_MS, MAX_SKEW_MS, OPENER_CACHE, now_ms,
};
use crate::crypto::CryptoError;
use crate::protocol::BusEnvelope;

/// What an opener keeps per publisher key id.
pub(super) struct Publisher {
    cipher: Aes256Gcm,
    window: ReplayWindow,
    /// Earliest `ts` accepted from this key (fixed at first contact).
    floor_ts: u64,
    /// Latest `ts` accepted from this key.
    newest_ts: u64,
    last_seen_ms: u64,
}

/// Opens sealed envelopes: derives (and caches) each publisher's key and refuses replays and
/// stale envelopes (see the module docs).
pub struct Opener {
    key: BusKey,
    pub(super) publishers: HashMap<[u8; KID_LEN], Publisher>,
    /// The millisecond the opener was created in: only later stamps are accepted.
    start_ms: u64,
    /// The newest `ts` accepted from any publisher whose state was evicted since.
    forgotten_ts: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("publishers", &self.publishers.len())
            .field("start_ms", &self.start_ms)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener for `key`, started now: it refuses every envelope stamped at or before the
    /// current millisecond.
    #[must_use]
    pub fn new(key: BusKey) -> Self {
        Self::starting_at(key, now_ms())
    }

    /// An opener for `key` that counts as started at `start_ms` (milliseconds since the Unix
    /// epoch): it refuses every envelope stamped at or before `start_ms`.
    #[must_use]
    pub fn starting_at(key: BusKey, start_ms: u64) -> Self {
        Self {
            key,
            publishers: HashMap::new(),
            start_ms,
            forgotten_ts: 0,
        }
    }

    /// Replaces a sealed `env.data` with the original JSON.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for anything but an authentic sealed payload: plaintext data,
    /// bad base64, wrong lengths, a wrong key, or any change to the envelope.
    /// [`CryptoError::Replay`] for an authentic envelope already accepted, too far behind its
    /// publisher's newest, stamped outside the accepted age, or stamped at or before the
    /// opener's start, the publisher's floor, or (for a publisher it has no state for) the
    /// newest envelope of a publisher it evicted.
    pub fn open(&mut self, env: &mut BusEnvelope) -> Result<(), CryptoError> {
        self.open_at(env, now_ms())
    }

    /// As [`Opener::open`], with `now` (milliseconds since the Unix epoch) as the time.
    ///
    /// # Errors
    /// As [`Opener::open`].
    pub fn open_at(&mut self, env: &mut BusEnvelope, now: u64) -> Result<(), CryptoError> {
        let mut parts = Parts::of(&env.data)?;
        let (kid, counter, ts) = (parts.kid, parts.counter, parts.ts);
        // Authenticate first: only the key holder's envelopes may create or change replay
        // state (forged key ids must not evict real publishers).
        let known = self.publishers.get(&kid);
        let derived = known.is_none().then(|| self.key.derive(&kid));
        let cipher = known
            .map(|p| &p.cipher)
            .or(derived.as_ref())
            .ok_or(CryptoError::Decrypt)?;
        parts.decrypt(cipher, env)?;
        let too_old = now.saturating_sub(ts) > MAX_AGE_MS;
        let too_new = ts.saturating_sub(now) > MAX_SKEW_MS;
        let before_start = ts <= self.start_ms;
        let refused = match known {
            Some(p) => ts < p.floor_ts || !p.window.is_fresh(counter),
            None => ts <= self.forgotten_ts,
        };
        if too_old || too_new || before_start || refused {
            return Err(CryptoError::Replay);
        }
        env.data = parts.into_data()?;
        if let Some(cipher) = derived {
            // Nothing this opener accepted from `kid` before (ahead of its start, or ahead of
            // an eviction) is stamped after `max(start, forgotten)`.
            let vouched = self.start_ms.max(self.forgotten_ts).saturating_add(1);
            if self.publishers.len() >= OPENER_CACHE {
                self.evict_least_recent();
            }
            self.publishers.insert(
                kid,
                Publisher {
                    cipher,
                    window: ReplayWindow::default(),
                    floor_ts: vouched.max(ts.saturating_sub(FIRST_CONTACT_SLACK_MS)),
                    newest_ts: ts,
                    last_seen_ms: now,
                },
            );
        }
        if let Some(publisher) = self.publishers.get_mut(&kid) {
            publisher.window.record(counter);
            publisher.newest_ts = publisher.newest_ts.max(ts);
            publisher.last_seen_ms = now;
        }
        Ok(())
    }

    /// Drops the least recently seen publisher; its envelopes can no longer be told apart
    /// from new ones, so every first contact from now on must be stamped after its newest.
    fn evict_least_recent(&mut self) {
        if let Some(kid) = self
            .publishers
            .iter()
            .min_by_key(|(_, p)| p.last_seen_ms)
            .map(|(kid, _)| *kid)
            && let Some(evicted) = self.publishers.remove(&kid)
        {
            self.forgotten_ts = self.forgotten_ts.max(evicted.newest_ts);
        }
    }
}
