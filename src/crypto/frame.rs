//! Writes an outbound `encrypted` frame straight from the shared plaintext: the one place the
//! per-recipient work of an encrypted fan-out happens.
//!
//! ```text
//! {"event":"encrypted","data":{"iv":"<b64 nonce>","ct":"<b64 ciphertext||tag>"[,"seq":N]}}
//! ```
//!
//! The frame's length is known before anything is written ([`sealed_frame_len`]), so it is
//! appended straight to a buffer the caller has: the socket's write buffer, right behind the
//! WebSocket header that needs that length, or one allocation of its own that becomes the
//! message (`Session::seal_frame`). The plaintext (the publication's JSON,
//! serialized once and shared by every recipient) is read in place by the AEAD, which writes
//! the ciphertext into a per-thread scratch buffer; base64 is encoded from there directly into
//! the frame (by [`super::b64_public`]). Nothing else is allocated. The scratch buffer only
//! ever holds ciphertext, and one grown past [`SCRATCH_RETAINED`] (a large message) is
//! released after use.

use std::cell::RefCell;

use super::aead::SessionKey;
use super::b64_public::{encode_into, encoded_len};
use super::{CryptoError, NONCE_LEN, TAG_LEN};

/// The fixed parts of an `encrypted` frame, in the order they are written: also for readers
/// that recognize a sealed frame by its shape (the Socket.IO door).
pub(crate) mod shape {
    /// The frame up to its `data`.
    pub(crate) const EVENT: &str = r#"{"event":"encrypted","data":"#;
    /// `data` up to the nonce.
    pub(crate) const IV: &str = r#"{"iv":""#;
    /// Between the nonce and the ciphertext.
    pub(crate) const CT: &str = r#"","ct":""#;
    /// After the closing quote of `ct`, before the record number (numbered profiles only).
    pub(crate) const SEQ: &str = r#","seq":"#;
    /// Closes `data` and the frame (after the closing quote of `ct`, and `seq` if any).
    pub(crate) const END: &str = "}}";
}
use shape::{CT, END, EVENT, IV, SEQ};
/// Longest decimal `u64`.
const U64_DIGITS: usize = 20;
/// Scratch capacity kept per thread between frames; a larger one (a large message) is freed.
const SCRATCH_RETAINED: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The exact length of the `encrypted` frame for a plaintext of `plaintext_len` bytes (with
/// `seq` when the profile numbers its records); `None` if it does not fit in memory.
pub(crate) fn sealed_frame_len(plaintext_len: usize, seq: Option<u64>) -> Option<usize> {
    let ct_len = plaintext_len.checked_add(TAG_LEN)?;
    let seq_len = seq.map_or(0, |n| SEQ.len() + decimal_len(n));
    (EVENT.len() + IV.len() + encoded_len(NONCE_LEN) + CT.len() + 1 + seq_len + END.len())
        .checked_add(encoded_len(ct_len))
}

/// Seals `plaintext` under `key` with `nonce` and `aad` and appends the whole `encrypted`
/// frame (ASCII, exactly [`sealed_frame_len`] bytes) to `out`, with `seq` when the profile
/// numbers its records. On failure `out` is left as it was.
pub(crate) fn seal_frame_into(
    key: &mut SessionKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    seq: Option<u64>,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let len = sealed_frame_len(plaintext.len(), seq).ok_or(CryptoError::Encrypt)?;
    let start = out.len();
    out.reserve(len);
    out.extend_from_slice(EVENT.as_bytes());
    out.extend_from_slice(IV.as_bytes());
    if let Err(e) = encode_into(nonce, out) {
        out.truncate(start);
        return Err(e);
    }
    out.extend_from_slice(CT.as_bytes());
    let ct_len = plaintext.len() + TAG_LEN;
    let mut seal = |buf: &mut Vec<u8>| seal_b64(key, nonce, aad, plaintext, ct_len, buf, out);
    // A buffer of our own if the scratch is unavailable: the thread is exiting, or it is
    // borrowed (not reachable: sealing does not re-enter).
    let sealed = match SCRATCH.try_with(|s| s.try_borrow_mut().ok().map(|mut buf| seal(&mut buf))) {
        Ok(Some(sealed)) => sealed,
        _ => seal(&mut Vec::new()),
    };
    if let Err(e) = sealed {
        out.truncate(start);
        return Err(e);
    }
    out.push(b'"');
    if let Some(seq) = seq {
        out.extend_from_slice(SEQ.as_bytes());
        push_decimal(out, seq);
    }
    out.extend_from_slice(END.as_bytes());
    debug_assert_eq!(out.len() - start, len);
    Ok(())
}

/// Seals into `buf` and appends the base64 of the result to `frame`.
fn seal_b64(
    key: &mut SessionKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
    ct_len: usize,
    buf: &mut Vec<u8>,
    frame: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    // Only ever grown: the AEAD overwrites what it uses, so no clearing per frame.
    if buf.len() < ct_len {
        buf.resize(ct_len, 0);
    }
    let out = &mut buf[..ct_len];
    let sealed = key
        .seal_to(nonce, aad, plaintext, out)
        .and_then(|()| encode_into(out, frame));
    if buf.len() > SCRATCH_RETAINED {
        *buf = Vec::new();
    }
    sealed
}

/// Number of decimal digits of `n`.
fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Appends `n` in decimal (what `format!("{n}")` writes, without the formatting machinery).
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; U64_DIGITS];
    let mut at = U64_DIGITS;
    while at > 0 {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_match_display() {
        let mut values = vec![0, 1, 9, 10, 99, 100, 12_345, u64::MAX - 1, u64::MAX];
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((1..20).map(|e| 10u64.pow(e) - 1));
        for n in values {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
            assert_eq!(decimal_len(n), out.len() - 1, "{n}");
        }
    }
}
