//! Backplane encryption: AES-256-GCM over the `data` of a bus envelope, with replay protection.
//!
//! Off by default (an IGNIS server or emitter on the same Redis cannot read sealed envelopes).
//! With a shared 32-byte bus key, every publisher replaces the envelope's `data` with
//!
//! ```json
//! {"sealed":"sw-bus-2","kid":"<b64, 16 bytes>","iv":"<b64, 12 bytes>","ct":"<b64, ct||tag>","ts":1700000000000}
//! ```
//!
//! - `kid` is a random 16-byte id the publisher picks when it starts (and again after 2^32
//!   messages). The AES-256-GCM key is `HKDF-SHA256(salt = kid, ikm = bus key,
//!   info = "sealwire-bus-v2")`, so publishers never share a (key, nonce) space.
//! - `iv` is 4 zero bytes followed by a 64-bit big-endian message counter: nonces never repeat
//!   under one derived key.
//! - `ts` is the publisher's clock when it sealed the envelope, in milliseconds since the Unix
//!   epoch.
//! - `ct` is the ciphertext of the original `data` JSON text followed by the 16-byte tag.
//! - The rest of the envelope is the additional authenticated data, so `serverId`, `type`,
//!   `target`, `event`, `exclude` and `ts` cannot be changed or swapped between messages. The
//!   AAD is `"sealwire-bus-v2"`, `ts` as 8 bytes big-endian, then each of `serverId`, `type`,
//!   `target` (empty when absent), `event` and every `exclude` entry as a 4-byte big-endian
//!   length and its UTF-8 bytes; the `exclude` entries are preceded by their count (4-byte
//!   big-endian).
//!
//! Replays: an opener accepts each (`kid`, counter) at most once. Per `kid` it keeps the highest
//! counter seen and which of the [`REPLAY_WINDOW`] counters below it have arrived, so envelopes
//! that overtake each other on the way (an emitter's concurrent publishes) still get through,
//! while a copy of an earlier envelope does not. Because that state starts empty (the opener
//! just started, or evicted the `kid` as the least recently seen of [`OPENER_CACHE`]), every
//! envelope must also be stamped after what the opener cannot vouch for. With `ts` the
//! envelope's stamp and `now` the opener's clock (both in milliseconds), an authentic envelope
//! is accepted only if all of these hold:
//!
//! 1. `now - MAX_AGE_MS <= ts <= now + MAX_SKEW_MS` ([`MAX_AGE_MS`], [`MAX_SKEW_MS`]);
//! 2. `ts > start`, the millisecond (the opener's clock, truncated) in which the opener was
//!    created. With equal clocks, every envelope sealed before that instant is stamped at or
//!    before `start`, so none gets in; one sealed later within that same millisecond is refused
//!    too (the bus subscribes only after creating its opener, so it could hardly arrive);
//! 3. for a `kid` the opener has no state for: `ts > forgotten`, the newest stamp of any
//!    envelope accepted from a publisher whose state it has since evicted (0 until then). It
//!    then records the publisher's floor: `max(start, forgotten) + 1` or
//!    `ts - FIRST_CONTACT_SLACK_MS`, whichever is later;
//! 4. for a `kid` it has state for: `ts >= floor` and the counter is fresh (above the highest,
//!    or one of the [`REPLAY_WINDOW`] below it not yet seen).
//!
//! [`FIRST_CONTACT_SLACK_MS`] lets envelopes sealed up to 1 s before the first one seen (and
//! overtaken by it) through once. The floor never moves afterwards, and `forgotten` and `start`
//! lie at or after the stamp of anything the opener may have accepted from that `kid` before,
//! so nothing is accepted twice (a publisher's stamps are compared with its own clock, except
//! that `start` is the opener's: hosts' clocks must agree, NTP).
//!
//! # Security
//! Redis (and anyone who can read its traffic) sees only ciphertext of payloads; channel names,
//! event names, targets and excluded client ids stay visible. Without the key nobody can inject,
//! alter or re-target a message. A captured envelope replayed to an opener is refused if the
//! opener accepted it before, if it is stamped at or before the opener's start or before the
//! publisher's floor, or if it is older than [`MAX_AGE_MS`]. Residue: an envelope this opener
//! never accepted (it was published on a channel the opener was not subscribed to, or while it
//! was disconnected from Redis) is accepted once if it passes rules 1 to 4: less than
//! [`MAX_AGE_MS`] old, stamped after the start, and either the first of its publisher (then
//! stamped after `forgotten`) or no earlier than the publisher's floor with a counter within
//! [`REPLAY_WINDOW`] of the highest seen. If a publisher's clock runs ahead of the opener's by
//! `d`, envelopes sealed up to `d` before the opener started also count as after its start.
//! Receivers with a key refuse envelopes that are not sealed.

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
pub const SEALED_TAG: &str = "sw-bus-2";
/// HKDF info and AAD prefix.
pub const BUS_INFO: &str = "sealwire-bus-v2";
/// Length of a bus key.
pub const BUS_KEY_LEN: usize = 32;
/// Length of a publisher key id.
pub const KID_LEN: usize = 16;
/// Messages sealed under one derived key before the sealer picks a new key id.
pub const REKEY_AFTER: u64 = 1 << 32;
/// Publishers an opener keeps state for (derived key and replay window); the least recently
/// seen is dropped first.
pub const OPENER_CACHE: usize = 256;
/// Counters below the highest seen (per publisher key) that may still arrive late.
pub const REPLAY_WINDOW: u64 = 1024;
/// Oldest envelope (by its `ts`) an opener accepts, in milliseconds.
pub const MAX_AGE_MS: u64 = 60_000;
/// Furthest an envelope's `ts` may be ahead of the opener's clock, in milliseconds.
pub const MAX_SKEW_MS: u64 = 60_000;
/// How far before the first envelope an opener accepts from a publisher key its floor lies, in
/// milliseconds: envelopes sealed that much earlier and overtaken by it (an emitter's
/// concurrent publishes) are still accepted once.
pub const FIRST_CONTACT_SLACK_MS: u64 = 1_000;

/// Milliseconds since the Unix epoch by the system clock (0 if it is before 1970).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

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
    ts: u64,
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
        self.seal_with_rng(&mut rand::rng(), env, now_ms())
    }

    /// As [`Sealer::seal`], stamped `ts` (milliseconds since the Unix epoch) instead of the
    /// system clock's time, drawing a new key id from `rng` when the counter runs out.
    ///
    /// # Errors
    /// As [`Sealer::seal`].
    pub fn seal_with_rng<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        env: &mut BusEnvelope,
        ts: u64,
    ) -> Result<(), CryptoError> {
        if self.counter >= REKEY_AFTER {
            rng.fill_bytes(&mut self.kid);
            self.cipher = self.key.derive(&self.kid);
            self.counter = 0;
        }
        let mut iv = [0u8; NONCE_LEN];
        iv[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        let aad = envelope_aad(env, ts);
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
            ts,
        };
        env.data = serde_json::value::to_raw_value(&sealed).map_err(|_| CryptoError::Encrypt)?;
        Ok(())
    }
}

/// Which counters of one publisher key an opener has accepted: the highest, and a bitmap of
/// the [`REPLAY_WINDOW`] counters below it (bit `i` is counter `highest - i`).
#[derive(Debug, Default)]
struct ReplayWindow {
    highest: Option<u64>,
    seen: [u64; WINDOW_WORDS],
}

const WINDOW_WORDS: usize = (REPLAY_WINDOW / 64) as usize;

impl ReplayWindow {
    fn bit(&self, i: u64) -> bool {
        // i < REPLAY_WINDOW, so the word index is below WINDOW_WORDS.
        self.seen[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// Whether `counter` is new: above the highest, or within the window and not seen.
    fn is_fresh(&self, counter: u64) -> bool {
        match self.highest {
            None => true,
            Some(h) if counter > h => true,
            Some(h) => h - counter < REPLAY_WINDOW && !self.bit(h - counter),
        }
    }

    /// Records `counter` (which [`Self::is_fresh`] accepted).
    fn record(&mut self, counter: u64) {
        let h = match self.highest {
            Some(h) if counter <= h => {
                let i = h - counter;
                self.seen[(i / 64) as usize] |= 1 << (i % 64);
                return;
            }
            Some(h) => h,
            None => counter,
        };
        self.shift(counter - h);
        self.highest = Some(counter);
        self.seen[0] |= 1;
    }

    /// Moves every bit `by` places up (towards older counters).
    fn shift(&mut self, by: u64) {
        if by == 0 {
            return;
        }
        if by >= REPLAY_WINDOW {
            self.seen = [0; WINDOW_WORDS];
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        for w in (0..WINDOW_WORDS).rev() {
            let mut v = 0;
            if let Some(src) = w.checked_sub(words) {
                v = self.seen[src] << bits;
                if bits > 0 && src > 0 {
                    v |= self.seen[src - 1] >> (64 - bits);
                }
            }
            self.seen[w] = v;
        }
    }
}

/// What an opener keeps per publisher key id.
struct Publisher {
    cipher: Aes256Gcm,
    window: ReplayWindow,
    /// Earliest `ts` accepted from this key (fixed at first contact).
    floor_ts: u64,
    /// Latest `ts` accepted from this key.
    newest_ts: u64,
    last_seen_ms: u64,
}

/// Opens sealed envelopes: derives (and caches) each publisher's key and refuses replays and
/// stale envelopes (see the module docs).
pub struct Opener {
    key: BusKey,
    publishers: HashMap<[u8; KID_LEN], Publisher>,
    /// The millisecond the opener was created in: only later stamps are accepted.
    start_ms: u64,
    /// The newest `ts` accepted from any publisher whose state was evicted since.
    forgotten_ts: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("publishers", &self.publishers.len())
            .field("start_ms", &self.start_ms)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener for `key`, started now: it refuses every envelope stamped at or before the
    /// current millisecond.
    #[must_use]
    pub fn new(key: BusKey) -> Self {
        Self::starting_at(key, now_ms())
    }

    /// An opener for `key` that counts as started at `start_ms` (milliseconds since the Unix
    /// epoch): it refuses every envelope stamped at or before `start_ms`.
    #[must_use]
    pub fn starting_at(key: BusKey, start_ms: u64) -> Self {
        Self {
            key,
            publishers: HashMap::new(),
            start_ms,
            forgotten_ts: 0,
        }
    }

    /// Replaces a sealed `env.data` with the original JSON.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for anything but an authentic sealed payload: plaintext data,
    /// bad base64, wrong lengths, a wrong key, or any change to the envelope.
    /// [`CryptoError::Replay`] for an authentic envelope already accepted, too far behind its
    /// publisher's newest, stamped outside the accepted age, or stamped at or before the
    /// opener's start, the publisher's floor, or (for a publisher it has no state for) the
    /// newest envelope of a publisher it evicted.
    pub fn open(&mut self, env: &mut BusEnvelope) -> Result<(), CryptoError> {
        self.open_at(env, now_ms())
    }

    /// As [`Opener::open`], with `now` (milliseconds since the Unix epoch) as the time.
    ///
    /// # Errors
    /// As [`Opener::open`].
    pub fn open_at(&mut self, env: &mut BusEnvelope, now: u64) -> Result<(), CryptoError> {
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
        let (zeros, counter) = iv.split_at(4);
        if zeros != [0u8; 4] {
            return Err(CryptoError::Decrypt);
        }
        let counter = u64::from_be_bytes(counter.try_into().map_err(|_| CryptoError::Decrypt)?);
        let mut buf = b64().decode(&sealed.ct).map_err(|_| CryptoError::Decrypt)?;
        if buf.len() < TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let ts = sealed.ts;
        // Authenticate first: only the key holder's envelopes may create or change replay
        // state (forged key ids must not evict real publishers).
        let known = self.publishers.get(&kid);
        let derived = known.is_none().then(|| self.key.derive(&kid));
        let cipher = known
            .map(|p| &p.cipher)
            .or(derived.as_ref())
            .ok_or(CryptoError::Decrypt)?;
        cipher
            .decrypt_in_place(&Nonce::from(iv), &envelope_aad(env, ts), &mut buf)
            .map_err(|_| CryptoError::Decrypt)?;
        let too_old = now.saturating_sub(ts) > MAX_AGE_MS;
        let too_new = ts.saturating_sub(now) > MAX_SKEW_MS;
        let before_start = ts <= self.start_ms;
        let refused = match known {
            Some(p) => ts < p.floor_ts || !p.window.is_fresh(counter),
            None => ts <= self.forgotten_ts,
        };
        if too_old || too_new || before_start || refused {
            return Err(CryptoError::Replay);
        }
        let text = String::from_utf8(buf).map_err(|_| CryptoError::Decrypt)?;
        env.data = RawValue::from_string(text).map_err(|_| CryptoError::Decrypt)?;
        if let Some(cipher) = derived {
            // Nothing this opener accepted from `kid` before (ahead of its start, or ahead of
            // an eviction) is stamped after `max(start, forgotten)`.
            let vouched = self.start_ms.max(self.forgotten_ts).saturating_add(1);
            if self.publishers.len() >= OPENER_CACHE {
                self.evict_least_recent();
            }
            self.publishers.insert(
                kid,
                Publisher {
                    cipher,
                    window: ReplayWindow::default(),
                    floor_ts: vouched.max(ts.saturating_sub(FIRST_CONTACT_SLACK_MS)),
                    newest_ts: ts,
                    last_seen_ms: now,
                },
            );
        }
        if let Some(publisher) = self.publishers.get_mut(&kid) {
            publisher.window.record(counter);
            publisher.newest_ts = publisher.newest_ts.max(ts);
            publisher.last_seen_ms = now;
        }
        Ok(())
    }

    /// Drops the least recently seen publisher; its envelopes can no longer be told apart
    /// from new ones, so every first contact from now on must be stamped after its newest.
    fn evict_least_recent(&mut self) {
        if let Some(kid) = self
            .publishers
            .iter()
            .min_by_key(|(_, p)| p.last_seen_ms)
            .map(|(kid, _)| *kid)
            && let Some(evicted) = self.publishers.remove(&kid)
        {
            self.forgotten_ts = self.forgotten_ts.max(evicted.newest_ts);
        }
    }
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

    /// An opener that started long before every stamp the tests use.
    fn opener() -> Opener {
        Opener::starting_at(key(), 0)
    }

    #[test]
    fn round_trip_hides_plaintext() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let mut opener = opener();
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
            assert_eq!(opener().open(&mut e), Err(CryptoError::Decrypt), "{i}");
        }
        let mut ok = sealed.clone();
        opener().open(&mut ok).expect("untouched opens");
    }

    #[test]
    fn rejects_plaintext_wrong_key_and_flipped_bits() {
        let mut plain = env();
        assert_eq!(opener().open(&mut plain), Err(CryptoError::Decrypt));
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
            assert_eq!(opener().open(&mut bad), Err(CryptoError::Decrypt), "{i}");
        }
    }

    fn sealed_at(sealer: &mut Sealer, ts: u64) -> BusEnvelope {
        let mut e = env();
        sealer
            .seal_with_rng(&mut rand::rng(), &mut e, ts)
            .expect("seal");
        e
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn a_replayed_envelope_is_refused() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let mut opener = opener();
        let e = sealed_at(&mut sealer, NOW);
        opener.open_at(&mut e.clone(), NOW).expect("first copy");
        assert_eq!(
            opener.open_at(&mut e.clone(), NOW),
            Err(CryptoError::Replay)
        );
        assert_eq!(
            opener.open_at(&mut e.clone(), NOW + 1_000),
            Err(CryptoError::Replay)
        );
        // The next envelope of the same publisher is fine.
        opener
            .open_at(&mut sealed_at(&mut sealer, NOW), NOW)
            .expect("next");
    }

    #[test]
    fn late_envelopes_within_the_window_arrive_once() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let mut opener = opener();
        let all: Vec<_> = (0..20).map(|_| sealed_at(&mut sealer, NOW)).collect();
        for e in all.iter().rev() {
            opener.open_at(&mut e.clone(), NOW).expect("out of order");
        }
        for e in &all {
            assert_eq!(
                opener.open_at(&mut e.clone(), NOW),
                Err(CryptoError::Replay)
            );
        }
    }

    #[test]
    fn envelopes_further_behind_than_the_window_are_refused() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let mut opener = opener();
        let n = usize::try_from(REPLAY_WINDOW).expect("small") + 10;
        let all: Vec<_> = (0..n).map(|_| sealed_at(&mut sealer, NOW)).collect();
        opener
            .open_at(&mut all[n - 1].clone(), NOW)
            .expect("newest");
        // Counter n-1-REPLAY_WINDOW and below are out of the window; the ones after it are in.
        let edge = n - 1 - usize::try_from(REPLAY_WINDOW).expect("small");
        for e in &all[..=edge] {
            assert_eq!(
                opener.open_at(&mut e.clone(), NOW),
                Err(CryptoError::Replay)
            );
        }
        for e in &all[edge + 1..n - 1] {
            opener
                .open_at(&mut e.clone(), NOW)
                .expect("inside the window");
        }
    }

    #[test]
    fn stale_and_future_envelopes_are_refused_even_by_a_fresh_opener() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let old = sealed_at(&mut sealer, NOW - MAX_AGE_MS - 1);
        let future = sealed_at(&mut sealer, NOW + MAX_SKEW_MS + 1);
        let recent = sealed_at(&mut sealer, NOW - MAX_AGE_MS + 1_000);
        let ahead = sealed_at(&mut sealer, NOW + MAX_SKEW_MS - 1_000);
        let mut opener = opener();
        assert_eq!(
            opener.open_at(&mut old.clone(), NOW),
            Err(CryptoError::Replay)
        );
        assert_eq!(
            opener.open_at(&mut future.clone(), NOW),
            Err(CryptoError::Replay)
        );
        opener.open_at(&mut recent.clone(), NOW).expect("recent");
        opener
            .open_at(&mut ahead.clone(), NOW)
            .expect("slightly ahead");
    }

    #[test]
    fn the_timestamp_is_authenticated() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let e = sealed_at(&mut sealer, NOW - MAX_AGE_MS - 5_000);
        let mut v: serde_json::Value = serde_json::from_str(e.data.get()).expect("json");
        v["ts"] = NOW.into();
        let mut moved = e.clone();
        moved.data = serde_json::value::to_raw_value(&v).expect("raw");
        assert_eq!(opener().open_at(&mut moved, NOW), Err(CryptoError::Decrypt));
    }

    #[test]
    fn forged_key_ids_do_not_evict_real_publishers() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let mut opener = opener();
        let real = sealed_at(&mut sealer, NOW);
        opener.open_at(&mut real.clone(), NOW).expect("real");
        let mut forger = Sealer::new(BusKey::from_bytes([9u8; 32]), &mut rand::rng());
        for _ in 0..OPENER_CACHE * 2 {
            let mut f = sealed_at(
                &mut Sealer::new(BusKey::from_bytes([9u8; 32]), &mut rand::rng()),
                NOW,
            );
            assert_eq!(opener.open_at(&mut f, NOW), Err(CryptoError::Decrypt));
            let mut g = sealed_at(&mut forger, NOW);
            assert_eq!(opener.open_at(&mut g, NOW), Err(CryptoError::Decrypt));
        }
        assert_eq!(opener.publishers.len(), 1);
        assert_eq!(
            opener.open_at(&mut real.clone(), NOW),
            Err(CryptoError::Replay)
        );
    }

    #[test]
    fn the_least_recently_seen_publisher_is_evicted_first() {
        let mut opener = opener();
        let mut first = Sealer::new(key(), &mut rand::rng());
        let kept = sealed_at(&mut first, NOW);
        opener
            .open_at(&mut kept.clone(), NOW + 10_000)
            .expect("first");
        for i in 0..OPENER_CACHE {
            let mut s = Sealer::new(key(), &mut rand::rng());
            let t = NOW + u64::try_from(i).expect("small");
            opener.open_at(&mut sealed_at(&mut s, t), t).expect("other");
        }
        assert_eq!(opener.publishers.len(), OPENER_CACHE);
        // The first publisher was seen last (NOW + 10 s), so it kept its replay state.
        assert_eq!(
            opener.open_at(&mut kept.clone(), NOW + 10_000),
            Err(CryptoError::Replay)
        );
    }

    #[test]
    fn a_restarted_opener_refuses_envelopes_stamped_before_its_start() {
        let start = NOW - 5_000;
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let captured: Vec<_> = (0..20)
            .map(|i| sealed_at(&mut sealer, start - 20 + i))
            .collect();
        let at_start = sealed_at(&mut sealer, start);
        let after = sealed_at(&mut sealer, start + 1);
        // The instance before the restart delivered them all.
        let mut before = opener();
        for e in captured.iter().chain([&at_start, &after]) {
            before
                .open_at(&mut e.clone(), start + 1)
                .expect("first run");
        }
        // After the restart nothing stamped at or before the start gets in, in any order.
        let mut restarted = Opener::starting_at(key(), start);
        for e in captured.iter().rev().chain([&at_start]) {
            assert_eq!(
                restarted.open_at(&mut e.clone(), NOW),
                Err(CryptoError::Replay)
            );
        }
        restarted
            .open_at(&mut after.clone(), NOW)
            .expect("stamped after the start");
        restarted
            .open_at(&mut sealed_at(&mut sealer, NOW), NOW)
            .expect("the publisher's next envelope");
        for e in captured.iter().chain([&at_start, &after]) {
            assert_eq!(
                restarted.open_at(&mut e.clone(), NOW),
                Err(CryptoError::Replay)
            );
        }
    }

    #[test]
    fn the_first_contact_sets_a_floor_just_before_the_first_envelope() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let early = sealed_at(&mut sealer, NOW - FIRST_CONTACT_SLACK_MS - 1);
        let overtaken = sealed_at(&mut sealer, NOW - FIRST_CONTACT_SLACK_MS);
        let first = sealed_at(&mut sealer, NOW);
        let mut opener = opener();
        opener
            .open_at(&mut first.clone(), NOW)
            .expect("first contact");
        opener
            .open_at(&mut overtaken.clone(), NOW)
            .expect("overtaken by the first, within the slack");
        assert_eq!(
            opener.open_at(&mut early.clone(), NOW),
            Err(CryptoError::Replay)
        );
        for e in [&overtaken, &first] {
            assert_eq!(
                opener.open_at(&mut e.clone(), NOW),
                Err(CryptoError::Replay)
            );
        }
    }

    /// Fills the cache with other publishers seen after `after`, evicting everyone seen before.
    fn evict_all_seen_before(opener: &mut Opener, after: u64) {
        for i in 0..OPENER_CACHE {
            let mut s = Sealer::new(key(), &mut rand::rng());
            let t = after + u64::try_from(i).expect("small");
            opener.open_at(&mut sealed_at(&mut s, t), t).expect("other");
        }
    }

    #[test]
    fn an_evicted_publisher_seen_again_refuses_its_earlier_counters() {
        let mut sealer = Sealer::new(key(), &mut rand::rng());
        let mut opener = opener();
        let delivered: Vec<_> = (0..10).map(|i| sealed_at(&mut sealer, NOW + i)).collect();
        for (i, e) in (0..).zip(&delivered) {
            opener.open_at(&mut e.clone(), NOW + i).expect("delivered");
        }
        let kid = *opener.publishers.keys().next().expect("one publisher");
        evict_all_seen_before(&mut opener, NOW + 100);
        assert!(!opener.publishers.contains_key(&kid));
        // A copy replayed before the publisher is heard from again is refused...
        for e in delivered.iter().rev() {
            assert_eq!(
                opener.open_at(&mut e.clone(), NOW + 1_000),
                Err(CryptoError::Replay)
            );
        }
        // ...and so is every copy after it is.
        opener
            .open_at(&mut sealed_at(&mut sealer, NOW + 1_000), NOW + 1_000)
            .expect("the publisher's next envelope");
        for e in &delivered {
            assert_eq!(
                opener.open_at(&mut e.clone(), NOW + 1_000),
                Err(CryptoError::Replay)
            );
        }
    }

    #[test]
    fn the_window_matches_a_set_of_seen_counters() {
        use rand::RngExt as _;
        let mut rng = rand::rng();
        let mut window = ReplayWindow::default();
        let mut seen = std::collections::HashSet::new();
        let mut highest: Option<u64> = None;
        let mut base = 0u64;
        for _ in 0..20_000 {
            // Mostly near the top, sometimes far ahead (shifts of every size).
            let jump: u64 = if rng.random_bool(0.05) {
                rng.random_range(0..3 * REPLAY_WINDOW)
            } else {
                rng.random_range(0..8)
            };
            base += jump;
            let back: u64 = rng.random_range(0..REPLAY_WINDOW + 64);
            let counter = base.saturating_sub(back);
            let expected = match highest {
                None => true,
                Some(h) if counter > h => true,
                Some(h) => h - counter < REPLAY_WINDOW && !seen.contains(&counter),
            };
            assert_eq!(window.is_fresh(counter), expected, "counter {counter}");
            if expected {
                window.record(counter);
                seen.insert(counter);
                highest = Some(highest.map_or(counter, |h| h.max(counter)));
            }
        }
    }

    #[test]
    fn sealed_payloads_of_any_version_are_recognised() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).expect("raw");
        let mut e = env();
        Sealer::new(key(), &mut rand::rng())
            .seal(&mut e)
            .expect("seal");
        assert!(is_sealed(&e.data));
        assert!(is_sealed(&raw(
            r#"{"sealed":"sw-bus-1","kid":"a","iv":"b","ct":"c"}"#
        )));
        assert!(!is_sealed(&raw(r#"{"card":"4111"}"#)));
        assert!(!is_sealed(&raw(r#"{"sealed":true}"#)));
        assert!(!is_sealed(&raw(r#""sw-bus-2""#)));
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
