//! An established AES-256-GCM session: seals outbound and opens inbound `encrypted` frames.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::{CryptoError, NONCE_LEN, TAG_LEN, b64};
use crate::protocol::EncryptedPayload;

/// Which crypto profile a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// IGNIS compatibility profile: one key for both directions, random 96-bit IVs, no AAD.
    Compat,
}

impl Profile {
    /// The profile id used on the wire (`None` for the compatibility profile, which IGNIS
    /// clients do not name).
    #[must_use]
    pub const fn wire_id(self) -> Option<&'static str> {
        match self {
            Self::Compat => None,
        }
    }
}

/// An AES-256-GCM session bound to one connection.
///
/// # Security
/// Owned by exactly one connection task; never cloned, never logged. The AES key schedule is
/// wiped on drop (`aes-gcm`'s `zeroize` feature).
pub struct Session {
    profile: Profile,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Builds a compatibility-profile session from a derived 32-byte key.
    #[must_use]
    pub fn compat(key: &Zeroizing<[u8; 32]>) -> Self {
        Self {
            profile: Profile::Compat,
            cipher: Aes256Gcm::new((&**key).into()),
        }
    }

    /// The profile this session speaks.
    #[must_use]
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Seals `plaintext` with a fresh random nonce from the thread-local CSPRNG.
    ///
    /// # Errors
    /// [`CryptoError::Encrypt`] if AES-GCM refuses the input (over its length limit).
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<EncryptedPayload, CryptoError> {
        self.seal_with_rng(&mut rand::rng(), plaintext)
    }

    /// Seals with nonces drawn from `rng` (deterministic in tests).
    ///
    /// # Errors
    /// [`CryptoError::Encrypt`] if AES-GCM refuses the input.
    pub fn seal_with_rng<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<EncryptedPayload, CryptoError> {
        let mut iv = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut iv);
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.cipher
            .encrypt_in_place(&Nonce::from(iv), b"", &mut buf)
            .map_err(|_| CryptoError::Encrypt)?;
        Ok(EncryptedPayload {
            iv: b64().encode(iv),
            ct: b64().encode(&buf),
            seq: None,
        })
    }

    /// Seals `plaintext` and returns the complete outbound frame
    /// `{"event":"encrypted","data":{"iv":..,"ct":..}}`.
    ///
    /// # Errors
    /// As [`Session::seal`].
    pub fn seal_frame(&mut self, plaintext: &[u8]) -> Result<String, CryptoError> {
        let p = self.seal(plaintext)?;
        Ok(encrypted_frame(&p))
    }

    /// Opens an inbound payload.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for any failure: bad base64, wrong nonce length, truncated
    /// ciphertext, wrong key, or a flipped bit. The causes are not distinguished.
    pub fn open(&mut self, payload: &EncryptedPayload) -> Result<Vec<u8>, CryptoError> {
        let iv = b64()
            .decode(&payload.iv)
            .map_err(|_| CryptoError::Decrypt)?;
        let iv: [u8; NONCE_LEN] = iv.as_slice().try_into().map_err(|_| CryptoError::Decrypt)?;
        let mut buf = b64()
            .decode(&payload.ct)
            .map_err(|_| CryptoError::Decrypt)?;
        if buf.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        self.cipher
            .decrypt_in_place(&Nonce::from(iv), b"", &mut buf)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(buf)
    }
}

/// Renders an `encrypted` frame around a payload.
#[must_use]
pub fn encrypted_frame(p: &EncryptedPayload) -> String {
    let mut s = String::with_capacity(p.iv.len() + p.ct.len() + 64);
    s.push_str(r#"{"event":"encrypted","data":{"iv":""#);
    s.push_str(&p.iv);
    s.push_str(r#"","ct":""#);
    s.push_str(&p.ct);
    s.push('"');
    if let Some(seq) = p.seq {
        s.push_str(",\"seq\":");
        s.push_str(&seq.to_string());
    }
    s.push_str("}}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let key = Zeroizing::new([9u8; 32]);
        (Session::compat(&key), Session::compat(&key))
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let (mut a, mut b) = pair();
        let p1 = a.seal(b"hello").expect("seal");
        let p2 = a.seal(b"hello").expect("seal");
        assert_ne!(p1.iv, p2.iv);
        assert_ne!(p1.ct, p2.ct);
        assert_eq!(b.open(&p1).expect("open"), b"hello");
        let frame: serde_json::Value =
            serde_json::from_str(&encrypted_frame(&p1)).expect("frame json");
        assert_eq!(frame["event"], "encrypted");
        assert_eq!(frame["data"]["iv"], p1.iv.as_str());
    }

    #[test]
    fn tampering_is_rejected() {
        let (mut a, mut b) = pair();
        let p = a.seal(b"secret payload").expect("seal");
        let ct = b64().decode(&p.ct).expect("b64");
        for i in 0..ct.len() {
            let mut t = ct.clone();
            t[i] ^= 0x01;
            let bad = EncryptedPayload {
                ct: b64().encode(&t),
                ..p.clone()
            };
            assert_eq!(b.open(&bad), Err(CryptoError::Decrypt), "byte {i}");
        }
        let short = EncryptedPayload {
            ct: b64().encode(&ct[..TAG_LEN - 1]),
            ..p.clone()
        };
        assert_eq!(b.open(&short), Err(CryptoError::Decrypt));
        let bad_iv = EncryptedPayload {
            iv: b64().encode([0u8; 8]),
            ..p.clone()
        };
        assert_eq!(b.open(&bad_iv), Err(CryptoError::Decrypt));
        let wrong_key = Session::compat(&Zeroizing::new([8u8; 32])).open(&p);
        assert_eq!(wrong_key, Err(CryptoError::Decrypt));
    }
}
