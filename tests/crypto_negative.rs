//! Negative tests for both profiles: malformed keys, every single-bit flip of iv/ct/tag,
//! truncation, wrong key and direction, replayed and reordered records, bad signatures,
//! unpinned server keys, downgrades and tampered handshakes. Pure: no network.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::hardened::{compat_pair, hardened_hello, hardened_pair};
use sealwire::crypto::{
    Backend, ClientHandshake, CryptoError, EphemeralSecret, HandshakeConfig, PeerPublicKey,
    ServerIdentity, Session, server_handshake,
};
use sealwire::protocol::{ConnectedPayload, EncryptedPayload, HelloPayload};
use serde_json::json;

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

fn valid_point() -> [u8; 65] {
    Backend::RustCrypto.public_key(&EphemeralSecret::from_bytes(&[0x42; 32]).expect("scalar"))
}

/// Every class of malformed public key, as raw bytes, with a name.
fn malformed_keys() -> Vec<(&'static str, Vec<u8>)> {
    let p = valid_point();
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("identity (0x00)", vec![0x00]),
        ("truncated 64", p[..64].to_vec()),
        ("one byte long", [&p[..], &[0]].concat()),
        ("x only", p[..33].to_vec()),
    ];
    let mut compressed = vec![0x02 | (p[64] & 1)];
    compressed.extend_from_slice(&p[1..33]);
    v.push(("compressed", compressed.clone()));
    compressed[0] ^= 1;
    v.push(("compressed, other parity", compressed));
    for (name, prefix) in [
        ("prefix 0x00", 0x00u8),
        ("prefix 0x02", 0x02),
        ("prefix 0x03", 0x03),
        ("prefix 0x05", 0x05),
        ("hybrid 0x06", 0x06),
        ("hybrid 0x07", 0x07),
        ("prefix 0xff", 0xff),
    ] {
        let mut q = p;
        q[0] = prefix;
        v.push((name, q.to_vec()));
    }
    let mut off = p;
    off[64] ^= 1;
    v.push(("off curve", off.to_vec()));
    let mut zero = [0u8; 65];
    zero[0] = 4;
    v.push(("all-zero coordinates", zero.to_vec()));
    let mut big = [0xffu8; 65];
    big[0] = 4;
    v.push(("coordinates >= p", big.to_vec()));
    // x = p (field prime), y from the valid point: not reduced.
    let mut x_is_p = p;
    x_is_p[1..33].copy_from_slice(
        &[
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ][..],
    );
    v.push(("x = p", x_is_p.to_vec()));
    v
}

#[test]
fn every_malformed_public_key_class_is_rejected_everywhere() {
    let cfg = HandshakeConfig::default();
    let keys = malformed_keys();
    assert_eq!(keys.len(), 18);
    for (name, raw) in &keys {
        assert!(PeerPublicKey::from_bytes(raw).is_err(), "parser: {name}");
        let text = b64().encode(raw);
        for profile in [None, Some("sealwire-v2")] {
            let r = server_handshake(&cfg, "c", &text, profile, &mut rand::rng());
            assert_eq!(
                r.map(|_| ()),
                Err(CryptoError::InvalidPublicKey),
                "server: {name}"
            );
        }
        // As the server's key in the hardened `hello` and in a compatibility `connected`.
        let (mut hello, _, client) = hardened_hello(
            &HandshakeConfig::default(),
            HandshakeConfig::hardened(vec![]),
        );
        hello.server_public_key = text.clone();
        assert!(client.finish_hello(&hello).is_err(), "client: {name}");
        let client = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
        let connected = ConnectedPayload {
            id: "c".into(),
            user_id: "u".into(),
            time: "t".into(),
            expires_at: None,
            server_public_key: Some(text.clone()),
            salt: Some(b64().encode([7u8; 32])),
            profile: None,
            extra: serde_json::Map::new(),
        };
        assert!(
            client.finish_connected(&connected).is_err(),
            "compat client: {name}"
        );
    }
    for text in ["", "!!!", "BA==", " ", "base64url-_"] {
        assert!(PeerPublicKey::from_base64(text).is_err(), "{text:?}");
    }
}

const FLIP_PT: &[u8] = br#"{"event":"x","data":"some payload"}"#;
const FLIP_BITS: usize = (12 + FLIP_PT.len() + 16) * 8;

/// Every single-bit flip of iv and of ct||tag must fail; the genuine record still opens after.
fn flip_every_bit(tx: &mut Session, rx: &mut Session) -> usize {
    let p = tx
        .seal(br#"{"event":"x","data":"some payload"}"#)
        .expect("seal");
    let iv = b64().decode(&p.iv).expect("iv");
    let ct = b64().decode(&p.ct).expect("ct");
    let mut n = 0;
    for (field, bytes) in [("iv", &iv), ("ct", &ct)] {
        for bit in 0..bytes.len() * 8 {
            let mut t = bytes.clone();
            t[bit / 8] ^= 1 << (bit % 8);
            let mut bad = p.clone();
            if field == "iv" {
                bad.iv = b64().encode(&t);
            } else {
                bad.ct = b64().encode(&t);
            }
            assert_eq!(
                rx.open(&bad),
                Err(CryptoError::Decrypt),
                "{field} bit {bit}"
            );
            n += 1;
        }
    }
    assert!(
        rx.open(&p).is_ok(),
        "failed opens must not disturb the state"
    );
    n
}

#[test]
fn flipping_any_bit_of_iv_ct_or_tag_fails_in_both_profiles() {
    let (mut s, mut c) = compat_pair();
    let n = flip_every_bit(&mut s, &mut c);
    assert_eq!(n, FLIP_BITS);
    let (mut s, mut c) = hardened_pair(1 << 20);
    assert_eq!(flip_every_bit(&mut s, &mut c), FLIP_BITS);
    assert_eq!(flip_every_bit(&mut c, &mut s), FLIP_BITS);
}

#[test]
fn every_truncation_fails() {
    for (mut tx, mut rx) in [compat_pair(), hardened_pair(1 << 20)] {
        let p = tx.seal(b"truncate me").expect("seal");
        let ct = b64().decode(&p.ct).expect("ct");
        for len in 0..ct.len() {
            let bad = EncryptedPayload {
                ct: b64().encode(&ct[..len]),
                ..p.clone()
            };
            assert_eq!(rx.open(&bad), Err(CryptoError::Decrypt), "len {len}");
        }
        let iv = b64().decode(&p.iv).expect("iv");
        for len in 0..iv.len() {
            let bad = EncryptedPayload {
                iv: b64().encode(&iv[..len]),
                ..p.clone()
            };
            assert_eq!(rx.open(&bad), Err(CryptoError::Decrypt), "iv len {len}");
        }
        rx.open(&p).expect("genuine");
    }
}

#[test]
fn wrong_key_fails_in_both_profiles() {
    let (mut s1, _) = compat_pair();
    let (_, mut c2) = compat_pair();
    let p = s1.seal(b"x").expect("seal");
    assert_eq!(c2.open(&p), Err(CryptoError::Decrypt));
    let (mut s1, _) = hardened_pair(1 << 20);
    let (_, mut c2) = hardened_pair(1 << 20);
    let p = s1.seal(b"x").expect("seal");
    assert_eq!(c2.open(&p), Err(CryptoError::Decrypt));
}

#[test]
fn wrong_direction_and_reflection_fail() {
    let (mut s, mut c) = hardened_pair(1 << 20);
    // Server record reflected to the server, client record reflected to the client.
    let down = s.seal(b"down").expect("seal");
    assert_eq!(s.open(&down), Err(CryptoError::Decrypt));
    let up = c.seal(b"up").expect("seal");
    assert_eq!(c.open(&up), Err(CryptoError::Decrypt));
    // Both still work in the right direction (seq 1 on c2s: 0 was the confirmation).
    assert_eq!(c.open(&down).expect("down"), b"down");
    assert_eq!(up.seq, Some(1));
    assert_eq!(s.open(&up).expect("up"), b"up");
}

#[test]
fn replayed_reordered_and_forged_sequence_numbers_fail() {
    let (mut s, mut c) = hardened_pair(3);
    let recs: Vec<EncryptedPayload> = (0..6)
        .map(|i| s.seal(format!("m{i}").as_bytes()).expect("seal"))
        .collect();
    // Reordered: 1 before 0, and a jump across an epoch.
    assert!(c.open(&recs[1]).is_err());
    assert!(c.open(&recs[4]).is_err());
    c.open(&recs[0]).expect("0");
    // Replayed.
    assert!(c.open(&recs[0]).is_err());
    // Sequence field rewritten: missing, next, huge.
    for seq in [None, Some(2), Some(0), Some(u64::MAX)] {
        let bad = EncryptedPayload {
            seq,
            ..recs[1].clone()
        };
        assert!(c.open(&bad).is_err(), "{seq:?}");
    }
    for r in &recs[1..] {
        c.open(r).expect("in order, across the rekey");
    }
    for r in &recs {
        assert!(c.open(r).is_err(), "replay after rekey");
    }
    // A compatibility session refuses records that carry a sequence number.
    let (mut cs, mut cc) = compat_pair();
    let mut p = cs.seal(b"x").expect("seal");
    p.seq = Some(0);
    assert!(cc.open(&p).is_err());
}

fn identity(b: u8) -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::from_bytes(&[b; 32]).expect("key"))
}

fn signed_hello(
    id: &Arc<ServerIdentity>,
    pins: Vec<PeerPublicKey>,
) -> (HelloPayload, ClientHandshake) {
    let server_cfg = HandshakeConfig {
        identity: Some(Arc::clone(id)),
        ..HandshakeConfig::default()
    };
    let (connected, _, client) = hardened_hello(&server_cfg, HandshakeConfig::hardened(pins));
    (connected, client)
}

#[test]
fn bad_signatures_are_rejected() {
    let id = identity(9);
    let pins = vec![id.public_key()];
    let (connected, _) = signed_hello(&id, pins.clone());
    let sig = b64()
        .decode(connected.extra["signature"].as_str().expect("sig"))
        .expect("b64");
    assert_eq!(sig.len(), 64);
    let mut cases: Vec<(String, serde_json::Value)> = Vec::new();
    for bit in 0..sig.len() * 8 {
        let mut t = sig.clone();
        t[bit / 8] ^= 1 << (bit % 8);
        cases.push((format!("bit {bit}"), json!(b64().encode(&t))));
    }
    cases.push(("truncated".into(), json!(b64().encode(&sig[..63]))));
    cases.push((
        "extended".into(),
        json!(b64().encode([&sig[..], &[0]].concat())),
    ));
    cases.push(("zero".into(), json!(b64().encode([0u8; 64]))));
    cases.push(("not base64".into(), json!("%%%")));
    cases.push(("not a string".into(), json!(5)));
    let other = identity(10).sign_transcript(&[0u8; 32]);
    cases.push((
        "other key, other transcript".into(),
        json!(b64().encode(other)),
    ));
    assert_eq!(cases.len(), 64 * 8 + 6);
    for (name, bad) in cases {
        let (mut connected, client) = signed_hello(&id, pins.clone());
        connected.extra.insert("signature".into(), bad);
        assert_eq!(
            client
                .finish_hello(&connected)
                .map(|_| ())
                .expect_err(&name),
            CryptoError::UntrustedServer,
            "{name}"
        );
    }
    // Missing signature with an identity key present.
    let (mut connected, client) = signed_hello(&id, pins);
    connected.extra.remove("signature");
    assert_eq!(
        client.finish_hello(&connected).map(|_| ()),
        Err(CryptoError::UntrustedServer)
    );
}

#[test]
fn unpinned_or_substituted_server_keys_are_rejected() {
    let id = identity(11);
    let attacker = identity(12);
    // Server signs with a key the client does not pin.
    let (connected, client) = signed_hello(&id, vec![attacker.public_key()]);
    assert_eq!(
        client.finish_hello(&connected).map(|_| ()),
        Err(CryptoError::UntrustedServer)
    );
    // A middlebox swaps in its own identity and a valid signature over *its* transcript view:
    // the pinned client refuses the key.
    let (mut connected, client) = signed_hello(&id, vec![id.public_key()]);
    connected.extra.insert(
        "identityKey".into(),
        json!(attacker.public_key().to_base64()),
    );
    assert_eq!(
        client.finish_hello(&connected).map(|_| ()),
        Err(CryptoError::UntrustedServer)
    );
    // Pins set but the server does not sign at all.
    let (mut connected, client) = signed_hello(&id, vec![id.public_key()]);
    connected.extra.remove("identityKey");
    connected.extra.remove("signature");
    assert_eq!(
        client.finish_hello(&connected).map(|_| ()),
        Err(CryptoError::UntrustedServer)
    );
    // No pins: the signature is still verified, and a wrong one is refused.
    let (mut connected, client) = signed_hello(&id, vec![]);
    connected
        .extra
        .insert("signature".into(), json!(b64().encode([1u8; 64])));
    assert_eq!(
        client.finish_hello(&connected).map(|_| ()),
        Err(CryptoError::UntrustedServer)
    );
}

type Tamper = Box<dyn Fn(&mut HelloPayload)>;

#[test]
fn tampered_handshakes_and_downgrades_are_rejected() {
    let cfg = HandshakeConfig::default();
    let tamper: Vec<(&str, Tamper)> = vec![
        (
            "downgrade: no profile",
            Box::new(|c| c.profile = String::new()),
        ),
        (
            "unknown profile",
            Box::new(|c| c.profile = "sealwire-v0".into()),
        ),
        ("client id", Box::new(|c| c.id.push('x'))),
        ("salt", Box::new(|c| c.salt = b64().encode([9u8; 32]))),
        ("short salt", Box::new(|c| c.salt = b64().encode([9u8; 31]))),
        ("no salt", Box::new(|c| c.salt = String::new())),
        (
            "no server key",
            Box::new(|c| c.server_public_key = String::new()),
        ),
        (
            "other server key",
            Box::new(|c| c.server_public_key = b64().encode(valid_point())),
        ),
        (
            "rekeyAfter",
            Box::new(|c| {
                c.extra.insert("rekeyAfter".into(), json!(7));
            }),
        ),
        (
            "rekeyAfter 0",
            Box::new(|c| {
                c.extra.insert("rekeyAfter".into(), json!(0));
            }),
        ),
        (
            "rekeyAfter huge",
            Box::new(|c| {
                c.extra.insert("rekeyAfter".into(), json!(1u64 << 40));
            }),
        ),
        (
            "no rekeyAfter",
            Box::new(|c| {
                c.extra.remove("rekeyAfter");
            }),
        ),
        (
            "no confirm",
            Box::new(|c| {
                c.extra.remove("confirm");
            }),
        ),
        (
            "confirm",
            Box::new(|c| {
                c.extra
                    .insert("confirm".into(), json!(b64().encode([0u8; 32])));
            }),
        ),
    ];
    for (name, f) in &tamper {
        let (mut connected, _, client) = hardened_hello(&cfg, HandshakeConfig::hardened(vec![]));
        f(&mut connected);
        assert!(client.finish_hello(&connected).is_err(), "{name}");
    }
    // A compat client refuses a hardened answer too (no silent upgrade it cannot check).
    let (connected, _, client) = hardened_hello(&cfg, HandshakeConfig::hardened(vec![]));
    let compat_client = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
    drop(client);
    assert_eq!(
        compat_client.finish_hello(&connected).map(|_| ()),
        Err(CryptoError::Handshake)
    );
    // The server refuses a wrong client confirmation and a replayed server MAC.
    let (connected, mut server, _) = hardened_hello(&cfg, HandshakeConfig::hardened(vec![]));
    assert!(server.awaiting_client_confirmation());
    let server_mac = connected.extra["confirm"].as_str().expect("confirm");
    assert_eq!(
        server.confirm_client(server_mac),
        Err(CryptoError::Handshake)
    );
    assert_eq!(server.confirm_client("???"), Err(CryptoError::Handshake));
    assert!(server.awaiting_client_confirmation());
}

/// Pins ask for an authenticated server, which only the hardened profile gives: a
/// compatibility handshake that pins keys refuses the server's answer rather than take an
/// unauthenticated session.
#[test]
fn a_compat_handshake_with_pins_takes_no_session() {
    let pins = vec![identity(9).public_key()];
    let cfg = HandshakeConfig {
        pinned_server_keys: pins,
        ..HandshakeConfig::default()
    };
    let client = ClientHandshake::new(cfg.clone(), &mut rand::rng());
    let (hello, _server) = server_handshake(
        &HandshakeConfig::default(),
        "c",
        &client.public_key_base64(),
        None,
        &mut rand::rng(),
    )
    .expect("server");
    assert_eq!(
        client
            .finish(&hello.server_public_key, &hello.salt)
            .map(|_| ())
            .expect_err("pinned compat"),
        CryptoError::UntrustedServer
    );
}
