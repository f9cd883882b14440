//! Backplane encryption: AES-256-GCM over the `data` of a bus envelope.
//!
//! Off by default (an IGNIS server or emitter on the same Redis cannot read sealed envelopes).
//! With a shared 32-byte bus key, every publisher replaces the envelope's `data` with
//!
//! ```json
//! {"sealed":"sw-bus-1","kid":"<b64, 16 bytes>","iv":"<b64, 12 bytes>","ct":"<b64, ct||tag>"}
//! ```
//!
//! - `kid` is a random 16-byte id the publisher picks when it starts (and again after 2^32
//!   messages). The AES-256-GCM key is `HKDF-SHA256(salt = kid, ikm = bus key,
//!   info = "sealwire-bus-v1")`, so publishers never share a (key, nonce) space.
//! - `iv` is 4 zero bytes followed by a 64-bit big-endian message counter: nonces never repeat
//!   under one derived key.
//! - `ct` is the ciphertext of the original `data` JSON text followed by the 16-byte tag.
//! - The rest of the envelope is the additional authenticated data, so `serverId`, `type`,
//!   `target`, `event` and `exclude` cannot be changed or swapped between messages. The AAD is
//!   `"sealwire-bus-v1"` followed by each of `serverId`, `type`, `target` (empty when absent),
//!   `event` and then every `exclude` entry, each as a 4-byte big-endian length and its UTF-8
//!   bytes; the `exclude` entries are preceded by their count (4-byte big-endian).
//!
//! # Security
//! Redis (and anyone who can read its traffic) sees only ciphertext of payloads; channel names,
//! event names, targets and excluded client ids stay visible. Anyone who can publish on Redis can
//! still replay an earlier sealed envelope verbatim: there is no replay window. Receivers with a
//! key refuse envelopes that are not sealed.

use std::collections::HashMap;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hkdf::Hkdf;
use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{CryptoError, NONCE_LEN, TAG_LEN, b64};
use crate::protocol::{BusEnvelope, BusTarget};

/// Version tag in the sealed `data` object.
pub const SEALED_TAG: &str = "sw-bus-1";
/// HKDF info and AAD prefix.
pub const BUS_INFO: &str = "sealwire-bus-v1";
/// Length of a bus key.
pub const BUS_KEY_LEN: usize = 32;
/// Length of a publisher key id.
pub const KID_LEN: usize = 16;
/// Messages sealed under one derived key before the sealer picks a new key id.
pub const REKEY_AFTER: u64 = 1 << 32;
/// Derived keys an opener keeps (one per live publisher); older ones are dropped.
const OPENER_CACHE: usize = 256;

/// The shared 32-byte backplane key.
///
/// # Security
/// No `Clone`, `Debug` shows nothing, the bytes are wiped on drop.
pub struct BusKey(Zeroizing<[u8; BUS_KEY_LEN]>);

impl std::fmt::Debug for BusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusKey(<redacted>)")
    }
}

impl BusKey {
    /// Wraps 32 raw bytes.
    #[must_use]
    pub fn from_bytes(bytes: [u8; BUS_KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Parses standard base64 of exactly 32 bytes (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`CryptoError::Encoding`] for bad base64 or a length other than 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let raw = Zeroizing::new(
            b64()
                .decode(text.trim())
                .map_err(|_| CryptoError::Encoding)?,
        );
        let bytes: [u8; BUS_KEY_LEN] = raw
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Encoding)?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh random key (for `sealwire` key generation and tests).
    #[must_use]
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; BUS_KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Another handle with the same bytes (the sealer and opener each own one).
    #[must_use]
    pub fn duplicate(&self) -> Self {
        Self::from_bytes(*self.0)
    }

    fn derive(&self, kid: &[u8; KID_LEN]) -> Aes256Gcm {
        let mut okm = Zeroizing::new([0u8; 32]);
        let hk = Hkdf::<Sha256>::new(Some(kid), self.0.as_ref());
        if hk.expand(BUS_INFO.as_bytes(), okm.as_mut()).is_err() {
            unreachable!("HKDF-SHA256 output of 32 bytes is always valid");
        }
        Aes256Gcm::new((&*okm).into())
    }
}

#[derive(Serialize, Deserialize)]
struct Sealed<'a> {
    sealed: &'a str,
    kid: String,
    iv: String,
    ct: String,
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

/// The additional authenticated data of an envelope (everything but `data`).
#[must_use]
pub fn envelope_aad(env: &BusEnvelope) -> Vec<u8> {
    let (kind, target) = kind(&env.target);
    let mut aad = Vec::with_capacity(64 + env.event.len() + target.len());
    aad.extend_from_slice(BUS_INFO.as_bytes());
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
        self.seal_with_rng(&mut rand::rng(), env)
    }

    /// As [`Sealer::seal`], drawing a new key id from `rng` when the counter runs out.
    ///
    /// # Errors
    /// As [`Sealer::seal`].
    pub fn seal_with_rng<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        env: &mut BusEnvelope,
    ) -> Result<(), CryptoError> {
        if self.counter >= REKEY_AFTER {
            rng.fill_bytes(&mut self.kid);
            self.cipher = self.key.derive(&self.kid);
            self.counter = 0;
        }
        let mut iv = [0u8; NONCE_LEN];
        iv[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        let aad = envelope_aad(env);
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
        };
        env.data = serde_json::value::to_raw_value(&sealed).map_err(|_| CryptoError::Encrypt)?;
        Ok(())
    }
}

/// Opens sealed envelopes, caching the key derived for each publisher's key id.
pub struct Opener {
    key: BusKey,
    cache: HashMap<[u8; KID_LEN], Aes256Gcm>,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("cached_keys", &self.cache.len())
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener for `key`.
    #[must_use]
    pub fn new(key: BusKey) -> Self {
        Self {
            key,
            cache: HashMap::new(),
        }
    }

    /// Replaces a sealed `env.data` with the original JSON.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for anything but an authentic sealed payload: plaintext data,
    /// bad base64, wrong lengths, a wrong key, or any change to the envelope.
    pub fn open(&mut self, env: &mut BusEnvelope) -> Result<(), CryptoError> {
        let sealed: Sealed<'_> =
            serde_json::from_str(env.data.get()).map_err(|_| CryptoError::Decrypt)?;
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
        let mut buf = b64().decode(&sealed.ct).map_err(|_| CryptoError::Decrypt)?;
        if buf.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        if !self.cache.contains_key(&kid) && self.cache.len() >= OPENER_CACHE {
            self.cache.clear();
        }
        let key = &self.key;
        let cipher = self.cache.entry(kid).or_insert_with(|| key.derive(&kid));
        let aad = envelope_aad(env);
        cipher
            .decrypt_in_place(&Nonce::from(iv), &aad, &mut buf)
            .map_err(|_| CryptoError::Decrypt)?;
        let text = String::from_utf8(buf).map_err(|_| CryptoError::Decrypt)?;
        env.data = RawValue::from_string(text).map_err(|_| CryptoError::Decrypt)?;
        Ok(())
    }
}

/// Whether `data` looks like a sealed backplane payload (for diagnostics).
#[must_use]
pub fn is_sealed(data: &RawValue) -> bool {
    serde_json::from_str::<Sealed<'_>>(data.get()).is_ok_and(|s| s.sealed == SEALED_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BusEnvelope {
        BusEnvelope {
            server_id: "s1".into(),
            target: BusTarget::Room("orders".into()),
            event: "order:update".into(),
            data: RawValue::from_string(r#"{"card":"4111"}"#.into()).expect("raw"),
            exclude: vec!["c1".into()],
        }
    }

    fn key() -> BusKey {
        BusKey::from_bytes([7u8; 32])
    }

    #[test]
    fn round_trip_hides_plaintext() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let mut opener = Opener::new(key());
        let mut e = env();
        sealer.seal(&mut e).expect("seal");
        assert!(!e.data.get().contains("4111"));
        assert!(is_sealed(&e.data));
        let v: serde_json::Value = serde_json::from_str(e.data.get()).expect("json");
        assert_eq!(v["sealed"], SEALED_TAG);
        opener.open(&mut e).expect("open");
        assert_eq!(e.data.get(), r#"{"card":"4111"}"#);
    }

    #[test]
    fn nonces_count_up() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let (mut a, mut b) = (env(), env());
        sealer.seal(&mut a).expect("seal");
        sealer.seal(&mut b).expect("seal");
        let va: serde_json::Value = serde_json::from_str(a.data.get()).expect("json");
        let vb: serde_json::Value = serde_json::from_str(b.data.get()).expect("json");
        assert_eq!(va["kid"], vb["kid"]);
        assert_ne!(va["iv"], vb["iv"]);
    }

    #[test]
    fn header_is_authenticated() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let mut sealed = env();
        sealer.seal(&mut sealed).expect("seal");
        type Change = Box<dyn Fn(&mut BusEnvelope)>;
        let tampered: Vec<Change> = vec![
            Box::new(|e| e.server_id = "s2".into()),
            Box::new(|e| e.target = BusTarget::Room("other".into())),
            Box::new(|e| e.target = BusTarget::User("orders".into())),
            Box::new(|e| e.target = BusTarget::Broadcast),
            Box::new(|e| e.event = "other".into()),
            Box::new(|e| e.exclude.clear()),
            Box::new(|e| e.exclude.push("c2".into())),
        ];
        for (i, change) in tampered.iter().enumerate() {
            let mut e = sealed.clone();
            change(&mut e);
            assert_eq!(
                Opener::new(key()).open(&mut e),
                Err(CryptoError::Decrypt),
                "{i}"
            );
        }
        let mut ok = sealed.clone();
        Opener::new(key()).open(&mut ok).expect("untouched opens");
    }

    #[test]
    fn rejects_plaintext_wrong_key_and_flipped_bits() {
        let mut plain = env();
        assert_eq!(
            Opener::new(key()).open(&mut plain),
            Err(CryptoError::Decrypt)
        );
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let mut e = env();
        sealer.seal(&mut e).expect("seal");
        let mut wrong = e.clone();
        assert_eq!(
            Opener::new(BusKey::from_bytes([8u8; 32])).open(&mut wrong),
            Err(CryptoError::Decrypt)
        );
        let v: serde_json::Value = serde_json::from_str(e.data.get()).expect("json");
        let ct = b64().decode(v["ct"].as_str().expect("ct")).expect("b64");
        for i in 0..ct.len() {
            let mut t = ct.clone();
            t[i] ^= 1;
            let mut v2 = v.clone();
            v2["ct"] = b64().encode(&t).into();
            let mut bad = e.clone();
            bad.data = serde_json::value::to_raw_value(&v2).expect("raw");
            assert_eq!(
                Opener::new(key()).open(&mut bad),
                Err(CryptoError::Decrypt),
                "{i}"
            );
        }
    }

    #[test]
    fn key_parsing() {
        let k = b64().encode([1u8; 32]);
        assert!(BusKey::from_base64(&k).is_ok());
        assert!(BusKey::from_base64(&b64().encode([1u8; 31])).is_err());
        assert!(BusKey::from_base64("not base64!").is_err());
        assert_eq!(format!("{:?}", key()), "BusKey(<redacted>)");
    }
}
