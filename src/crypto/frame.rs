//! Writes an outbound `encrypted` frame straight from the shared plaintext: the one place the
//! per-recipient work of an encrypted fan-out happens.
//!
//! ```text
//! {"event":"encrypted","data":{"iv":"<b64 nonce>","ct":"<b64 ciphertext||tag>"[,"seq":N]}}
//! ```
//!
//! The frame's length is known before anything is written, so it is built in one allocation
//! (the `String` that becomes the WebSocket message). The plaintext (the publication's JSON,
//! serialized once and shared by every recipient) is read in place by the AEAD, which writes
//! the ciphertext into a per-thread scratch buffer; base64 is encoded from there directly into
//! the frame. Nothing else is allocated or copied. The scratch buffer only ever holds
//! ciphertext, and anything over [`SCRATCH_RETAINED`] is released after use.

use std::cell::RefCell;
use std::fmt::Write as _;

use base64::Engine as _;

use super::aead::SessionKey;
use super::{CryptoError, NONCE_LEN, TAG_LEN, b64};

const HEAD: &str = r#"{"event":"encrypted","data":{"iv":""#;
const MID: &str = r#"","ct":""#;
const SEQ: &str = r#","seq":"#;
/// `"` after the ciphertext and `}}` to close `data` and the frame.
const TAIL_LEN: usize = 3;
/// Longest decimal `u64`.
const U64_DIGITS: usize = 20;
/// Scratch capacity kept per thread between frames; a larger one (a large message) is freed.
const SCRATCH_RETAINED: usize = 64 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Base64 length (padded) of `n` bytes.
const fn b64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Seals `plaintext` under `key` with `nonce` and `aad` and returns the whole `encrypted`
/// frame, with `seq` when the profile numbers its records.
pub(crate) fn sealed_frame(
    key: &mut SessionKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    seq: Option<u64>,
    plaintext: &[u8],
) -> Result<String, CryptoError> {
    let ct_len = plaintext
        .len()
        .checked_add(TAG_LEN)
        .ok_or(CryptoError::Encrypt)?;
    let seq_len = if seq.is_some() {
        SEQ.len() + U64_DIGITS
    } else {
        0
    };
    let mut frame = String::with_capacity(
        HEAD.len() + b64_len(NONCE_LEN) + MID.len() + b64_len(ct_len) + seq_len + TAIL_LEN,
    );
    frame.push_str(HEAD);
    b64().encode_string(nonce, &mut frame);
    frame.push_str(MID);
    let sealed = SCRATCH
        .try_with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buf) => seal_b64(key, nonce, aad, plaintext, ct_len, &mut buf, &mut frame),
            // Not reachable (sealing does not re-enter), but never worth a panic.
            Err(_) => seal_b64(
                key,
                nonce,
                aad,
                plaintext,
                ct_len,
                &mut Vec::new(),
                &mut frame,
            ),
        })
        // The thread is exiting and its scratch is gone: use a buffer of our own.
        .unwrap_or_else(|_| {
            seal_b64(
                key,
                nonce,
                aad,
                plaintext,
                ct_len,
                &mut Vec::new(),
                &mut frame,
            )
        });
    sealed?;
    frame.push('"');
    if let Some(seq) = seq {
        frame.push_str(SEQ);
        // Writing to a `String` cannot fail.
        let _ = write!(frame, "{seq}");
    }
    frame.push_str("}}");
    Ok(frame)
}

/// Seals into `buf` and appends the base64 of the result to `frame`.
fn seal_b64(
    key: &mut SessionKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
    ct_len: usize,
    buf: &mut Vec<u8>,
    frame: &mut String,
) -> Result<(), CryptoError> {
    // Only ever grown: the AEAD overwrites what it uses, so no clearing per frame.
    if buf.len() < ct_len {
        buf.resize(ct_len, 0);
    }
    let out = &mut buf[..ct_len];
    let sealed = key.seal_to(nonce, aad, plaintext, out);
    if sealed.is_ok() {
        b64().encode_string(&*out, frame);
    }
    if buf.len() > SCRATCH_RETAINED {
        *buf = Vec::new();
    }
    sealed
}
