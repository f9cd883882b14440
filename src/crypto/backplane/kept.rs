//! [`KeptOpener`]: opens sealed envelopes read back from a shared history store.
//!
//! History is read again on purpose, so the [`Opener`](super::Opener)'s replay rules (which
//! refuse what it accepted before, and anything stamped before it started) cannot apply. What
//! still holds for a kept envelope:
//! - it opens only if a holder of the bus key sealed exactly this envelope (the AEAD covers
//!   `data`, `serverId`, `type`, `target`, `event`, `exclude` and `ts`), so the store cannot
//!   forge, alter or re-target one (the caller checks the target is the stream's);
//! - it is refused when stamped before `oldest` (older than the history's TTL);
//! - within one read ([`KeptRead`]), each publisher `(kid, counter)` opens once, so the store
//!   cannot make one recovery deliver a publication twice under two offsets.
//!
//! The offsets and epoch beside the envelope are the store's and are not authenticated:
//! `SECURITY.md`, "Message history", says what a store that lies about them can do.

use std::collections::{HashMap, HashSet};

use aes_gcm::Aes256Gcm;

use super::envelope::Parts;
use super::{BusKey, KID_LEN};
use crate::crypto::CryptoError;
use crate::protocol::BusEnvelope;

/// Opens envelopes read back from history (see the module docs).
pub struct KeptOpener {
    key: BusKey,
}

impl std::fmt::Debug for KeptOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptOpener")
    }
}

impl KeptOpener {
    /// An opener for `key`.
    #[must_use]
    pub fn new(key: BusKey) -> Self {
        Self { key }
    }

    /// Starts one read: envelopes opened through it must be stamped at or after `oldest`
    /// (milliseconds since the Unix epoch), and each publication opens once.
    #[must_use]
    pub fn read(&self, oldest: u64) -> KeptRead<'_> {
        KeptRead {
            key: &self.key,
            oldest,
            ciphers: HashMap::new(),
            seen: HashSet::new(),
        }
    }
}

/// One read of a stream's history ([`KeptOpener::read`]).
pub struct KeptRead<'a> {
    key: &'a BusKey,
    oldest: u64,
    ciphers: HashMap<[u8; KID_LEN], Aes256Gcm>,
    seen: HashSet<([u8; KID_LEN], u64)>,
}

impl std::fmt::Debug for KeptRead<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptRead")
            .field("oldest", &self.oldest)
            .finish_non_exhaustive()
    }
}

impl KeptRead<'_> {
    /// Replaces a sealed `env.data` with the original JSON.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for anything but an authentic sealed payload;
    /// [`CryptoError::Replay`] for one stamped before the read's oldest, or opened before in
    /// this read.
    pub fn open(&mut self, env: &mut BusEnvelope) -> Result<(), CryptoError> {
        let mut parts = Parts::of(&env.data)?;
        let cipher = self
            .ciphers
            .entry(parts.kid)
            .or_insert_with(|| self.key.derive(&parts.kid));
        parts.decrypt(cipher, env)?;
        if parts.ts < self.oldest || !self.seen.insert((parts.kid, parts.counter)) {
            return Err(CryptoError::Replay);
        }
        env.data = parts.into_data()?;
        Ok(())
    }
}
