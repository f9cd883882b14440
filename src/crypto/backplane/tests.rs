//! Tests of backplane sealing and opening: round trips, authentication of the header and
//! timestamp, the replay window, floors and eviction.

use base64::Engine as _;
use serde_json::value::RawValue;

use super::replay::ReplayWindow;
use super::*;
use crate::crypto::{CryptoError, b64};
use crate::protocol::{BusEnvelope, BusTarget};

fn env() -> BusEnvelope {
    BusEnvelope {
        server_id: "s1".into(),
        target: BusTarget::Room("orders".into()),
        event: "order:update".into(),
        data: RawValue::from_string(r#"{"card":"4111"}"#.into()).expect("raw"),
        exclude: vec!["c1".into()],
        kept: None,
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

/// History entries read back: authentic ones open (again and again, across reads), while a
/// changed, re-targeted, foreign-key, stale or duplicated entry does not.
#[test]
fn kept_entries_open_only_if_authentic_fresh_and_once_per_read() {
    let mut sealer = Sealer::new(key(), &mut rand::rng());
    let kept = KeptOpener::new(key());
    let now = super::now_ms();
    let mut first = env();
    sealer
        .seal_with_rng(&mut rand::rng(), &mut first, now)
        .expect("seal");
    let mut second = env();
    sealer
        .seal_with_rng(&mut rand::rng(), &mut second, now)
        .expect("seal");

    for _ in 0..2 {
        let mut read = kept.read(now - 1000);
        let (mut a, mut b) = (first.clone(), second.clone());
        read.open(&mut a).expect("first opens");
        read.open(&mut b).expect("second opens");
        assert_eq!(a.data.get(), r#"{"card":"4111"}"#);
        // The same publication twice in one read (under another offset): refused.
        let mut again = first.clone();
        assert!(matches!(read.open(&mut again), Err(CryptoError::Replay)));
    }
    // Re-targeted to another room, or another event: the AAD no longer matches.
    let mut moved = first.clone();
    moved.target = BusTarget::Room("elsewhere".into());
    assert!(matches!(
        kept.read(0).open(&mut moved),
        Err(CryptoError::Decrypt)
    ));
    let mut renamed = first.clone();
    renamed.event = "other".into();
    assert!(matches!(
        kept.read(0).open(&mut renamed),
        Err(CryptoError::Decrypt)
    ));
    // A flipped ciphertext byte.
    let mut flipped = first.clone();
    let mut v: serde_json::Value = serde_json::from_str(flipped.data.get()).expect("json");
    let mut ct = b64().decode(v["ct"].as_str().expect("ct")).expect("b64");
    ct[0] ^= 1;
    v["ct"] = b64().encode(ct).into();
    flipped.data = serde_json::value::to_raw_value(&v).expect("raw");
    assert!(matches!(
        kept.read(0).open(&mut flipped),
        Err(CryptoError::Decrypt)
    ));
    // Another key, or plaintext.
    let other = KeptOpener::new(BusKey::from_bytes([8u8; 32]));
    assert!(matches!(
        other.read(0).open(&mut first.clone()),
        Err(CryptoError::Decrypt)
    ));
    assert!(matches!(
        kept.read(0).open(&mut env()),
        Err(CryptoError::Decrypt)
    ));
    // Older than the read allows.
    assert!(matches!(
        kept.read(now + 1).open(&mut first.clone()),
        Err(CryptoError::Replay)
    ));
}
