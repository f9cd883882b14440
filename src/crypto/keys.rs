//! Public keys from the wire and our own ephemeral secrets.

use base64::Engine as _;
use rand::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{CryptoError, PUBLIC_KEY_LEN, b64};

/// A validated peer public key: exactly 65 bytes, `0x04 || X || Y`, a point on P-256 that is
/// not the identity.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerPublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
}

impl std::fmt::Debug for PeerPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerPublicKey({})", self.to_base64())
    }
}

impl PeerPublicKey {
    /// Validates raw bytes.
    ///
    /// Compressed (`0x02`/`0x03`), hybrid (`0x06`/`0x07`) and `0x05` encodings are rejected up
    /// front: `p256` would accept some of them, but the wire format is uncompressed only.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] for a wrong length, prefix, or a point not on the curve.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; PUBLIC_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        if arr[0] != 0x04 {
            return Err(CryptoError::InvalidPublicKey);
        }
        p256::PublicKey::from_sec1_bytes(&arr).map_err(|_| CryptoError::InvalidPublicKey)?;
        Ok(Self { bytes: arr })
    }

    /// Validates standard base64 (as sent in `publicKey` / `serverPublicKey`), exactly: padded,
    /// canonical, and nothing around it (trim a key read from a file before passing it).
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] when the text is not base64 or not a valid key.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let raw = b64()
            .decode(text)
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        Self::from_bytes(&raw)
    }

    /// Wraps bytes this crate computed itself from a valid scalar.
    pub(crate) fn from_trusted(bytes: [u8; PUBLIC_KEY_LEN]) -> Self {
        Self { bytes }
    }

    /// The 65 raw bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// Standard base64 of the raw bytes.
    #[must_use]
    pub fn to_base64(&self) -> String {
        b64().encode(self.bytes)
    }
}

/// An ephemeral P-256 private scalar (32 bytes, big-endian), wiped on drop.
///
/// # Security
/// Use each secret for exactly one handshake. It has no `Clone` and no `Debug` output.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct EphemeralSecret {
    scalar: [u8; 32],
}

impl std::fmt::Debug for EphemeralSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EphemeralSecret(..)")
    }
}

impl EphemeralSecret {
    /// Draws a uniformly random valid scalar (rejection sampling in `[1, n-1]`).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut scalar = [0u8; 32];
        loop {
            rng.fill_bytes(&mut scalar);
            if p256::SecretKey::from_slice(&scalar).is_ok() {
                return Self { scalar };
            }
        }
    }

    /// Builds a secret from fixed bytes (known-answer tests, differential tests).
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] if the bytes are zero or not below the group order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        p256::SecretKey::from_slice(bytes).map_err(|_| CryptoError::InvalidPublicKey)?;
        Ok(Self { scalar: *bytes })
    }

    /// The raw scalar, for the ECDH backends only.
    pub(crate) fn scalar(&self) -> &[u8; 32] {
        &self.scalar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_point() -> [u8; 65] {
        let sk = EphemeralSecret::from_bytes(&[7u8; 32]).expect("scalar");
        crate::crypto::Backend::RustCrypto.public_key(&sk)
    }

    #[test]
    fn accepts_uncompressed_point() {
        let p = valid_point();
        let k = PeerPublicKey::from_bytes(&p).expect("valid");
        assert_eq!(PeerPublicKey::from_base64(&k.to_base64()).expect("b64"), k);
    }

    #[test]
    fn rejects_every_malformed_class() {
        let p = valid_point();
        // Wrong lengths.
        assert!(PeerPublicKey::from_bytes(&p[..64]).is_err());
        assert!(PeerPublicKey::from_bytes(&[p.as_slice(), &[0]].concat()).is_err());
        assert!(PeerPublicKey::from_bytes(&[]).is_err());
        // Compressed encoding of the same point.
        let mut compressed = vec![0x02 | (p[64] & 1)];
        compressed.extend_from_slice(&p[1..33]);
        assert!(
            p256::PublicKey::from_sec1_bytes(&compressed).is_ok(),
            "p256 itself accepts it"
        );
        assert!(PeerPublicKey::from_bytes(&compressed).is_err());
        // Other prefixes with a valid body.
        for prefix in [0x00, 0x02, 0x03, 0x05, 0x06, 0x07] {
            let mut q = p;
            q[0] = prefix;
            assert!(PeerPublicKey::from_bytes(&q).is_err(), "prefix {prefix:#x}");
        }
        // Off-curve: flip a bit of Y.
        let mut off = p;
        off[64] ^= 1;
        assert!(PeerPublicKey::from_bytes(&off).is_err());
        // All-zero coordinates (not a point).
        let mut zero = [0u8; 65];
        zero[0] = 4;
        assert!(PeerPublicKey::from_bytes(&zero).is_err());
        // Not base64.
        assert!(PeerPublicKey::from_base64("!!!not base64").is_err());
        // Exactly base64: no whitespace around or inside it (a network field is taken as sent).
        let b64 = PeerPublicKey::from_bytes(&p).expect("valid").to_base64();
        for text in [
            format!(" {b64}"),
            format!("{b64} "),
            format!("\t{b64}"),
            format!("{b64}\n"),
            format!("{}\n{}", &b64[..40], &b64[40..]),
        ] {
            assert!(PeerPublicKey::from_base64(&text).is_err(), "{text:?}");
        }
        assert!(PeerPublicKey::from_base64(&b64).is_ok());
    }

    #[test]
    fn explicit_zeroize_wipes_the_scalar() {
        let mut s = EphemeralSecret::from_bytes(&[7u8; 32]).expect("scalar");
        assert_eq!(s.scalar(), &[7u8; 32]);
        s.zeroize();
        assert_eq!(s.scalar(), &[0u8; 32]);
    }

    #[test]
    fn secret_rejects_zero_and_order() {
        assert!(EphemeralSecret::from_bytes(&[0u8; 32]).is_err());
        assert!(EphemeralSecret::from_bytes(&[0xff; 32]).is_err());
    }
}
