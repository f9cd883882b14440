//! The ECDH handshake that runs inside `authenticate` (compatibility profile).
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

use base64::Engine as _;
use rand::CryptoRng;

use super::{
    Backend, CryptoError, IGNIS_INFO, PUBLIC_KEY_LEN, SALT_LEN, b64, kdf, keys::EphemeralSecret,
    keys::PeerPublicKey, session::Session,
};

/// Parameters of the handshake.
#[derive(Debug, Clone)]
pub struct HandshakeConfig {
    /// HKDF info string. Defaults to the IGNIS value `ignis-ecdh-p256-aes-256-gcm-v1`.
    pub info: String,
    /// ECDH implementation. Defaults to the fastest compiled in.
    pub backend: Backend,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            info: IGNIS_INFO.to_owned(),
            backend: Backend::default(),
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
}

/// Runs the server half: validates the client's key, makes a fresh ephemeral key and salt,
/// and derives the session.
///
/// # Errors
/// [`CryptoError::InvalidPublicKey`] when `client_public_key` is not base64 of a 65-byte
/// uncompressed P-256 point on the curve.
pub fn server_handshake<R: CryptoRng + ?Sized>(
    config: &HandshakeConfig,
    client_public_key: &str,
    rng: &mut R,
) -> Result<(ServerHello, Session), CryptoError> {
    let peer = PeerPublicKey::from_base64(client_public_key)?;
    let secret = EphemeralSecret::generate(rng);
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    let public = config.backend.public_key(&secret);
    let shared = config.backend.agree(&secret, &peer)?;
    let key = kdf::derive_key(&salt, shared.as_ref(), config.info.as_bytes());
    Ok((
        ServerHello {
            server_public_key: b64().encode(public),
            salt: b64().encode(salt),
        },
        Session::compat(&key),
    ))
}

/// The client half of the handshake: holds the ephemeral secret until `connected` arrives.
pub struct ClientHandshake {
    secret: EphemeralSecret,
    public: [u8; PUBLIC_KEY_LEN],
    config: HandshakeConfig,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake").finish_non_exhaustive()
    }
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

    /// Derives the session from the server's `serverPublicKey` and `salt`.
    ///
    /// # Errors
    /// [`CryptoError::InvalidPublicKey`] for a bad server key, [`CryptoError::Encoding`] for a
    /// salt that is not base64 of 32 bytes.
    pub fn finish(self, server_public_key: &str, salt: &str) -> Result<Session, CryptoError> {
        let peer = PeerPublicKey::from_base64(server_public_key)?;
        let salt = b64().decode(salt).map_err(|_| CryptoError::Encoding)?;
        if salt.len() != SALT_LEN {
            return Err(CryptoError::Encoding);
        }
        let shared = self.config.backend.agree(&self.secret, &peer)?;
        let key = kdf::derive_key(&salt, shared.as_ref(), self.config.info.as_bytes());
        Ok(Session::compat(&key))
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
            server_handshake(&cfg, &client.public_key_base64(), &mut rng).expect("server");
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
            server_handshake(&other, &client.public_key_base64(), &mut rng).expect("server");
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
        let (hello, _) = server_handshake(&cfg, &client.public_key_base64(), &mut rng).expect("s");
        let err = client
            .finish(&hello.server_public_key, "AAAA")
            .expect_err("short salt");
        assert_eq!(err, CryptoError::Encoding);
    }
}
