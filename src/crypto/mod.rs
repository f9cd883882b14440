//! Cryptography: P-256 ECDH, HKDF-SHA256 and AES-256-GCM sessions.
//!
//! Pure code: no I/O, no async, no clock. Randomness is injected (`rand_core::CryptoRng`) so
//! that every derivation can be reproduced from fixed inputs in known-answer tests.
//!
//! - [`keys`] parses peer public keys strictly and holds our ephemeral secrets.
//! - [`backend`] is the ECDH seam: `aws-lc-rs` (fast, the default) or RustCrypto `p256` (the
//!   reference, kept for differential tests).
//! - [`kdf`] derives keys with HKDF-SHA256.
//! - [`session`] is an established AES-256-GCM session that seals and opens `encrypted` frames;
//!   its keys (`aead`) are expanded only while in use, by `aws-lc-rs` (fast, the default) or
//!   RustCrypto `aes-gcm` (the reference, kept for differential tests): [`AeadBackend`].
//!   `frame` writes an outbound `encrypted` frame in one allocation.
//! - [`hardened`] is the `sealwire-v2` key schedule, transcript and record layer.
//! - [`identity`] is the optional long-term server key that signs hardened transcripts.
//! - [`handshake`] has the server and client halves of the handshake inside `authenticate`,
//!   for both profiles.
//!
//! # Security
//! Secret-bearing types have no `Clone`, `Serialize` or derived `Debug`, and wipe their bytes on
//! drop. Errors are deliberately uninformative: a wrong key, a flipped bit and a truncated frame
//! all produce the same [`CryptoError::Decrypt`].

mod aead;
mod b64_public;
pub mod backend;
pub mod backplane;
pub(crate) mod frame;
pub mod handshake;
pub mod hardened;
pub mod identity;
pub mod kdf;
pub mod keys;
pub mod room;
pub mod session;

pub use aead::AeadBackend;
pub use backend::Backend;
pub use handshake::{
    ClientFinished, ClientHandshake, HandshakeConfig, ServerHello, server_handshake,
    server_handshake_with,
};
pub use identity::ServerIdentity;
pub use keys::{EphemeralSecret, PeerPublicKey};
pub use session::{Profile, Session};

/// The IGNIS compatibility profile's HKDF info string.
pub const IGNIS_INFO: &str = "ignis-ecdh-p256-aes-256-gcm-v1";
/// Length of an uncompressed SEC1 P-256 public key.
pub const PUBLIC_KEY_LEN: usize = 65;
/// Length of the HKDF salt the server picks per client.
pub const SALT_LEN: usize = 32;
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;

/// A cryptographic failure. Deliberately coarse: callers map it to one protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The peer's public key is not base64 of a valid uncompressed P-256 point.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// A field is not valid base64 or has the wrong length (salt, nonce).
    #[error("invalid encoding")]
    Encoding,
    /// Authentication of a ciphertext failed (wrong key, tampering, truncation, replay).
    #[error("decryption failed")]
    Decrypt,
    /// Encryption failed (message too large for AES-GCM, or a nonce limit was reached).
    #[error("encryption failed")]
    Encrypt,
    /// The handshake cannot complete: unknown or mismatched profile, missing field, or a key
    /// confirmation that does not match.
    #[error("handshake failed")]
    Handshake,
    /// Hardened profile: the server's identity is not pinned, or its signature is missing or
    /// invalid.
    #[error("untrusted server")]
    UntrustedServer,
    /// Bus: an authentic sealed envelope that was already accepted, or is too old or too far
    /// in the future to be checked for that.
    #[error("replayed or stale")]
    Replay,
}

pub(crate) fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}
