//! The ECDH seam: one trait-free enum so a faster implementation can sit beside the reference
//! one and be differential-tested against it.

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::{CryptoError, PUBLIC_KEY_LEN, keys::EphemeralSecret, keys::PeerPublicKey};

/// Which implementation computes P-256 scalar multiplications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// RustCrypto `p256` (pure Rust, the reference).
    RustCrypto,
    /// `aws-lc-rs` (assembly-optimized).
    AwsLc,
    /// The fastest backend compiled in.
    #[default]
    Fastest,
}

impl Backend {
    fn resolve(self) -> Self {
        match self {
            Self::Fastest => Self::AwsLc,
            other => other,
        }
    }

    /// Runs the backend's one-time initialisation now rather than in the first handshake:
    /// aws-lc seeds its random generator from CPU-jitter entropy the first time a key is
    /// generated in the process, tens of milliseconds of CPU. Cheap after the first call.
    pub fn warm_up(self) {
        if self.resolve() == Self::AwsLc {
            awslc::warm_up();
        }
    }

    /// The uncompressed public key of `secret`.
    #[must_use]
    pub fn public_key(self, secret: &EphemeralSecret) -> [u8; PUBLIC_KEY_LEN] {
        match self.resolve() {
            Self::AwsLc => {
                if let Some(pk) = awslc::public_key(secret) {
                    return pk;
                }
                rustcrypto::public_key(secret)
            }
            _ => rustcrypto::public_key(secret),
        }
    }

    /// Our public key and the shared secret with `peer`, in one go, for a fixed secret
    /// (known-answer tests, vectors). On the aws-lc path the secret is imported once; the
    /// import derives the public key and checks the pair, so this costs two base-point
    /// multiplications and one variable-point multiplication. Fresh handshakes use
    /// [`Backend::generate_and_agree`], which saves one of the base-point multiplications.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] if the backend rejects the point.
    pub fn public_key_and_agree(
        self,
        secret: &EphemeralSecret,
        peer: &PeerPublicKey,
    ) -> Result<([u8; PUBLIC_KEY_LEN], Zeroizing<[u8; 32]>), CryptoError> {
        match self.resolve() {
            Self::AwsLc => awslc::public_key_and_agree(secret, peer),
            _ => Ok((
                rustcrypto::public_key(secret),
                rustcrypto::agree(secret, peer)?,
            )),
        }
    }

    /// A fresh ephemeral key pair, then our public key and the shared secret with `peer`: the
    /// server half of a handshake with a key used once and dropped at return.
    ///
    /// aws-lc generates the key itself (its DRBG, seeded from the operating system) and the
    /// scalar never leaves it: one base-point and one variable-point multiplication.
    /// Importing an external scalar instead ([`Backend::public_key_and_agree`]) makes aws-lc
    /// check the imported pair with a second base-point multiplication, about 8 µs more.
    /// RustCrypto draws the scalar from `rng`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] if the backend rejects the point.
    pub fn generate_and_agree<R: CryptoRng + ?Sized>(
        self,
        peer: &PeerPublicKey,
        rng: &mut R,
    ) -> Result<([u8; PUBLIC_KEY_LEN], Zeroizing<[u8; 32]>), CryptoError> {
        match self.resolve() {
            Self::AwsLc => awslc::generate_and_agree(peer),
            _ => {
                let secret = EphemeralSecret::generate(rng);
                Ok((
                    rustcrypto::public_key(&secret),
                    rustcrypto::agree(&secret, peer)?,
                ))
            }
        }
    }

    /// The ECDH shared secret: the x-coordinate of `secret * peer` (32 bytes).
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] if the backend rejects the point.
    pub fn agree(
        self,
        secret: &EphemeralSecret,
        peer: &PeerPublicKey,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        match self.resolve() {
            Self::AwsLc => awslc::agree(secret, peer),
            _ => rustcrypto::agree(secret, peer),
        }
    }
}

mod rustcrypto {
    use super::*;
    use p256::elliptic_curve::sec1::ToSec1Point as _;

    pub(super) fn public_key(secret: &EphemeralSecret) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        // The scalar was validated when the secret was built.
        if let Ok(sk) = p256::SecretKey::from_slice(secret.scalar()) {
            let pt = sk.public_key().to_sec1_point(false);
            out.copy_from_slice(pt.as_bytes());
        }
        out
    }

    pub(super) fn agree(
        secret: &EphemeralSecret,
        peer: &PeerPublicKey,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let sk = p256::SecretKey::from_slice(secret.scalar())
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        let pk = p256::PublicKey::from_sec1_bytes(peer.as_bytes())
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        let shared = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), pk.as_affine());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(shared.raw_secret_bytes());
        Ok(out)
    }
}

mod awslc {
    use super::*;
    use aws_lc_rs::agreement::{ECDH_P256, PrivateKey, UnparsedPublicKey, agree as lc_agree};

    pub(super) fn public_key(secret: &EphemeralSecret) -> Option<[u8; PUBLIC_KEY_LEN]> {
        let sk = PrivateKey::from_private_key(&ECDH_P256, secret.scalar()).ok()?;
        let pk = sk.compute_public_key().ok()?;
        pk.as_ref().try_into().ok()
    }

    pub(super) fn public_key_and_agree(
        secret: &EphemeralSecret,
        peer: &PeerPublicKey,
    ) -> Result<([u8; PUBLIC_KEY_LEN], Zeroizing<[u8; 32]>), CryptoError> {
        let sk = PrivateKey::from_private_key(&ECDH_P256, secret.scalar())
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        public_and_agree_with(&sk, peer)
    }

    pub(super) fn warm_up() {
        let _ = PrivateKey::generate(&ECDH_P256);
    }

    pub(super) fn generate_and_agree(
        peer: &PeerPublicKey,
    ) -> Result<([u8; PUBLIC_KEY_LEN], Zeroizing<[u8; 32]>), CryptoError> {
        let sk = PrivateKey::generate(&ECDH_P256).map_err(|_| CryptoError::InvalidPublicKey)?;
        public_and_agree_with(&sk, peer)
    }

    fn public_and_agree_with(
        sk: &PrivateKey,
        peer: &PeerPublicKey,
    ) -> Result<([u8; PUBLIC_KEY_LEN], Zeroizing<[u8; 32]>), CryptoError> {
        let public: [u8; PUBLIC_KEY_LEN] = sk
            .compute_public_key()
            .map_err(|_| CryptoError::InvalidPublicKey)?
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        Ok((public, agree_with(sk, peer)?))
    }

    pub(super) fn agree(
        secret: &EphemeralSecret,
        peer: &PeerPublicKey,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let sk = PrivateKey::from_private_key(&ECDH_P256, secret.scalar())
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        agree_with(&sk, peer)
    }

    fn agree_with(
        sk: &PrivateKey,
        peer: &PeerPublicKey,
    ) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let peer = UnparsedPublicKey::new(&ECDH_P256, peer.as_bytes());
        lc_agree(sk, peer, CryptoError::InvalidPublicKey, |x| {
            let mut out = Zeroizing::new([0u8; 32]);
            if x.len() != 32 {
                return Err(CryptoError::InvalidPublicKey);
            }
            out.copy_from_slice(x);
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_agree_byte_for_byte() {
        let a = EphemeralSecret::from_bytes(&[0x11; 32]).expect("a");
        let b = EphemeralSecret::from_bytes(&[0x22; 32]).expect("b");
        let pa = Backend::RustCrypto.public_key(&a);
        let pb = Backend::RustCrypto.public_key(&b);
        assert_eq!(pa, Backend::Fastest.public_key(&a));
        let peer_b = PeerPublicKey::from_bytes(&pb).expect("pb");
        let peer_a = PeerPublicKey::from_bytes(&pa).expect("pa");
        let s1 = Backend::RustCrypto.agree(&a, &peer_b).expect("s1");
        let s2 = Backend::Fastest.agree(&a, &peer_b).expect("s2");
        let s3 = Backend::RustCrypto.agree(&b, &peer_a).expect("s3");
        assert_eq!(*s1, *s2);
        assert_eq!(*s1, *s3);
        for backend in [Backend::RustCrypto, Backend::AwsLc] {
            let (pk, s) = backend.public_key_and_agree(&a, &peer_b).expect("combined");
            assert_eq!(pk, pa);
            assert_eq!(*s, *s1);
        }
    }

    #[test]
    fn generated_keys_agree_across_backends() {
        let b = EphemeralSecret::from_bytes(&[0x22; 32]).expect("b");
        let peer_b = PeerPublicKey::from_bytes(&Backend::RustCrypto.public_key(&b)).expect("pb");
        let mut rng = rand::rng();
        for backend in [Backend::RustCrypto, Backend::AwsLc] {
            let (pk, s) = backend
                .generate_and_agree(&peer_b, &mut rng)
                .expect("generate");
            // The public key is a valid point, and the other side derives the same secret
            // from it with the reference backend.
            let ours = PeerPublicKey::from_bytes(&pk).expect("valid public key");
            assert_eq!(*Backend::RustCrypto.agree(&b, &ours).expect("agree"), *s);
            let (pk2, _) = backend
                .generate_and_agree(&peer_b, &mut rng)
                .expect("generate");
            assert_ne!(pk, pk2, "a fresh key per call");
        }
    }
}
