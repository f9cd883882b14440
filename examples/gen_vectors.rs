//! Regenerates the published protocol test vectors in `tests/vectors/`.
//!
//! ```text
//! cargo run --example gen_vectors            # rewrite tests/vectors/{compat,hardened,room}.json
//! cargo run --example gen_vectors -- --check # exit 1 if the committed files differ
//! ```
//!
//! Every input is a fixed constant below; every output is computed through the public
//! `sealwire::crypto` API (the same code the server and the SDK run) and cross-checked by
//! opening each record with the peer's session. `tests/vectors.rs` rebuilds both documents
//! and compares them with the committed files, and `tests/vectors/check_vectors.mjs`
//! recomputes every value with WebCrypto. Only change a committed vector by running this
//! example after a deliberate protocol change (and bump the profile version if the change is
//! not backwards compatible).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sealwire::crypto::hardened::{self, Direction, EpochKeys, KeySchedule, TranscriptInput};
use sealwire::crypto::{
    Backend, ClientHandshake, EphemeralSecret, HandshakeConfig, PeerPublicKey, Profile,
    ServerIdentity, server_handshake_with,
};
use sealwire::protocol::{ConnectedPayload, EncryptedPayload};
use serde_json::{Value, json};

/// Where the vectors came from (the "source" field of every file).
pub const SOURCE: &str = "sealwire examples/gen_vectors.rs (cargo run --example gen_vectors); \
    layout specified in docs/PROTOCOL.md; independently recomputed by \
    tests/vectors/check_vectors.mjs (WebCrypto)";

const CLIENT_SECRET: [u8; 32] = [
    0x1f, 0x4e, 0x2a, 0x91, 0x6c, 0x03, 0xb7, 0x58, 0xd2, 0x44, 0x9e, 0x71, 0x0b, 0xc5, 0x3a, 0x86,
    0xf1, 0x27, 0x6d, 0xa9, 0x12, 0x5e, 0xe4, 0x38, 0x7b, 0x90, 0x0c, 0xd6, 0x61, 0x2f, 0xa3, 0x14,
];
const SERVER_SECRET: [u8; 32] = [
    0x6a, 0x11, 0xc3, 0x5f, 0x08, 0x9d, 0x72, 0xe6, 0x3b, 0xa4, 0x17, 0xd8, 0x4c, 0x95, 0x20, 0x6e,
    0xb1, 0x0a, 0x53, 0xf7, 0x2c, 0x89, 0x46, 0xde, 0x15, 0x7a, 0xc0, 0x33, 0x98, 0x5b, 0xe2, 0x07,
];
const IDENTITY_SECRET: [u8; 32] = [
    0x2d, 0x83, 0x5e, 0x0f, 0xa6, 0x19, 0xc4, 0x72, 0x8b, 0x31, 0xe9, 0x56, 0x0d, 0xb8, 0x64, 0x27,
    0xfa, 0x45, 0x90, 0x1c, 0x6f, 0xd3, 0x38, 0xa1, 0x5c, 0x07, 0xbe, 0x62, 0x19, 0xf4, 0x8d, 0x30,
];
const SALT: [u8; 32] = [
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
    0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
];
const CLIENT_ID: &str = "3f2b8c1e-9d4a-4e6b-8f00-1a2b3c4d5e6f";
const REKEY_AFTER: u32 = 2;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Yields fixed bytes as "randomness" (compatibility-profile IVs).
struct FixedRng(Vec<u8>);

impl rand::TryRng for FixedRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        assert!(self.0.len() >= dst.len(), "fixed randomness exhausted");
        let rest = self.0.split_off(dst.len());
        dst.copy_from_slice(&self.0);
        self.0 = rest;
        Ok(())
    }
}

impl rand::TryCryptoRng for FixedRng {}

fn secret(bytes: &[u8; 32]) -> EphemeralSecret {
    EphemeralSecret::from_bytes(bytes).unwrap()
}

fn public(bytes: &[u8; 32]) -> [u8; 65] {
    Backend::RustCrypto.public_key(&secret(bytes))
}

fn ecdh_x() -> [u8; 32] {
    let server_pub = PeerPublicKey::from_bytes(&public(&SERVER_SECRET)).unwrap();
    *Backend::RustCrypto
        .agree(&secret(&CLIENT_SECRET), &server_pub)
        .unwrap()
}

fn connected_from(hello: &sealwire::crypto::ServerHello) -> ConnectedPayload {
    let mut c = ConnectedPayload {
        id: CLIENT_ID.to_owned(),
        user_id: "vector-user".to_owned(),
        time: "2026-01-01T00:00:00.000Z".to_owned(),
        expires_at: None,
        server_public_key: None,
        salt: None,
        profile: None,
        extra: serde_json::Map::new(),
    };
    hello.apply_to(&mut c);
    c
}

fn record_json(dir: &str, p: &EncryptedPayload, plaintext: &str, epoch: u32, aad: &[u8]) -> Value {
    let ct = unb64(&p.ct);
    let mut v = json!({
        "direction": dir,
        "plaintext": plaintext,
        "nonce": hex(&unb64(&p.iv)),
        "aad": hex(aad),
        "ciphertext": hex(&ct[..ct.len() - 16]),
        "tag": hex(&ct[ct.len() - 16..]),
        "frame": serde_json::from_str::<Value>(&sealwire::crypto::session::encrypted_frame(p)).unwrap(),
    });
    if let Some(seq) = p.seq {
        v["seq"] = json!(seq);
        v["epoch"] = json!(epoch);
    }
    v
}

/// The compatibility-profile document.
pub fn compat() -> Value {
    let cfg = HandshakeConfig::default();
    let client = ClientHandshake::from_secret(cfg.clone(), secret(&CLIENT_SECRET));
    let (hello, mut server) = server_handshake_with(
        &cfg,
        CLIENT_ID,
        &client.public_key_base64(),
        None,
        secret(&SERVER_SECRET),
        SALT,
    )
    .unwrap();
    let connected = connected_from(&hello);
    let mut client = client.finish_connected(&connected).unwrap().session;
    assert_eq!(client.profile(), Profile::Compat);
    let key = sealwire::crypto::kdf::derive_key(&SALT, &ecdh_x(), cfg.info.as_bytes());
    let mut records = Vec::new();
    let messages = [
        (
            "s2c",
            r#"{"event":"chat","data":{"text":"hello"}}"#,
            [0x10u8; 12],
        ),
        (
            "s2c",
            r#"{"event":"chat","data":{"text":"hello"}}"#,
            [0x11u8; 12],
        ),
        (
            "c2s",
            r#"{"event":"join","data":{"rooms":["r1"]}}"#,
            [0x20u8; 12],
        ),
        ("c2s", "", [0x21u8; 12]),
    ];
    for (dir, pt, iv) in messages {
        let (tx, rx) = if dir == "s2c" {
            (&mut server, &mut client)
        } else {
            (&mut client, &mut server)
        };
        let p = tx
            .seal_with_rng(&mut FixedRng(iv.to_vec()), pt.as_bytes())
            .unwrap();
        assert_eq!(rx.open(&p).unwrap(), pt.as_bytes());
        records.push(record_json(dir, &p, pt, 0, &[]));
    }
    json!({
        "source": SOURCE,
        "profile": "compat",
        "description": "IGNIS compatibility profile: ECDH P-256, HKDF-SHA256(salt, x, info) -> one AES-256-GCM key for both directions, random 12-byte IV, no AAD",
        "inputs": {
            "client_private": hex(&CLIENT_SECRET),
            "server_private": hex(&SERVER_SECRET),
            "salt": hex(&SALT),
            "info": cfg.info,
            "client_id": CLIENT_ID,
        },
        "derived": {
            "client_public": hex(&public(&CLIENT_SECRET)),
            "server_public": hex(&public(&SERVER_SECRET)),
            "ecdh_x": hex(&ecdh_x()),
            "key": hex(&*key),
        },
        "connected": {
            "serverPublicKey": connected.server_public_key,
            "salt": connected.salt,
        },
        "records": records,
    })
}

fn epochs(secret0: &[u8; 32], n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut s = *secret0;
    for e in 0..n {
        let k = EpochKeys::derive(&s);
        out.push(json!({"epoch": e, "secret": hex(&s), "key": hex(&*k.key), "nonce_prefix": hex(&k.prefix)}));
        s = *k.next;
    }
    out
}

/// The hardened-profile document (with a server identity signature).
pub fn hardened_doc() -> Value {
    let identity = Arc::new(ServerIdentity::from_bytes(&IDENTITY_SECRET).unwrap());
    let server_cfg = HandshakeConfig {
        rekey_after: REKEY_AFTER,
        identity: Some(Arc::clone(&identity)),
        ..HandshakeConfig::default()
    };
    let client_cfg = HandshakeConfig::hardened(vec![identity.public_key()]);
    let client = ClientHandshake::from_secret(client_cfg, secret(&CLIENT_SECRET));
    let (hello, mut server) = server_handshake_with(
        &server_cfg,
        CLIENT_ID,
        &client.public_key_base64(),
        client.profile_id(),
        secret(&SERVER_SECRET),
        SALT,
    )
    .unwrap();
    let hello_payload = hello.hello_payload(CLIENT_ID);
    let client_hello: Value = serde_json::from_str(&client.hello_json()).unwrap();
    let server_hello = json!({"event": "hello", "data": hello_payload});
    let finished = client.finish_hello(&hello_payload).unwrap();
    let mut client = finished.session;
    let confirmation = finished.confirmation.unwrap();

    let client_public = public(&CLIENT_SECRET);
    let server_public = public(&SERVER_SECRET);
    let identity_public = *identity.public_key().as_bytes();
    let input = TranscriptInput {
        client_id: CLIENT_ID,
        client_public: &client_public,
        server_public: &server_public,
        salt: &SALT,
        rekey_after: REKEY_AFTER,
        identity: Some(&identity_public),
    };
    let transcript = hardened::transcript(&input).unwrap();
    let th = hardened::transcript_hash(&input).unwrap();
    let x = ecdh_x();
    let mut prk = <Hmac<sha2::Sha256>>::new_from_slice(&SALT).unwrap();
    prk.update(&x);
    let prk = prk.finalize().into_bytes();
    let schedule = KeySchedule::derive(&SALT, &x, &th);
    let server_finished =
        hardened::finished_mac(&schedule.confirm, hardened::label::SERVER_FINISHED, &th);
    let client_finished =
        hardened::finished_mac(&schedule.confirm, hardened::label::CLIENT_FINISHED, &th);
    assert_eq!(
        hex(&unb64(hello.confirm.as_ref().unwrap())),
        hex(&server_finished)
    );

    let mut records = Vec::new();
    // The client's key confirmation is c2s record 0.
    let conf_payload: EncryptedPayload = serde_json::from_value(
        serde_json::from_str::<Value>(&confirmation).unwrap()["data"].clone(),
    )
    .unwrap();
    let conf_pt = sealwire::crypto::handshake::confirmation_json(&client_finished);
    assert_eq!(server.open(&conf_payload).unwrap(), conf_pt.as_bytes());
    let mac_b64 = base64::engine::general_purpose::STANDARD.encode(client_finished);
    server.confirm_client(&mac_b64).unwrap();
    records.push(record_json(
        "c2s",
        &conf_payload,
        &conf_pt,
        0,
        &hardened::aad(Direction::ClientToServer, 0, 0),
    ));
    // Then the sealed login, and traffic that crosses epochs, and a refresh.
    let plan = [
        (
            "c2s",
            r#"{"event":"authenticate","data":{"type":"Bearer","token":"vector-token"}}"#,
        ),
        (
            "s2c",
            r#"{"event":"connected","data":{"id":"3f2b8c1e-9d4a-4e6b-8f00-1a2b3c4d5e6f","userId":"vector-user","time":"2026-01-01T00:00:00.000Z","expiresAt":"2026-01-01T01:00:00.000Z"}}"#,
        ),
        ("s2c", r#"{"event":"chat","data":{"text":"hello"}}"#),
        ("s2c", r#"{"event":"chat","data":{"text":"hello"}}"#),
        ("s2c", r#"{"event":"news","data":[1,2,3]}"#),
        ("c2s", r#"{"event":"join","data":{"rooms":["r1"]}}"#),
        ("s2c", ""),
        ("c2s", r#"{"event":"ping","data":null}"#),
        ("s2c", r#"{"event":"bye"}"#),
        (
            "c2s",
            r#"{"event":"refresh","data":{"token":"vector-token-2"}}"#,
        ),
        (
            "s2c",
            r#"{"event":"refreshed","data":{"userId":"vector-user","time":"2026-01-01T00:48:00.000Z","expiresAt":"2026-01-01T02:00:00.000Z"}}"#,
        ),
    ];
    for (dir, pt) in plan {
        let (tx, rx, d) = if dir == "s2c" {
            (&mut server, &mut client, Direction::ServerToClient)
        } else {
            (&mut client, &mut server, Direction::ClientToServer)
        };
        let p = tx.seal(pt.as_bytes()).unwrap();
        assert_eq!(rx.open(&p).unwrap(), pt.as_bytes());
        let seq = p.seq.unwrap();
        let epoch = hardened::epoch_of(seq, REKEY_AFTER);
        records.push(record_json(
            dir,
            &p,
            pt,
            epoch,
            &hardened::aad(d, epoch, seq),
        ));
    }
    json!({
        "source": SOURCE,
        "profile": hardened::PROFILE_ID,
        "description": "Hardened profile sealwire-v2 with a server identity signature: the hello exchange, the key confirmation (c2s 0), the sealed authenticate (c2s 1) and connected (s2c 0), then traffic with rekey_after = 2 so that records cross epochs, and a refresh",
        "inputs": {
            "client_private": hex(&CLIENT_SECRET),
            "server_private": hex(&SERVER_SECRET),
            "identity_private": hex(&IDENTITY_SECRET),
            "salt": hex(&SALT),
            "client_id": CLIENT_ID,
            "rekey_after": REKEY_AFTER,
        },
        "derived": {
            "client_public": hex(&client_public),
            "server_public": hex(&server_public),
            "identity_public": hex(&identity_public),
            "ecdh_x": hex(&x),
            "transcript": hex(&transcript),
            "transcript_hash": hex(&th),
            "prk": hex(&prk),
            "c2s_secret0": hex(&*schedule.c2s),
            "s2c_secret0": hex(&*schedule.s2c),
            "confirm_key": hex(&*schedule.confirm),
            "server_finished": hex(&server_finished),
            "client_finished": hex(&client_finished),
            "signature_input": hex(&hardened::signature_input(&th)),
            "signature": hex(&unb64(hello.signature.as_ref().unwrap())),
            "epochs": {
                "c2s": epochs(&schedule.c2s, 3),
                "s2c": epochs(&schedule.s2c, 4),
            },
        },
        "hello": {
            "id": CLIENT_ID,
            "serverPublicKey": hello.server_public_key,
            "salt": hello.salt,
            "profile": hello.profile,
            "rekeyAfter": REKEY_AFTER,
            "confirm": hello.confirm,
            "identityKey": hello.identity_key,
            "signature": hello.signature,
        },
        "flow": {
            "client_hello": client_hello,
            "server_hello": server_hello,
        },
        "records": records,
    })
}

const ROOM_SECRET: [u8; 32] = [
    0x5c, 0x0e, 0x91, 0x3a, 0xd7, 0x62, 0x18, 0xbf, 0x44, 0xe0, 0x29, 0x8d, 0x73, 0x06, 0xca, 0x51,
    0x9f, 0x3b, 0x68, 0x02, 0xe5, 0x17, 0xac, 0x4d, 0x80, 0x36, 0xf9, 0x2e, 0x65, 0xd1, 0x0a, 0xb4,
];
const ROOM: &str = "orders:eu";
const ROOM_EPOCH: u64 = 7;

/// The room-key document (`sealwire-room-v1`): one epoch's grant and three records, each as
/// its text frame and its binary message (§14.6).
pub fn room_doc() -> Value {
    use sealwire::crypto::room::{self, RoomKeyring, RoomSealer, RoomSecret};
    let secret = RoomSecret::from_bytes(&ROOM_SECRET);
    let (key, prefix) = secret.expand();
    let mut sealer = RoomSealer::new(ROOM, ROOM_EPOCH, &secret, Default::default()).unwrap();
    let mut ring = RoomKeyring::new();
    ring.grant(ROOM, ROOM_EPOCH, &secret.to_base64(), Default::default())
        .unwrap();
    let plaintexts = [
        r#"{"event":"order","data":{"id":1,"total":"12.50"}}"#,
        r#"{"event":"order","data":{"id":2,"note":"caf\u00e9 \u2713"}}"#,
        r#"{"event":"status","data":null}"#,
    ];
    let records: Vec<Value> = plaintexts
        .iter()
        .enumerate()
        .map(|(seq, pt)| {
            let seq = seq as u64;
            let frames = sealer.seal(pt.as_bytes()).unwrap();
            let frame = frames.text;
            let parsed: Value = serde_json::from_str(&frame).unwrap();
            let ct = parsed["data"]["ct"].as_str().unwrap().to_owned();
            // Cross-check: the member's keyring opens it, in either form.
            assert_eq!(
                ring.open(ROOM, ROOM_EPOCH, seq, &ct).unwrap(),
                pt.as_bytes()
            );
            let mut binary_ring = RoomKeyring::new();
            binary_ring
                .grant(ROOM, ROOM_EPOCH, &secret.to_base64(), Default::default())
                .unwrap();
            let record = room::BinaryRecord::parse(&frames.binary).unwrap();
            assert_eq!(binary_ring.open_binary(&record).unwrap(), pt.as_bytes());
            let mut nonce = prefix.to_vec();
            nonce.extend_from_slice(&seq.to_be_bytes());
            json!({
                "seq": seq,
                "plaintext": pt,
                "nonce_hex": hex(&nonce),
                "aad_hex": hex(&room::aad(ROOM, ROOM_EPOCH, seq).unwrap()),
                "ct_b64": ct,
                "frame": frame,
                "binary_hex": hex(&frames.binary),
            })
        })
        .collect();
    json!({
        "source": SOURCE,
        "extension": room::EXTENSION_ID,
        "room": ROOM,
        "epoch": ROOM_EPOCH,
        "secret_hex": hex(&ROOM_SECRET),
        "key_hex": hex(&*key),
        "prefix_hex": hex(&prefix),
        "grant": *room::grant_json(ROOM, ROOM_EPOCH, &secret),
        "records": records,
    })
}

/// Every document, as (file name, pretty JSON text).
pub fn documents() -> Vec<(&'static str, String)> {
    let render = |v: Value| serde_json::to_string_pretty(&v).unwrap() + "\n";
    vec![
        ("compat.json", render(compat())),
        ("hardened.json", render(hardened_doc())),
        ("room.json", render(room_doc())),
    ]
}

#[allow(dead_code)]
fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let check = std::env::args().any(|a| a == "--check");
    let mut stale = false;
    for (name, text) in documents() {
        let path = dir.join(name);
        if check {
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current != text {
                eprintln!("{} is stale", path.display());
                stale = true;
            }
        } else {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, text).unwrap();
            println!("wrote {}", path.display());
        }
    }
    if stale {
        std::process::exit(1);
    }
}
