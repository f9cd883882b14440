//! [`BusKey`], the shared backplane key, and the AES-256-GCM key it derives for each publisher
//! key id.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use base64::Engine as _;
use hkdf::Hkdf;
use rand::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{BUS_INFO, BUS_KEY_LEN, KID_LEN};
use crate::crypto::{CryptoError, b64};

/// The shared 32-byte backplane key.
///
/// # Security
/// No `Clone`, `Debug` shows nothing, the bytes are wiped on drop.
pub struct BusKey(Zeroizing<[u8; BUS_KEY_LEN]>);

impl std::fmt::Debug for BusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusKey(<redacted>)")
    }
}

impl BusKey {
    /// Wraps 32 raw bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; BUS_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses standard base64 of exactly 32 bytes (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`CryptoError::Encoding`] for bad base64 or a length other than 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let raw = Zeroizing::new(
            b64()
                .decode(text.trim())
                .map_err(|_| CryptoError::Encoding)?,
        );
        let bytes: [u8; BUS_KEY_LEN] = raw
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Encoding)?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh random key (for `sealwire` key generation and tests).
    #[must_use]
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; BUS_KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Another handle with the same bytes (the sealer and opener each own one).
    #[must_use]
    pub fn duplicate(&self) -> Self {
        Self::from_bytes(*self.0)
    }

    pub(super) fn derive(&self, kid: &[u8; KID_LEN]) -> Aes256Gcm {
        let mut okm = Zeroizing::new([0u8; 32]);
        let hk = Hkdf::<Sha256>::new(Some(kid), self.0.as_ref());
        if hk.expand(BUS_INFO.as_bytes(), okm.as_mut()).is_err() {
            unreachable!("HKDF-SHA256 output of 32 bytes is always valid");
        }
        Aes256Gcm::new((&*okm).into())
    }
}
