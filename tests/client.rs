//! The Rust client SDK against a real in-process server over loopback WebSockets.

mod common;

use sealwire::publish::Publish;
use std::time::Duration;

use common::sdk::{event_where, fast_reconnect, next_event, next_message, start_on};
use common::{Received, base_config, start_with, test_auth, wait_for};
use sealwire::client::{Client, ClientError, DisconnectReason, Encryption, Event, ReconnectPolicy};
use sealwire::server::{ClientInfo, InboundMessage, Server, ServerBuilder};
use serde_json::json;
use std::sync::Arc;

/// Echoes every `echo` event back to its sender (as `echoed`, with `encrypted` noted) and
/// allows every room.
fn echo_builder() -> ServerBuilder {
    Server::builder()
        .config(base_config())
        .authenticate(test_auth())
        .validate_rooms(|_: Arc<ClientInfo>, rooms: Vec<String>| async move { rooms })
        .on_message(|server: Server, m: InboundMessage| async move {
            if m.event == "echo" {
                let data = json!({"got": m.data, "wasEncrypted": m.was_encrypted});
                server
                    .to_client(&m.client.id)
                    .emit("echoed", &data)
                    .await
                    .expect("send");
            }
        })
}

#[tokio::test]
async fn encrypted_round_trip_and_ciphertext_on_the_wire() {
    let ts = start_with(echo_builder()).await;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("alice")
        .encryption(Encryption::Compat)
        .capture_raw_frames(true)
        .connect()
        .await
        .expect("connect");
    match next_event(&mut events).await {
        Event::Connected { info, reconnected } => {
            assert!(info.encrypted);
            assert_eq!(info.user_id, "alice");
            assert!(!reconnected);
        }
        other => panic!("expected Connected, got {other:?}"),
    }
    assert!(client.connection().expect("connected").encrypted);

    client.send("echo", &json!({"n": 1})).await.expect("send");
    let m = next_message(&mut events).await;
    assert_eq!(m.event, "echoed");
    assert!(m.encrypted);
    assert_eq!(m.data, json!({"got": {"n": 1}, "wasEncrypted": true}));
    let raw: serde_json::Value = serde_json::from_str(m.raw.as_deref().expect("raw")).expect("j");
    assert_eq!(raw["event"], "encrypted", "{raw}");
    assert!(!m.raw.expect("raw").contains("echoed"));

    ts.server
        .to_user("alice")
        .emit("note", &json!("to-user"))
        .await
        .expect("send");
    ts.server
        .to_all()
        .emit("news", &json!("to-all"))
        .await
        .expect("broadcast");
    let a = next_message(&mut events).await;
    let b = next_message(&mut events).await;
    assert_eq!((a.event.as_str(), a.data), ("note", json!("to-user")));
    assert_eq!((b.event.as_str(), b.data), ("news", json!("to-all")));
    client.close();
    let last = event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    assert!(matches!(
        last,
        Event::Disconnected {
            reason: DisconnectReason::ClientClosed,
            retry_in: None
        }
    ));
    assert!(
        events.recv().await.is_none(),
        "stream ends after a final disconnect"
    );
    ts.stop().await;
}

#[tokio::test]
async fn plaintext_round_trip_and_rooms() {
    let ts = start_with(echo_builder()).await;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("bob")
        .encryption(Encryption::Off)
        .connect()
        .await
        .expect("connect");
    let Event::Connected { info, .. } = next_event(&mut events).await else {
        panic!("expected Connected");
    };
    assert!(!info.encrypted);
    client.send("echo", &json!([1, 2])).await.expect("send");
    let m = next_message(&mut events).await;
    assert!(!m.encrypted);
    assert_eq!(m.data, json!({"got": [1, 2], "wasEncrypted": false}));

    client.join(["chat:1"]).await.expect("join");
    wait_for(|| {
        ts.server
            .client_rooms(&info.client_id)
            .is_some_and(|r| r.contains(&"chat:1".to_owned()))
    })
    .await;
    ts.server
        .to_room("chat:1")
        .emit("said", &json!("hi"))
        .await
        .expect("room");
    assert_eq!(next_message(&mut events).await.data, json!("hi"));
    client.leave(["chat:1"]).await.expect("leave");
    wait_for(|| {
        ts.server
            .client_rooms(&info.client_id)
            .is_some_and(|r| !r.contains(&"chat:1".to_owned()))
    })
    .await;
    assert!(client.rooms().is_empty());
    assert!(matches!(
        client.send("join", &json!({})).await,
        Err(sealwire::client::ClientError::InvalidEvent(_))
    ));
    client.close();
    ts.stop().await;
}

#[tokio::test]
async fn reconnects_after_server_restart_and_rejoins_rooms() {
    let ts = start_with(echo_builder()).await;
    let addr = ts.addr;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("carol")
        .encryption(Encryption::Compat)
        .reconnect(fast_reconnect())
        .connect()
        .await
        .expect("connect");
    let Event::Connected { info: first, .. } = next_event(&mut events).await else {
        panic!("expected Connected");
    };
    client.join(["ops", "alerts"]).await.expect("join");
    wait_for(|| {
        ts.server
            .client_rooms(&first.client_id)
            .is_some_and(|r| r.len() == 5)
    })
    .await;

    ts.stop().await;
    let ev = event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { reason, retry_in } = ev else {
        unreachable!()
    };
    assert_eq!(reason, DisconnectReason::ServerShutdown);
    assert!(retry_in.is_some(), "1001 is retried");
    // Between connections room changes are only remembered: the re-join carries them.
    client.join(["between"]).await.expect("join while down");
    client.leave(["ops"]).await.expect("leave while down");

    let ts2 = start_on(addr, echo_builder()).await;
    let ev = event_where(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    let Event::Connected { info, reconnected } = ev else {
        unreachable!()
    };
    assert!(reconnected);
    assert!(info.encrypted, "a new handshake happened");
    assert_ne!(info.client_id, first.client_id);
    wait_for(|| {
        ts2.server
            .client_rooms(&info.client_id)
            .is_some_and(|r| r.contains(&"between".to_owned()) && r.contains(&"alerts".to_owned()))
    })
    .await;
    let rooms = ts2.server.client_rooms(&info.client_id).unwrap_or_default();
    assert!(!rooms.contains(&"ops".to_owned()), "{rooms:?}");
    ts2.server
        .to_room("alerts")
        .emit("alert", &json!({"sev": 1}))
        .await
        .expect("room");
    let m = next_message(&mut events).await;
    assert_eq!((m.event.as_str(), m.encrypted), ("alert", true));
    client.send("echo", &json!("again")).await.expect("send");
    assert_eq!(next_message(&mut events).await.data["got"], "again");
    client.close();
    ts2.stop().await;
}

#[tokio::test]
async fn auth_failure_is_final_and_not_retried() {
    let ts = start_with(echo_builder()).await;
    let err = Client::builder(ts.ws_url())
        .token("reject-me")
        .reconnect(fast_reconnect())
        .connect()
        .await
        .expect_err("refused");
    match err {
        sealwire::client::ClientError::Disconnected(DisconnectReason::AuthFailed { message }) => {
            assert_eq!(message.as_deref(), Some("Authentication failed"));
        }
        other => panic!("expected 4003, got {other:?}"),
    }
    // Exactly one connection attempt reached the server.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ts.server.counts().clients, 0);
    ts.stop().await;
}

#[tokio::test]
async fn disconnect_reasons_are_typed() {
    // 4004: encryption required, client without encryption.
    let mut cfg = base_config();
    cfg.encryption = sealwire::server::EncryptionPolicy::Required;
    let ts = start_with(Server::builder().config(cfg).authenticate(test_auth())).await;
    let err = Client::builder(ts.ws_url())
        .token("dave")
        .encryption(Encryption::Off)
        .connect()
        .await
        .expect_err("4004");
    assert!(
        matches!(
            err,
            sealwire::client::ClientError::Disconnected(DisconnectReason::EncryptionRequired)
        ),
        "{err:?}"
    );
    ts.stop().await;

    // 4002 heartbeat timeout (retried), then 4003 on the reconnect (final, stream ends).
    let mut cfg = base_config();
    cfg.heartbeat_interval = Duration::from_millis(50);
    cfg.heartbeat_timeout = Duration::from_millis(150);
    let ts = start_with(echo_builder().config(cfg)).await;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("erin")
        .heartbeat_interval(Duration::from_secs(60))
        .reconnect(ReconnectPolicy::never())
        .connect()
        .await
        .expect("connect");
    let ev = event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { reason, retry_in } = ev else {
        unreachable!()
    };
    assert_eq!(reason, DisconnectReason::HeartbeatTimeout);
    assert_eq!(reason.code(), Some(4002));
    assert_eq!(retry_in, None, "policy says never");
    assert!(client.is_closed() || events.recv().await.is_none());

    // Heartbeats keep a client alive past the server's timeout.
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("frank")
        .heartbeat_interval(Duration::from_millis(40))
        .connect()
        .await
        .expect("connect");
    let _ = next_event(&mut events).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ts.server
        .to_user("frank")
        .emit("still", &json!(true))
        .await
        .expect("send");
    assert_eq!(next_message(&mut events).await.event, "still");
    client.close();
    ts.stop().await;

    // 4001: a raw socket that never authenticates (the SDK always does), for the mapping.
    assert_eq!(
        DisconnectReason::from_close(4001, "", None),
        DisconnectReason::AuthTimeout
    );
    let _ = Received::Close(None);
}

#[tokio::test]
async fn slow_consumer_is_reported() {
    let mut cfg = base_config();
    cfg.outbox_messages = 8;
    // The outbox overflows only once the socket is full, so the 4005 close frame waits behind
    // megabytes the client has not read yet; it reads them only after this test stops
    // flooding. Give it time to get there even on a loaded machine (the server's bound on
    // that wait is `shutdown_timeout`; past it the client would see a plain disconnect).
    cfg.shutdown_timeout = Duration::from_secs(15);
    let ts = start_with(echo_builder().config(cfg)).await;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("gina")
        .event_queue(1)
        .reconnect(ReconnectPolicy::never())
        .connect()
        .await
        .expect("connect");
    let big = "x".repeat(64 * 1024);
    // The application reads nothing: the socket backs up and the server's outbox fills.
    let mut sent = 0;
    while ts.server.counts().clients > 0 && sent < 20_000 {
        let _ = ts.server.to_user("gina").emit("flood", &big).await;
        sent += 1;
        tokio::task::yield_now().await;
    }
    let ev = event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected { reason, .. } = ev else {
        unreachable!()
    };
    assert_eq!(reason, DisconnectReason::SlowConsumer);
    client.close();
    ts.stop().await;
}

#[tokio::test]
async fn hardened_profile_with_pinned_server_key() {
    let identity = Arc::new(sealwire::crypto::ServerIdentity::generate(&mut rand::rng()));
    let pin = identity.public_key();
    let mut cfg = base_config();
    cfg.handshake.identity = Some(Arc::clone(&identity));
    let ts = start_with(echo_builder().config(cfg)).await;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("hana")
        .encryption(Encryption::Hardened {
            pinned_server_keys: vec![pin],
        })
        .capture_raw_frames(true)
        .connect()
        .await
        .expect("connect");
    let Event::Connected { info, .. } = next_event(&mut events).await else {
        panic!("expected Connected");
    };
    assert!(info.encrypted);
    for n in 0..5 {
        client.send("echo", &json!(n)).await.expect("send");
    }
    for n in 0..5 {
        let m = next_message(&mut events).await;
        assert!(m.encrypted);
        assert_eq!(m.data, json!({"got": n, "wasEncrypted": true}));
        assert!(m.raw.expect("raw").starts_with(r#"{"event":"encrypted""#));
    }
    client.close();

    // A different pinned key: the server's signature is not trusted. The token is not sent;
    // the hello is not authenticated, so this is retried (the first connect is not).
    let other = sealwire::crypto::ServerIdentity::generate(&mut rand::rng()).public_key();
    let err = Client::builder(ts.ws_url())
        .token("hana")
        .encryption(Encryption::Hardened {
            pinned_server_keys: vec![other],
        })
        .reconnect(fast_reconnect())
        .connect()
        .await
        .expect_err("untrusted");
    assert!(
        matches!(
            err,
            sealwire::client::ClientError::Disconnected(DisconnectReason::Handshake(_))
        ),
        "{err:?}"
    );
    ts.stop().await;
}

/// A message the client cannot parse (JSON nested deeper than serde_json's 128 levels, which
/// a worker can publish through Redis) inside a record that opened is skipped and reported as
/// unparseable: the hardened session stays up and the next message arrives. Before, it was
/// taken for an undecryptable record, and the client dropped the connection and reconnected.
#[tokio::test]
async fn an_unparseable_message_in_a_sealed_record_does_not_end_the_session() {
    let ts = start_with(echo_builder()).await;
    let (_client, mut events) = Client::builder(ts.ws_url())
        .token("alice")
        .connect()
        .await
        .expect("connect");
    let info = match next_event(&mut events).await {
        Event::Connected { info, .. } => info,
        other => panic!("expected Connected, got {other:?}"),
    };
    assert!(info.encrypted);
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    for (event, data) in [("deep", deep), ("after", json!("still here"))] {
        ts.server
            .to_user("alice")
            .emit(event, &data)
            .await
            .expect("send");
    }
    let ev = event_where(&mut events, |e| !matches!(e, Event::Message(_))).await;
    assert!(
        matches!(&ev, Event::ServerError { message } if message.contains("unparseable")),
        "{ev:?}"
    );
    let m = next_message(&mut events).await;
    assert_eq!((m.event.as_str(), m.data), ("after", json!("still here")));
    stays_connected(&mut events, Duration::from_millis(300)).await;
}

/// Accepts the next connection on `listener`, reads its `authenticate` and answers
/// `connected` (client id `c<n>`, plaintext); `None` once the listener fails.
async fn answer_connected(
    listener: &tokio::net::TcpListener,
    n: usize,
) -> Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let (tcp, _) = listener.accept().await.ok()?;
    let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
    let auth = ws.next().await.expect("frame").expect("ok");
    assert!(auth.to_text().expect("text").contains("authenticate"));
    let connected = json!({"event": "connected", "data": {
        "id": format!("c{n}"), "userId": "u", "time": "2026-01-01T00:00:00Z"}});
    ws.send(WsMessage::text(connected.to_string()))
        .await
        .expect("send");
    Some(ws)
}

/// A server that answers every `authenticate` with `connected` and closes at once (1012),
/// until connection number `stays_from` (0-based), which it keeps open. Returns its URL and
/// a counter of the connections it answered.
async fn flapping_server(stays_from: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("addr"));
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        for n in 0.. {
            let Some(mut ws) = answer_connected(&listener, n).await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            if n >= stays_from {
                held.push(ws);
            } else {
                let _ = ws
                    .close(Some(CloseFrame {
                        code: 1012.into(),
                        reason: "Service restart".into(),
                    }))
                    .await;
            }
        }
    });
    (url, answered)
}

/// The `retry_in` of every `Disconnected` until `until` says stop (at most ten).
async fn retries_until(
    events: &mut sealwire::client::Events,
    until: impl Fn(&[Option<Duration>]) -> bool,
) -> Vec<Option<Duration>> {
    let mut seen = Vec::new();
    while !until(&seen) {
        assert!(seen.len() < 10, "still reconnecting: {seen:?}");
        if let Event::Disconnected { retry_in, .. } =
            event_where(events, |e| matches!(e, Event::Disconnected { .. })).await
        {
            seen.push(retry_in);
        }
    }
    seen
}

/// Sessions that end right after `connected` count as failed attempts: the delays grow and
/// `max_attempts` stops the client, instead of a reconnect loop at the first delay that sends
/// the token every time. With `min_uptime` zero every `connected` starts the count again.
#[tokio::test]
async fn sessions_ending_right_after_connected_back_off_and_meet_max_attempts() {
    use std::sync::atomic::Ordering;
    let mut policy = ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_secs(1))
        .max_attempts(Some(3));
    policy.multiplier = 2.0;
    policy.jitter = 0.0;
    let (url, answered) = flapping_server(usize::MAX).await;
    let (_client, mut events) = Client::builder(url)
        .token("u")
        .encryption(Encryption::Off)
        .reconnect(policy.clone())
        .connect()
        .await
        .expect("connect");
    let retries = retries_until(&mut events, |r| r.last() == Some(&None)).await;
    let ms = |n| Some(Duration::from_millis(n));
    assert_eq!(retries, vec![ms(10), ms(20), ms(40), None]);
    assert_eq!(
        answered.load(Ordering::SeqCst),
        4,
        "the first and three retries"
    );

    let (url, answered) = flapping_server(4).await;
    let (_client, mut events) = Client::builder(url)
        .token("u")
        .encryption(Encryption::Off)
        .reconnect(policy.min_uptime(Duration::ZERO))
        .connect()
        .await
        .expect("connect");
    let retries = retries_until(&mut events, |r| r.len() == 4).await;
    assert_eq!(retries, vec![ms(10); 4]);
    wait_for(|| answered.load(Ordering::SeqCst) == 5).await;
}

/// A server that accepts and authenticates, then goes silent without closing the TCP
/// connection (a hung process, a dropped path): the client notices within `server_timeout`,
/// reports a network disconnect and reconnects.
#[tokio::test]
async fn a_silent_server_is_detected_and_the_client_reconnects() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/ws", listener.local_addr().expect("addr"));
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        for n in 0.. {
            // `connected`, then never read or write again: no pong ever goes back.
            let Some(ws) = answer_connected(&listener, n).await else {
                return;
            };
            held.push(ws);
            let _ = accepted_tx.send(n);
        }
    });

    let (client, mut events) = Client::builder(url)
        .token("u")
        .encryption(Encryption::Off)
        .heartbeat_interval(Duration::from_millis(100))
        .server_timeout(Duration::from_millis(400))
        .reconnect(fast_reconnect())
        .connect()
        .await
        .expect("connect");
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected {
            reconnected: false,
            ..
        }
    ));
    let started = tokio::time::Instant::now();
    let ev = event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected {
        reason: DisconnectReason::Network(why),
        retry_in: Some(_),
    } = ev
    else {
        panic!("expected a retried network disconnect, got {ev:?}");
    };
    assert!(why.contains("no traffic from the server"), "{why}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before the timeout"
    );
    assert!(matches!(
        event_where(&mut events, |e| matches!(e, Event::Connected { .. })).await,
        Event::Connected {
            reconnected: true,
            ..
        }
    ));
    assert_eq!(accepted.recv().await, Some(0));
    assert_eq!(accepted.recv().await, Some(1));
    client.close();
    silent.abort();
}

/// Against a live server the same short timeout never fires: each heartbeat's ping is answered,
/// although the server itself sends nothing for far longer than the timeout.
#[tokio::test]
async fn a_live_server_is_never_silent_for_the_timeout() {
    let ts = start_with(echo_builder()).await;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("carol")
        .encryption(Encryption::Off)
        .heartbeat_interval(Duration::from_millis(100))
        .server_timeout(Duration::from_millis(400))
        .connect()
        .await
        .expect("connect");
    let Event::Connected { .. } = next_event(&mut events).await else {
        panic!("expected Connected");
    };
    // Eight timeouts' worth of quiet from the application's side, with no disconnect.
    stays_connected(&mut events, Duration::from_millis(3200)).await;
    client.send("echo", &json!(1)).await.expect("send");
    assert_eq!(next_message(&mut events).await.data["got"], json!(1));
    client.close();
    ts.stop().await;
}

/// A hardened session's heartbeats are sealed records, the only frames a hardened server
/// counts as activity: an otherwise idle client stays connected past the server's timeout.
#[tokio::test]
async fn hardened_heartbeats_keep_an_idle_session_alive() {
    let identity = Arc::new(sealwire::crypto::ServerIdentity::generate(&mut rand::rng()));
    let pin = identity.public_key();
    let mut cfg = base_config();
    cfg.handshake.identity = Some(Arc::clone(&identity));
    cfg.heartbeat_interval = Duration::from_millis(50);
    cfg.heartbeat_timeout = Duration::from_millis(500);
    let ts = start_with(echo_builder().config(cfg)).await;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("ivy")
        .encryption(Encryption::Hardened {
            pinned_server_keys: vec![pin],
        })
        .heartbeat_interval(Duration::from_millis(100))
        .connect()
        .await
        .expect("connect");
    let Event::Connected { .. } = next_event(&mut events).await else {
        panic!("expected Connected");
    };
    // Four server timeouts of application silence, with no disconnect.
    stays_connected(&mut events, Duration::from_millis(2000)).await;
    client.send("echo", &json!(1)).await.expect("send");
    assert_eq!(
        next_message(&mut events).await.data,
        json!({"got": 1, "wasEncrypted": true})
    );
    client.close();
    ts.stop().await;
}

/// Dropping every handle stops the client, also while it is reconnecting to a server that is
/// gone: its event stream ends.
#[tokio::test]
async fn dropping_every_handle_stops_a_reconnecting_client() {
    let ts = start_with(echo_builder()).await;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("jude")
        .encryption(Encryption::Off)
        .reconnect(fast_reconnect())
        .connect()
        .await
        .expect("connect");
    let Event::Connected { .. } = next_event(&mut events).await else {
        panic!("expected Connected");
    };
    let copy = client.clone();
    ts.stop().await;
    event_where(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    drop(client);
    drop(copy);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while events.recv().await.is_some() {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the client kept reconnecting after its last handle was dropped"
    );
}

/// A message larger than the server takes (its `connected` says how much) is refused by
/// `send` with nothing sent, instead of the server closing the connection (1009) and the
/// message being lost; smaller ones go on.
#[tokio::test]
async fn a_send_over_the_announced_limit_is_refused_before_it_is_sent() {
    let mut cfg = base_config();
    cfg.max_message_bytes = 4096;
    let ts = start_with(echo_builder().config(cfg)).await;
    let (client, mut events) = Client::builder(ts.ws_url())
        .token("kim")
        .connect()
        .await
        .expect("connect");
    let Event::Connected { info, .. } = next_event(&mut events).await else {
        panic!("expected Connected");
    };
    assert_eq!(info.max_message_bytes, Some(4096));
    let big = "x".repeat(5000);
    let err = client.send("echo", &big).await.expect_err("too large");
    assert!(
        matches!(err, ClientError::TooLarge { max: 4096, .. }),
        "{err}"
    );
    assert!(matches!(
        client.try_send("echo", &big),
        Err(ClientError::TooLarge { .. })
    ));
    client.send("echo", &"y".repeat(1000)).await.expect("send");
    let m = next_message(&mut events).await;
    assert_eq!(m.data["got"].as_str().map(str::len), Some(1000));
    client.close();
    ts.stop().await;
}

/// Asserts that no disconnect (nor reconnect) is reported for `quiet`.
async fn stays_connected(events: &mut sealwire::client::Events, quiet: Duration) {
    let disconnect = tokio::time::timeout(quiet, async {
        loop {
            match events.recv().await {
                Some(ev @ Event::Disconnected { .. }) | Some(ev @ Event::Connected { .. }) => {
                    return Some(ev);
                }
                Some(_) => {}
                None => return None,
            }
        }
    })
    .await;
    assert!(disconnect.is_err(), "{disconnect:?}");
}
