//! Scale-out over a real `redis-server` (spawned per test on a free port): several server
//! instances on one Redis, the emitter, IGNIS interop, Redis outages and backplane encryption.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

mod common;

use sealwire::compat::IgnisSend;
use sealwire::publish::Publish;
use std::time::Duration;

use common::redis::{RedisServer, dead_port, next_message};
use common::{TestServer, WsClient, base_config, start_with, test_auth, wait_for, wait_until};
use sealwire::bus::{RedisBus, RedisBusConfig, StartupPolicy, SubscriptionMode};
use sealwire::crypto::backplane::BusKey;
use sealwire::emitter::{Emitter, EmitterConfig};
use sealwire::server::Server;
use serde_json::{Value, json};

const KEY: [u8; 32] = [42; 32];

fn bus_config(redis: &RedisServer, mode: SubscriptionMode) -> RedisBusConfig {
    RedisBusConfig::new(redis.url())
        .mode(mode)
        .backoff(Duration::from_millis(20), Duration::from_millis(300))
        .ping_interval(Duration::from_millis(300))
        .response_timeout(Duration::from_secs(2))
}

async fn node_with(config: RedisBusConfig) -> TestServer {
    let bus = RedisBus::new(config).expect("bus");
    start_with(
        Server::builder()
            .config(base_config())
            .authenticate(test_auth())
            .bus(bus),
    )
    .await
}

async fn node(redis: &RedisServer, mode: SubscriptionMode) -> TestServer {
    node_with(bus_config(redis, mode)).await
}

/// Waits until every instance is subscribed to what it needs for `targets` (channel,
/// instances), in either mode.
async fn settle(
    redis: &RedisServer,
    mode: SubscriptionMode,
    servers: usize,
    targets: &[(&str, usize)],
) {
    match mode {
        SubscriptionMode::Interest => {
            for (ch, n) in targets {
                redis.wait_numsub(ch, *n).await;
            }
        }
        _ => wait_until_async(|| async { redis.numpat().await == 3 }).await,
    }
    redis.wait_numsub("ws:broadcast", servers).await;
}

async fn wait_until_async<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + common::RECV_TIMEOUT;
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Receives application messages until `marker` arrives; returns the events before it.
async fn events_until(c: &mut WsClient, marker: &str) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let m = c.recv_msg().await;
        if m["event"] == marker {
            return got;
        }
        got.push(json!({"event": m["event"], "data": m["data"]}));
    }
}

fn ev(name: &str, n: u64) -> Value {
    json!({"event": name, "data": {"n": n}})
}

async fn exactly_once(mode: SubscriptionMode) {
    let redis = RedisServer::start().await;
    let a = node(&redis, mode).await;
    let b = node(&redis, mode).await;
    let c = node(&redis, mode).await;
    let (mut a1, _) = a.plain("u1").await;
    let (mut b1, _) = b.plain("u1").await;
    let (mut c1, _) = c.encrypted("u3").await;
    let room = vec!["r".to_owned()];
    for (s, cl) in [(&a, &a1), (&b, &b1), (&c, &c1)] {
        assert!(s.server.join(&cl.id(), &room).is_some());
    }
    settle(
        &redis,
        mode,
        3,
        &[
            ("ws:room:r", 3),
            ("ws:user:u1", 2),
            (&format!("ws:client:{}", c1.id()), 1),
        ],
    )
    .await;

    let s = &a.server;
    s.to_room("r").emit("room", &json!({"n": 1})).await.unwrap();
    s.to_user("u1")
        .emit("user", &json!({"n": 2}))
        .await
        .unwrap();
    s.to_client(c1.id())
        .emit("client", &json!({"n": 3}))
        .await
        .unwrap();
    s.to_all().emit("all", &json!({"n": 4})).await.unwrap();
    s.to_room("r")
        .except_all(&[b1.id(), c1.id()])
        .emit("room-ex", &json!({"n": 5}))
        .await
        .unwrap();
    s.to_all()
        .except_all(&[a1.id()])
        .emit("all-ex", &json!({"n": 6}))
        .await
        .unwrap();
    // Routed like IGNIS send(): a room unknown locally is published for the others.
    s.send(Some("r"), "send", &json!({"n": 7})).await.unwrap();
    s.to_all().emit("end", &json!(null)).await.unwrap();

    assert_eq!(
        events_until(&mut a1, "end").await,
        vec![
            ev("room", 1),
            ev("user", 2),
            ev("all", 4),
            ev("room-ex", 5),
            ev("send", 7)
        ]
    );
    assert_eq!(
        events_until(&mut b1, "end").await,
        vec![
            ev("room", 1),
            ev("user", 2),
            ev("all", 4),
            ev("all-ex", 6),
            ev("send", 7)
        ]
    );
    assert_eq!(
        events_until(&mut c1, "end").await,
        vec![
            ev("room", 1),
            ev("client", 3),
            ev("all", 4),
            ev("all-ex", 6),
            ev("send", 7)
        ]
    );
    // Nothing else arrives afterwards (no late duplicates).
    for cl in [&mut a1, &mut b1, &mut c1] {
        assert!(cl.recv_within(Duration::from_millis(200)).await.is_none());
    }

    if mode == SubscriptionMode::Interest {
        // Leaving the room drops the instance's subscription.
        assert!(c.server.leave(&c1.id(), &room).is_some());
        redis.wait_numsub("ws:room:r", 2).await;
        drop(c1);
        redis.wait_numsub("ws:user:u3", 0).await;
    }
    for s in [a, b, c] {
        s.stop().await;
    }
}

#[tokio::test]
async fn every_delivery_type_crosses_instances_exactly_once_interest() {
    exactly_once(SubscriptionMode::Interest).await;
}

#[tokio::test]
async fn every_delivery_type_crosses_instances_exactly_once_pattern() {
    exactly_once(SubscriptionMode::Pattern).await;
}

#[tokio::test]
async fn encrypted_client_on_b_gets_ciphertext_of_message_sent_on_a() {
    let redis = RedisServer::start().await;
    let a = node(&redis, SubscriptionMode::Interest).await;
    let b = node(&redis, SubscriptionMode::Interest).await;
    let (mut enc, _) = b.encrypted("eve").await;
    redis.wait_numsub("ws:user:eve", 1).await;
    a.server
        .to_user("eve")
        .emit("secret", &json!({"pin": "1234"}))
        .await
        .unwrap();
    let raw = enc.recv_json().await;
    assert_eq!(raw["event"], "encrypted", "{raw}");
    assert!(!raw.to_string().contains("1234"));
    let inner = enc.open(raw);
    assert_eq!(inner, json!({"event": "secret", "data": {"pin": "1234"}}));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn emitter_reaches_clients_on_every_instance() {
    let redis = RedisServer::start().await;
    let a = node(&redis, SubscriptionMode::Interest).await;
    let b = node(&redis, SubscriptionMode::Pattern).await;
    let (mut a1, _) = a.plain("ann").await;
    let (mut b1, _) = b.encrypted("bob").await;
    for (s, cl) in [(&a, &a1), (&b, &b1)] {
        let _ = s.server.join(&cl.id(), &["news".to_owned()]);
    }
    redis.wait_numsub("ws:room:news", 1).await; // a subscribes; b listens by pattern
    redis
        .wait_numsub(&format!("ws:client:{}", a1.id()), 1)
        .await;
    redis.wait_numsub("ws:user:ann", 1).await;
    let emitter = Emitter::connect(EmitterConfig::new(redis.url()))
        .await
        .expect("emitter");
    emitter
        .to_room("news")
        .emit("headline", &json!({"n": 1}))
        .await
        .unwrap();
    emitter
        .to_room("news")
        .except_all(&[a1.id()])
        .emit("headline", &json!({"n": 2}))
        .await
        .unwrap();
    emitter
        .to_user("ann")
        .emit("dm", &json!({"n": 3}))
        .await
        .unwrap();
    emitter
        .to_client(b1.id())
        .emit("direct", &json!({"n": 4}))
        .await
        .unwrap();
    let n = emitter.to_all().emit("end", &json!(null)).await.unwrap();
    assert_eq!(
        n.instances,
        Some(2),
        "both instances listen on ws:broadcast"
    );
    assert_eq!(
        events_until(&mut a1, "end").await,
        vec![ev("headline", 1), ev("dm", 3)]
    );
    assert_eq!(
        events_until(&mut b1, "end").await,
        vec![ev("headline", 1), ev("headline", 2), ev("direct", 4)]
    );
    // Invalid events are refused before anything is published.
    assert!(emitter.to_all().emit("connected", &json!(1)).await.is_err());
    emitter.shutdown().await;
    assert!(matches!(
        emitter.to_all().emit("x", &json!(1)).await,
        Err(sealwire::PublishError::Closed)
    ));
    a.stop().await;
    b.stop().await;
}

/// A subscribed connection answers PING with an array (`["pong", ""]`), not a string: the
/// keep-alive must accept it, or every ping interval drops both connections and loses what
/// other instances publish meanwhile.
#[tokio::test]
async fn keepalive_pings_do_not_reconnect_a_healthy_bus() {
    let redis = RedisServer::start().await;
    let config =
        bus_config(&redis, SubscriptionMode::Interest).ping_interval(Duration::from_millis(50));
    let a = node_with(config).await;
    let b = node(&redis, SubscriptionMode::Interest).await;
    let (mut b1, _) = b.plain("bob").await;
    redis.wait_numsub("ws:broadcast", 2).await;
    // Well past several ping intervals, publishing all along: nothing reconnects, nothing
    // is lost.
    for n in 0..40 {
        a.server
            .to_all()
            .emit("tick", &json!(n))
            .await
            .expect("publish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 0..40 {
        let m = b1.recv_msg().await;
        assert_eq!(
            (m["event"].clone(), m["data"].clone()),
            (json!("tick"), json!(n))
        );
    }
    let stats = a.server.bus_stats().expect("the Redis bus keeps stats");
    assert_eq!(stats.reconnects, 0, "a healthy Redis never reconnects");
    a.stop().await;
    b.stop().await;
}

/// A hung Redis (stopped, not gone: it still completes TCP handshakes) counts as one outage:
/// a connection counts as made only once Redis answers on it, so the bus's reconnections
/// are one per connection (publisher and subscriber) however many attempts the hang took.
#[tokio::test]
async fn a_hung_redis_counts_one_reconnection_per_connection() {
    let redis = RedisServer::start().await;
    let config = bus_config(&redis, SubscriptionMode::Interest)
        .ping_interval(Duration::from_millis(100))
        .response_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300));
    let a = node_with(config).await;
    redis.pause();
    wait_for(|| !a.server.bus_status().connected).await;
    // Several attempts at the backoff's pace (20-300 ms) while Redis does not answer.
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.resume();
    wait_for(|| a.server.bus_status().connected).await;
    let stats = a.server.bus_stats().expect("the Redis bus keeps stats");
    assert!(stats.reconnects <= 2, "one per connection: {stats:?}");
    a.stop().await;
}

/// Domain code written once against `Publish` runs unchanged on a server handle and on an
/// emitter, directly or through an `EventService` over `dyn Publish`.
async fn notify_order(p: &impl Publish, id: u64) -> sealwire::Receipt {
    p.to_room("orders")
        .except("nobody")
        .emit("order:paid", &json!({ "n": id }))
        .await
        .expect("publish")
}

#[tokio::test]
async fn one_publish_api_on_a_server_and_an_emitter() {
    let redis = RedisServer::start().await;
    let a = node(&redis, SubscriptionMode::Interest).await;
    let b = node(&redis, SubscriptionMode::Interest).await;
    let (mut a1, _) = a.plain("ann").await;
    let (mut b1, _) = b.encrypted("bob").await;
    for (s, cl) in [(&a, &a1), (&b, &b1)] {
        let _ = s.server.join(&cl.id(), &["orders".to_owned()]);
    }
    redis.wait_numsub("ws:room:orders", 2).await;
    let emitter = Emitter::connect(EmitterConfig::new(redis.url()))
        .await
        .expect("emitter");

    // From a server: one local recipient; the bus takes the rest without waiting.
    let r = notify_order(&a.server, 1).await;
    assert_eq!((r.local_recipients, r.instances), (1, None));
    // From an emitter: nobody local; Redis reports both listening instances.
    let r = notify_order(&emitter, 2).await;
    assert_eq!((r.local_recipients, r.instances), (0, Some(2)));
    // The IGNIS-style service over either publisher.
    let via_server = sealwire::compat::EventService::with_publisher("orders", b.server.clone());
    via_server
        .send_to_room("orders", "order:paid", &json!({"n": 3}))
        .await
        .expect("service");
    let via_emitter = sealwire::compat::EventService::new("orders");
    assert!(!via_emitter.is_ready());
    assert!(matches!(
        via_emitter.broadcast("order:paid", &json!({"n": 0})).await,
        Err(sealwire::PublishError::NotReady)
    ));
    assert!(via_emitter.bind(std::sync::Arc::new(emitter)));
    via_emitter
        .send_to_room("orders", "order:paid", &json!({"n": 4}))
        .await
        .expect("service");
    // An invalid name fails before anything is published, on either path.
    assert!(matches!(
        a.server.to_all().emit("authenticate", &json!(1)).await,
        Err(sealwire::PublishError::Message(_))
    ));

    for c in [&mut a1, &mut b1] {
        let mut seen = Vec::new();
        while seen.len() < 4 {
            let m = c.recv_msg().await;
            assert_eq!(m["event"], "order:paid");
            seen.push(m["data"]["n"].as_u64().expect("n"));
        }
        // Publishers do not order among themselves; each message arrives once.
        seen.sort_unstable();
        assert_eq!(
            seen,
            vec![1, 2, 3, 4],
            "every publication, once, on both instances"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn emitter_reports_a_failed_publish() {
    let mut redis = RedisServer::start().await;
    let emitter = Emitter::connect(
        EmitterConfig::new(redis.url())
            .timeouts(Duration::from_millis(500), Duration::from_secs(1)),
    )
    .await
    .expect("emitter");
    assert_eq!(
        emitter
            .to_all()
            .emit("e", &json!(1))
            .await
            .unwrap()
            .instances,
        Some(0)
    );
    redis.kill();
    let err = emitter.to_all().emit("e", &json!(2)).await;
    assert!(err.is_err(), "a publish to a dead Redis must fail");
    // And keeps failing (no silent success) until Redis is back; then it reconnects.
    assert!(emitter.to_all().emit("e", &json!(3)).await.is_err());
    redis.restart().await;
    assert_eq!(
        emitter
            .to_all()
            .emit("e", &json!(4))
            .await
            .unwrap()
            .instances,
        Some(0)
    );
    assert!(
        Emitter::connect(EmitterConfig::new(format!(
            "redis://127.0.0.1:{}",
            dead_port()
        )))
        .await
        .is_err()
    );
}

#[tokio::test]
async fn ignis_interop_on_the_wire() {
    let redis = RedisServer::start().await;
    let a = node(&redis, SubscriptionMode::Interest).await;
    let (mut c, _) = a.plain("ian").await;
    let _ = a.server.join(&c.id(), &["lobby".to_owned()]);
    redis.wait_numsub("ws:room:lobby", 1).await;

    // An IGNIS server (or emitter) publishes: delivered.
    let n = redis
        .publish(
            "ws:room:lobby",
            r#"{"serverId":"6f1c1a52-ignis","type":"room","target":"lobby","event":"chat","data":{"text":"hi"},"exclude":[]}"#,
        )
        .await;
    assert_eq!(n, 1);
    assert_eq!(
        c.recv_msg().await,
        json!({"event": "chat", "data": {"text": "hi"}})
    );
    // Malformed and mismatched envelopes are dropped, the connection survives.
    redis.publish("ws:room:lobby", "not json").await;
    redis
        .publish(
            "ws:room:lobby",
            r#"{"serverId":"x","type":"room","target":"elsewhere","event":"chat","data":1}"#,
        )
        .await;
    // Events an application may not send (reserved, empty): dropped too.
    for event in ["error", "connected", "room-encrypted", ""] {
        let envelope =
            json!({"serverId": "x", "type": "room", "target": "lobby", "event": event, "data": 1});
        redis.publish("ws:room:lobby", &envelope.to_string()).await;
    }
    redis
        .publish(
            "ws:broadcast",
            r#"{"serverId":"emitter","type":"broadcast","event":"tick","data":[1,2]}"#,
        )
        .await;
    assert_eq!(c.recv_msg().await, json!({"event": "tick", "data": [1, 2]}));
    // Each refusal is counted: 2 envelopes, 4 events.
    let detail = a.server.bus_status().detail.unwrap_or_default();
    assert!(detail.contains("rejected=6"), "{detail}");

    // This server publishes: an IGNIS subscriber sees the exact IGNIS shape.
    let mut raw = redis.subscribe(&["ws:room:lobby", "ws:user:ian"]).await;
    a.server
        .to_room("lobby")
        .except_all(&["c9".to_owned()])
        .emit("note", &json!({"k": [1]}))
        .await
        .unwrap();
    a.server
        .to_user("ian")
        .emit("dm", &json!("x"))
        .await
        .unwrap();
    let (ch, payload) = next_message(&mut raw).await;
    assert_eq!(ch, "ws:room:lobby");
    let v: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        v,
        json!({"serverId": a.server.id(), "type": "room", "target": "lobby", "event": "note", "data": {"k": [1]}, "exclude": ["c9"]})
    );
    let (ch, payload) = next_message(&mut raw).await;
    assert_eq!(ch, "ws:user:ian");
    let v: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(
        v,
        json!({"serverId": a.server.id(), "type": "user", "target": "ian", "event": "dm", "data": "x"})
    );
    // The server ignores its own messages: the client got each one once (locally).
    assert_eq!(c.recv_msg().await["event"], "note");
    assert_eq!(c.recv_msg().await["event"], "dm");
    assert!(c.recv_within(Duration::from_millis(200)).await.is_none());
    a.stop().await;
}

#[tokio::test]
async fn redis_restart_mid_test_resumes_delivery() {
    let mut redis = RedisServer::start().await;
    let a = node(&redis, SubscriptionMode::Interest).await;
    let b = node(&redis, SubscriptionMode::Interest).await;
    let (mut a1, _) = a.plain("al").await;
    let (mut b1, _) = b.plain("bo").await;
    for (s, cl) in [(&a, &a1), (&b, &b1)] {
        let _ = s.server.join(&cl.id(), &["ops".to_owned()]);
    }
    redis.wait_numsub("ws:room:ops", 2).await;
    a.server
        .to_room("ops")
        .emit("before", &json!(1))
        .await
        .unwrap();
    assert_eq!(b1.recv_msg().await["event"], "before");
    assert_eq!(a1.recv_msg().await["event"], "before");

    redis.kill();
    wait_for(|| !a.server.bus_status().connected && !b.server.bus_status().connected).await;
    let status = a.server.bus_status();
    assert!(
        status
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("last error"),
        "{status:?}"
    );
    // Health shows the outage while local clients keep being served.
    let health: Value = reqwest::get(a.http("/socket/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["bus"]["connected"], false, "{health}");
    a.server
        .to_room("ops")
        .emit("local", &json!(2))
        .await
        .unwrap();
    assert_eq!(a1.recv_msg().await["event"], "local");

    redis.restart().await;
    wait_for(|| a.server.bus_status().connected && b.server.bus_status().connected).await;
    // Both instances resubscribed what they need, without a restart.
    redis.wait_numsub("ws:room:ops", 2).await;
    redis.wait_numsub("ws:user:bo", 1).await;
    a.server
        .to_room("ops")
        .emit("after", &json!(3))
        .await
        .unwrap();
    b.server
        .to_user("al")
        .emit("after-user", &json!(4))
        .await
        .unwrap();
    // "local" was queued by A's publisher during the outage: it may reach B late (Redis came
    // back within `publish_max_age` and B had resubscribed) or be lost, never duplicated.
    let before_after = events_until(&mut b1, "after").await;
    assert!(
        before_after.is_empty() || before_after == vec![json!({"event": "local", "data": 2})],
        "{before_after:?}"
    );
    let mut a_events = vec![];
    for _ in 0..2 {
        a_events.push(a1.recv_msg().await["event"].clone());
    }
    assert_eq!(a_events, vec![json!("after"), json!("after-user")]);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn fail_fast_start_against_a_dead_port_errors_clearly() {
    let url = format!("redis://127.0.0.1:{}", dead_port());
    let bus = RedisBus::new(
        RedisBusConfig::new(url.clone())
            .startup(StartupPolicy::FailFast)
            .connect_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    let server = Server::builder()
        .config(base_config())
        .authenticate(test_auth())
        .bus(bus)
        .build()
        .unwrap();
    let err = server
        .start()
        .await
        .expect_err("must fail fast")
        .to_string();
    assert!(err.contains("cannot reach Redis at"), "{err}");
    assert!(err.contains(&url), "{err}");

    // The binary exits non-zero with the same message.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealwire"))
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--redis-fail-fast",
            "--redis-url",
        ])
        .arg(&url)
        .env_remove("REDIS_URL")
        .env_remove("SEALWIRE_BUS_KEY")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach Redis at"), "{stderr}");
}

/// A database number Redis refuses is a configuration error: the start fails at once, by
/// default too (no retrying that cannot help).
#[tokio::test]
async fn a_database_redis_refuses_fails_the_start() {
    let redis = RedisServer::start().await;
    let bus = RedisBus::new(RedisBusConfig::new(format!("{}/99", redis.url()))).expect("bus");
    let server = Server::builder()
        .config(base_config())
        .authenticate(test_auth())
        .bus(bus)
        .build()
        .expect("server");
    let err = tokio::time::timeout(Duration::from_secs(20), server.start())
        .await
        .expect("the start ends")
        .expect_err("database 99 is refused")
        .to_string();
    assert!(err.contains("database"), "{err}");
}

#[tokio::test]
async fn backplane_encryption_hides_payloads_from_redis() {
    let redis = RedisServer::start().await;
    let cfg = |mode| bus_config(&redis, mode).bus_key(Some(BusKey::from_bytes(KEY)));
    let a = node_with(cfg(SubscriptionMode::Interest)).await;
    let b = node_with(cfg(SubscriptionMode::Pattern)).await;
    let (mut b1, _) = b.plain("bea").await;
    let _ = b.server.join(&b1.id(), &["vault".to_owned()]);
    let mut raw = redis.subscribe(&["ws:room:vault"]).await;

    a.server
        .to_room("vault")
        .emit("deposit", &json!({"card": "4111-SECRET"}))
        .await
        .unwrap();
    let (_, payload) = next_message(&mut raw).await;
    assert!(!payload.contains("4111-SECRET"), "{payload}");
    let v: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(v["event"], "deposit");
    assert_eq!(v["data"]["sealed"], "sw-bus-2");
    assert_eq!(
        b1.recv_msg().await,
        json!({"event": "deposit", "data": {"card": "4111-SECRET"}})
    );

    // A forged plaintext envelope is refused; a sealed emitter message gets through.
    redis
        .publish(
            "ws:room:vault",
            r#"{"serverId":"evil","type":"room","target":"vault","event":"deposit","data":{"card":"forged"}}"#,
        )
        .await;
    let emitter =
        Emitter::connect(EmitterConfig::new(redis.url()).bus_key(Some(BusKey::from_bytes(KEY))))
            .await
            .unwrap();
    emitter
        .to_room("vault")
        .emit("notice", &json!({"text": "TOPSECRET"}))
        .await
        .unwrap();
    let (_, payload) = next_message(&mut raw).await;
    assert!(payload.contains("forged"));
    let (_, payload) = next_message(&mut raw).await;
    assert!(!payload.contains("TOPSECRET"), "{payload}");
    assert_eq!(
        b1.recv_msg().await,
        json!({"event": "notice", "data": {"text": "TOPSECRET"}})
    );
    assert!(b.server.bus_status().detail.unwrap().contains("rejected=1"));
    a.stop().await;
    b.stop().await;
}

/// Someone who can publish on Redis captures a sealed envelope and publishes it again: the
/// receiving instance delivers it once and counts the copies as rejected.
#[tokio::test]
async fn a_replayed_sealed_envelope_is_delivered_once() {
    let redis = RedisServer::start().await;
    let cfg =
        || bus_config(&redis, SubscriptionMode::Interest).bus_key(Some(BusKey::from_bytes(KEY)));
    let a = node_with(cfg()).await;
    let b = node_with(cfg()).await;
    let (mut b1, _) = b.plain("bea").await;
    let _ = b.server.join(&b1.id(), &["vault".to_owned()]);
    let mut raw = redis.subscribe(&["ws:room:vault"]).await;
    redis.wait_numsub("ws:room:vault", 2).await;

    a.server
        .to_room("vault")
        .emit("payout", &json!({"amount": 100}))
        .await
        .unwrap();
    let (_, captured) = next_message(&mut raw).await;
    assert_eq!(
        b1.recv_msg().await,
        json!({"event": "payout", "data": {"amount": 100}})
    );
    // The copies reach Redis (and b) before a's next message does.
    for _ in 0..2 {
        assert_eq!(redis.publish("ws:room:vault", &captured).await, 2);
    }
    a.server
        .to_room("vault")
        .emit("payout", &json!({"amount": 7}))
        .await
        .unwrap();
    assert_eq!(
        b1.recv_msg().await,
        json!({"event": "payout", "data": {"amount": 7}}),
        "the replayed payout must not be delivered again"
    );
    let detail = b.server.bus_status().detail.unwrap_or_default();
    assert!(detail.contains("rejected=2"), "{detail}");
    a.stop().await;
    b.stop().await;
}

/// An envelope captured before an instance restarts is refused by the restarted instance,
/// although it is well within the 60 s age limit and the new instance has no replay state for
/// its publisher yet.
#[tokio::test]
async fn a_restarted_instance_refuses_envelopes_sealed_before_it_started() {
    let redis = RedisServer::start().await;
    let cfg =
        || bus_config(&redis, SubscriptionMode::Interest).bus_key(Some(BusKey::from_bytes(KEY)));
    let a = node_with(cfg()).await;
    let b = node_with(cfg()).await;
    let (mut b1, _) = b.plain("bea").await;
    let _ = b.server.join(&b1.id(), &["vault".to_owned()]);
    let mut raw = redis.subscribe(&["ws:room:vault"]).await;
    redis.wait_numsub("ws:room:vault", 2).await;
    a.server
        .to_room("vault")
        .emit("payout", &json!({"amount": 100}))
        .await
        .unwrap();
    let (_, captured) = next_message(&mut raw).await;
    assert_eq!(
        b1.recv_msg().await,
        json!({"event": "payout", "data": {"amount": 100}})
    );

    // b restarts: a new server on the same Redis, with the same key and a client in the room.
    drop(b1);
    b.stop().await;
    redis.wait_numsub("ws:room:vault", 1).await;
    let b = node_with(cfg()).await;
    let (mut b1, _) = b.plain("bea").await;
    let _ = b.server.join(&b1.id(), &["vault".to_owned()]);
    redis.wait_numsub("ws:room:vault", 2).await;

    assert_eq!(redis.publish("ws:room:vault", &captured).await, 2);
    a.server
        .to_room("vault")
        .emit("payout", &json!({"amount": 7}))
        .await
        .unwrap();
    assert_eq!(
        b1.recv_msg().await,
        json!({"event": "payout", "data": {"amount": 7}}),
        "a payout sealed before the restart must not be delivered after it"
    );
    let detail = b.server.bus_status().detail.unwrap_or_default();
    assert!(detail.contains("rejected=1"), "{detail}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn emit_command_publishes() {
    let redis = RedisServer::start().await;
    let a = node(&redis, SubscriptionMode::Interest).await;
    let (mut c, _) = a.plain("cli").await;
    let _ = a.server.join(&c.id(), &["jobs".to_owned()]);
    redis.wait_numsub("ws:room:jobs", 1).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealwire"))
        .args([
            "emit",
            "--room",
            "jobs",
            "--event",
            "job:done",
            "--data",
            r#"{"id":9}"#,
        ])
        .arg("--redis-url")
        .arg(redis.url())
        .env_remove("SEALWIRE_BUS_KEY")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.recv_msg().await,
        json!({"event": "job:done", "data": {"id": 9}})
    );
    a.stop().await;
}

/// Starts a server whose bus connects to `url` (trusting the test CA) under `policy`, expects
/// the start to fail within 10 s, and returns the error text.
async fn start_error(url: &str, ca: &Option<Vec<u8>>, policy: StartupPolicy) -> String {
    let bus = RedisBus::new(
        RedisBusConfig::new(url)
            .tls_ca_pem(ca.clone())
            .startup(policy),
    )
    .unwrap();
    let server = Server::builder()
        .config(base_config())
        .authenticate(test_auth())
        .bus(bus)
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), server.start())
        .await
        .expect("a refused login does not make the start wait")
        .expect_err("bad credentials")
        .to_string()
}

#[tokio::test]
async fn tls_and_acl_credentials_in_the_url() {
    let redis = RedisServer::start_tls_acl("sealwire", "s3cret-pass").await;
    let url = redis.url();
    assert!(url.starts_with("rediss://sealwire:s3cret-pass@"));
    let cfg = bus_config(&redis, SubscriptionMode::Interest).tls_ca_pem(redis.tls_ca.clone());
    let a = node_with(cfg).await;
    wait_for(|| a.server.bus_status().connected).await;
    let (mut c, _) = a.plain("tia").await;
    redis.wait_numsub("ws:user:tia", 1).await;
    let emitter =
        Emitter::connect(EmitterConfig::new(url.clone()).tls_ca_pem(redis.tls_ca.clone()))
            .await
            .expect("emitter over TLS");
    emitter
        .to_user("tia")
        .emit("over-tls", &json!(1))
        .await
        .unwrap();
    assert_eq!(c.recv_msg().await, json!({"event": "over-tls", "data": 1}));
    // The Socket.IO adapter channels (`@socket.io/redis-emitter` workers) over the same TLS.
    #[cfg(feature = "socketio")]
    {
        sealwire::transport::socketio::spawn_redis_emitter_bridge_with_ca(
            &a.server,
            &url,
            sealwire::transport::socketio::DEFAULT_KEY,
            redis.tls_ca.as_deref(),
        )
        .expect("bridge");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while redis.numpat().await == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bridge subscribes over TLS"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A wrong password fails clearly, without printing the password.
    let wrong = url.replace("s3cret-pass", "wrong-pass");
    let err = start_error(&wrong, &redis.tls_ca, StartupPolicy::FailFast).await;
    assert!(
        err.contains("cannot reach Redis at rediss://***@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("wrong-pass"), "{err}");
    // Refused credentials fail the start at once under the default (waiting) policy too,
    // wrong and missing passwords alike: retrying cannot fix them.
    let without = url.replace("sealwire:s3cret-pass@", "");
    for bad in [&wrong, &without] {
        let err = start_error(bad, &redis.tls_ca, StartupPolicy::Wait).await;
        assert!(err.contains("refused the credentials"), "{err}");
        assert!(!err.contains("wrong-pass"), "{err}");
    }
    // Without the private CA the certificate is refused.
    assert!(Emitter::connect(EmitterConfig::new(url)).await.is_err());
    a.stop().await;
}

/// History with several instances (each keeps its own streams in memory): what an emitter or
/// another instance publishes is appended by every instance that delivers it, so a client
/// that reconnects to the same instance recovers it; one that lands on another instance is
/// told `recovered: false` (another epoch) and is served live from there.
#[tokio::test]
async fn history_on_two_instances_recovers_per_instance_and_says_so_elsewhere() {
    let redis = RedisServer::start().await;
    let with_history = || {
        let mut c = base_config();
        c.history.rooms = vec!["orders:*".to_owned()];
        Server::builder()
            .config(c)
            .authenticate(test_auth())
            .validate_rooms(sealwire::server::GlobRooms::new(["orders:*"]).expect("glob"))
            .bus(RedisBus::new(bus_config(&redis, SubscriptionMode::Interest)).expect("bus"))
    };
    let a = start_with(with_history()).await;
    let b = start_with(with_history()).await;
    let emitter = Emitter::connect(EmitterConfig::new(redis.url()))
        .await
        .expect("emitter");

    // A client of instance a that asks for positions, in the room.
    let connect = |s: &TestServer| {
        let url = s.ws_url();
        async move {
            let mut c = WsClient::connect(&url).await;
            c.send_json(&json!({"event": "authenticate", "data": {"token": "pat", "recover": {}}}))
                .await;
            let connected = c.recv_json().await;
            assert_eq!(connected["event"], "connected");
            c.id = connected["data"]["id"].as_str().map(str::to_owned);
            assert_eq!(c.recv_json().await["event"], "recovered");
            c
        }
    };
    let mut c = connect(&a).await;
    let _ = a.server.join(&c.id(), &["orders:1".to_owned()]);
    redis.wait_numsub("ws:room:orders:1", 1).await;
    emitter
        .to_room("orders:1")
        .emit("order", &json!({"n": 1}))
        .await
        .expect("emit");
    let m = c.recv_json().await;
    assert_eq!(
        (m["data"]["n"].clone(), m["offset"].clone()),
        (json!(1), json!(1))
    );
    let epoch = m["epoch"].clone();
    drop(c);
    wait_for(|| a.server.counts().authenticated == 0).await;
    // While away: one from the emitter, one from instance b (no member there: published only).
    emitter
        .to_room("orders:1")
        .emit("order", &json!({"n": 2}))
        .await
        .expect("emit");
    b.server
        .to_room("orders:1")
        .emit("order", &json!({"n": 3}))
        .await
        .expect("publish");
    // Instance a delivered (and kept) both, to nobody.
    wait_until(|| async {
        a.server
            .history("room:orders:1", 0, 10)
            .await
            .is_some_and(|p| p.offset == 3)
    })
    .await;
    let position = json!({"room:orders:1": {"offset": 1, "epoch": epoch}});
    for (s, recovered) in [(&a, true), (&b, false)] {
        let mut c = connect(s).await;
        c.send_json(
            &json!({"event": "join", "data": {"rooms": ["orders:1"], "recover": position}}),
        )
        .await;
        let mut replayed = Vec::new();
        let streams = loop {
            let m = c.recv_json().await;
            if m["event"] == "recovered" {
                break m["data"]["streams"].clone();
            }
            replayed.push(m["data"]["n"].clone());
        };
        assert_eq!(streams[0]["recovered"], recovered, "{streams}");
        if recovered {
            assert_eq!(replayed, vec![json!(2), json!(3)]);
        } else {
            assert!(replayed.is_empty(), "{replayed:?}");
        }
    }
    emitter.shutdown().await;
    a.stop().await;
    b.stop().await;
}

/// Redis closes the publisher's idle connection (its `timeout`, a `CLIENT KILL`, a middlebox):
/// the next publication is not written on the dead connection and lost, but checked for and
/// sent on a new one.
#[tokio::test]
async fn a_publisher_connection_closed_while_idle_loses_nothing() {
    let redis = RedisServer::start().await;
    // No keepalive pings in the test's time: only the check before a batch can notice.
    let config =
        bus_config(&redis, SubscriptionMode::Interest).ping_interval(Duration::from_secs(60));
    let a = node_with(config).await;
    let b = node(&redis, SubscriptionMode::Interest).await;
    let (mut b1, _) = b.plain("dave").await;
    redis.wait_numsub("ws:broadcast", 2).await;
    let mut admin = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    for round in 0..3 {
        a.server
            .to_all()
            .emit("before", &json!(round))
            .await
            .expect("publish");
        assert_eq!(
            b1.recv_msg().await,
            json!({"event": "before", "data": round})
        );
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut admin)
            .await
            .expect("client kill");
        assert!(killed >= 1, "the publishers' connections were closed");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        a.server
            .to_all()
            .emit("after", &json!(round))
            .await
            .expect("publish");
        assert_eq!(
            b1.recv_msg().await,
            json!({"event": "after", "data": round})
        );
    }
    let stats = a.server.bus_stats().expect("stats");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    a.stop().await;
    b.stop().await;
}

/// In interest mode a client is told it is connected, and an admin join is answered, only once
/// Redis has the instance's subscriptions for it: what another instance sends to the client,
/// its user or the room right after is not lost. Behind a proxy that makes the instance's
/// `SUBSCRIBE`s reach Redis 600 ms late (without the wait, those sends are published before
/// the subscription exists and reach nobody).
#[tokio::test]
async fn sends_right_after_connected_or_an_admin_join_reach_the_client() {
    use common::slow_pubsub::SlowPubSub;
    let redis = RedisServer::start().await;
    let upstream = format!("127.0.0.1:{}", redis.port).parse().expect("addr");
    let slow = SlowPubSub::slow_requests(upstream, Duration::from_millis(600)).await;
    let a = node(&redis, SubscriptionMode::Interest).await;
    let b = node_with(
        RedisBusConfig::new(slow.url())
            .mode(SubscriptionMode::Interest)
            .backoff(Duration::from_millis(20), Duration::from_millis(300))
            .response_timeout(Duration::from_secs(3)),
    )
    .await;
    let (mut client, connected) = b.plain("alice").await;
    let id = connected["data"]["id"].as_str().expect("id").to_owned();
    a.server
        .to_client(&id)
        .emit("to-client", &json!(1))
        .await
        .expect("send");
    a.server
        .to_user("alice")
        .emit("to-user", &json!(2))
        .await
        .expect("send");
    assert_eq!(client.recv_msg().await["event"], "to-client");
    assert_eq!(client.recv_msg().await["event"], "to-user");

    let joined = reqwest::Client::new()
        .post(b.http(&format!("/socket/client/{id}/join")))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&json!({"rooms": ["desk"]}))
        .send()
        .await
        .expect("join");
    assert!(joined.status().is_success(), "{}", joined.status());
    a.server
        .to_room("desk")
        .emit("to-room", &json!(3))
        .await
        .expect("send");
    assert_eq!(client.recv_msg().await["event"], "to-room");
    a.stop().await;
    b.stop().await;
}
