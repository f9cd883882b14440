//! The hardened profile `sealwire-v2` over real WebSockets: negotiation, key confirmation,
//! server identity pinning and rotation, refusing the compatibility profile, and rejection of
//! replayed, reordered and reflected records.

mod common;

use std::sync::Arc;

use common::Received;
use common::hardened::{config_with, identity, start_echo};
use sealwire::crypto::{CryptoError, HandshakeConfig, PeerPublicKey, ServerIdentity};
use sealwire::protocol::{EncryptedPayload, HelloPayload};
use serde_json::{Value, json};

fn pin(id: &ServerIdentity) -> PeerPublicKey {
    id.public_key()
}

/// Expects an `error` frame with `message` (sealed or not), then a close with `code`.
async fn expect_error_then_close(c: &mut common::WsClient, message: &str, code: u16) {
    let frame = c.recv_json().await;
    let inner = c.open(frame);
    assert_eq!(inner["event"], "error", "{inner}");
    assert_eq!(inner["data"]["message"], message);
    assert_eq!(c.expect_close().await, Some(code));
}

#[tokio::test]
async fn handshake_confirms_keys_and_echoes_both_ways() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let mut c = server.client().await;
    let connected = c
        .authenticate_hardened("alice", HandshakeConfig::hardened(vec![]))
        .await
        .expect("hardened handshake");
    let d = &connected["data"];
    assert_eq!(d["profile"], "sealwire-v2");
    assert_eq!(d["rekeyAfter"], 1 << 20);
    assert!(d["confirm"].is_string());
    assert!(d.get("signature").is_none());
    for i in 0..3 {
        c.emit("ping", json!({ "n": i })).await;
        let raw = c.recv_json().await;
        assert_eq!(raw["event"], "encrypted");
        assert_eq!(
            raw["data"]["seq"],
            i + 1,
            "server records count from 0, and 0 was the sealed connected: {raw}"
        );
        let msg = c.open(raw);
        assert_eq!(msg["event"], "echo");
        assert_eq!(
            msg["data"],
            json!({"event": "ping", "data": {"n": i}, "encrypted": true})
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn rekeying_keeps_both_sides_in_lockstep() {
    let server = start_echo(config_with(None, 2)).await;
    let mut c = server.client().await;
    c.authenticate_hardened("bob", HandshakeConfig::hardened(vec![]))
        .await
        .expect("handshake");
    let mut ivs = Vec::new();
    for i in 0..7 {
        c.emit("ping", json!(i)).await;
        let raw = c.recv_json().await;
        ivs.push(raw["data"]["iv"].as_str().expect("iv").to_owned());
        assert_eq!(c.open(raw)["data"]["data"], json!(i));
    }
    // s2c record 0 was `connected`: the echoes are records 1..=7, epochs change at 2, 4, 6.
    let prefixes: Vec<Vec<u8>> = ivs.iter().map(|iv| b64_decode(iv)[..4].to_vec()).collect();
    assert_ne!(prefixes[0], prefixes[1], "epoch 1 has a new prefix");
    assert_eq!(prefixes[1], prefixes[2], "same epoch, same prefix");
    assert_ne!(prefixes[2], prefixes[3], "epoch 2 has a new prefix");
    assert_eq!(server.server.counts().authenticated, 1, "still connected");
    server.stop().await;
}

#[tokio::test]
async fn skipped_client_confirmation_closes_4004() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let mut c = server.client().await;
    let (hello, hs) = c.hardened_hello(HandshakeConfig::hardened(vec![])).await;
    let payload: HelloPayload = serde_json::from_value(hello["data"].clone()).expect("payload");
    let done = hs.finish_hello(&payload).expect("finish");
    c.session = Some(done.session);
    // Drop the confirmation record: the next record (seq 1) is out of order for the server.
    c.emit("authenticate", json!({"token": "carol"})).await;
    expect_error_then_close(&mut c, "Invalid encrypted message", 4004).await;
    server.stop().await;
}

/// Builds the client's record `seq` by hand from the published key schedule (an independent
/// path through the spec, not through `Session`).
fn manual_c2s_record(
    client_secret: [u8; 32],
    connected: &HelloPayload,
    seq: u64,
    plaintext: &[u8],
) -> Value {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use sealwire::crypto::hardened::{self, Direction, EpochKeys, KeySchedule, TranscriptInput};
    use sealwire::crypto::{Backend, EphemeralSecret};
    let secret = EphemeralSecret::from_bytes(&client_secret).expect("secret");
    let client_public = Backend::RustCrypto.public_key(&secret);
    let server_public =
        PeerPublicKey::from_base64(&connected.server_public_key).expect("server key");
    let salt: [u8; 32] = b64_decode(&connected.salt).try_into().expect("salt len");
    let rekey_after =
        u32::try_from(connected.extra["rekeyAfter"].as_u64().expect("rekeyAfter")).expect("u32");
    let th = hardened::transcript_hash(&TranscriptInput {
        client_id: &connected.id,
        client_public: &client_public,
        server_public: server_public.as_bytes(),
        salt: &salt,
        rekey_after,
        identity: None,
    })
    .expect("th");
    let x = Backend::RustCrypto
        .agree(&secret, &server_public)
        .expect("ecdh");
    let schedule = KeySchedule::derive(&salt, &x, &th);
    let epoch0 = EpochKeys::derive(&schedule.c2s);
    let nonce = hardened::nonce(&epoch0.prefix, seq);
    let aad = hardened::aad(Direction::ClientToServer, 0, seq);
    let cipher = aes_gcm::Aes256Gcm::new((&*epoch0.key).into());
    let mut buf = plaintext.to_vec();
    cipher
        .encrypt_in_place(&aes_gcm::Nonce::from(nonce), &aad, &mut buf)
        .expect("encrypt");
    json!({"event": "encrypted", "data": {"iv": sealwire_b64(&nonce), "ct": sealwire_b64(&buf), "seq": seq}})
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

/// Sends a `hello` with a fixed client secret, returning the server's `hello` unfinished.
async fn fixed_secret_hello(c: &mut common::WsClient, secret: [u8; 32]) -> HelloPayload {
    use sealwire::crypto::{Backend, EphemeralSecret};
    let public = Backend::RustCrypto.public_key(&EphemeralSecret::from_bytes(&secret).expect("s"));
    c.send_json(&json!({"event": "hello", "data": {
        "publicKey": sealwire_b64(&public), "profile": "sealwire-v2"}}))
        .await;
    let hello = c.recv_json().await;
    assert_eq!(hello["event"], "hello", "{hello}");
    serde_json::from_value(hello["data"].clone()).expect("payload")
}

#[tokio::test]
async fn first_record_must_be_a_valid_confirmation() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let secret = [0x5a; 32];
    // A well-formed record 0 that is an application event, not `confirm`.
    let mut c = server.client().await;
    let connected = fixed_secret_hello(&mut c, secret).await;
    c.send_json(&manual_c2s_record(
        secret,
        &connected,
        0,
        br#"{"event":"ping","data":1}"#,
    ))
    .await;
    let reply = c.recv_json().await;
    assert_eq!(reply["event"], "encrypted", "errors are sealed: {reply}");
    assert_eq!(c.expect_close().await, Some(4004));
    // A `confirm` record with a wrong MAC.
    let mut c = server.client().await;
    let connected = fixed_secret_hello(&mut c, secret).await;
    let bad = json!({"event": "confirm", "data": {"mac": sealwire_b64(&[0u8; 32])}});
    c.send_json(&manual_c2s_record(
        secret,
        &connected,
        0,
        bad.to_string().as_bytes(),
    ))
    .await;
    assert_eq!(c.recv_json().await["event"], "encrypted");
    assert_eq!(c.expect_close().await, Some(4004));
    // The manual path agrees with the SDK path: the right MAC is accepted.
    let mut c = server.client().await;
    let connected = fixed_secret_hello(&mut c, secret).await;
    let good = sealwire::crypto::handshake::confirmation_json(&client_finished(secret, &connected));
    c.send_json(&manual_c2s_record(secret, &connected, 0, good.as_bytes()))
        .await;
    c.send_json(&manual_c2s_record(
        secret,
        &connected,
        1,
        br#"{"event":"authenticate","data":{"token":"fixed"}}"#,
    ))
    .await;
    let raw = c.recv_json().await;
    assert_eq!(raw["event"], "encrypted", "connected is sealed: {raw}");
    assert_eq!(raw["data"]["seq"], 0);
    assert_eq!(server.server.counts().authenticated, 1);
    server.stop().await;
}

fn client_finished(secret: [u8; 32], connected: &HelloPayload) -> [u8; 32] {
    use sealwire::crypto::hardened::{self, KeySchedule, TranscriptInput};
    use sealwire::crypto::{Backend, EphemeralSecret};
    let secret = EphemeralSecret::from_bytes(&secret).expect("secret");
    let client_public = Backend::RustCrypto.public_key(&secret);
    let server_public =
        PeerPublicKey::from_base64(&connected.server_public_key).expect("server key");
    let salt: [u8; 32] = b64_decode(&connected.salt).try_into().expect("salt len");
    let th = hardened::transcript_hash(&TranscriptInput {
        client_id: &connected.id,
        client_public: &client_public,
        server_public: server_public.as_bytes(),
        salt: &salt,
        rekey_after: 1 << 20,
        identity: None,
    })
    .expect("th");
    let x = Backend::RustCrypto
        .agree(&secret, &server_public)
        .expect("ecdh");
    let schedule = KeySchedule::derive(&salt, &x, &th);
    hardened::finished_mac(&schedule.confirm, hardened::label::CLIENT_FINISHED, &th)
}

#[tokio::test]
async fn pinned_identity_verifies_and_rotation_accepts_next_key() {
    let current = identity(0x31);
    let next = identity(0x32);
    let server = start_echo(config_with(Some(Arc::clone(&current)), 1 << 20)).await;
    let mut c = server.client().await;
    let connected = c
        .authenticate_hardened(
            "dan",
            HandshakeConfig::hardened(vec![pin(&current), pin(&next)]),
        )
        .await
        .expect("pinned current key");
    assert_eq!(connected["data"]["identityKey"], pin(&current).to_base64());
    c.emit("ping", json!(1)).await;
    assert_eq!(c.recv_msg().await["event"], "echo");
    server.stop().await;

    // The operator rotates to the next key: clients pinning both keep working.
    let rotated = start_echo(config_with(Some(Arc::clone(&next)), 1 << 20)).await;
    let mut c = rotated.client().await;
    c.authenticate_hardened(
        "dan",
        HandshakeConfig::hardened(vec![pin(&current), pin(&next)]),
    )
    .await
    .expect("pinned next key");
    c.emit("ping", json!(2)).await;
    assert_eq!(c.recv_msg().await["data"]["data"], json!(2));
    // A client that only pins the retired key refuses the rotated server.
    let mut old = rotated.client().await;
    let err = old
        .authenticate_hardened("eve", HandshakeConfig::hardened(vec![pin(&current)]))
        .await
        .expect_err("unpinned key");
    assert_eq!(err, CryptoError::UntrustedServer);
    rotated.stop().await;
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_server_is_refused_by_pinning_client() {
    // No identity at all while the client pins one.
    let server = start_echo(config_with(None, 1 << 20)).await;
    let mut c = server.client().await;
    let err = c
        .authenticate_hardened("f", HandshakeConfig::hardened(vec![pin(&identity(0x41))]))
        .await
        .expect_err("no signature");
    assert_eq!(err, CryptoError::UntrustedServer);
    server.stop().await;

    // A signature by a pinned key over a different transcript: tamper with the salt.
    let id = identity(0x42);
    let server = start_echo(config_with(Some(Arc::clone(&id)), 1 << 20)).await;
    let mut c = server.client().await;
    let (hello, hs) = c
        .hardened_hello(HandshakeConfig::hardened(vec![pin(&id)]))
        .await;
    let mut payload: HelloPayload = serde_json::from_value(hello["data"].clone()).expect("payload");
    payload.salt = sealwire_b64(&[7u8; 32]);
    assert_eq!(
        hs.finish_hello(&payload).map(|_| ()).expect_err("tampered"),
        CryptoError::UntrustedServer
    );
    server.stop().await;
}

fn sealwire_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn refusing_compat_closes_4004_but_accepts_hardened() {
    let mut config = config_with(None, 1 << 20);
    config.encryption = sealwire::server::EncryptionPolicy::HardenedOnly;
    let server = start_echo(config).await;
    let mut compat = server.client().await;
    compat
        .send_json(&json!({"event": "authenticate", "data": {
            "token": "h", "publicKey": common::WsClient::any_public_key()}}))
        .await;
    let reply = compat.recv_json().await;
    assert_eq!(reply["event"], "error");
    assert_eq!(reply["data"]["message"], "Encryption handshake failed");
    assert_eq!(compat.expect_close().await, Some(4004));

    let mut unknown = server.client().await;
    unknown
        .send_json(&json!({"event": "authenticate", "data": {
            "token": "i", "publicKey": common::WsClient::any_public_key(), "profile": "sealwire-v9"}}))
        .await;
    let reply = unknown.recv_json().await;
    assert_eq!(reply["data"]["message"], "Encryption handshake failed");
    assert_eq!(unknown.expect_close().await, Some(4004));

    let mut hardened = server.client().await;
    hardened
        .authenticate_hardened("j", HandshakeConfig::hardened(vec![]))
        .await
        .expect("hardened accepted");
    hardened.emit("ping", json!(1)).await;
    assert_eq!(hardened.recv_msg().await["event"], "echo");
    server.stop().await;
}

/// A confirmed hardened client plus the raw text of two sealed records not yet sent.
async fn confirmed_with_two_records(
    server: &common::TestServer,
) -> (common::WsClient, String, String) {
    let mut c = server.client().await;
    c.authenticate_hardened("k", HandshakeConfig::hardened(vec![]))
        .await
        .expect("handshake");
    let s = c.session.as_mut().expect("session");
    let r1 = s
        .seal_frame(json!({"event":"ping","data":1}).to_string().as_bytes())
        .expect("seal");
    let r2 = s
        .seal_frame(json!({"event":"ping","data":2}).to_string().as_bytes())
        .expect("seal");
    (c, r1, r2)
}

#[tokio::test]
async fn replayed_record_closes_4004() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let (mut c, r1, _) = confirmed_with_two_records(&server).await;
    c.send_text(&r1).await;
    assert_eq!(c.recv_msg().await["data"]["data"], json!(1));
    c.send_text(&r1).await;
    expect_error_then_close(&mut c, "Invalid encrypted message", 4004).await;
    server.stop().await;
}

#[tokio::test]
async fn reordered_record_closes_4004() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let (mut c, _, r2) = confirmed_with_two_records(&server).await;
    c.send_text(&r2).await;
    expect_error_then_close(&mut c, "Invalid encrypted message", 4004).await;
    server.stop().await;
}

#[tokio::test]
async fn reflected_server_record_closes_4004() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let mut c = server.client().await;
    c.authenticate_hardened("m", HandshakeConfig::hardened(vec![]))
        .await
        .expect("handshake");
    c.emit("ping", json!(1)).await;
    let raw = c.recv_json().await;
    assert_eq!(c.open(raw.clone())["event"], "echo");
    // Send the server's own record (s2c 1) back with the seq the server expects next (c2s 3:
    // after the confirmation, `authenticate` and the ping), so that the direction, not the
    // counter, rejects it.
    let mut data: EncryptedPayload = serde_json::from_value(raw["data"].clone()).expect("payload");
    data.seq = Some(3);
    c.send_json(&json!({"event": "encrypted", "data": data}))
        .await;
    // The reply is sealed with the server's keys; our session still opens it.
    expect_error_then_close(&mut c, "Invalid encrypted message", 4004).await;
    server.stop().await;
}

#[tokio::test]
async fn plaintext_events_from_a_hardened_client_are_refused() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let mut c = server.client().await;
    c.authenticate_hardened("n", HandshakeConfig::hardened(vec![]))
        .await
        .expect("handshake");
    c.send_json(&json!({"event": "ping", "data": 1})).await;
    let msg = c.recv_msg().await;
    assert_eq!(msg["event"], "error");
    assert_eq!(msg["data"]["message"], "Encrypted message required");
    // Every frame the client saw was sealed; the connection is still usable.
    c.emit("ping", json!(2)).await;
    assert_eq!(c.recv_msg().await["data"]["data"], json!(2));
    match c.recv_within(std::time::Duration::from_millis(100)).await {
        None => {}
        Some(Received::Text(t)) => panic!("unexpected frame {t}"),
        Some(Received::Close(code)) => panic!("unexpected close {code:?}"),
    }
    let _: Value = json!(null);
    server.stop().await;
}

/// Nobody on the path can end a hardened session as a normal closure, or keep it alive after
/// its client is gone: a plaintext `disconnect` is refused, and plaintext `heartbeat`s do not
/// count as activity (the idle timeout still ends the session, 4002). Sealed heartbeats do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_plaintext_disconnect_and_heartbeats_do_not_act_on_a_hardened_session() {
    let mut config = config_with(None, 1 << 20);
    config.heartbeat_interval = std::time::Duration::from_millis(50);
    config.heartbeat_timeout = std::time::Duration::from_millis(500);
    let server = start_echo(config).await;
    let mut injected = server.client().await;
    injected
        .authenticate_hardened("victim", HandshakeConfig::hardened(vec![]))
        .await
        .expect("handshake");
    let mut sealed = server.client().await;
    sealed
        .authenticate_hardened("alive", HandshakeConfig::hardened(vec![]))
        .await
        .expect("handshake");

    injected
        .send_json(&json!({"event": "disconnect", "data": null}))
        .await;
    let msg = injected.recv_msg().await;
    assert_eq!(msg["event"], "error", "{msg}");
    assert_eq!(msg["data"]["message"], "Encrypted message required");
    injected.emit("ping", json!(1)).await;
    assert_eq!(injected.recv_msg().await["data"]["data"], json!(1));

    // For 1.5 s (three idle timeouts) one client sends only plaintext heartbeats, the other
    // sealed ones.
    let mut closed = None;
    for _ in 0..15 {
        sealed.emit("heartbeat", json!({})).await;
        if closed.is_none() {
            injected.send_json(&json!({"event": "heartbeat"})).await;
            match injected
                .recv_within(std::time::Duration::from_millis(100))
                .await
            {
                Some(Received::Close(code)) => closed = Some(code),
                Some(Received::Text(t)) => panic!("unexpected frame {t}"),
                None => {}
            }
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        closed,
        Some(Some(4002)),
        "plaintext heartbeats kept it alive"
    );
    sealed.emit("ping", json!(2)).await;
    assert_eq!(sealed.recv_msg().await["data"]["data"], json!(2));
    server.stop().await;
}

/// A compatibility-profile client (IGNIS) may still send `disconnect` in plaintext.
#[tokio::test]
async fn a_compatibility_client_disconnects_in_plaintext() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let (mut c, _) = server.encrypted("compat").await;
    c.send_json(&json!({"event": "disconnect", "data": null}))
        .await;
    assert_eq!(c.expect_close().await, Some(1000));
    server.stop().await;
}
