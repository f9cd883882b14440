//! Hooks: connected/disconnected see the right client, authenticate metadata flows through,
//! and the outbound transformer rewrites per client (still encrypted for encrypted clients).

mod common;

use sealwire::publish::Publish;
use std::sync::{Arc, Mutex};

use common::*;
use sealwire::CloseCode;
use sealwire::server::{AuthRequest, ClientInfo, HookError, Identity, Server};
use serde_json::value::RawValue;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
enum Seen {
    Connected(ClientInfo),
    Disconnected(ClientInfo, CloseCode),
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn auth_with_metadata(req: AuthRequest) -> std::future::Ready<Result<Option<Identity>, HookError>> {
    let token = req.token.unwrap_or_default();
    std::future::ready(Ok(Some(Identity {
        user_id: token.clone(),
        metadata: json!({"plan": "pro", "token": token, "sawClient": req.client_id}),
        expires_at: None,
    })))
}

fn logged() -> (sealwire::server::ServerBuilder, Log) {
    let log: Log = Arc::default();
    let (l1, l2) = (Arc::clone(&log), Arc::clone(&log));
    let b = Server::builder()
        .config(base_config())
        .authenticate(auth_with_metadata)
        .on_connected(move |server: Server, info: Arc<ClientInfo>| {
            l1.lock()
                .expect("lock")
                .push(Seen::Connected((*info).clone()));
            // Hooks may use the handle: greet the new client.
            async move {
                let _ = server
                    .to_client(&info.id)
                    .emit("welcome", &json!(info.user_id))
                    .await;
            }
        })
        .on_disconnected(move |info: Arc<ClientInfo>, code: CloseCode| {
            l2.lock()
                .expect("lock")
                .push(Seen::Disconnected((*info).clone(), code));
            std::future::ready(())
        });
    (b, log)
}

#[tokio::test]
async fn connected_and_disconnected_hooks_see_the_client() {
    let (b, log) = logged();
    let s = start_with(b).await;
    let (mut plain, _) = s.plain("alice").await;
    let (mut enc, _) = s.encrypted("bob").await;
    assert_eq!(
        plain.recv_msg().await,
        json!({"event": "welcome", "data": "alice"})
    );
    assert_eq!(
        enc.recv_msg().await,
        json!({"event": "welcome", "data": "bob"})
    );
    let (pid, eid) = (plain.id(), enc.id());
    {
        let log = log.lock().expect("lock");
        assert_eq!(log.len(), 2);
        for seen in log.iter() {
            let Seen::Connected(info) = seen else {
                panic!("unexpected {seen:?}")
            };
            let (id, encrypted) = if info.user_id == "alice" {
                (&pid, false)
            } else {
                (&eid, true)
            };
            assert_eq!(&info.id, id);
            assert_eq!(info.encrypted, encrypted);
            assert_eq!(info.metadata["plan"], "pro");
            assert_eq!(info.metadata["token"], info.user_id.as_str());
            assert_eq!(info.metadata["sawClient"], info.id.as_str());
            let addr = info.remote_addr.expect("remote address");
            assert!(addr.ip().is_loopback());
        }
    }
    // A client that fails authentication never reaches either hook.
    let mut nobody = s.client().await;
    nobody
        .send_json(&json!({"event": "authenticate", "data": {}}))
        .await;
    nobody.expect_close().await;

    plain.emit("disconnect", Value::Null).await;
    assert_eq!(plain.expect_close().await, Some(1000));
    drop(enc);
    wait_for(|| log.lock().expect("lock").len() == 4).await;
    let seen = log.lock().expect("lock").clone();
    let mut closed: Vec<(String, bool, u16)> = seen[2..]
        .iter()
        .map(|s| match s {
            Seen::Disconnected(i, c) => (i.user_id.clone(), i.encrypted, c.code()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    closed.sort();
    assert_eq!(
        closed,
        vec![("alice".into(), false, 1000), ("bob".into(), true, 1006)]
    );
    s.stop().await;
}

/// Wraps every message as `{"for": <user>, "original": <data>}` and renames `secret` events.
fn per_client(info: &ClientInfo, event: &str, data: &RawValue) -> Option<(String, Box<RawValue>)> {
    if event == "untouched" {
        return None;
    }
    let original: Value = serde_json::from_str(data.get()).ok()?;
    let rewritten = json!({"for": info.user_id, "original": original});
    let event = if event == "secret" { "redacted" } else { event };
    Some((
        event.to_owned(),
        RawValue::from_string(rewritten.to_string()).ok()?,
    ))
}

#[tokio::test]
async fn outbound_transformer_rewrites_per_client_and_stays_encrypted() {
    let s = start_with(builder(base_config()).outbound_transformer(per_client)).await;
    let (mut plain, _) = s.plain("alice").await;
    let (mut enc, _) = s.encrypted("bob").await;
    s.server
        .to_all()
        .emit("news", &json!({"n": 1}))
        .await
        .expect("send");
    assert_eq!(
        plain.recv_json().await,
        json!({"event": "news", "data": {"for": "alice", "original": {"n": 1}}})
    );
    let raw = enc.recv_json().await;
    assert_eq!(raw["event"], "encrypted");
    assert_eq!(
        enc.open(raw),
        json!({"event": "news", "data": {"for": "bob", "original": {"n": 1}}})
    );
    s.server
        .to_room("ws-default")
        .emit("secret", &json!(2))
        .await
        .expect("send");
    assert_eq!(plain.recv_json().await["event"], "redacted");
    assert_eq!(enc.recv_msg().await["event"], "redacted");
    s.server
        .to_all()
        .emit("untouched", &json!(3))
        .await
        .expect("send");
    assert_eq!(
        plain.recv_json().await,
        json!({"event": "untouched", "data": 3})
    );
    assert_eq!(
        enc.recv_msg().await,
        json!({"event": "untouched", "data": 3})
    );
    s.stop().await;
}

#[tokio::test]
async fn a_transformer_cannot_make_an_encrypted_client_receive_plaintext() {
    // A transformer that tries to emit an `encrypted`-looking frame is still sealed.
    let sneaky = |_: &ClientInfo, _: &str, _: &RawValue| {
        Some((
            "encrypted".to_owned(),
            RawValue::from_string(r#"{"iv":"AAAA","ct":"BBBB"}"#.to_owned()).ok()?,
        ))
    };
    let s = start_with(builder(base_config()).outbound_transformer(sneaky)).await;
    let (mut enc, _) = s.encrypted("e").await;
    s.server.to_all().emit("x", &json!(1)).await.expect("send");
    let inner = enc.recv_msg().await;
    assert_eq!(inner["data"], json!({"iv": "AAAA", "ct": "BBBB"}));
    s.stop().await;
}

#[tokio::test]
async fn a_panicking_hook_does_not_leak_the_client() {
    let gone: Arc<Mutex<Vec<(String, CloseCode)>>> = Arc::default();
    let sink = Arc::clone(&gone);
    let s = start_with(
        Server::builder()
            .config(base_config())
            .authenticate(test_auth())
            .validate_rooms(sealwire::server::GlobRooms::new(["*"]).expect("glob"))
            .on_disconnected(move |info: Arc<ClientInfo>, code: CloseCode| {
                sink.lock()
                    .expect("lock")
                    .push((info.user_id.clone(), code));
                std::future::ready(())
            })
            .on_message(
                |_server: Server, msg: sealwire::server::InboundMessage| async move {
                    assert_ne!(msg.event, "boom", "application bug");
                },
            ),
    )
    .await;
    let (mut doomed, _) = s.plain("doomed").await;
    let (mut other, _) = s.plain("other").await;
    doomed.emit("join", json!({"rooms": ["private"]})).await;
    doomed.emit("boom", Value::Null).await;
    // The connection is gone and so is every trace of it in the indexes.
    doomed.expect_close().await;
    wait_for(|| s.server.counts().clients == 1).await;
    let counts = s.server.counts();
    assert_eq!((counts.authenticated, counts.users), (1, 1));
    assert_eq!(
        s.server
            .to_room("private")
            .emit("x", &json!(1))
            .await
            .expect("send")
            .local_recipients,
        0
    );
    s.server
        .to_all()
        .emit("still", &json!(1))
        .await
        .expect("send");
    assert_eq!(other.recv_msg().await["event"], "still");
    // Its connected hook ran, so its disconnected hook runs too, with 1006.
    wait_for(|| !gone.lock().expect("lock").is_empty()).await;
    assert_eq!(
        *gone.lock().expect("lock"),
        vec![("doomed".to_owned(), CloseCode::Abnormal)]
    );
    s.stop().await;
}

#[derive(Debug, serde::Deserialize)]
struct Chat {
    text: String,
    #[serde(default)]
    shout: bool,
}

/// A server with a typed `chat` handler next to the catch-all echo handler. Every hook closure
/// here leaves its argument types to inference.
fn typed_chat_server() -> sealwire::server::ServerBuilder {
    Server::builder()
        .config(base_config())
        .authenticate(test_auth())
        .on_connected(|server, client| async move {
            let _ = server
                .to_client(&client.id)
                .emit("welcome", &json!(client.user_id))
                .await;
        })
        .on_disconnected(|client, code| async move {
            tracing::debug!(client = %client.id, ?code, "gone");
        })
        .on(
            "chat",
            |server, chat: sealwire::server::Event<Chat>| async move {
                let text = if chat.data.shout {
                    chat.data.text.to_uppercase()
                } else {
                    chat.data.text
                };
                let reply = json!({
                    "text": text,
                    "from": chat.client.user_id,
                    "id": chat.id,
                    "wasEncrypted": chat.was_encrypted,
                });
                let _ = server
                    .to_client(&chat.client.id)
                    .emit("chat-ok", &reply)
                    .await;
            },
        )
        .on_message(|server, msg| async move {
            let reply =
                json!({"event": msg.event, "data": msg.data, "wasEncrypted": msg.was_encrypted});
            let _ = server.to_client(&msg.client.id).emit("echo", &reply).await;
        })
}

#[tokio::test]
async fn typed_handlers_get_decoded_payloads_and_other_events_reach_the_catch_all() {
    let s = start_with(typed_chat_server()).await;
    let (mut plain, _) = s.plain("alice").await;
    assert_eq!(plain.recv_msg().await["event"], "welcome");
    plain
        .send_json(&json!({"event": "chat", "data": {"text": "hi", "shout": true}, "id": "m1"}))
        .await;
    assert_eq!(
        plain.recv_msg().await,
        json!({"event": "chat-ok", "data": {"text": "HI", "from": "alice", "id": "m1", "wasEncrypted": false}})
    );
    // An event without a typed handler goes to the catch-all, payload untouched.
    plain.emit("ping", json!({"n": 1})).await;
    assert_eq!(
        plain.recv_msg().await,
        json!({"event": "echo", "data": {"event": "ping", "data": {"n": 1}, "wasEncrypted": false}})
    );

    // Encrypted clients reach the same typed handler.
    let (mut enc, _) = s.encrypted("bob").await;
    assert_eq!(enc.recv_msg().await["event"], "welcome");
    enc.emit("chat", json!({"text": "psst"})).await;
    assert_eq!(
        enc.recv_msg().await,
        json!({"event": "chat-ok", "data": {"text": "psst", "from": "bob", "id": null, "wasEncrypted": true}})
    );
    s.stop().await;
}

#[tokio::test]
async fn a_payload_that_does_not_fit_the_type_gets_invalid_message_format() {
    let s = start_with(typed_chat_server()).await;
    let (mut c, _) = s.plain("alice").await;
    assert_eq!(c.recv_msg().await["event"], "welcome");
    for bad in [json!({"text": 5}), json!("hi"), Value::Null] {
        c.emit("chat", bad).await;
        assert_eq!(
            c.recv_msg().await,
            json!({"event": "error", "data": {"message": "Invalid message format"}})
        );
    }
    // Neither handler ran for them, and the connection is still up.
    assert!(c.sync().await.is_empty());
    c.emit("chat", json!({"text": "ok"})).await;
    assert_eq!(c.recv_msg().await["data"]["text"], "ok");
    s.stop().await;
}

#[test]
fn typed_handlers_cannot_take_system_events() {
    for name in [
        "join",
        "leave",
        "refresh",
        "heartbeat",
        "authenticate",
        "encrypted",
        "",
    ] {
        let err = Server::builder()
            .authenticate(test_auth())
            .on(
                name,
                |_server, _event: sealwire::server::Event<Value>| async {},
            )
            .build()
            .expect_err("a system event");
        assert_eq!(err, sealwire::ConfigError::InvalidEvent(name.to_owned()));
    }
}
