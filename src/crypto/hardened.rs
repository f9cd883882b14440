//! The hardened profile `sealwire-v2`: transcript, key schedule and per-direction record state.
//!
//! Every byte is specified in `docs/PROTOCOL.md` ("Hardened profile"). In short:
//!
//! ```text
//! transcript = "sealwire-v2 transcript"
//!            || u16(len(profile)) || profile          ("sealwire-v2")
//!            || u16(len(client_id)) || client_id      (UTF-8, as sent in `connected.id`)
//!            || client_public (65) || server_public (65) || salt (32)
//!            || u32(rekey_after)
//!            || u16(len(identity)) || identity        (0 or 65 bytes)
//! th         = SHA-256(transcript)
//! prk        = HKDF-Extract(salt, ecdh_x)
//! c2s_0      = HKDF-Expand(prk, "sealwire-v2 c2s" || th, 32)
//! s2c_0      = HKDF-Expand(prk, "sealwire-v2 s2c" || th, 32)
//! confirm    = HKDF-Expand(prk, "sealwire-v2 confirm" || th, 32)
//! per direction and epoch e (secret_e):
//!   key_e    = HKDF-Expand(secret_e, "sealwire-v2 key", 32)
//!   prefix_e = HKDF-Expand(secret_e, "sealwire-v2 iv", 4)
//!   secret_{e+1} = HKDF-Expand(secret_e, "sealwire-v2 next", 32)
//! nonce(seq) = prefix_e || u64(seq)          epoch e = seq / rekey_after
//! aad(seq)   = "sealwire-v2" || dir || u32(e) || u64(seq)   dir: 0x01 c2s, 0x02 s2c
//! ```
//!
//! All integers are big-endian.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::aead::{AeadBackend, SessionKey};
use super::{CryptoError, NONCE_LEN, PUBLIC_KEY_LEN, SALT_LEN, TAG_LEN};

/// Wire id of the hardened profile (the `profile` field of `authenticate` and `connected`).
pub const PROFILE_ID: &str = "sealwire-v2";
/// Messages per direction sealed under one key before both sides move to the next epoch.
pub const DEFAULT_REKEY_AFTER: u32 = 1 << 20;
/// Largest `rekeyAfter` a client accepts.
pub const MAX_REKEY_AFTER: u32 = 1 << 24;
/// Hard limit: no direction ever uses a sequence number at or above this; the connection must
/// end first (about 2.8e14 messages).
pub const SEQ_HARD_LIMIT: u64 = 1 << 48;
/// Length of the per-epoch nonce prefix.
pub const NONCE_PREFIX_LEN: usize = 4;
/// Length of the additional authenticated data of one record.
pub const AAD_LEN: usize = 24;

/// Labels (ASCII, no terminator).
pub mod label {
    /// Opens the transcript.
    pub const TRANSCRIPT: &[u8] = b"sealwire-v2 transcript";
    /// Client-to-server traffic secret of epoch 0.
    pub const C2S: &[u8] = b"sealwire-v2 c2s";
    /// Server-to-client traffic secret of epoch 0.
    pub const S2C: &[u8] = b"sealwire-v2 s2c";
    /// Key-confirmation key.
    pub const CONFIRM: &[u8] = b"sealwire-v2 confirm";
    /// AES-256-GCM key of an epoch.
    pub const KEY: &[u8] = b"sealwire-v2 key";
    /// Nonce prefix of an epoch.
    pub const IV: &[u8] = b"sealwire-v2 iv";
    /// Next epoch's secret.
    pub const NEXT: &[u8] = b"sealwire-v2 next";
    /// Server key-confirmation MAC input prefix.
    pub const SERVER_FINISHED: &[u8] = b"sealwire-v2 server finished";
    /// Client key-confirmation MAC input prefix.
    pub const CLIENT_FINISHED: &[u8] = b"sealwire-v2 client finished";
    /// Server identity signature input prefix.
    pub const SIGNATURE: &[u8] = b"sealwire-v2 server signature";
    /// AAD prefix of every record.
    pub const AAD: &[u8] = b"sealwire-v2";
}

/// Direction of a record; part of the AAD and of the key schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server (`0x01`).
    ClientToServer,
    /// Server to client (`0x02`).
    ServerToClient,
}

impl Direction {
    /// The byte used in the AAD.
    #[must_use]
    pub const fn byte(self) -> u8 {
        match self {
            Self::ClientToServer => 1,
            Self::ServerToClient => 2,
        }
    }
}

/// Everything the transcript binds.
#[derive(Debug, Clone, Copy)]
pub struct TranscriptInput<'a> {
    /// The client id the server assigned (`connected.id`).
    pub client_id: &'a str,
    /// The client's ephemeral public key.
    pub client_public: &'a [u8; PUBLIC_KEY_LEN],
    /// The server's ephemeral public key.
    pub server_public: &'a [u8; PUBLIC_KEY_LEN],
    /// The server's salt.
    pub salt: &'a [u8; SALT_LEN],
    /// Messages per epoch, as announced in `connected.rekeyAfter`.
    pub rekey_after: u32,
    /// The server's long-term identity key, when it signs.
    pub identity: Option<&'a [u8; PUBLIC_KEY_LEN]>,
}

fn push_len16(out: &mut Vec<u8>, field: &[u8]) -> Result<(), CryptoError> {
    let len = u16::try_from(field.len()).map_err(|_| CryptoError::Handshake)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
    Ok(())
}

/// The transcript bytes (see the module docs for the layout).
///
/// # Errors
/// [`CryptoError::Handshake`] if the client id is longer than 65535 bytes.
pub fn transcript(input: &TranscriptInput<'_>) -> Result<Vec<u8>, CryptoError> {
    let mut t = Vec::with_capacity(300);
    t.extend_from_slice(label::TRANSCRIPT);
    push_len16(&mut t, PROFILE_ID.as_bytes())?;
    push_len16(&mut t, input.client_id.as_bytes())?;
    t.extend_from_slice(input.client_public);
    t.extend_from_slice(input.server_public);
    t.extend_from_slice(input.salt);
    t.extend_from_slice(&input.rekey_after.to_be_bytes());
    push_len16(&mut t, input.identity.map_or(&[][..], |k| &k[..]))?;
    Ok(t)
}

/// SHA-256 of [`transcript`].
///
/// # Errors
/// As [`transcript`].
pub fn transcript_hash(input: &TranscriptInput<'_>) -> Result<[u8; 32], CryptoError> {
    Ok(Sha256::digest(transcript(input)?).into())
}

pub(crate) fn expand(hk: &Hkdf<Sha256>, parts: &[&[u8]], out: &mut [u8]) {
    let info: Vec<u8> = parts.concat();
    // Outputs here are at most 32 bytes, far below HKDF-SHA256's limit.
    if hk.expand(&info, out).is_err() {
        unreachable!("HKDF-SHA256 output of at most 32 bytes is always valid");
    }
}

pub(crate) fn from_prk(secret: &[u8; 32]) -> Hkdf<Sha256> {
    match Hkdf::<Sha256>::from_prk(secret) {
        Ok(hk) => hk,
        Err(_) => unreachable!("a 32-byte PRK is always valid for HKDF-SHA256"),
    }
}

/// The secrets of one handshake, derived from the ECDH output and the transcript hash.
pub struct KeySchedule {
    /// Client-to-server secret of epoch 0.
    pub c2s: Zeroizing<[u8; 32]>,
    /// Server-to-client secret of epoch 0.
    pub s2c: Zeroizing<[u8; 32]>,
    /// Key-confirmation (HMAC) key.
    pub confirm: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for KeySchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySchedule(..)")
    }
}

impl KeySchedule {
    /// Derives the schedule: `prk = HKDF-Extract(salt, ecdh_x)`, then one expand per secret
    /// with `label || th` as info.
    #[must_use]
    pub fn derive(salt: &[u8; SALT_LEN], ecdh_x: &[u8; 32], th: &[u8; 32]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), ecdh_x);
        let mut c2s = Zeroizing::new([0u8; 32]);
        let mut s2c = Zeroizing::new([0u8; 32]);
        let mut confirm = Zeroizing::new([0u8; 32]);
        expand(&hk, &[label::C2S, th], c2s.as_mut());
        expand(&hk, &[label::S2C, th], s2c.as_mut());
        expand(&hk, &[label::CONFIRM, th], confirm.as_mut());
        Self { c2s, s2c, confirm }
    }
}

/// The key, nonce prefix and next secret of one epoch.
pub struct EpochKeys {
    /// AES-256-GCM key.
    pub key: Zeroizing<[u8; 32]>,
    /// Nonce prefix.
    pub prefix: [u8; NONCE_PREFIX_LEN],
    /// The next epoch's secret.
    pub next: Zeroizing<[u8; 32]>,
}

impl EpochKeys {
    /// Expands an epoch secret.
    #[must_use]
    pub fn derive(secret: &[u8; 32]) -> Self {
        let hk = from_prk(secret);
        let mut key = Zeroizing::new([0u8; 32]);
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        let mut next = Zeroizing::new([0u8; 32]);
        expand(&hk, &[label::KEY], key.as_mut());
        expand(&hk, &[label::IV], &mut prefix);
        expand(&hk, &[label::NEXT], next.as_mut());
        Self { key, prefix, next }
    }
}

/// `HMAC-SHA256(confirm, label || th)`: the key-confirmation value of one side.
#[must_use]
pub fn finished_mac(confirm: &[u8; 32], side_label: &[u8], th: &[u8; 32]) -> [u8; 32] {
    mac(confirm, side_label, th).finalize().into_bytes().into()
}

fn mac(key: &[u8; 32], side_label: &[u8], th: &[u8; 32]) -> Hmac<Sha256> {
    let mut m = match <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    m.update(side_label);
    m.update(th);
    m
}

/// Checks a key-confirmation value in constant time.
///
/// # Errors
/// [`CryptoError::Handshake`] when it does not match.
pub fn verify_finished(
    confirm: &[u8; 32],
    side_label: &[u8],
    th: &[u8; 32],
    tag: &[u8],
) -> Result<(), CryptoError> {
    mac(confirm, side_label, th)
        .verify_slice(tag)
        .map_err(|_| CryptoError::Handshake)
}

/// The signed message: `"sealwire-v2 server signature" || th`.
#[must_use]
pub fn signature_input(th: &[u8; 32]) -> Vec<u8> {
    [label::SIGNATURE, th].concat()
}

/// `prefix || u64(seq)`.
#[must_use]
pub fn nonce(prefix: &[u8; NONCE_PREFIX_LEN], seq: u64) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..NONCE_PREFIX_LEN].copy_from_slice(prefix);
    n[NONCE_PREFIX_LEN..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// `"sealwire-v2" || dir || u32(epoch) || u64(seq)`.
#[must_use]
pub fn aad(dir: Direction, epoch: u32, seq: u64) -> [u8; AAD_LEN] {
    let mut a = [0u8; AAD_LEN];
    a[..11].copy_from_slice(label::AAD);
    a[11] = dir.byte();
    a[12..16].copy_from_slice(&epoch.to_be_bytes());
    a[16..].copy_from_slice(&seq.to_be_bytes());
    a
}

/// The epoch a sequence number belongs to.
#[must_use]
pub fn epoch_of(seq: u64, rekey_after: u32) -> u32 {
    // Saturates rather than wraps: with seq < 2^48 this only happens for budgets below 2^16
    // after more than 2^32 epochs, long after any real connection has ended.
    u32::try_from(seq / u64::from(rekey_after.max(1))).unwrap_or(u32::MAX)
}

/// One direction's state: current epoch secret, key, prefix and next sequence number.
pub(crate) struct Record {
    dir: Direction,
    rekey_after: u32,
    epoch: u32,
    secret: Zeroizing<[u8; 32]>,
    key: SessionKey,
    prefix: [u8; NONCE_PREFIX_LEN],
    next_seq: u64,
}

impl Record {
    pub(crate) fn new(
        dir: Direction,
        secret0: &[u8; 32],
        rekey_after: u32,
        aead: AeadBackend,
    ) -> Self {
        let keys = EpochKeys::derive(secret0);
        Self {
            dir,
            rekey_after: rekey_after.max(1),
            epoch: 0,
            secret: Zeroizing::new(*secret0),
            key: SessionKey::new(&keys.key, aead),
            prefix: keys.prefix,
            next_seq: 0,
        }
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Moves forward to `epoch` (never backwards), wiping each retired secret.
    fn ratchet_to(&mut self, epoch: u32) {
        while self.epoch < epoch {
            let cur = EpochKeys::derive(&self.secret);
            let next = EpochKeys::derive(&cur.next);
            self.secret = cur.next;
            self.key = SessionKey::new(&next.key, self.key.backend());
            self.prefix = next.prefix;
            self.epoch += 1;
        }
    }

    /// Seals the next record: returns `(seq, nonce, ct || tag)`.
    pub(crate) fn seal(
        &mut self,
        plaintext: &[u8],
    ) -> Result<(u64, [u8; NONCE_LEN], Vec<u8>), CryptoError> {
        self.seal_with(|key, seq, n, a| {
            let mut buf = vec![0u8; plaintext.len() + TAG_LEN];
            key.seal_to(n, a, plaintext, &mut buf)?;
            Ok((seq, *n, buf))
        })
    }

    /// Seals the next record with `seal(key, seq, nonce, aad)`, which writes the record
    /// wherever it wants it; the sequence number moves on only if it succeeds.
    pub(crate) fn seal_with<T>(
        &mut self,
        seal: impl FnOnce(&mut SessionKey, u64, &[u8; NONCE_LEN], &[u8]) -> Result<T, CryptoError>,
    ) -> Result<T, CryptoError> {
        let seq = self.next_seq;
        if seq >= SEQ_HARD_LIMIT {
            return Err(CryptoError::Encrypt);
        }
        let epoch = epoch_of(seq, self.rekey_after);
        self.ratchet_to(epoch);
        let n = nonce(&self.prefix, seq);
        let a = aad(self.dir, epoch, seq);
        let out = seal(&mut self.key, seq, &n, &a)?;
        self.next_seq = seq + 1;
        Ok(out)
    }

    /// Opens the record that must come next. Nothing changes unless it authenticates.
    pub(crate) fn open(
        &mut self,
        seq: u64,
        iv: &[u8],
        mut ct: Vec<u8>,
    ) -> Result<Vec<u8>, CryptoError> {
        if seq != self.next_seq || seq >= SEQ_HARD_LIMIT || ct.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let epoch = epoch_of(seq, self.rekey_after);
        let crossing = epoch != self.epoch;
        // Only ever one step: records arrive strictly in order.
        let next = crossing.then(|| {
            let cur = EpochKeys::derive(&self.secret);
            let next = EpochKeys::derive(&cur.next);
            (
                cur.next,
                SessionKey::new(&next.key, self.key.backend()),
                next.prefix,
            )
        });
        let prefix = next.as_ref().map_or(self.prefix, |n| n.2);
        let n = nonce(&prefix, seq);
        if iv != n {
            return Err(CryptoError::Decrypt);
        }
        let a = aad(self.dir, epoch, seq);
        match next {
            Some((secret, mut key, prefix)) => {
                key.open_in_place(&n, &a, &mut ct)?;
                self.secret = secret;
                self.key = key;
                self.prefix = prefix;
                self.epoch = epoch;
            }
            None => self.key.open_in_place(&n, &a, &mut ct)?,
        }
        self.next_seq = seq + 1;
        Ok(ct)
    }

    /// Drops the expanded key schedule until the next seal or open.
    pub(crate) fn compact(&mut self) {
        self.key.compact();
    }

    /// The current epoch secret (wipe checks in tests).
    #[cfg(test)]
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl Zeroize for Record {
    fn zeroize(&mut self) {
        self.secret.zeroize();
        self.prefix.zeroize();
    }
}

#[cfg(test)]
mod tests;
