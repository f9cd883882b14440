//! Room keys (`sealwire-room-v1`, an extension of the hardened profile): one AES-256-GCM key
//! per room *epoch*, so that a publication to an encrypted room is sealed once and the same
//! bytes go to every member holding the key.
//!
//! Every byte is specified in `docs/PROTOCOL.md` ("Room keys"). In short:
//!
//! ```text
//! secret     = 32 random bytes per (instance, room, epoch); handed to each member inside
//!              that member's own s2c record layer: room-key {room, epoch, key: b64(secret)}
//! key        = HKDF-Expand(secret, "sealwire-room-v1 key", 32)
//! prefix     = HKDF-Expand(secret, "sealwire-room-v1 iv", 4)
//! nonce(seq) = prefix || u64(seq)                         seq = 0, 1, 2, ... per epoch
//! aad        = "sealwire-room-v1" || u16(len(room)) || room || u64(epoch) || u64(seq)
//! frame      = {"event":"room-encrypted","data":{"room":..,"epoch":E,"seq":N,"ct":b64(ct||tag)}}
//!              or, for a member that agreed to binary records, one binary message:
//!              0x01 || u16(len(room)) || room || u64(epoch) || u64(seq) || ct || tag  ([`binary`])
//! ```
//!
//! The server is the only sender under a room key: [`RoomSealer`] numbers the records, a
//! member's [`RoomKeyring`] accepts each epoch's sequence numbers strictly increasing (gaps are
//! allowed: a member excluded from one publication does not receive it).

use std::collections::HashMap;

use base64::Engine as _;
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::aead::{AeadBackend, SessionKey};
use super::b64_public::{encode_into, encoded_len};
use super::hardened::{NONCE_PREFIX_LEN, expand, from_prk, nonce};
use super::{CryptoError, TAG_LEN, b64};

pub mod binary;

pub use binary::BinaryRecord;

/// Wire id of the extension (the `roomKeys` value of the sealed `authenticate` and `connected`).
pub const EXTENSION_ID: &str = "sealwire-room-v1";
/// S->C, inside the member's own record layer: the secret of a room's new epoch.
pub const GRANT_EVENT: &str = crate::protocol::event::ROOM_KEY;
/// S->C, outside any per-client record layer: a publication sealed under a room epoch's key.
pub const FRAME_EVENT: &str = crate::protocol::event::ROOM_ENCRYPTED;
/// Records sealed under one epoch key at most; the server moves to a new epoch long before.
pub const MAX_EPOCH_RECORDS: u64 = 1 << 32;
/// Length of an epoch secret.
pub const SECRET_LEN: usize = 32;

/// Labels (ASCII, no terminator).
pub mod label {
    /// AES-256-GCM key of an epoch.
    pub const KEY: &[u8] = b"sealwire-room-v1 key";
    /// Nonce prefix of an epoch.
    pub const IV: &[u8] = b"sealwire-room-v1 iv";
    /// AAD prefix of every room record.
    pub const AAD: &[u8] = b"sealwire-room-v1";
}

/// A room epoch's secret: what a member is handed. Wiped on drop; no `Clone` or `Debug`.
pub struct RoomSecret(Zeroizing<[u8; SECRET_LEN]>);

impl RoomSecret {
    /// A fresh secret from `rng`.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut s = Zeroizing::new([0u8; SECRET_LEN]);
        rng.fill_bytes(s.as_mut());
        Self(s)
    }

    /// A secret from its bytes (known-answer tests).
    #[must_use]
    pub fn from_bytes(bytes: &[u8; SECRET_LEN]) -> Self {
        Self(Zeroizing::new(*bytes))
    }

    /// Parses the `key` field of a `room-key` grant.
    ///
    /// # Errors
    /// [`CryptoError::Encoding`] unless it is base64 of exactly 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(b64().decode(key).map_err(|_| CryptoError::Encoding)?);
        let arr: [u8; SECRET_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Encoding)?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// The `key` field of a `room-key` grant.
    #[must_use]
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(b64().encode(*self.0))
    }

    /// The epoch's AES-256-GCM key and nonce prefix.
    #[must_use]
    pub fn expand(&self) -> (Zeroizing<[u8; 32]>, [u8; NONCE_PREFIX_LEN]) {
        let hk = from_prk(&self.0);
        let mut key = Zeroizing::new([0u8; 32]);
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        expand(&hk, &[label::KEY], key.as_mut());
        expand(&hk, &[label::IV], &mut prefix);
        (key, prefix)
    }
}

/// The AAD of record `seq` of `epoch` in `room`.
///
/// # Errors
/// [`CryptoError::Encrypt`] if the room name is longer than 65535 bytes.
pub fn aad(room: &str, epoch: u64, seq: u64) -> Result<Vec<u8>, CryptoError> {
    let len = u16::try_from(room.len()).map_err(|_| CryptoError::Encrypt)?;
    let mut a = Vec::with_capacity(label::AAD.len() + 2 + room.len() + 16);
    a.extend_from_slice(label::AAD);
    a.extend_from_slice(&len.to_be_bytes());
    a.extend_from_slice(room.as_bytes());
    a.extend_from_slice(&epoch.to_be_bytes());
    a.extend_from_slice(&seq.to_be_bytes());
    Ok(a)
}

/// The plaintext of a `room-key` grant frame: `{"event":"room-key","data":{room,epoch,key}}`.
/// Wiped on drop (it holds the secret).
#[must_use]
pub fn grant_json(room: &str, epoch: u64, secret: &RoomSecret) -> Zeroizing<String> {
    let key = secret.to_base64();
    let room = serde_json::to_string(room).unwrap_or_else(|_| "\"\"".to_owned());
    let mut out = Zeroizing::new(String::with_capacity(room.len() + key.len() + 80));
    out.push_str(r#"{"event":"room-key","data":{"room":"#);
    out.push_str(&room);
    out.push_str(r#","epoch":"#);
    out.push_str(&epoch.to_string());
    out.push_str(r#","key":""#);
    out.push_str(&key);
    out.push_str(r#""}}"#);
    out
}

/// The sending side of one room epoch (the server): seals each publication once.
pub struct RoomSealer {
    room: String,
    epoch: u64,
    key: SessionKey,
    prefix: [u8; NONCE_PREFIX_LEN],
    next_seq: u64,
    /// `{"event":"room-encrypted","data":{"room":<json>,"epoch":E,"seq":`: the same for every
    /// record of the epoch.
    head: String,
}

impl std::fmt::Debug for RoomSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomSealer")
            .field("room", &self.room)
            .field("epoch", &self.epoch)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl RoomSealer {
    /// The sealer of `epoch` of `room` under `secret`.
    ///
    /// # Errors
    /// [`CryptoError::Encrypt`] if the room name is longer than 65535 bytes.
    pub fn new(
        room: &str,
        epoch: u64,
        secret: &RoomSecret,
        aead: AeadBackend,
    ) -> Result<Self, CryptoError> {
        u16::try_from(room.len()).map_err(|_| CryptoError::Encrypt)?;
        let (key, prefix) = secret.expand();
        let room_json = serde_json::to_string(room).map_err(|_| CryptoError::Encrypt)?;
        let head = format!(
            r#"{{"event":"{FRAME_EVENT}","data":{{"room":{room_json},"epoch":{epoch},"seq":"#
        );
        Ok(Self {
            room: room.to_owned(),
            epoch,
            key: SessionKey::new(&key, aead),
            prefix,
            next_seq: 0,
            head,
        })
    }

    /// The epoch number.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records sealed so far.
    #[must_use]
    pub fn sealed(&self) -> u64 {
        self.next_seq
    }

    /// Seals `plaintext` (a UTF-8 JSON envelope) as the next record and returns the whole
    /// `room-encrypted` text frame.
    ///
    /// # Errors
    /// As [`Self::seal`].
    pub fn seal_frame(&mut self, plaintext: &[u8]) -> Result<String, CryptoError> {
        self.seal(plaintext).map(|frames| frames.text)
    }

    /// Seals `plaintext` (a UTF-8 JSON envelope) as the next record, once, and returns it in
    /// both of its forms: the `room-encrypted` text frame and the binary message (§14.6).
    ///
    /// # Errors
    /// [`CryptoError::Encrypt`] once [`MAX_EPOCH_RECORDS`] records were sealed, or if the
    /// AEAD fails.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<RoomRecordFrames, CryptoError> {
        let seq = self.next_seq;
        if seq >= MAX_EPOCH_RECORDS {
            return Err(CryptoError::Encrypt);
        }
        let ct_len = plaintext
            .len()
            .checked_add(TAG_LEN)
            .ok_or(CryptoError::Encrypt)?;
        let (mut message, a) = binary::begin(&self.room, self.epoch, seq, ct_len)?;
        let start = message.len();
        message.resize(start + ct_len, 0);
        self.key.seal_to(
            &nonce(&self.prefix, seq),
            &a,
            plaintext,
            &mut message[start..],
        )?;
        let ct = &message[start..];
        let seq_text = seq.to_string();
        let mut frame =
            Vec::with_capacity(self.head.len() + seq_text.len() + 8 + encoded_len(ct_len) + 3);
        frame.extend_from_slice(self.head.as_bytes());
        frame.extend_from_slice(seq_text.as_bytes());
        frame.extend_from_slice(br#","ct":""#);
        encode_into(ct, &mut frame)?;
        frame.extend_from_slice(br#""}}"#);
        self.next_seq = seq + 1;
        // The head is JSON from serde_json, the rest ASCII.
        let text = String::from_utf8(frame).map_err(|_| CryptoError::Encrypt)?;
        Ok(RoomRecordFrames {
            text,
            binary: message,
        })
    }
}

/// One room record in both of its wire forms ([`RoomSealer::seal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecordFrames {
    /// The `room-encrypted` text frame.
    pub text: String,
    /// The binary message ([`binary`]).
    pub binary: Vec<u8>,
}

/// The receiving side (a member): the current epoch of each room whose key it was granted.
#[derive(Default)]
pub struct RoomKeyring {
    rooms: HashMap<String, Held>,
}

struct Held {
    epoch: u64,
    key: SessionKey,
    prefix: [u8; NONCE_PREFIX_LEN],
    /// The last sequence number accepted in this epoch.
    last_seq: Option<u64>,
}

impl std::fmt::Debug for RoomKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomKeyring")
            .field("rooms", &self.rooms.len())
            .finish_non_exhaustive()
    }
}

impl RoomKeyring {
    /// An empty keyring.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a grant (received inside the member's own record layer): `epoch` of `room`
    /// replaces whatever the keyring held for that room.
    ///
    /// # Errors
    /// [`CryptoError::Encoding`] for a key that is not base64 of 32 bytes;
    /// [`CryptoError::Decrypt`] for an epoch that does not move forward (the server never
    /// goes back).
    pub fn grant(
        &mut self,
        room: &str,
        epoch: u64,
        key_b64: &str,
        aead: AeadBackend,
    ) -> Result<(), CryptoError> {
        if self.rooms.get(room).is_some_and(|h| epoch <= h.epoch) {
            return Err(CryptoError::Decrypt);
        }
        let secret = RoomSecret::from_base64(key_b64)?;
        let (key, prefix) = secret.expand();
        self.rooms.insert(
            room.to_owned(),
            Held {
                epoch,
                key: SessionKey::new(&key, aead),
                prefix,
                last_seq: None,
            },
        );
        Ok(())
    }

    /// Forgets a room's key (after leaving it).
    pub fn forget(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// The epoch held for `room`.
    #[must_use]
    pub fn epoch(&self, room: &str) -> Option<u64> {
        self.rooms.get(room).map(|h| h.epoch)
    }

    /// Opens a `room-encrypted` record: `ct` is the base64 of ciphertext || tag. Nothing
    /// changes unless it authenticates.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for a room or epoch without a key here, a sequence number not
    /// above the last one accepted in the epoch, bad base64, or a tag that does not verify.
    pub fn open(
        &mut self,
        room: &str,
        epoch: u64,
        seq: u64,
        ct: &str,
    ) -> Result<Vec<u8>, CryptoError> {
        let mut buf = b64().decode(ct).map_err(|_| CryptoError::Decrypt)?;
        let a = aad(room, epoch, seq).map_err(|_| CryptoError::Decrypt)?;
        self.open_with(room, epoch, seq, &a, &mut buf)?;
        Ok(buf)
    }

    /// Opens a binary room record (§14.6). Nothing changes unless it authenticates.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] as for [`Self::open`].
    pub fn open_binary(&mut self, record: &BinaryRecord<'_>) -> Result<Vec<u8>, CryptoError> {
        let mut buf = record.ct.to_vec();
        let a = record.aad();
        self.open_with(record.room, record.epoch, record.seq, &a, &mut buf)?;
        Ok(buf)
    }

    /// Opens `buf` (ciphertext || tag) in place, sealed as record `seq` of `epoch` of `room`
    /// with the AAD `a`, and moves the epoch's last accepted `seq` on.
    fn open_with(
        &mut self,
        room: &str,
        epoch: u64,
        seq: u64,
        a: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let held = self.rooms.get_mut(room).ok_or(CryptoError::Decrypt)?;
        if held.epoch != epoch
            || held.last_seq.is_some_and(|last| seq <= last)
            || seq >= MAX_EPOCH_RECORDS
            || buf.len() < TAG_LEN
        {
            return Err(CryptoError::Decrypt);
        }
        held.key.open_in_place(&nonce(&held.prefix, seq), a, buf)?;
        held.last_seq = Some(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
