//! The client half of the handshake: [`ClientHandshake`] holds the ephemeral secret until the
//! server answers (a `connected` in the compatibility profile, a `hello` in the hardened one)
//! and turns the answer into a [`ClientFinished`] session.

use base64::Engine as _;
use rand::CryptoRng;
use serde_json::Value;

use super::HandshakeConfig;
use crate::crypto::hardened::{self, KeySchedule, TranscriptInput};
use crate::crypto::identity::verify_transcript;
use crate::crypto::session::{Profile, Role};
use crate::crypto::{
    CryptoError, PUBLIC_KEY_LEN, SALT_LEN, b64, kdf, keys::EphemeralSecret, keys::PeerPublicKey,
    session::Session,
};
use crate::protocol::{ConnectedPayload, HelloPayload, event, frame_json};

/// The client half of the handshake: holds the ephemeral secret until the server answers.
///
/// ```text
/// hardened:
///   let hs = ClientHandshake::new(HandshakeConfig::hardened(pins), &mut rng);
///   send hs.hello_json()
///   let done = hs.finish_hello(&server_hello)?;      // verifies pins, signature, confirm
///   send done.confirmation                           // c2s record 0
///   send done.session.seal_frame(authenticate)       // c2s record 1: the token, sealed
///   open the sealed `connected` with done.session
/// compatibility:
///   send authenticate {token, publicKey: hs.public_key_base64()}
///   let done = hs.finish_connected(&connected)?;
/// ```
pub struct ClientHandshake {
    secret: EphemeralSecret,
    public: [u8; PUBLIC_KEY_LEN],
    config: HandshakeConfig,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("profile", &self.config.profile)
            .finish_non_exhaustive()
    }
}

/// A finished client handshake.
#[derive(Debug)]
#[non_exhaustive]
pub struct ClientFinished {
    /// The session: seals outbound, opens inbound.
    pub session: Session,
    /// Hardened profile: the `encrypted` frame carrying the client's key confirmation (c2s
    /// record 0). Send it first, then the sealed `authenticate`; the server closes with 4004
    /// if the first record is not it.
    pub confirmation: Option<String>,
}

impl ClientHandshake {
    /// Makes a fresh ephemeral key pair.
    pub fn new<R: CryptoRng + ?Sized>(config: HandshakeConfig, rng: &mut R) -> Self {
        let secret = EphemeralSecret::generate(rng);
        Self::from_secret(config, secret)
    }

    /// Uses a fixed secret (known-answer tests).
    #[must_use]
    pub fn from_secret(config: HandshakeConfig, secret: EphemeralSecret) -> Self {
        let public = config.backend.public_key(&secret);
        Self {
            secret,
            public,
            config,
        }
    }

    /// Base64 of our public key, to send as `publicKey`.
    #[must_use]
    pub fn public_key_base64(&self) -> String {
        b64().encode(self.public)
    }

    /// The profile id (`None` for the compatibility profile).
    #[must_use]
    pub fn profile_id(&self) -> Option<&'static str> {
        self.config.profile.wire_id()
    }

    /// The hardened profile's client `hello` frame: `{"event":"hello","data":{profile,
    /// publicKey}}`. It carries no credential.
    #[must_use]
    pub fn hello_json(&self) -> String {
        let data = serde_json::json!({
            "profile": self.profile_id().unwrap_or_default(),
            "publicKey": self.public_key_base64(),
        });
        frame_json(event::HELLO, &data.to_string())
    }

    /// Compatibility profile only: derives the session from `serverPublicKey` and `salt`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] for a bad server key, [`CryptoError::Encoding`] for a
    /// salt that is not base64 of 32 bytes, [`CryptoError::Handshake`] if this handshake asked
    /// for the hardened profile (use [`ClientHandshake::finish_connected`]),
    /// [`CryptoError::UntrustedServer`] if it pins server keys (only the hardened profile
    /// authenticates the server).
    pub fn finish(self, server_public_key: &str, salt: &str) -> Result<Session, CryptoError> {
        if self.config.profile != Profile::Compat {
            return Err(CryptoError::Handshake);
        }
        if !self.config.pinned_server_keys.is_empty() {
            // The compatibility profile cannot authenticate the server: a pinned client
            // must not take a session from it.
            return Err(CryptoError::UntrustedServer);
        }
        let peer = PeerPublicKey::from_base64(server_public_key)?;
        let salt = decode_salt(salt)?;
        let shared = self.config.backend.agree(&self.secret, &peer)?;
        let key = kdf::derive_key(&salt, shared.as_ref(), self.config.info.as_bytes());
        Ok(Session::compat_with(&key, self.config.aead))
    }

    /// Finishes the compatibility profile from the whole `connected` payload.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] / [`CryptoError::Encoding`] for malformed fields;
    /// [`CryptoError::Handshake`] when a field is missing, `connected` names a profile, or this
    /// handshake is hardened: a hardened client never takes its keys from a plaintext
    /// `connected` (that would be a downgrade), it uses [`ClientHandshake::finish_hello`].
    pub fn finish_connected(
        self,
        connected: &ConnectedPayload,
    ) -> Result<ClientFinished, CryptoError> {
        if self.config.profile != Profile::Compat || connected.profile.is_some() {
            return Err(CryptoError::Handshake);
        }
        let spk = connected
            .server_public_key
            .as_deref()
            .ok_or(CryptoError::Handshake)?;
        let salt = connected.salt.as_deref().ok_or(CryptoError::Handshake)?;
        Ok(ClientFinished {
            session: self.finish(spk, salt)?,
            confirmation: None,
        })
    }

    /// Hardened profile: finishes from the server's `hello`. Checks that the server answered
    /// in this profile (no downgrade), that `identityKey` is pinned and `signature` verifies
    /// (when keys are pinned; a present signature is always verified), and the server's key
    /// confirmation. Only then may the client send its credentials, sealed.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] / [`CryptoError::Encoding`] for malformed fields,
    /// [`CryptoError::Handshake`] for a profile mismatch, missing field or wrong confirmation,
    /// [`CryptoError::UntrustedServer`] for a missing, unpinned or invalid signature.
    pub fn finish_hello(self, hello: &HelloPayload) -> Result<ClientFinished, CryptoError> {
        if self.config.profile != Profile::Hardened
            || Profile::from_wire(Some(&hello.profile))? != Profile::Hardened
        {
            return Err(CryptoError::Handshake);
        }
        let peer = PeerPublicKey::from_base64(&hello.server_public_key)?;
        let salt = decode_salt(&hello.salt)?;
        let field = |k: &str| hello.extra.get(k);
        let rekey_after = field("rekeyAfter")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=hardened::MAX_REKEY_AFTER).contains(n))
            .ok_or(CryptoError::Handshake)?;
        let identity = match field("identityKey") {
            None => None,
            Some(v) => Some(PeerPublicKey::from_base64(
                v.as_str().ok_or(CryptoError::UntrustedServer)?,
            )?),
        };
        let pins = &self.config.pinned_server_keys;
        if !pins.is_empty() && !identity.as_ref().is_some_and(|k| pins.contains(k)) {
            return Err(CryptoError::UntrustedServer);
        }
        let th = hardened::transcript_hash(&TranscriptInput {
            client_id: &hello.id,
            client_public: &self.public,
            server_public: peer.as_bytes(),
            salt: &salt,
            rekey_after,
            identity: identity.as_ref().map(PeerPublicKey::as_bytes),
        })?;
        if let Some(key) = &identity {
            let sig = field("signature")
                .and_then(Value::as_str)
                .and_then(|s| b64().decode(s).ok())
                .ok_or(CryptoError::UntrustedServer)?;
            verify_transcript(key, &th, &sig)?;
        }
        let shared = self.config.backend.agree(&self.secret, &peer)?;
        let schedule = KeySchedule::derive(&salt, &shared, &th);
        let confirm = field("confirm")
            .and_then(Value::as_str)
            .and_then(|s| b64().decode(s).ok())
            .ok_or(CryptoError::Handshake)?;
        hardened::verify_finished(
            &schedule.confirm,
            hardened::label::SERVER_FINISHED,
            &th,
            &confirm,
        )?;
        let mine = hardened::finished_mac(&schedule.confirm, hardened::label::CLIENT_FINISHED, &th);
        let mut session =
            Session::hardened(Role::Client, &schedule, rekey_after, None, self.config.aead);
        let inner = confirmation_json(&mine);
        let confirmation = session.seal_frame(inner.as_bytes())?;
        Ok(ClientFinished {
            session,
            confirmation: Some(confirmation),
        })
    }
}

/// The plaintext of the client's key confirmation record:
/// `{"event":"confirm","data":{"mac":"<base64>"}}`.
#[must_use]
pub fn confirmation_json(mac: &[u8; 32]) -> String {
    let data = serde_json::json!({ "mac": b64().encode(mac) }).to_string();
    frame_json(event::CONFIRM, &data)
}

fn decode_salt(salt: &str) -> Result<[u8; SALT_LEN], CryptoError> {
    let raw = b64().decode(salt).map_err(|_| CryptoError::Encoding)?;
    raw.as_slice().try_into().map_err(|_| CryptoError::Encoding)
}
