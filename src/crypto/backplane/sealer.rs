//! [`Sealer`]: seals envelopes for one publisher under its own key id and nonce counter.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::CryptoRng;

use super::envelope::Sealed;
use super::{BusKey, KID_LEN, REKEY_AFTER, SEALED_TAG, envelope_aad, now_ms};
use crate::crypto::{CryptoError, NONCE_LEN, TAG_LEN, b64};
use crate::protocol::BusEnvelope;

/// Seals envelopes for one publisher: a random key id, a derived key and a nonce counter.
pub struct Sealer {
    key: BusKey,
    kid: [u8; KID_LEN],
    cipher: Aes256Gcm,
    counter: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with a fresh key id drawn from `rng`.
    #[must_use]
    pub fn new<R: CryptoRng + ?Sized>(key: BusKey, rng: &mut R) -> Self {
        let mut kid = [0u8; KID_LEN];
        rng.fill_bytes(&mut kid);
        let cipher = key.derive(&kid);
        Self {
            key,
            kid,
            cipher,
            counter: 0,
        }
    }

    /// Replaces `env.data` with its sealed form.
    ///
    /// # Errors
    /// [`CryptoError::Encrypt`] if AES-GCM refuses the input (over its length limit).
    pub fn seal(&mut self, env: &mut BusEnvelope) -> Result<(), CryptoError> {
        self.seal_with_rng(&mut rand::rng(), env, now_ms())
    }

    /// As [`Sealer::seal`], stamped `ts` (milliseconds since the Unix epoch) instead of the
    /// system clock's time, drawing a new key id from `rng` when the counter runs out.
    ///
    /// # Errors
    /// As [`Sealer::seal`].
    pub fn seal_with_rng<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        env: &mut BusEnvelope,
        ts: u64,
    ) -> Result<(), CryptoError> {
        if self.counter >= REKEY_AFTER {
            rng.fill_bytes(&mut self.kid);
            self.cipher = self.key.derive(&self.kid);
            self.counter = 0;
        }
        let mut iv = [0u8; NONCE_LEN];
        iv[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        let aad = envelope_aad(env, ts);
        let mut buf = Vec::with_capacity(env.data.get().len() + TAG_LEN);
        buf.extend_from_slice(env.data.get().as_bytes());
        self.cipher
            .encrypt_in_place(&Nonce::from(iv), &aad, &mut buf)
            .map_err(|_| CryptoError::Encrypt)?;
        let sealed = Sealed {
            sealed: SEALED_TAG,
            kid: b64().encode(self.kid),
            iv: b64().encode(iv),
            ct: b64().encode(&buf),
            ts,
        };
        env.data = serde_json::value::to_raw_value(&sealed).map_err(|_| CryptoError::Encrypt)?;
        Ok(())
    }
}
