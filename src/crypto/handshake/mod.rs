//! The ECDH handshake that runs inside `authenticate`, in both profiles.
//!
//! Compatibility profile:
//!
//! ```text
//! client                                   server
//!   eph. key pair (c, C)
//!   authenticate {token, publicKey: b64(C)} ->
//!                                          eph. key pair (s, S), salt <- 32 random bytes
//!                                          x = ECDH(s, C).x
//!                                          key = HKDF-SHA256(salt, x, info)
//!   <- connected {.., serverPublicKey: b64(S), salt: b64(salt)}
//!   x = ECDH(c, S).x, key = HKDF-SHA256(salt, x, info)
//! ```
//!
//! Hardened profile (`sealwire-v2`): the key exchange comes first, in `hello` events, and the
//! credentials follow sealed:
//!
//! ```text
//!   hello {profile, publicKey: b64(C)} ->
//!                                          s, S, salt, th, keys (see [`super::hardened`])
//!   <- hello {id, profile, serverPublicKey, salt, rekeyAfter, confirm, identityKey?, signature?}
//!   verify pins, signature, confirm
//!   encrypted seq 0 {"event":"confirm","data":{"mac":..}} ->
//!   encrypted seq 1 {"event":"authenticate","data":{"token":..}} ->
//!   <- encrypted seq 0 {"event":"connected","data":{id, userId, time, expiresAt?}}
//! ```
//!
//! This file holds the configuration and the server half; the client half
//! ([`ClientHandshake`]) is in `client`.

mod client;

pub use client::{ClientFinished, ClientHandshake, confirmation_json};

use std::sync::Arc;

use base64::Engine as _;
use rand::CryptoRng;
use serde_json::Value;
use zeroize::Zeroizing;

use super::hardened::{self, KeySchedule, TranscriptInput};
use super::identity::ServerIdentity;
use super::session::{Profile, Role};
use super::{
    AeadBackend, Backend, CryptoError, IGNIS_INFO, PUBLIC_KEY_LEN, SALT_LEN, b64, kdf,
    keys::EphemeralSecret, keys::PeerPublicKey, session::Session,
};
use crate::protocol::{ConnectedPayload, HelloPayload};

/// Parameters of the handshake. One type serves both ends; each field says which end reads it.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// Compatibility profile: HKDF info string (both ends). Defaults to the IGNIS value
    /// `ignis-ecdh-p256-aes-256-gcm-v1`.
    pub info: String,
    /// ECDH implementation (both ends). Defaults to the fastest compiled in.
    pub backend: Backend,
    /// AES-256-GCM implementation for the session's records (both ends, both profiles).
    /// Defaults to the fastest compiled in.
    pub aead: AeadBackend,
    /// Client: the profile to ask for. Defaults to [`Profile::Compat`]; SDKs should use
    /// [`HandshakeConfig::hardened`]. The server follows what each client asks for.
    pub profile: Profile,
    /// Server, hardened profile: messages per direction under one key before rekeying,
    /// announced in `connected.rekeyAfter`. Defaults to 2^20.
    pub rekey_after: u32,
    /// Server, hardened profile: long-term key that signs every transcript. Defaults to `None`.
    pub identity: Option<Arc<ServerIdentity>>,
    /// Client, hardened profile: accepted server identity keys (current and next, for
    /// rotation). Non-empty means the server MUST sign with one of them. Defaults to empty.
    pub pinned_server_keys: Vec<PeerPublicKey>,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            info: IGNIS_INFO.to_owned(),
            backend: Backend::default(),
            aead: AeadBackend::default(),
            profile: Profile::Compat,
            rekey_after: hardened::DEFAULT_REKEY_AFTER,
            identity: None,
            pinned_server_keys: Vec::new(),
        }
    }
}

impl HandshakeConfig {
    /// A client configuration for the hardened profile pinning `pins` (may be empty).
    #[must_use]
    pub fn hardened(pins: Vec<PeerPublicKey>) -> Self {
        Self {
            profile: Profile::Hardened,
            pinned_server_keys: pins,
            ..Self::default()
        }
    }
}

/// What the server returns in `connected`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// Base64 of the server's ephemeral uncompressed public key.
    pub server_public_key: String,
    /// Base64 of the 32-byte salt.
    pub salt: String,
    /// The profile in force (`None` for the compatibility profile).
    pub profile: Option<&'static str>,
    /// Hardened: messages per epoch (`rekeyAfter`).
    pub rekey_after: Option<u32>,
    /// Hardened: base64 of the server's key-confirmation MAC (`confirm`).
    pub confirm: Option<String>,
    /// Hardened with identity: base64 of the long-term public key (`identityKey`).
    pub identity_key: Option<String>,
    /// Hardened with identity: base64 of the `r || s` transcript signature (`signature`).
    pub signature: Option<String>,
}

impl ServerHello {
    /// The hardened profile's server `hello` payload for `client_id`.
    #[must_use]
    pub fn hello_payload(&self, client_id: &str) -> HelloPayload {
        let mut extra = serde_json::Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                extra.insert(k.to_owned(), v);
            }
        };
        put("rekeyAfter", self.rekey_after.map(Value::from));
        put("confirm", self.confirm.clone().map(Value::from));
        put("identityKey", self.identity_key.clone().map(Value::from));
        put("signature", self.signature.clone().map(Value::from));
        HelloPayload {
            id: client_id.to_owned(),
            profile: self.profile.unwrap_or_default().to_owned(),
            server_public_key: self.server_public_key.clone(),
            salt: self.salt.clone(),
            extra,
        }
    }

    /// Writes the handshake fields into a compatibility-profile `connected` payload.
    pub fn apply_to(&self, connected: &mut ConnectedPayload) {
        self.clone().move_into(connected);
    }

    /// [`ServerHello::apply_to`] without copying the fields: the server's own `connected`.
    pub(crate) fn move_into(self, connected: &mut ConnectedPayload) {
        connected.server_public_key = Some(self.server_public_key);
        connected.salt = Some(self.salt);
        connected.profile = self.profile.map(str::to_owned);
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                connected.extra.insert(k.to_owned(), v);
            }
        };
        put("rekeyAfter", self.rekey_after.map(Value::from));
        put("confirm", self.confirm.map(Value::from));
        put("identityKey", self.identity_key.map(Value::from));
        put("signature", self.signature.map(Value::from));
    }
}

/// Runs the server half: validates the client's key, makes a fresh ephemeral key and salt,
/// and derives the session in the profile the client asked for (`None`: compatibility).
///
/// The salt comes from `rng`. The ephemeral key comes from the backend
/// ([`Backend::generate_and_agree`]): aws-lc generates it with its own DRBG, which saves a
/// key-pair consistency check on import; RustCrypto draws it from `rng`. For fixed inputs
/// use [`server_handshake_with`].
///
/// # Errors
/// [`CryptoError::InvalidPublicKey`] when `client_public_key` is not base64 of a 65-byte
/// uncompressed P-256 point on the curve; [`CryptoError::Handshake`] for an unknown profile.
pub fn server_handshake<R: CryptoRng + ?Sized>(
    config: &HandshakeConfig,
    client_id: &str,
    client_public_key: &str,
    profile: Option<&str>,
    rng: &mut R,
) -> Result<(ServerHello, Session), CryptoError> {
    let profile = Profile::from_wire(profile)?;
    let peer = PeerPublicKey::from_base64(client_public_key)?;
    let (public, shared) = config.backend.generate_and_agree(&peer, rng)?;
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    finish_server(config, client_id, profile, &peer, &public, &shared, salt)
}

/// The deterministic core of [`server_handshake`]: fixed ephemeral secret and salt
/// (known-answer tests and published vectors).
///
/// # Errors
/// As [`server_handshake`].
pub fn server_handshake_with(
    config: &HandshakeConfig,
    client_id: &str,
    client_public_key: &str,
    profile: Option<&str>,
    secret: EphemeralSecret,
    salt: [u8; SALT_LEN],
) -> Result<(ServerHello, Session), CryptoError> {
    let profile = Profile::from_wire(profile)?;
    let peer = PeerPublicKey::from_base64(client_public_key)?;
    let (public, shared) = config.backend.public_key_and_agree(&secret, &peer)?;
    drop(secret);
    finish_server(config, client_id, profile, &peer, &public, &shared, salt)
}

/// Everything after the key agreement: the hello and the session of `profile`.
fn finish_server(
    config: &HandshakeConfig,
    client_id: &str,
    profile: Profile,
    peer: &PeerPublicKey,
    public: &[u8; PUBLIC_KEY_LEN],
    shared: &Zeroizing<[u8; 32]>,
    salt: [u8; SALT_LEN],
) -> Result<(ServerHello, Session), CryptoError> {
    let mut hello = ServerHello {
        server_public_key: b64().encode(public),
        salt: b64().encode(salt),
        profile: profile.wire_id(),
        rekey_after: None,
        confirm: None,
        identity_key: None,
        signature: None,
    };
    match profile {
        Profile::Compat => {
            let key = kdf::derive_key(&salt, shared.as_ref(), config.info.as_bytes());
            Ok((hello, Session::compat_with(&key, config.aead)))
        }
        Profile::Hardened => {
            let rekey_after = config.rekey_after.clamp(1, hardened::MAX_REKEY_AFTER);
            let identity = config
                .identity
                .as_ref()
                .map(|id| *id.public_key().as_bytes());
            let th = hardened::transcript_hash(&TranscriptInput {
                client_id,
                client_public: peer.as_bytes(),
                server_public: public,
                salt: &salt,
                rekey_after,
                identity: identity.as_ref(),
            })?;
            let schedule = KeySchedule::derive(&salt, shared, &th);
            let mac =
                hardened::finished_mac(&schedule.confirm, hardened::label::SERVER_FINISHED, &th);
            hello.rekey_after = Some(rekey_after);
            hello.confirm = Some(b64().encode(mac));
            if let Some(id) = &config.identity {
                hello.identity_key = Some(id.public_key().to_base64());
                hello.signature = Some(b64().encode(id.sign_transcript(&th)));
            }
            let session =
                Session::hardened(Role::Server, &schedule, rekey_after, Some(th), config.aead);
            Ok((hello, session))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_halves_derive_the_same_session() {
        let cfg = HandshakeConfig::default();
        let mut rng = rand::rng();
        let client = ClientHandshake::new(cfg.clone(), &mut rng);
        let (hello, mut server) =
            server_handshake(&cfg, "c1", &client.public_key_base64(), None, &mut rng)
                .expect("server");
        let mut client = client
            .finish(&hello.server_public_key, &hello.salt)
            .expect("client");
        let sealed = server.seal(b"{\"event\":\"x\"}").expect("seal");
        assert_eq!(client.open(&sealed).expect("open"), b"{\"event\":\"x\"}");
        let back = client.seal(b"up").expect("seal");
        assert_eq!(server.open(&back).expect("open"), b"up");
    }

    #[test]
    fn different_info_strings_do_not_interoperate() {
        let mut rng = rand::rng();
        let client = ClientHandshake::new(HandshakeConfig::default(), &mut rng);
        let other = HandshakeConfig {
            info: "other".into(),
            ..HandshakeConfig::default()
        };
        let (hello, mut server) =
            server_handshake(&other, "c1", &client.public_key_base64(), None, &mut rng)
                .expect("server");
        let mut client = client
            .finish(&hello.server_public_key, &hello.salt)
            .expect("c");
        let sealed = server.seal(b"x").expect("seal");
        assert!(client.open(&sealed).is_err());
    }

    #[test]
    fn bad_salt_is_an_encoding_error() {
        let mut rng = rand::rng();
        let cfg = HandshakeConfig::default();
        let client = ClientHandshake::new(cfg.clone(), &mut rng);
        let (hello, _) =
            server_handshake(&cfg, "c1", &client.public_key_base64(), None, &mut rng).expect("s");
        let err = client
            .finish(&hello.server_public_key, "AAAA")
            .expect_err("short salt");
        assert_eq!(err, CryptoError::Encoding);
    }
}
