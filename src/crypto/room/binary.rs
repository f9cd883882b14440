//! The binary form of a room record (`"roomRecords":"binary"`, `docs/PROTOCOL.md` §14.6): the
//! same record as the `room-encrypted` text frame, as one WebSocket binary message without
//! JSON or base64 around it.
//!
//! ```text
//! record = 0x01 || u16(len(room)) || room || u64(epoch) || u64(seq) || ct || tag
//! aad    = "sealwire-room-v1" || record[1 .. 19 + len(room)]
//! ```
//!
//! The header after the type byte is exactly the AAD after its label, so a receiver checks
//! the fields it routes by (room, epoch, seq) with the tag. A 200-byte publication is a
//! 235-byte message plus the room name, against about 380 bytes as a text frame.

use super::{TAG_LEN, label};
use crate::crypto::CryptoError;

/// The `roomRecords` value of the sealed `authenticate` and `connected` that agrees to binary
/// room records.
pub const RECORDS_BINARY: &str = "binary";
/// The first byte of a binary room record (the only binary message the protocol has).
pub const RECORD_TYPE: u8 = 0x01;

/// Bytes of a binary record before the ciphertext, for a room name of `room_len` bytes.
#[must_use]
pub const fn header_len(room_len: usize) -> usize {
    1 + 2 + room_len + 8 + 8
}

/// A binary room record's fields, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryRecord<'a> {
    /// The room (UTF-8).
    pub room: &'a str,
    /// The epoch.
    pub epoch: u64,
    /// The record's sequence number in its epoch.
    pub seq: u64,
    /// Ciphertext || tag.
    pub ct: &'a [u8],
    /// The header after the type byte: the AAD after its label.
    fields: &'a [u8],
}

impl<'a> BinaryRecord<'a> {
    /// Parses a binary message.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] unless it starts with [`RECORD_TYPE`], holds the whole header
    /// with a UTF-8 room name, and a ciphertext of at least a tag.
    pub fn parse(message: &'a [u8]) -> Result<Self, CryptoError> {
        let bad = || CryptoError::Decrypt;
        let (&kind, rest) = message.split_first().ok_or_else(bad)?;
        if kind != RECORD_TYPE || rest.len() < 2 {
            return Err(bad());
        }
        let room_len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = header_len(room_len);
        let fields = message.get(1..end).ok_or_else(bad)?;
        let ct = &message[end..];
        if ct.len() < TAG_LEN {
            return Err(bad());
        }
        let room = std::str::from_utf8(&fields[2..2 + room_len]).map_err(|_| bad())?;
        let number = |at: usize| {
            let mut n = [0u8; 8];
            n.copy_from_slice(&fields[at..at + 8]);
            u64::from_be_bytes(n)
        };
        Ok(Self {
            room,
            epoch: number(2 + room_len),
            seq: number(2 + room_len + 8),
            ct,
            fields,
        })
    }

    /// The AAD the record was sealed with.
    #[must_use]
    pub fn aad(&self) -> Vec<u8> {
        let mut a = Vec::with_capacity(label::AAD.len() + self.fields.len());
        a.extend_from_slice(label::AAD);
        a.extend_from_slice(self.fields);
        a
    }
}

/// Starts a binary record: the type byte and the header, with room for `ct_len` more bytes.
/// Returns the message so far and the AAD.
///
/// # Errors
/// [`CryptoError::Encrypt`] if the room name is longer than 65535 bytes.
pub(super) fn begin(
    room: &str,
    epoch: u64,
    seq: u64,
    ct_len: usize,
) -> Result<(Vec<u8>, Vec<u8>), CryptoError> {
    let len = u16::try_from(room.len()).map_err(|_| CryptoError::Encrypt)?;
    let mut message = Vec::with_capacity(header_len(room.len()) + ct_len);
    message.push(RECORD_TYPE);
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(room.as_bytes());
    message.extend_from_slice(&epoch.to_be_bytes());
    message.extend_from_slice(&seq.to_be_bytes());
    let mut aad = Vec::with_capacity(label::AAD.len() + message.len() - 1);
    aad.extend_from_slice(label::AAD);
    aad.extend_from_slice(&message[1..]);
    Ok((message, aad))
}
