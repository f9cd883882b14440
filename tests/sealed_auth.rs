//! Credentials never cross in the clear (hardened profile `sealwire-v2`), and sessions end
//! with their credentials.
//!
//! Each audit finding has a test here, run through a real WebSocket relay placed where a
//! TLS-terminating proxy or an active attacker sits:
//! - a passive relay never sees the token or the user id;
//! - a relay that substitutes the server's hello cannot make a pinning client send its token;
//! - the token-swap relay attack is refused by the server (and a forged `connected` by the
//!   client);
//! - a session ends at its token's expiry (4006) unless refreshed, a refresh for another user
//!   is refused, and the JWT hook checks issuer and audience;
//! - a client offering key material ends encrypted or is closed with 4004;
//! - the authentication deadline covers every step of the sealed flow.

mod common;

use sealwire::publish::Publish;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::hardened::{config_with, hardened_pair, identity, start_echo};
use common::relay::{Dir, Relay, Tamper, close_frame, passive};
use common::sdk::{event_where, next_event};
use common::*;
use sealwire::client::{Client, DisconnectReason, Encryption, Event, ReconnectPolicy};
use sealwire::crypto::{HandshakeConfig, server_handshake};
use sealwire::protocol::AuthenticatePayload;
use sealwire::server::{Handshake, HookError, JwtAuth, Server};
use serde_json::{Value, json};

const TOKEN: &str = "tok-7c2e-secret-bob";

fn pinned_client(
    url: &str,
    pin: &Arc<sealwire::crypto::ServerIdentity>,
) -> sealwire::client::ClientBuilder {
    Client::builder(url)
        .token(TOKEN)
        .encryption(Encryption::Hardened {
            pinned_server_keys: vec![pin.public_key()],
        })
        .reconnect(ReconnectPolicy::never())
        .connect_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn a_passive_relay_never_sees_the_token_the_user_id_or_any_message() {
    let id = identity(0x51);
    let server = start_echo(config_with(Some(Arc::clone(&id)), 1 << 20)).await;
    let relay = Relay::start(server.ws_url(), passive()).await;
    let (client, mut events) = pinned_client(&relay.ws_url(), &id)
        .connect()
        .await
        .expect("hardened connect through the relay");
    let Event::Connected { info, .. } = next_event(&mut events).await else {
        panic!("connected first");
    };
    assert_eq!(
        info.user_id, TOKEN,
        "the test hook uses the token as the user id"
    );
    server
        .server
        .to_user(TOKEN)
        .emit("payout", &json!({"amount": "91.17 EUR"}))
        .await
        .expect("send");
    let Event::Message(m) = event_where(&mut events, |e| matches!(e, Event::Message(_))).await
    else {
        unreachable!()
    };
    assert_eq!(m.data["amount"], "91.17 EUR");
    client.close();

    let wire = relay.transcript();
    assert!(
        wire.contains("\"hello\""),
        "the relay saw the exchange: {wire}"
    );
    for secret in [TOKEN, "91.17 EUR", "payout"] {
        assert!(
            !wire.contains(secret),
            "{secret:?} crossed the relay in the clear"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_compatibility_profile_exposes_its_token_as_documented() {
    let server = start_echo(base_config()).await;
    let relay = Relay::start(server.ws_url(), passive()).await;
    let (client, _events) = Client::builder(relay.ws_url())
        .token(TOKEN)
        .encryption(Encryption::Compat)
        .reconnect(ReconnectPolicy::never())
        .connect()
        .await
        .expect("compat connect");
    client.close();
    // SECURITY.md: the IGNIS wire carries the token in a plaintext `authenticate`.
    assert!(relay.transcript().contains(TOKEN));
    server.stop().await;
}

/// A relay that answers the client's hello with its own key exchange (signed by its own
/// identity key, or unsigned) instead of the server's.
fn substitute_hello(signer: Option<Arc<sealwire::crypto::ServerIdentity>>) -> Tamper {
    let client_key: Arc<Mutex<Option<String>>> = Arc::default();
    Arc::new(move |dir, n, text| {
        let frame: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        match (dir, n) {
            (Dir::Up, 0) => {
                *client_key.lock().expect("key") =
                    frame["data"]["publicKey"].as_str().map(str::to_owned);
            }
            (Dir::Down, 0) => {
                let key = client_key
                    .lock()
                    .expect("key")
                    .clone()
                    .expect("client hello first");
                let cfg = HandshakeConfig {
                    identity: signer.clone(),
                    ..HandshakeConfig::default()
                };
                let id = frame["data"]["id"].as_str().unwrap_or("x").to_owned();
                let (hello, _) =
                    server_handshake(&cfg, &id, &key, Some("sealwire-v2"), &mut rand::rng())
                        .expect("attacker handshake");
                let forged = json!({"event": "hello", "data": hello.hello_payload(&id)});
                return vec![forged.to_string()];
            }
            _ => {}
        }
        vec![text.to_owned()]
    })
}

#[tokio::test]
async fn a_pinning_client_never_sends_its_token_to_a_substituted_server() {
    let id = identity(0x52);
    let server = start_echo(config_with(Some(Arc::clone(&id)), 1 << 20)).await;
    for signer in [None, Some(identity(0x66))] {
        let relay = Relay::start(server.ws_url(), substitute_hello(signer)).await;
        let err = pinned_client(&relay.ws_url(), &id)
            .connect()
            .await
            .expect_err("the substituted hello must be refused");
        assert!(
            matches!(
                &err,
                sealwire::client::ClientError::Disconnected(DisconnectReason::Handshake(m))
                    if m.contains("not trusted")
            ),
            "{err:?}"
        );
        let up = relay.frames(Dir::Up);
        assert_eq!(up.len(), 1, "only the client hello went up: {up:?}");
        assert!(!relay.transcript().contains(TOKEN));
    }
    assert_eq!(server.server.counts().authenticated, 0);
    server.stop().await;
}

#[tokio::test]
async fn the_token_swap_relay_attack_is_refused_by_the_server() {
    let id = identity(0x53);
    let server = start_echo(config_with(Some(Arc::clone(&id)), 1 << 20)).await;
    // The audit's relay: forward the key exchange, then replace the victim's credentials with
    // the attacker's. In v2 the only thing a relay can put there is a plaintext
    // `authenticate`, or a record sealed under another session.
    let plaintext_swap: Tamper = Arc::new(|dir, n, text| match (dir, n) {
        (Dir::Up, 2) => {
            vec![json!({"event": "authenticate", "data": {"token": "mallory"}}).to_string()]
        }
        _ => vec![text.to_owned()],
    });
    let foreign_record: Tamper = Arc::new(|dir, n, text| match (dir, n) {
        (Dir::Up, 2) => {
            // The attacker's own session (as if it had logged in as mallory elsewhere).
            let (_, mut theirs) = hardened_pair(1 << 20);
            theirs.seal_frame(b"{}").expect("seal");
            let sealed = theirs
                .seal_frame(br#"{"event":"authenticate","data":{"token":"mallory"}}"#)
                .expect("seal");
            vec![sealed]
        }
        _ => vec![text.to_owned()],
    });
    for (name, tamper, message) in [
        (
            "plaintext swap",
            plaintext_swap,
            "Encryption handshake failed",
        ),
        (
            "foreign record",
            foreign_record,
            "Invalid encrypted message",
        ),
    ] {
        let relay = Relay::start(server.ws_url(), tamper).await;
        let err = pinned_client(&relay.ws_url(), &id)
            .connect()
            .await
            .expect_err(name);
        // The server could not open what reached it: retried with a fresh handshake (a 4004
        // is never final for a hardened client, or the man in the middle could stop it), and
        // explained by the server's sealed error.
        assert!(
            matches!(
                &err,
                sealwire::client::ClientError::Disconnected(DisconnectReason::Crypto(m))
                    if m.contains(message)
            ),
            "{name}: {err:?}"
        );
        // The server's refusal was sealed, so only the victim could read it.
        let down = relay.frames(Dir::Down);
        assert!(
            down.iter().skip(1).all(|f| f.contains("\"encrypted\"")),
            "{name}: {down:?}"
        );
        assert!(
            !relay.transcript().contains(message),
            "{name}: errors are sealed"
        );
    }
    assert_eq!(
        server.server.counts().authenticated,
        0,
        "mallory never got in"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_forged_connected_is_refused_by_the_client() {
    let id = identity(0x54);
    let server = start_echo(config_with(Some(Arc::clone(&id)), 1 << 20)).await;
    let plaintext: Tamper = Arc::new(|dir, n, text| match (dir, n) {
        (Dir::Down, 1) => {
            vec![
                json!({"event": "connected", "data": {
                "id": "x", "userId": "victim", "time": "2026-01-01T00:00:00.000Z"}})
                .to_string(),
            ]
        }
        _ => vec![text.to_owned()],
    });
    let flipped: Tamper = Arc::new(|dir, n, text| match (dir, n) {
        (Dir::Down, 1) => {
            let mut frame: Value = serde_json::from_str(text).expect("record");
            let ct = frame["data"]["ct"].as_str().expect("ct").to_owned();
            let mut bytes = b64_decode(&ct);
            bytes[3] ^= 1;
            frame["data"]["ct"] = json!(b64_encode(&bytes));
            vec![frame.to_string()]
        }
        _ => vec![text.to_owned()],
    });
    for (name, tamper) in [("plaintext connected", plaintext), ("flipped bit", flipped)] {
        let relay = Relay::start(server.ws_url(), tamper).await;
        let err = pinned_client(&relay.ws_url(), &id)
            .connect()
            .await
            .expect_err(name);
        assert!(
            matches!(
                err,
                sealwire::client::ClientError::Disconnected(
                    DisconnectReason::Handshake(_) | DisconnectReason::Crypto(_)
                )
            ),
            "{name}: {err:?}"
        );
    }
    server.stop().await;
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn b64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn a_plaintext_authenticate_after_hello_closes_4004() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let mut c = server.client().await;
    let (hello, _hs) = c.hardened_hello(HandshakeConfig::hardened(vec![])).await;
    assert_eq!(hello["event"], "hello");
    c.send_json(&json!({"event": "authenticate", "data": {"token": "bob"}}))
        .await;
    let reply = c.recv_json().await;
    assert_eq!(reply["event"], "encrypted", "sealed refusal: {reply}");
    assert_eq!(c.expect_close().await, Some(4004));
    server.stop().await;
}

#[tokio::test]
async fn the_retired_profile_and_profiles_in_authenticate_close_4004() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    for data in [
        json!({"token": "a", "publicKey": WsClient::any_public_key(), "profile": "sealwire-v1"}),
        json!({"token": "a", "publicKey": WsClient::any_public_key(), "profile": "sealwire-v2"}),
        json!({"token": "a", "profile": "sealwire-v2"}),
        json!({"token": "a", "publicKey": 123}),
        json!({"token": "a", "publicKey": {"x": 1}}),
        json!({"token": "a", "publicKey": null}),
    ] {
        let mut c = server.client().await;
        c.send_json(&json!({"event": "authenticate", "data": data}))
            .await;
        let reply = c.recv_json().await;
        assert_eq!(
            reply["data"]["message"], "Encryption handshake failed",
            "{data}: {reply}"
        );
        assert_eq!(c.expect_close().await, Some(4004), "{data}");
    }
    for data in [
        json!({"publicKey": WsClient::any_public_key()}),
        json!({"publicKey": WsClient::any_public_key(), "profile": "sealwire-v1"}),
        json!({"profile": "sealwire-v2"}),
        json!({"profile": "sealwire-v2", "publicKey": 7}),
        json!({"profile": "sealwire-v2", "publicKey": "BAAA"}),
    ] {
        let mut c = server.client().await;
        c.send_json(&json!({"event": "hello", "data": data})).await;
        let reply = c.recv_json().await;
        assert_eq!(
            reply["data"]["message"], "Encryption handshake failed",
            "hello {data}: {reply}"
        );
        assert_eq!(c.expect_close().await, Some(4004), "hello {data}");
    }
    assert_eq!(server.server.counts().authenticated, 0);
    server.stop().await;
}

/// A handshake hook that declines every client.
struct Declines;

impl Handshake for Declines {
    fn handshake(
        &self,
        _client_id: &str,
        _payload: &AuthenticatePayload,
    ) -> Result<Option<(sealwire::crypto::ServerHello, sealwire::crypto::Session)>, HookError> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_handshake_hook_cannot_downgrade_a_client_that_sent_a_key() {
    let server = start_with(builder(base_config()).handshake(Declines)).await;
    let mut compat = server.client().await;
    compat
        .send_json(&json!({"event": "authenticate", "data": {
            "token": "a", "publicKey": WsClient::any_public_key()}}))
        .await;
    assert_eq!(
        compat.recv_json().await["data"]["message"],
        "Encryption handshake failed"
    );
    assert_eq!(compat.expect_close().await, Some(4004));
    let mut hardened = server.client().await;
    let (reply, _) = hardened
        .hardened_hello(HandshakeConfig::hardened(vec![]))
        .await;
    assert_eq!(reply["data"]["message"], "Encryption handshake failed");
    assert_eq!(hardened.expect_close().await, Some(4004));
    // A client without a key is still a plaintext client.
    let (_plain, connected) = server.plain("p").await;
    assert_eq!(connected["event"], "connected");
    server.stop().await;
}

#[tokio::test]
async fn the_auth_deadline_covers_every_step_of_the_sealed_flow() {
    let mut config = config_with(None, 1 << 20);
    config.auth_timeout = Duration::from_millis(200);
    let server = start_echo(config).await;
    // Hello, then nothing.
    let mut c = server.client().await;
    let (hello, _hs) = c.hardened_hello(HandshakeConfig::hardened(vec![])).await;
    assert_eq!(hello["event"], "hello");
    assert_eq!(c.expect_close().await, Some(4001));
    // Hello and the confirmation, but no credentials.
    let mut c = server.client().await;
    let (hello, hs) = c.hardened_hello(HandshakeConfig::hardened(vec![])).await;
    c.confirm_hello(&hello, hs).await.expect("finish");
    assert_eq!(c.expect_close().await, Some(4001));
    // Credentials whose check outlasts the budget (the hook sleeps 2 s).
    let mut c = server.client().await;
    let (hello, hs) = c.hardened_hello(HandshakeConfig::hardened(vec![])).await;
    c.confirm_hello(&hello, hs).await.expect("finish");
    c.emit("authenticate", json!({"token": "slow:2000"})).await;
    assert_eq!(c.expect_close().await, Some(4001));
    assert_eq!(server.server.counts().authenticated, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_session_ends_at_its_expiry_with_4006() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let mut c = server.client().await;
    let (_, connected) = c
        .login_hardened("ttl:600:carol", HandshakeConfig::hardened(vec![]))
        .await
        .expect("login");
    assert_eq!(connected["data"]["userId"], "carol");
    let expires = connected["data"]["expiresAt"].as_str().expect("expiresAt");
    let time = connected["data"]["time"].as_str().expect("time");
    assert!(expires > time, "{expires} after {time}");
    assert_eq!(c.expect_close().await, Some(4006));
    wait_for(|| server.server.counts().authenticated == 0).await;
    // Without an expiry there is no `expiresAt` and no 4006.
    let mut c = server.client().await;
    let (_, connected) = c
        .login_hardened("dave", HandshakeConfig::hardened(vec![]))
        .await
        .expect("login");
    assert!(connected["data"].get("expiresAt").is_none(), "{connected}");
    server.stop().await;
}

#[tokio::test]
async fn refresh_extends_the_session_and_is_refused_for_another_user() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let mut c = server.client().await;
    let (_, connected) = c
        .login_hardened("ttl:1000:carol", HandshakeConfig::hardened(vec![]))
        .await
        .expect("login");
    let first = connected["data"]["expiresAt"]
        .as_str()
        .expect("expiresAt")
        .to_owned();
    c.emit("refresh", json!({"token": "ttl:60000:carol"})).await;
    let reply = c.recv_msg().await;
    assert_eq!(reply["event"], "refreshed", "{reply}");
    assert_eq!(reply["data"]["userId"], "carol");
    let second = reply["data"]["expiresAt"]
        .as_str()
        .expect("expiresAt")
        .to_owned();
    assert!(second > first, "{second} after {first}");
    // Still connected well past the first expiry, and still working.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.emit("ping", json!(1)).await;
    assert_eq!(c.recv_msg().await["event"], "echo");

    // Another user's token, a rejected token and a plaintext refresh change nothing.
    let mut c = server.client().await;
    c.login_hardened("ttl:1500:erin", HandshakeConfig::hardened(vec![]))
        .await
        .expect("login");
    for token in ["ttl:60000:mallory", "reject-me"] {
        c.emit("refresh", json!({ "token": token })).await;
        let reply = c.recv_msg().await;
        assert_eq!(
            reply["data"]["message"], "Refresh failed",
            "{token}: {reply}"
        );
    }
    c.send_json(&json!({"event": "refresh", "data": {"token": "ttl:60000:erin"}}))
        .await;
    assert_eq!(
        c.recv_msg().await["data"]["message"],
        "Encrypted message required"
    );
    assert_eq!(
        c.expect_close().await,
        Some(4006),
        "the old expiry still holds"
    );
    server.stop().await;
}

#[tokio::test]
async fn compatibility_clients_get_expiry_and_refresh_too() {
    let server = start_echo(base_config()).await;
    let (mut c, connected) = server.plain("ttl:800:fay").await;
    assert!(connected["data"]["expiresAt"].is_string(), "{connected}");
    c.send_json(&json!({"event": "refresh", "data": {"token": "ttl:60000:fay"}}))
        .await;
    let reply = c.recv_json().await;
    assert_eq!(reply["event"], "refreshed", "{reply}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.send_json(&json!({"event": "ping", "data": 1})).await;
    assert_eq!(c.recv_json().await["event"], "echo");
    let (mut gone, _) = server.encrypted("ttl:500:gus").await;
    assert_eq!(gone.expect_close().await, Some(4006));
    server.stop().await;
}

/// Every refresh runs the authenticate hook (told it is a refresh), so a connection gets a
/// burst of five and then one per 5 s: the sixth in a row is refused as a failed one (the SDKs
/// retry those) without running the hook, and the session and its expiry carry on as they
/// were.
#[tokio::test]
async fn refreshes_past_the_connections_allowance_are_refused() {
    let logins = Arc::new(AtomicUsize::new(0));
    let refreshes = Arc::new(AtomicUsize::new(0));
    let auth = test_auth();
    let counted = {
        let (logins, refreshes) = (Arc::clone(&logins), Arc::clone(&refreshes));
        move |req: sealwire::server::AuthRequest| {
            let calls = if req.refresh { &refreshes } else { &logins };
            calls.fetch_add(1, Ordering::SeqCst);
            auth(req)
        }
    };
    let server = start_with(
        Server::builder()
            .config(base_config())
            .authenticate(counted)
            .on_message(echo_handler()),
    )
    .await;
    let (mut c, _) = server.plain("ttl:60000:hal").await;
    let mut last = Value::Null;
    for _ in 0..5 {
        c.send_json(&json!({"event": "refresh", "data": {"token": "ttl:60000:hal"}}))
            .await;
        last = c.recv_json().await;
        assert_eq!(last["event"], "refreshed", "{last}");
    }
    c.send_json(&json!({"event": "refresh", "data": {"token": "ttl:90000:hal"}}))
        .await;
    let refused = c.recv_json().await;
    assert_eq!(refused["event"], "error", "{refused}");
    assert_eq!(refused["data"]["message"], "Refresh failed");
    assert_eq!(
        (
            logins.load(Ordering::SeqCst),
            refreshes.load(Ordering::SeqCst)
        ),
        (1, 5),
        "the hook ran for the login and the five refreshes only"
    );
    // The session is as the fifth refresh left it, and still works.
    c.send_json(&json!({"event": "ping", "data": 1})).await;
    assert_eq!(c.recv_json().await["event"], "echo");
    let info = server.server.client_info(c.id.as_deref().expect("id"));
    let expires = info.and_then(|i| i.expires_at).expect("expiry");
    let fifth = last["data"]["expiresAt"].as_str().expect("expiresAt");
    assert!(
        expires < SystemTime::now() + Duration::from_secs(61),
        "the refused refresh (90 s) changed nothing; the fifth said {fifth}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_sdk_token_provider_refreshes_before_expiry() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let (client, mut events) = Client::builder(server.ws_url())
        .token_provider(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok("ttl:1200:hana".to_owned()) }
        })
        .reconnect(ReconnectPolicy::never())
        .connect()
        .await
        .expect("connect");
    let Event::Connected { info, .. } = next_event(&mut events).await else {
        panic!("connected first");
    };
    assert!(info.expires_at.is_some());
    // Two refreshes in a row: the session outlives two token lifetimes.
    for _ in 0..2 {
        let ev = event_where(&mut events, |e| {
            matches!(e, Event::Refreshed { .. } | Event::Disconnected { .. })
        })
        .await;
        assert!(
            matches!(
                ev,
                Event::Refreshed {
                    expires_at: Some(_),
                    ..
                }
            ),
            "{ev:?}"
        );
    }
    assert!(calls.load(Ordering::SeqCst) >= 3, "connect + two refreshes");
    client.send("ping", &json!(1)).await.expect("send");
    let ev = event_where(&mut events, |e| matches!(e, Event::Message(_))).await;
    let Event::Message(m) = ev else {
        unreachable!()
    };
    assert_eq!(m.event, "echo");
    client.close();
    server.stop().await;
}

/// A refresh that fails once (`second` is the token provider's second answer: an error, or
/// a token the server refuses) is tried again before the session ends: the connection lives
/// on, with no 4006 and no reconnect.
async fn a_failed_refresh_is_retried(second: Result<&'static str, &'static str>) {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    // 6 s sessions: the refresh at 4.8 s fails, the retry halfway to the expiry (5.4 s) works.
    let (client, mut events) = Client::builder(server.ws_url())
        .token_provider(move || {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match call {
                    1 => second.map(str::to_owned).map_err(str::to_owned),
                    _ => Ok("ttl:6000:hana".to_owned()),
                }
            }
        })
        .reconnect(ReconnectPolicy::never())
        .connect()
        .await
        .expect("connect");
    let ev = next_event(&mut events).await;
    assert!(matches!(ev, Event::Connected { .. }), "{ev:?}");
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within the session")
            .expect("events");
        match ev {
            Event::RefreshFailed { .. } => seen.push("failed"),
            Event::Refreshed { .. } => {
                seen.push("refreshed");
                break;
            }
            other => panic!("{other:?} after {seen:?}"),
        }
    }
    assert_eq!(seen, ["failed", "refreshed"]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "connect, failed refresh, retry"
    );
    client.send("ping", &json!(1)).await.expect("send");
    let ev = event_where(&mut events, |e| matches!(e, Event::Message(_))).await;
    assert!(matches!(ev, Event::Message(m) if m.event == "echo"));
    client.close();
    server.stop().await;
}

#[tokio::test]
async fn the_sdk_retries_a_refresh_its_token_provider_failed() {
    a_failed_refresh_is_retried(Err("token service unavailable")).await;
}

#[tokio::test]
async fn the_sdk_retries_a_refresh_the_server_refused() {
    // Another user's token: the server answers `Refresh failed`.
    a_failed_refresh_is_retried(Ok("ttl:6000:other")).await;
}

#[tokio::test]
async fn the_sdk_reconnects_after_4006_without_a_provider() {
    let server = start_echo(config_with(None, 1 << 20)).await;
    let (client, mut events) = Client::builder(server.ws_url())
        .token("ttl:600:ivy")
        .reconnect(ReconnectPolicy::default().initial_delay(Duration::from_millis(50)))
        .connect()
        .await
        .expect("connect");
    let ev = event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { reason, retry_in } = ev else {
        unreachable!()
    };
    assert_eq!(reason, DisconnectReason::SessionExpired);
    assert!(retry_in.is_some(), "4006 is retried");
    let ev = event_where(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    assert!(matches!(
        ev,
        Event::Connected {
            reconnected: true,
            ..
        }
    ));
    client.close();
    server.stop().await;
}

fn jwt(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("encode")
}

#[tokio::test]
async fn jwt_sessions_end_at_exp_and_foreign_issuers_or_audiences_are_refused() {
    let secret = b"an-hs256-secret-of-at-least-32-bytes!";
    let auth = JwtAuth::hs256(secret)
        .leeway(0)
        .issuer("https://idp.example")
        .audience("sealwire");
    let server = start_with(
        Server::builder()
            .config(config_with(None, 1 << 20))
            .authenticate(auth),
    )
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims =
        |iss: &str, aud: &str, exp: u64| json!({"sub": "jane", "iss": iss, "aud": aud, "exp": exp});
    let good = jwt(secret, &claims("https://idp.example", "sealwire", now + 2));
    let mut c = server.client().await;
    let (_, connected) = c
        .login_hardened(&good, HandshakeConfig::hardened(vec![]))
        .await
        .expect("login");
    assert_eq!(connected["data"]["userId"], "jane");
    assert!(connected["data"]["expiresAt"].is_string());
    assert_eq!(c.expect_close().await, Some(4006));
    for (name, token) in [
        (
            "issuer",
            jwt(secret, &claims("https://other", "sealwire", now + 60)),
        ),
        (
            "audience",
            jwt(secret, &claims("https://idp.example", "billing", now + 60)),
        ),
    ] {
        let mut c = server.client().await;
        let (hello, hs) = c.hardened_hello(HandshakeConfig::hardened(vec![])).await;
        c.confirm_hello(&hello, hs).await.expect("finish");
        c.emit("authenticate", json!({ "token": token })).await;
        let reply = c.recv_msg().await;
        assert_eq!(reply["data"]["message"], "Authentication failed", "{name}");
        assert_eq!(c.expect_close().await, Some(4003), "{name}");
    }
    server.stop().await;
}

/// A client record damaged on its way (one changed character of its ciphertext) does not open
/// on the server, which answers with a sealed error and 4004. On an established hardened
/// session that is a record failure, not a refusal of the client's settings: the SDK reports
/// `Crypto` and reconnects with a fresh handshake, as it does for a server record it cannot
/// open, and the new session works.
#[tokio::test]
async fn a_client_record_damaged_on_its_way_is_retried_with_a_fresh_handshake() {
    let id = identity(0x5a);
    let server = start_echo(config_with(Some(Arc::clone(&id)), 1 << 20)).await;
    let count = Arc::new(AtomicUsize::new(0));
    // Client frames: hello (0), confirmation (1), authenticate (2), then the application's.
    let tamper: Tamper = Arc::new(move |dir, n, text| {
        if dir != Dir::Up || n != 3 || count.fetch_add(1, Ordering::SeqCst) > 0 {
            return vec![text.to_owned()];
        }
        let mut record: Value = serde_json::from_str(text).expect("a record");
        let ct = record["data"]["ct"].as_str().expect("ct").to_owned();
        let first = if ct.starts_with('A') { "B" } else { "A" };
        record["data"]["ct"] = Value::String(format!("{first}{}", &ct[1..]));
        vec![record.to_string()]
    });
    let relay = Relay::start(server.ws_url(), tamper).await;
    let (client, mut events) = pinned_client(&relay.ws_url(), &id)
        .reconnect(common::sdk::fast_reconnect())
        .connect()
        .await
        .expect("hardened connect through the relay");
    client.send("ping", &json!("first")).await.expect("send");
    let Event::Disconnected { reason, retry_in } =
        event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await
    else {
        unreachable!()
    };
    assert!(
        matches!(&reason, DisconnectReason::Crypto(m) if m.contains("4004")),
        "{reason:?}"
    );
    assert!(reason.is_retryable() && retry_in.is_some(), "{reason:?}");
    let Event::Connected { reconnected, .. } =
        event_where(&mut events, |e| matches!(e, Event::Connected { .. })).await
    else {
        unreachable!()
    };
    assert!(reconnected);
    client.send("ping", &json!("second")).await.expect("send");
    let Event::Message(m) = event_where(&mut events, |e| matches!(e, Event::Message(_))).await
    else {
        unreachable!()
    };
    assert_eq!(
        (m.event.as_str(), &m.data["data"]),
        ("echo", &json!("second"))
    );
    client.close();
    server.stop().await;
}

/// A hardened server scripted for one connection: it answers the client's hello with a
/// correct server hello for client id `id`, takes the confirmation and the sealed
/// `authenticate`, and sends the records `records` makes with its session, in order.
async fn scripted_server(
    id: &'static str,
    records: impl FnOnce(&mut sealwire::crypto::Session) -> Vec<String> + Send + 'static,
) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let Some(Ok(Message::Text(hello))) = ws.next().await else {
            panic!("the client hello first")
        };
        let hello: Value = serde_json::from_str(hello.as_str()).expect("json");
        let key = hello["data"]["publicKey"].as_str().expect("publicKey");
        let (server_hello, mut session) = server_handshake(
            &HandshakeConfig::default(),
            id,
            key,
            Some("sealwire-v2"),
            &mut rand::rng(),
        )
        .expect("server handshake");
        let reply = json!({"event": "hello", "data": server_hello.hello_payload(id)});
        ws.send(Message::text(reply.to_string()))
            .await
            .expect("hello");
        for _ in 0..2 {
            ws.next().await; // the confirmation, the sealed authenticate
        }
        for record in records(&mut session) {
            ws.send(Message::text(record)).await.expect("record");
        }
        while let Some(Ok(_)) = ws.next().await {}
    });
    format!("ws://{addr}/ws")
}

/// A client of a [`scripted_server`], which never reconnects.
fn scripted_client(url: String) -> sealwire::client::ClientBuilder {
    Client::builder(url)
        .token(TOKEN)
        .reconnect(ReconnectPolicy::never())
        .connect_timeout(Duration::from_secs(5))
}

/// What the client refuses before it is connected (as the browser SDK does): a hello without
/// a client id (a `Handshake` failure, retried: a hello is not authenticated), a first record
/// that is neither `connected` nor an `error`, and a `connected` agreeing to room keys of
/// another extension (`Protocol` failures, final: they are the server's own, sealed).
#[tokio::test]
async fn the_client_refuses_a_hello_without_id_and_any_first_record_but_connected() {
    let seal = |event: &str, data: Value| {
        let frame = json!({"event": event, "data": data}).to_string();
        move |s: &mut sealwire::crypto::Session| vec![s.seal_frame(frame.as_bytes()).expect("seal")]
    };
    let connected = |extra: Value| {
        let mut data = json!({"id": "c-1", "userId": "u", "time": "2026-11-29T00:00:00.000Z"});
        data.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        seal("connected", data)
    };
    let cases = [
        (
            "hello without an id",
            scripted_server("", connected(json!({}))).await,
            "malformed hello",
        ),
        (
            "a first record that is not connected",
            scripted_server("c-1", seal("recovered", json!({"streams": []}))).await,
            "expected connected, got recovered",
        ),
        (
            "room keys of another extension",
            scripted_server("c-1", connected(json!({"roomKeys": "other-room-v9"}))).await,
            "room keys that were not asked for",
        ),
    ];
    for (name, url, expected) in cases {
        let err = scripted_client(url).connect().await.expect_err(name);
        let sealwire::client::ClientError::Disconnected(reason) = &err else {
            panic!("{name}: {err:?}");
        };
        let (DisconnectReason::Protocol(m) | DisconnectReason::Handshake(m)) = reason else {
            panic!("{name}: {err:?}");
        };
        assert!(m.contains(expected), "{name}: {err:?}");
        assert_eq!(
            reason.is_retryable(),
            name == "hello without an id",
            "{name}: {err:?}"
        );
    }
    // The same script with a plain `connected` is a working session (the harness is sound).
    let url = scripted_server("c-1", connected(json!({}))).await;
    let (client, _events) = scripted_client(url).connect().await.expect("connected");
    client.close();
}

/// A `refreshed` naming another user than the session's ends the connection (`Protocol`),
/// as in the browser SDK; one naming the session's user is a `Refreshed` event.
#[tokio::test]
async fn a_refreshed_naming_another_user_ends_the_connection() {
    let records = |user: &'static str| {
        move |s: &mut sealwire::crypto::Session| {
            [
                json!({"event": "connected", "data": {"id": "c-1", "userId": "alice", "time": "2026-11-29T00:00:00.000Z"}}),
                json!({"event": "refreshed", "data": {"userId": user, "time": "2026-11-29T00:00:01.000Z"}}),
            ]
            .iter()
            .map(|f| s.seal_frame(f.to_string().as_bytes()).expect("seal"))
            .collect()
        }
    };
    let url = scripted_server("c-1", records("mallory")).await;
    let (_client, mut events) = scripted_client(url).connect().await.expect("connected");
    let Event::Disconnected { reason, .. } =
        event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await
    else {
        unreachable!()
    };
    assert_eq!(
        reason,
        DisconnectReason::Protocol("refreshed names another user".into())
    );
    let url = scripted_server("c-1", records("alice")).await;
    let (client, mut events) = scripted_client(url).connect().await.expect("connected");
    let ev = event_where(&mut events, |e| {
        matches!(e, Event::Refreshed { .. } | Event::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(&ev, Event::Refreshed { user_id, .. } if user_id == "alice"),
        "{ev:?}"
    );
    client.close();
}

/// Connects a pinned client with reconnects through a relay that tampers with `tamper`, and
/// checks that the forged 4003 it sends ends the connection as a retried `Closed`.
async fn retried_after_a_forged_4003(
    server: &TestServer,
    id: &Arc<sealwire::crypto::ServerIdentity>,
    tamper: Tamper,
) -> (Client, sealwire::client::Events) {
    let relay = Relay::start(server.ws_url(), tamper).await;
    let (client, mut events) = pinned_client(&relay.ws_url(), id)
        .reconnect(common::sdk::fast_reconnect())
        .connect()
        .await
        .expect("hardened connect through the relay");
    let Event::Disconnected { reason, retry_in } =
        event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await
    else {
        unreachable!()
    };
    assert!(
        matches!(reason, DisconnectReason::Closed { code: 4003, .. }),
        "{reason:?}"
    );
    assert!(retry_in.is_some(), "{reason:?}");
    (client, events)
}

/// A close code, a plaintext `error` or a plaintext frame is not authenticated: anyone on the
/// path can send one. A man in the middle who forges a 4003 (with an error text of its own)
/// before the hello, or on an established session, does not stop a hardened client for
/// good: the attempt ends without the token, the reason is retryable and carries none of the
/// forged text, and an established client reconnects. (A 4003 announced by a sealed `error`
/// stays final: `auth_failure_is_final_and_not_retried`.)
#[tokio::test]
async fn a_forged_4003_does_not_stop_a_hardened_client_for_good() {
    let id = identity(0x5b);
    let server = start_echo(config_with(Some(Arc::clone(&id)), 1 << 20)).await;
    let forged_error =
        json!({"event": "error", "data": {"message": "Account locked: visit evil.example"}})
            .to_string();

    // In place of the server's hello.
    let fired = Arc::new(AtomicUsize::new(0));
    let (once, error) = (Arc::clone(&fired), forged_error.clone());
    let before_hello: Tamper = Arc::new(move |dir, n, text| {
        if dir == Dir::Down && n == 0 && once.fetch_add(1, Ordering::SeqCst) == 0 {
            return vec![error.clone(), close_frame(4003, "Authentication failed")];
        }
        vec![text.to_owned()]
    });
    let relay = Relay::start(server.ws_url(), before_hello).await;
    let err = pinned_client(&relay.ws_url(), &id)
        .connect()
        .await
        .expect_err("the forged close ends the attempt");
    let sealwire::client::ClientError::Disconnected(reason) = &err else {
        panic!("{err:?}");
    };
    assert!(
        matches!(reason, DisconnectReason::Closed { code: 4003, .. }),
        "{reason:?}"
    );
    assert!(reason.is_retryable(), "{reason:?}");
    assert!(!reason.to_string().contains("evil"), "{reason}");
    assert!(!relay.transcript().contains(TOKEN));

    // After the sealed `connected`, on the first connection only.
    let fired = Arc::new(AtomicUsize::new(0));
    let established: Tamper = Arc::new(move |dir, n, text| {
        if dir == Dir::Down && n == 1 && fired.fetch_add(1, Ordering::SeqCst) == 0 {
            return vec![
                text.to_owned(),
                forged_error.clone(),
                close_frame(4003, "Authentication failed"),
            ];
        }
        vec![text.to_owned()]
    });
    let (client, mut events) = retried_after_a_forged_4003(&server, &id, established).await;
    let Event::Connected { reconnected, .. } =
        event_where(&mut events, |e| matches!(e, Event::Connected { .. })).await
    else {
        unreachable!()
    };
    assert!(reconnected);
    client.close();

    // A sealed error that refuses nothing (the server's answer to a plaintext event the
    // relay slipped in after the sealed authenticate), then a forged 4003: still retried.
    let fired = Arc::new(AtomicUsize::new(0));
    let (up, down) = (Arc::clone(&fired), fired);
    let after_sealed_error: Tamper = Arc::new(move |dir, n, text| match (dir, n) {
        (Dir::Up, 2) if up.load(Ordering::SeqCst) == 0 => vec![
            text.to_owned(),
            json!({"event": "chat", "data": 1}).to_string(),
        ],
        (Dir::Down, 2) if down.fetch_add(1, Ordering::SeqCst) == 0 => {
            vec![text.to_owned(), close_frame(4003, "Authentication failed")]
        }
        _ => vec![text.to_owned()],
    });
    let (client, _events) = retried_after_a_forged_4003(&server, &id, after_sealed_error).await;
    client.close();
    server.stop().await;
}
