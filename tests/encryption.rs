//! Encryption: the handshake inside `authenticate`, fail-closed rules, per-client ciphertext,
//! inbound encrypted frames, ordering and the no-plaintext window.

mod common;

use sealwire::publish::Publish;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use sealwire::crypto::{ClientHandshake, HandshakeConfig};
use sealwire::server::{EncryptionPolicy, GlobRooms, Offer, ServerConfig};
use serde_json::{Value, json};

fn required() -> ServerConfig {
    let mut c = base_config();
    c.encryption = EncryptionPolicy::Required;
    c
}

/// A fresh valid client public key, raw bytes.
fn valid_key() -> Vec<u8> {
    let hs = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
    B64.decode(hs.public_key_base64()).expect("base64")
}

async fn expect_handshake_failure(c: &mut WsClient) {
    assert_eq!(
        c.recv_json().await,
        json!({"event": "error", "data": {"message": "Encryption handshake failed"}})
    );
    assert_eq!(c.expect_close().await, Some(4004));
}

#[tokio::test]
async fn handshake_yields_a_working_session() {
    let s = start_with(builder(base_config())).await;
    let (mut c, connected) = s.encrypted("alice").await;
    let d = &connected["data"];
    let spk = B64
        .decode(d["serverPublicKey"].as_str().expect("serverPublicKey"))
        .expect("serverPublicKey is base64");
    assert_eq!(spk.len(), 65);
    assert_eq!(spk[0], 0x04);
    let salt = B64
        .decode(d["salt"].as_str().expect("salt"))
        .expect("salt is base64");
    assert_eq!(salt.len(), 32);
    assert_eq!(d["userId"], "alice");

    s.server
        .to_client(c.id())
        .emit("greeting", &json!({"n": 1}))
        .await
        .expect("send");
    assert_eq!(
        c.recv_msg().await,
        json!({"event": "greeting", "data": {"n": 1}})
    );
    assert_eq!(s.server.counts().encrypted, 1);
    // Inbound encrypted events reach the message hook as encrypted.
    c.emit("ping", json!("x")).await;
    let echo = c.recv_msg().await;
    assert_eq!(echo["data"]["event"], "ping");
    assert_eq!(echo["data"]["wasEncrypted"], true);
    s.stop().await;
}

#[tokio::test]
async fn two_clients_get_different_keys_and_salts() {
    let s = start(base_config()).await;
    let (_a, ca) = s.encrypted("a").await;
    let (_b, cb) = s.encrypted("b").await;
    assert_ne!(ca["data"]["serverPublicKey"], cb["data"]["serverPublicKey"]);
    assert_ne!(ca["data"]["salt"], cb["data"]["salt"]);
    s.stop().await;
}

#[tokio::test]
async fn required_encryption_without_public_key_closes_4004() {
    let s = start(required()).await;
    let mut c = s.client().await;
    c.send_json(&json!({"event": "authenticate", "data": {"token": "plain"}}))
        .await;
    expect_handshake_failure(&mut c).await;
    // Nobody was indexed.
    wait_for(|| s.server.counts().clients == 0).await;
    assert_eq!(s.server.counts().users, 0);
    s.stop().await;
}

/// A policy that refuses plaintext clients refuses them before the authenticate hook: their
/// credentials never reach it, and a valid, an invalid and a missing token get the same 4004
/// (the answer tells nothing about the token).
#[tokio::test]
async fn plaintext_clients_are_refused_before_the_authenticate_hook() {
    for policy in [EncryptionPolicy::Required, EncryptionPolicy::HardenedOnly] {
        let mut config = base_config();
        config.encryption = policy;
        let called = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&called);
        let auth = test_auth();
        let s = start_with(builder(config).authenticate(
            move |req: sealwire::server::AuthRequest| {
                seen.store(true, Ordering::SeqCst);
                auth(req)
            },
        ))
        .await;
        for data in [json!({"token": "alice"}), json!({"token": ""}), json!({})] {
            let mut c = s.client().await;
            c.send_json(&json!({"event": "authenticate", "data": data}))
                .await;
            expect_handshake_failure(&mut c).await;
        }
        assert!(
            !called.load(Ordering::SeqCst),
            "{policy}: the hook saw a plaintext client's credentials"
        );
        // An encrypted client still goes through the hook.
        if policy == EncryptionPolicy::Required {
            let (_c, connected) = s.encrypted("bob").await;
            assert_eq!(connected["data"]["userId"], "bob");
            assert!(called.load(Ordering::SeqCst));
        }
        s.stop().await;
    }
}

/// Every encryption policy against every kind of client, over real WebSockets: the table in
/// `EncryptionPolicy`'s docs, and 4004 (never a plaintext session) wherever it says no.
#[tokio::test]
async fn every_policy_admits_exactly_the_clients_its_table_lists() {
    for policy in EncryptionPolicy::ALL {
        let mut cfg = base_config();
        cfg.encryption = policy;
        let s = start(cfg).await;
        for offer in [Offer::Plaintext, Offer::Compat, Offer::Hardened] {
            let mut c = s.client().await;
            let admitted = match offer {
                Offer::Plaintext => {
                    c.send_json(&json!({"event": "authenticate", "data": {"token": "p"}}))
                        .await;
                    let reply = c.recv_json().await;
                    reply["event"] == "connected"
                }
                Offer::Compat => {
                    let key = B64.encode(valid_key());
                    c.send_json(
                        &json!({"event": "authenticate", "data": {"token": "c", "publicKey": key}}),
                    )
                    .await;
                    let reply = c.recv_json().await;
                    if reply["event"] == "connected" {
                        assert!(
                            reply["data"]["serverPublicKey"].is_string(),
                            "{policy}: {reply}"
                        );
                    }
                    reply["event"] == "connected"
                }
                Offer::Hardened => {
                    let (reply, hs) = c.hardened_hello(HandshakeConfig::hardened(vec![])).await;
                    if reply["event"] == "hello" {
                        c.confirm_hello(&reply, hs).await.expect("finish");
                        c.emit("authenticate", json!({"token": "h"})).await;
                        assert_eq!(c.recv_msg().await["event"], "connected", "{policy}");
                        true
                    } else {
                        assert_eq!(reply["data"]["message"], "Encryption handshake failed");
                        false
                    }
                }
            };
            assert_eq!(admitted, policy.admits(offer), "{policy} {offer:?}");
            if !admitted {
                assert_eq!(c.expect_close().await, Some(4004), "{policy} {offer:?}");
            }
        }
        s.stop().await;
    }
}

#[tokio::test]
async fn handshake_disabled_refuses_a_client_that_sends_a_key() {
    let mut cfg = base_config();
    cfg.encryption = EncryptionPolicy::Off;
    let s = start(cfg).await;
    let mut c = s.client().await;
    let key = B64.encode(valid_key());
    c.send_json(&json!({"event": "authenticate", "data": {"token": "k", "publicKey": key}}))
        .await;
    expect_handshake_failure(&mut c).await;
    // A client without a key is served in plaintext.
    let (_p, connected) = s.plain("p").await;
    assert!(connected["data"].get("serverPublicKey").is_none());
    s.stop().await;
}

#[tokio::test]
async fn opportunistic_mode_encrypts_only_clients_that_send_a_key() {
    let s = start(base_config()).await;
    let (mut enc, ce) = s.encrypted("enc").await;
    let (mut plain, cp) = s.plain("plain").await;
    assert!(ce["data"]["serverPublicKey"].is_string());
    assert!(cp["data"].get("serverPublicKey").is_none() && cp["data"].get("salt").is_none());
    s.server
        .to_all()
        .emit("news", &json!("hi"))
        .await
        .expect("send");
    assert_eq!(
        plain.recv_json().await,
        json!({"event": "news", "data": "hi"})
    );
    let raw = enc.recv_json().await;
    assert_eq!(raw["event"], "encrypted");
    assert_eq!(enc.open(raw), json!({"event": "news", "data": "hi"}));
    s.stop().await;
}

#[tokio::test]
async fn invalid_public_keys_close_4004_even_when_not_required() {
    let s = start(base_config()).await;
    let good = valid_key();
    let mut compressed = vec![0x02 | (good[64] & 1)];
    compressed.extend_from_slice(&good[1..33]);
    let mut off_curve = good.clone();
    off_curve[64] ^= 0x01;
    let mut prefix5 = good.clone();
    prefix5[0] = 0x05;
    let mut prefix6 = good.clone();
    prefix6[0] = 0x06;
    let cases: Vec<(&str, String)> = vec![
        ("compressed 33-byte", B64.encode(&compressed)),
        ("off-curve", B64.encode(&off_curve)),
        ("64 bytes", B64.encode(&good[..64])),
        ("66 bytes", B64.encode([good.as_slice(), &[0]].concat())),
        ("0x05 prefix", B64.encode(&prefix5)),
        ("0x06 prefix", B64.encode(&prefix6)),
        ("not base64", "!!not*base64!!".to_owned()),
        ("empty", String::new()),
    ];
    for (what, key) in cases {
        let mut c = s.client().await;
        c.send_json(&json!({"event": "authenticate", "data": {"token": "k", "publicKey": key}}))
            .await;
        let e = c.recv_json().await;
        assert_eq!(
            e,
            json!({"event": "error", "data": {"message": "Encryption handshake failed"}}),
            "{what}"
        );
        assert_eq!(c.expect_close().await, Some(4004), "{what}");
    }
    // A non-string publicKey is refused too, never downgraded to plaintext.
    let mut c = s.client().await;
    c.send_json(&json!({"event": "authenticate", "data": {"token": "k", "publicKey": 42}}))
        .await;
    let first = c.recv().await;
    assert!(
        !matches!(&first, Received::Text(t) if t.contains("\"connected\"")),
        "non-string key accepted: {first:?}"
    );
    assert_eq!(s.server.counts().authenticated, 0);
    s.stop().await;
}

#[tokio::test]
async fn mixed_room_plaintext_and_ciphertext_carry_the_same_message() {
    let s = start(base_config()).await;
    let (mut plain, _) = s.plain("p").await;
    let (mut enc, _) = s.encrypted("e").await;
    let messages: Vec<Value> = (0..20)
        .map(|i| json!({"i": i, "text": format!("message {i}"), "nested": {"a": [1, 2, 3]}}))
        .collect();
    for m in &messages {
        s.server
            .to_room("ws-default")
            .emit("room:msg", m)
            .await
            .expect("send");
    }
    s.server
        .to_all()
        .emit("done", &json!(null))
        .await
        .expect("send");
    for m in &messages {
        let frame = plain.recv_json().await;
        assert_eq!(frame, json!({"event": "room:msg", "data": m}));
    }
    assert_eq!(plain.recv_json().await["event"], "done");

    // Every frame the encrypted client receives is an `encrypted` envelope with exactly
    // `iv` and `ct`, and nothing in it is the plaintext.
    let mut ivs = HashSet::new();
    let mut got = Vec::new();
    loop {
        let raw = match enc.recv().await {
            Received::Text(t) => t,
            Received::Close(c) => panic!("closed {c:?}"),
        };
        assert!(!raw.contains("message "), "plaintext leaked: {raw}");
        let frame: Value = serde_json::from_str(&raw).expect("json");
        assert_eq!(frame["event"], "encrypted", "{raw}");
        let data = frame["data"].as_object().expect("data object");
        assert_eq!(data.len(), 2, "{raw}");
        let iv = B64
            .decode(data["iv"].as_str().expect("iv"))
            .expect("iv base64");
        assert_eq!(iv.len(), 12);
        assert!(ivs.insert(iv), "IV reused");
        let inner = enc.open(frame);
        if inner["event"] == "done" {
            break;
        }
        got.push(inner);
    }
    let expected: Vec<Value> = messages
        .iter()
        .map(|m| json!({"event": "room:msg", "data": m}))
        .collect();
    assert_eq!(got, expected);
    s.stop().await;
}

#[tokio::test]
async fn tampered_ciphertext_is_refused_and_the_connection_survives() {
    let s = start_with(builder(base_config())).await;
    let (mut c, _) = s.encrypted("t").await;
    let good = {
        let session = c.session.as_mut().expect("session");
        session
            .seal(br#"{"event":"probe","data":1}"#)
            .expect("seal")
    };
    let mut ct = B64.decode(&good.ct).expect("ct");
    let mut flipped = ct.clone();
    flipped[0] ^= 0x01;
    let mut tag_flipped = ct.clone();
    let last = tag_flipped.len() - 1;
    tag_flipped[last] ^= 0x80;
    ct.truncate(ct.len() - 1);
    let bad: Vec<Value> = vec![
        json!({"iv": good.iv, "ct": B64.encode(&flipped)}),
        json!({"iv": good.iv, "ct": B64.encode(&tag_flipped)}),
        json!({"iv": good.iv, "ct": B64.encode(&ct)}),
        json!({"iv": good.iv, "ct": B64.encode([1u8; 8])}),
        json!({"iv": B64.encode([0u8; 12]), "ct": good.ct}),
        json!({"iv": B64.encode([0u8; 8]), "ct": good.ct}),
        json!({"iv": "***", "ct": good.ct}),
        json!({"iv": good.iv}),
        json!("not an object"),
    ];
    for data in bad {
        c.send_json(&json!({"event": "encrypted", "data": data}))
            .await;
        let reply = c.recv_msg().await;
        assert_eq!(
            reply,
            json!({"event": "error", "data": {"message": "Invalid encrypted message"}}),
            "{data}"
        );
    }
    // The untampered frame still works.
    c.send_json(&json!({"event": "encrypted", "data": good}))
        .await;
    let echo = c.recv_msg().await;
    assert_eq!(echo["data"]["event"], "probe");
    assert_eq!(echo["data"]["wasEncrypted"], true);
    s.stop().await;
}

#[tokio::test]
async fn encrypted_join_and_custom_events_are_handled() {
    let s = start_with(
        builder(base_config()).validate_rooms(GlobRooms::new(["team-*"]).expect("glob")),
    )
    .await;
    let (mut c, _) = s.encrypted("j").await;
    c.emit("join", json!({"rooms": ["team-a", "other"]})).await;
    c.sync().await;
    let rooms = s.server.client_rooms(&c.id()).expect("rooms");
    assert!(rooms.contains(&"team-a".to_owned()), "{rooms:?}");
    assert!(!rooms.contains(&"other".to_owned()));
    s.server
        .to_room("team-a")
        .emit("team", &json!(1))
        .await
        .expect("send");
    assert_eq!(c.recv_msg().await, json!({"event": "team", "data": 1}));
    c.emit("leave", json!({"rooms": ["team-a"]})).await;
    c.emit("chat", json!({"text": "hi"})).await;
    let echo = c.recv_msg().await;
    assert_eq!(
        echo["data"],
        json!({"event": "chat", "data": {"text": "hi"}, "wasEncrypted": true})
    );
    assert!(
        !s.server
            .client_rooms(&c.id())
            .expect("rooms")
            .contains(&"team-a".to_owned())
    );
    s.stop().await;
}

#[tokio::test]
async fn plaintext_events_from_an_encrypted_client_are_refused_when_encrypted_inbound_is_required()
{
    let s = start_with(builder(required()).require_encrypted_inbound(true)).await;
    let (mut c, _) = s.encrypted("r").await;
    c.send_json(&json!({"event": "chat", "data": "plain"}))
        .await;
    let raw = c.recv_json().await;
    assert_eq!(raw["event"], "encrypted", "the error itself is encrypted");
    assert_eq!(
        c.open(raw),
        json!({"event": "error", "data": {"message": "Encrypted message required"}})
    );
    // Heartbeats stay allowed in plaintext, and encrypted events still work.
    c.send_json(&json!({"event": "heartbeat"})).await;
    c.emit("chat", json!("sealed")).await;
    let echo = c.recv_msg().await;
    assert_eq!(echo["data"]["data"], "sealed");
    s.stop().await;
}

#[tokio::test]
async fn plaintext_events_from_an_encrypted_client_are_accepted_when_optional() {
    let s = start_with(builder(base_config())).await;
    let (mut c, _) = s.encrypted("o").await;
    c.send_json(&json!({"event": "chat", "data": "plain"}))
        .await;
    let echo = c.recv_msg().await;
    assert_eq!(
        echo["data"],
        json!({"event": "chat", "data": "plain", "wasEncrypted": false})
    );
    s.stop().await;
}

/// Sends a plaintext custom event and waits for its echo: every earlier frame of `c` has been
/// handled by then, without `c` ever encrypting inbound (as an IGNIS client).
async fn plaintext_sync(c: &mut WsClient) -> Value {
    c.send_json(&json!({"event": "ping-sync", "data": "plain"}))
        .await;
    c.recv_msg().await
}

/// IGNIS compatibility-profile clients never encrypt inbound: with encryption required they
/// still join, leave and send custom events in plaintext.
#[tokio::test]
async fn a_compat_client_joins_in_plaintext_when_encryption_is_required() {
    let s =
        start_with(builder(required()).validate_rooms(GlobRooms::new(["*"]).expect("glob"))).await;
    let (mut c, _) = s.encrypted("ignis").await;
    c.send_json(&json!({"event": "join", "data": {"rooms": ["plain-room"]}}))
        .await;
    assert_eq!(
        plaintext_sync(&mut c).await["data"],
        json!({"event": "ping-sync", "data": "plain", "wasEncrypted": false})
    );
    let rooms = s.server.client_rooms(&c.id()).expect("rooms");
    assert!(rooms.contains(&"plain-room".to_owned()), "{rooms:?}");
    s.server
        .to_room("plain-room")
        .emit("news", &json!({"n": 1}))
        .await
        .expect("send");
    let raw = c.recv_json().await;
    assert_eq!(raw["event"], "encrypted", "outbound stays encrypted");
    assert_eq!(c.open(raw), json!({"event": "news", "data": {"n": 1}}));
    c.send_json(&json!({"event": "leave", "data": {"rooms": ["plain-room"]}}))
        .await;
    plaintext_sync(&mut c).await;
    let rooms = s.server.client_rooms(&c.id()).expect("rooms");
    assert!(!rooms.contains(&"plain-room".to_owned()), "{rooms:?}");
    s.stop().await;
}

/// With `require_encrypted_inbound` the same plaintext join is refused.
#[tokio::test]
async fn a_compat_clients_plaintext_join_is_refused_when_encrypted_inbound_is_required() {
    let s = start_with(
        builder(required())
            .require_encrypted_inbound(true)
            .validate_rooms(GlobRooms::new(["*"]).expect("glob")),
    )
    .await;
    let (mut c, _) = s.encrypted("ignis").await;
    c.send_json(&json!({"event": "join", "data": {"rooms": ["plain-room"]}}))
        .await;
    assert_eq!(
        c.recv_msg().await,
        json!({"event": "error", "data": {"message": "Encrypted message required"}})
    );
    c.sync().await;
    let rooms = s.server.client_rooms(&c.id()).expect("rooms");
    assert!(!rooms.contains(&"plain-room".to_owned()), "{rooms:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_thousand_messages_arrive_in_order() {
    let s = start(base_config()).await;
    let (mut c, _) = s.encrypted("order").await;
    let id = c.id();
    let sender = s.server.clone();
    let producer = tokio::spawn(async move {
        for i in 0..1000u32 {
            sender
                .to_client(&id)
                .emit("seq", &json!(i))
                .await
                .expect("send");
            if i.is_multiple_of(50) {
                tokio::task::yield_now().await;
            }
        }
    });
    for i in 0..1000 {
        assert_eq!(c.recv_msg().await, json!({"event": "seq", "data": i}));
    }
    producer.await.expect("producer");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_reaches_clients_that_connect_during_a_broadcast_storm() {
    const CLIENTS: usize = 50;
    const PER_CLIENT: usize = 20;
    let s = start(base_config()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let server = s.server.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                server
                    .to_all()
                    .emit("storm", &json!({"n": n, "secret": "plaintext-marker"}))
                    .await
                    .expect("send");
                server
                    .to_room("ws-default")
                    .emit("storm", &json!({"n": n}))
                    .await
                    .expect("send");
                n += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            n
        })
    };
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let url = s.ws_url();
        tasks.push(tokio::spawn(async move {
            let mut c = WsClient::connect(&url).await;
            // `authenticate_encrypted` fails if anything but `connected` comes first.
            c.authenticate_encrypted(&format!("user-{i}")).await;
            let mut ivs = HashSet::new();
            for _ in 0..PER_CLIENT {
                let raw = match c.recv().await {
                    Received::Text(t) => t,
                    Received::Close(code) => panic!("closed {code:?}"),
                };
                assert!(!raw.contains("plaintext-marker"), "plaintext leaked: {raw}");
                let frame: Value = serde_json::from_str(&raw).expect("json");
                assert_eq!(frame["event"], "encrypted", "{raw}");
                assert!(
                    ivs.insert(frame["data"]["iv"].as_str().expect("iv").to_owned()),
                    "IV reused"
                );
                assert_eq!(c.open(frame)["event"], "storm");
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("client task"));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = storm.await.expect("storm");
    assert!(sent > 0);
    assert_eq!(s.server.counts().encrypted, CLIENTS);
    drop(clients);
    s.stop().await;
}

#[tokio::test]
async fn encrypted_system_events_follow_the_protocol() {
    let s = start_with(
        builder(required())
            .require_encrypted_inbound(true)
            .validate_rooms(GlobRooms::new(["*"]).expect("glob")),
    )
    .await;
    let (mut c, _) = s.encrypted("sys").await;
    // A plaintext join is refused like any plaintext application event.
    c.send_json(&json!({"event": "join", "data": {"rooms": ["plain-room"]}}))
        .await;
    assert_eq!(
        c.recv_msg().await["data"]["message"],
        "Encrypted message required"
    );
    // authenticate inside an encrypted frame: already authenticated (sealed).
    c.emit("authenticate", json!({"token": "someone-else"}))
        .await;
    assert_eq!(
        c.recv_msg().await,
        json!({"event": "error", "data": {"message": "Already authenticated"}})
    );
    // Protocol envelopes nested inside `encrypted` are refused.
    for nested in ["encrypted", "connected"] {
        c.emit(nested, json!({"iv": "AAAA", "ct": "AAAA"})).await;
        assert_eq!(
            c.recv_msg().await,
            json!({"event": "error", "data": {"message": "Invalid message format"}}),
            "{nested}"
        );
    }
    c.sync().await;
    assert!(
        !s.server
            .client_rooms(&c.id())
            .expect("rooms")
            .contains(&"plain-room".to_owned())
    );
    assert_eq!(s.server.client_info(&c.id()).expect("info").user_id, "sys");
    // An encrypted disconnect closes normally.
    c.emit("disconnect", Value::Null).await;
    assert_eq!(c.expect_close().await, Some(1000));
    s.stop().await;
}
