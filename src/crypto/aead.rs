//! An AES-256-GCM key whose expanded key schedule exists only while it is in use, computed by
//! one of two implementations: `aws-lc-rs` (the default) or RustCrypto `aes-gcm` (the
//! reference, kept selectable so the two can be differential-tested).
//!
//! An expanded key is sizeable: RustCrypto's `Aes256Gcm` is about a kilobyte (round keys for
//! the hardware path and the bitsliced fallback, plus the GHASH key); aws-lc's is one
//! `EVP_AEAD_CTX`, 584 bytes on the C heap (a 564-byte state union plus the method pointer and
//! lengths; with aws-lc's 8-byte size prefix and the allocator's rounding, a 608-byte chunk
//! with glibc), plus a 24-byte handle inline (so a compacted [`SessionKey`] is 64 bytes: the
//! key, the choice of implementation and room for the handle). A server holds one or two
//! expanded keys per encrypted connection, and
//! most connections are idle most of the time, so sessions keep the 32-byte key and expand it
//! on first use; the connection drops the expansion again with [`SessionKey::compact`] once
//! per heartbeat interval. Expanding costs well under a microsecond in both implementations,
//! so a busy connection pays it once per interval and an idle one never.
//!
//! # Security
//! The key and every expansion are wiped on drop: the 32-byte key by `Zeroizing`, RustCrypto's
//! schedule by `aes-gcm`'s `zeroize` feature, aws-lc's context by aws-lc itself (freeing it
//! runs `EVP_AEAD_CTX_cleanup`, then `OPENSSL_free`, which cleanses the whole allocation before
//! releasing it). No `Clone`, no `Debug` of the key.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce as LcNonce, UnboundKey};
use zeroize::Zeroizing;

use super::{CryptoError, NONCE_LEN, TAG_LEN};

/// Which implementation computes AES-256-GCM for session records (both profiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AeadBackend {
    /// RustCrypto `aes-gcm` (pure Rust with AES-NI/CLMUL intrinsics, the reference).
    RustCrypto,
    /// `aws-lc-rs` (assembly-optimized, stitched AES-GCM).
    AwsLc,
    /// The fastest implementation compiled in.
    #[default]
    Fastest,
}

impl AeadBackend {
    fn resolve(self) -> Self {
        match self {
            Self::Fastest => Self::AwsLc,
            other => other,
        }
    }
}

/// An expanded key in one implementation.
enum Expanded {
    RustCrypto(Box<Aes256Gcm>),
    AwsLc(LessSafeKey),
}

/// A 32-byte AES-256-GCM key, expanded lazily.
pub(crate) struct SessionKey {
    key: Zeroizing<[u8; 32]>,
    backend: AeadBackend,
    expanded: Option<Expanded>,
}

impl SessionKey {
    pub(crate) fn new(key: &[u8; 32], backend: AeadBackend) -> Self {
        Self {
            key: Zeroizing::new(*key),
            backend: backend.resolve(),
            expanded: None,
        }
    }

    /// The implementation this key uses (resolved: never [`AeadBackend::Fastest`]).
    pub(crate) fn backend(&self) -> AeadBackend {
        self.backend
    }

    fn cipher(&mut self) -> Result<&Expanded, CryptoError> {
        if self.expanded.is_none() {
            self.expanded = Some(match self.backend {
                AeadBackend::AwsLc => Expanded::AwsLc(LessSafeKey::new(
                    UnboundKey::new(&AES_256_GCM, &*self.key).map_err(|_| CryptoError::Encrypt)?,
                )),
                _ => Expanded::RustCrypto(Box::new(Aes256Gcm::new((&*self.key).into()))),
            });
        }
        self.expanded.as_ref().ok_or(CryptoError::Encrypt)
    }

    /// Seals `plaintext` into `out`, which must be exactly `plaintext.len() + TAG_LEN` bytes:
    /// the ciphertext, then the tag. The plaintext is read where it is, never copied.
    pub(crate) fn seal_to(
        &mut self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        if out.len() != plaintext.len() + TAG_LEN {
            return Err(CryptoError::Encrypt);
        }
        let (ct, tag) = out.split_at_mut(plaintext.len());
        match self.cipher()? {
            Expanded::RustCrypto(c) => {
                let buf = InOutBuf::new(plaintext, ct).map_err(|_| CryptoError::Encrypt)?;
                let t = c
                    .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf)
                    .map_err(|_| CryptoError::Encrypt)?;
                tag.copy_from_slice(&t);
            }
            Expanded::AwsLc(k) => k
                .seal_out_of_place_scatter(
                    LcNonce::assume_unique_for_key(*nonce),
                    Aad::from(aad),
                    plaintext,
                    ct,
                    &[],
                    tag,
                )
                .map_err(|_| CryptoError::Encrypt)?,
        }
        Ok(())
    }

    /// Checks the tag and decrypts `buf` (ciphertext || tag) in place. On failure `buf` holds
    /// no plaintext (its contents are unspecified).
    pub(crate) fn open_in_place(
        &mut self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let Ok(cipher) = self.cipher() else {
            return Err(CryptoError::Decrypt);
        };
        match cipher {
            Expanded::RustCrypto(c) => c
                .decrypt_in_place(&Nonce::from(*nonce), aad, buf)
                .map_err(|_| CryptoError::Decrypt),
            Expanded::AwsLc(k) => {
                let len = k
                    .open_in_place(LcNonce::assume_unique_for_key(*nonce), Aad::from(aad), buf)
                    .map_err(|_| CryptoError::Decrypt)?
                    .len();
                buf.truncate(len);
                Ok(())
            }
        }
    }

    /// Drops (and wipes) the expanded key schedule; the next use expands the key again.
    pub(crate) fn compact(&mut self) {
        self.expanded = None;
    }

    /// Whether the key schedule is currently expanded.
    #[cfg(test)]
    pub(crate) fn is_expanded(&self) -> bool {
        self.expanded.is_some()
    }
}

#[cfg(test)]
mod tests;
