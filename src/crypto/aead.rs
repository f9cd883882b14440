//! An AES-256-GCM key whose expanded key schedule exists only while it is in use.
//!
//! An expanded `Aes256Gcm` is about a kilobyte (round keys for the hardware path and the
//! bitsliced fallback, plus the GHASH key). A server holds one or two per encrypted connection,
//! and most connections are idle most of the time, so sessions keep the 32-byte key and expand
//! it on first use; the connection drops the expansion again with [`SessionKey::compact`] once
//! per heartbeat interval. Expanding costs well under a microsecond, so a busy connection pays
//! it once per interval and an idle one never.
//!
//! # Security
//! The key and every expansion are wiped on drop (`Zeroizing`, and `aes-gcm`'s `zeroize`
//! feature for the schedule). No `Clone`, no `Debug` of the key.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::{CryptoError, NONCE_LEN};

/// A 32-byte AES-256-GCM key, expanded lazily.
pub(crate) struct SessionKey {
    key: Zeroizing<[u8; 32]>,
    expanded: Option<Box<Aes256Gcm>>,
}

impl SessionKey {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(*key),
            expanded: None,
        }
    }

    fn cipher(&mut self) -> &Aes256Gcm {
        let key = &self.key;
        self.expanded
            .get_or_insert_with(|| Box::new(Aes256Gcm::new((&**key).into())))
    }

    /// Encrypts `buf` in place and appends the tag.
    pub(crate) fn seal_in_place(
        &mut self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.cipher()
            .encrypt_in_place(&Nonce::from(*nonce), aad, buf)
            .map_err(|_| CryptoError::Encrypt)
    }

    /// Checks the tag and decrypts `buf` (ciphertext || tag) in place.
    pub(crate) fn open_in_place(
        &mut self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        self.cipher()
            .decrypt_in_place(&Nonce::from(*nonce), aad, buf)
            .map_err(|_| CryptoError::Decrypt)
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
mod tests {
    use super::*;

    #[test]
    fn compacting_changes_nothing_but_memory() {
        let mut a = SessionKey::new(&[7u8; 32]);
        let mut b = SessionKey::new(&[7u8; 32]);
        let nonce = [1u8; NONCE_LEN];
        let mut buf = b"payload".to_vec();
        a.seal_in_place(&nonce, b"aad", &mut buf).expect("seal");
        assert!(a.is_expanded());
        a.compact();
        assert!(!a.is_expanded());
        let mut again = b"payload".to_vec();
        a.seal_in_place(&nonce, b"aad", &mut again).expect("seal");
        assert_eq!(buf, again);
        b.open_in_place(&nonce, b"aad", &mut buf).expect("open");
        assert_eq!(buf, b"payload");
        assert_eq!(
            b.open_in_place(&nonce, b"aad", &mut again[..3].to_vec()),
            Err(CryptoError::Decrypt)
        );
    }
}
