//! The sealed payload's wire form (`{"sealed","kid","iv","ct","ts"}`), the additional
//! authenticated data of an envelope, and recognising sealed payloads.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{BUS_INFO, KID_LEN, SEALED_TAG};
use crate::crypto::{CryptoError, NONCE_LEN, TAG_LEN, b64};
use crate::protocol::{BusEnvelope, BusTarget};

#[derive(Serialize, Deserialize)]
pub(super) struct Sealed<'a> {
    pub(super) sealed: &'a str,
    pub(super) kid: String,
    pub(super) iv: String,
    pub(super) ct: String,
    pub(super) ts: u64,
}

/// A sealed payload taken apart (nothing authenticated yet).
pub(super) struct Parts {
    pub(super) kid: [u8; KID_LEN],
    pub(super) iv: [u8; NONCE_LEN],
    /// The nonce counter (the last 8 bytes of `iv`).
    pub(super) counter: u64,
    /// Ciphertext followed by the tag.
    pub(super) ct: Vec<u8>,
    pub(super) ts: u64,
}

impl Parts {
    /// Takes a sealed `data` apart.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for anything but the current sealed form with well-formed
    /// fields (plaintext data, bad base64, wrong lengths, a non-zero nonce prefix).
    pub(super) fn of(data: &RawValue) -> Result<Self, CryptoError> {
        let sealed: Sealed<'_> =
            serde_json::from_str(data.get()).map_err(|_| CryptoError::Decrypt)?;
        if sealed.sealed != SEALED_TAG {
            return Err(CryptoError::Decrypt);
        }
        let kid: [u8; KID_LEN] = b64()
            .decode(&sealed.kid)
            .ok()
            .and_then(|k| k.as_slice().try_into().ok())
            .ok_or(CryptoError::Decrypt)?;
        let iv: [u8; NONCE_LEN] = b64()
            .decode(&sealed.iv)
            .ok()
            .and_then(|k| k.as_slice().try_into().ok())
            .ok_or(CryptoError::Decrypt)?;
        let (zeros, counter) = iv.split_at(4);
        if zeros != [0u8; 4] {
            return Err(CryptoError::Decrypt);
        }
        let counter = u64::from_be_bytes(counter.try_into().map_err(|_| CryptoError::Decrypt)?);
        let ct = b64().decode(&sealed.ct).map_err(|_| CryptoError::Decrypt)?;
        if ct.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        Ok(Self {
            kid,
            iv,
            counter,
            ct,
            ts: sealed.ts,
        })
    }

    /// Opens the ciphertext in place with `cipher`, authenticating `env`'s header and the
    /// stamp along with it.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for a wrong key or any change to the envelope.
    pub(super) fn decrypt(
        &mut self,
        cipher: &Aes256Gcm,
        env: &BusEnvelope,
    ) -> Result<(), CryptoError> {
        cipher
            .decrypt_in_place(
                &Nonce::from(self.iv),
                &envelope_aad(env, self.ts),
                &mut self.ct,
            )
            .map_err(|_| CryptoError::Decrypt)
    }

    /// The original `data` JSON, once [`Parts::decrypt`] has opened it.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] when it is not JSON text.
    pub(super) fn into_data(self) -> Result<Box<RawValue>, CryptoError> {
        let text = String::from_utf8(self.ct).map_err(|_| CryptoError::Decrypt)?;
        RawValue::from_string(text).map_err(|_| CryptoError::Decrypt)
    }
}

fn kind(target: &BusTarget) -> (&'static str, &str) {
    match target {
        BusTarget::Broadcast => ("broadcast", ""),
        BusTarget::Room(s) => ("room", s),
        BusTarget::Client(s) => ("client", s),
        BusTarget::User(s) => ("user", s),
    }
}

fn put(aad: &mut Vec<u8>, field: &[u8]) {
    // Field lengths are bounded by Redis message sizes (512 MiB), so they fit in u32.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    aad.extend_from_slice(&len.to_be_bytes());
    aad.extend_from_slice(field);
}

/// The additional authenticated data of an envelope sealed at `ts` (everything but `data`).
#[must_use]
pub fn envelope_aad(env: &BusEnvelope, ts: u64) -> Vec<u8> {
    let (kind, target) = kind(&env.target);
    let mut aad = Vec::with_capacity(72 + env.event.len() + target.len());
    aad.extend_from_slice(BUS_INFO.as_bytes());
    aad.extend_from_slice(&ts.to_be_bytes());
    put(&mut aad, env.server_id.as_bytes());
    put(&mut aad, kind.as_bytes());
    put(&mut aad, target.as_bytes());
    put(&mut aad, env.event.as_bytes());
    let count = u32::try_from(env.exclude.len()).unwrap_or(u32::MAX);
    aad.extend_from_slice(&count.to_be_bytes());
    for id in &env.exclude {
        put(&mut aad, id.as_bytes());
    }
    aad
}

/// Whether `data` looks like a sealed backplane payload of any version (`"sealed":"sw-bus-…"`),
/// so that an instance without the key drops it instead of delivering ciphertext.
#[must_use]
pub fn is_sealed(data: &RawValue) -> bool {
    #[derive(Deserialize)]
    struct Tag<'a> {
        #[serde(borrow)]
        sealed: &'a str,
    }
    serde_json::from_str::<Tag<'_>>(data.get()).is_ok_and(|t| t.sealed.starts_with("sw-bus-"))
}
