//! Optional server identity for the hardened profile: a long-term ECDSA P-256 key signs the
//! handshake transcript, and clients pin its public key.
//!
//! Rotation: clients pin the current key and the next one; the operator then switches the
//! server to the next key without breaking any client, and ships a new "next" pin later.

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand::CryptoRng;

use super::{CryptoError, PUBLIC_KEY_LEN, PeerPublicKey, hardened};

/// Length of an `r || s` ECDSA P-256 signature.
pub const SIGNATURE_LEN: usize = 64;

/// The server's long-term signing key.
///
/// # Security
/// No `Clone` and a redacted `Debug`; the scalar is wiped on drop by `ecdsa`'s `SigningKey`.
/// Share it between threads with an `Arc`.
pub struct ServerIdentity {
    key: SigningKey,
    public: [u8; PUBLIC_KEY_LEN],
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServerIdentity(public: {})",
            self.public_key().to_base64()
        )
    }
}

impl ServerIdentity {
    /// Loads a key from its 32-byte big-endian scalar.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] if the scalar is zero or not below the group order.
    pub fn from_bytes(scalar: &[u8; 32]) -> Result<Self, CryptoError> {
        let key = SigningKey::from_slice(scalar).map_err(|_| CryptoError::InvalidPublicKey)?;
        let mut public = [0u8; PUBLIC_KEY_LEN];
        public.copy_from_slice(key.verifying_key().to_sec1_point(false).as_bytes());
        Ok(Self { key, public })
    }

    /// Draws a fresh key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut scalar = zeroize::Zeroizing::new([0u8; 32]);
        loop {
            rng.fill_bytes(scalar.as_mut());
            if let Ok(id) = Self::from_bytes(&scalar) {
                return id;
            }
        }
    }

    /// The public key clients pin.
    #[must_use]
    pub fn public_key(&self) -> PeerPublicKey {
        // Derived from a valid scalar, so always a valid point.
        PeerPublicKey::from_trusted(self.public)
    }

    /// Signs `"sealwire-v2 server signature" || th` (ECDSA P-256 with SHA-256, RFC 6979
    /// deterministic nonces), returning `r || s`.
    #[must_use]
    pub fn sign_transcript(&self, th: &[u8; 32]) -> [u8; SIGNATURE_LEN] {
        let sig: Signature = self.key.sign(&hardened::signature_input(th));
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(&sig.to_bytes());
        out
    }
}

/// Verifies a transcript signature made by `key`.
///
/// # Errors
/// [`CryptoError::UntrustedServer`] for a malformed or wrong signature.
pub fn verify_transcript(
    key: &PeerPublicKey,
    th: &[u8; 32],
    signature: &[u8],
) -> Result<(), CryptoError> {
    let vk =
        VerifyingKey::from_sec1_bytes(key.as_bytes()).map_err(|_| CryptoError::UntrustedServer)?;
    let sig = Signature::from_slice(signature).map_err(|_| CryptoError::UntrustedServer)?;
    vk.verify(&hardened::signature_input(th), &sig)
        .map_err(|_| CryptoError::UntrustedServer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let id = ServerIdentity::from_bytes(&[3u8; 32]).expect("key");
        let th = [1u8; 32];
        let sig = id.sign_transcript(&th);
        verify_transcript(&id.public_key(), &th, &sig).expect("valid");
        assert_eq!(sig, id.sign_transcript(&th), "RFC 6979 is deterministic");
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(verify_transcript(&id.public_key(), &th, &bad).is_err());
        assert!(verify_transcript(&id.public_key(), &[2u8; 32], &sig).is_err());
        let other = ServerIdentity::from_bytes(&[4u8; 32]).expect("key");
        assert!(verify_transcript(&other.public_key(), &th, &sig).is_err());
        assert!(verify_transcript(&id.public_key(), &th, &sig[..63]).is_err());
        assert!(format!("{id:?}").starts_with("ServerIdentity(public: "));
    }
}
