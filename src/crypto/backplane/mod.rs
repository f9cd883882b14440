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
//!
//! # Layout
//! The constants live here; the key and its per-publisher derivation in `key`, the wire form
//! and AAD in `envelope`, the [`Sealer`] in `sealer`, the [`Opener`] in `opener` with its
//! replay window in `replay`; [`KeptOpener`], for envelopes read back from history, in `kept`.

mod envelope;
mod kept;
mod key;
mod opener;
mod replay;
mod sealer;
#[cfg(test)]
mod tests;

pub use envelope::{envelope_aad, is_sealed};
pub use kept::{KeptOpener, KeptRead};
pub use key::BusKey;
pub use opener::Opener;
pub use sealer::Sealer;

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
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
