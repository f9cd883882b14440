//! History in Redis Streams, shared by two instances on one real `redis-server`: a client cut
//! off mid-stream reconnects to the *other* instance and recovers everything, once and in
//! order, sealed; trimmed history and a Redis restart are answered `recovered: false`; with a
//! bus key, Redis never holds or carries a plaintext payload.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::hardened::{config_with, identity};
use common::proxy::TcpProxy;
use common::redis::RedisServer;
use common::sdk::{event_where, next_message};
use common::slow_pubsub::SlowPubSub;
use common::*;
use sealwire::bus::{RedisBus, RedisBusConfig};
use sealwire::client::{Client, Event, ReconnectPolicy};
use sealwire::crypto::backplane::BusKey;
use sealwire::crypto::{ClientHandshake, HandshakeConfig};
use sealwire::publish::Publish;
use sealwire::server::{
    BoxFuture, GlobRooms, HistoryError, HistoryStore, KeptPage, ServerBuilder, ServerConfig,
};
use serde_json::{Value, json};

const ROOM: &str = "orders:1";
const STREAM: &str = "room:orders:1";

/// An instance keeping `orders:*` rooms and users in Redis Streams (`size` per stream).
fn instance(redis: &RedisServer, size: usize, key: Option<&BusKey>) -> ServerBuilder {
    let mut c = base_config();
    c.history.size = size;
    instance_with(redis, c, key)
}

/// [`instance`] with `c`'s history budget.
fn instance_with(redis: &RedisServer, c: ServerConfig, key: Option<&BusKey>) -> ServerBuilder {
    let bus = RedisBusConfig::new(redis.url())
        .backoff(Duration::from_millis(20), Duration::from_millis(300))
        .ping_interval(Duration::from_millis(300))
        .response_timeout(Duration::from_secs(2))
        .bus_key(key.map(BusKey::duplicate));
    instance_on(bus, c)
}

/// [`instance_with`] on the bus `bus`.
fn instance_on(bus: RedisBusConfig, mut c: ServerConfig) -> ServerBuilder {
    let size = c.history.size;
    c.history.rooms = vec!["orders:*".to_owned()];
    c.history.users = true;
    let bus = RedisBus::new(bus).expect("bus");
    let store = bus.history_store(size, c.history.ttl).expect("store");
    builder(c)
        .validate_rooms(GlobRooms::new(["orders:*"]).expect("glob"))
        .bus(bus)
        .history_store(store)
}

/// A bus for an instance behind a proxy that delays Redis's pub/sub replies by 800 ms (its
/// subscriptions are confirmed, and its bus messages arrive, late); keep the proxy alive.
async fn behind_slow_pubsub(redis: &RedisServer) -> (SlowPubSub, RedisBusConfig) {
    let addr = format!("127.0.0.1:{}", redis.port).parse().expect("addr");
    let slow = SlowPubSub::start(addr, Duration::from_millis(800)).await;
    let bus = RedisBusConfig::new(slow.url())
        .backoff(Duration::from_millis(20), Duration::from_millis(300))
        .ping_interval(Duration::from_secs(5))
        .response_timeout(Duration::from_secs(5));
    (slow, bus)
}

/// A bus that takes 2 s to come back after losing Redis, so that publications are made while
/// it is away.
fn slow_to_come_back(redis: &RedisServer) -> RedisBusConfig {
    RedisBusConfig::new(redis.url())
        .backoff(Duration::from_secs(2), Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
}

/// Drops every pub/sub connection Redis holds (`CLIENT KILL TYPE pubsub`).
async fn kill_subscriptions(redis: &RedisServer) {
    let mut admin = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: i64 = ::redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .expect("kill the subscriptions");
}

async fn publish(s: &TestServer, n: u64) -> Option<u64> {
    s.server
        .to_room(ROOM)
        .emit("order", &json!({ "n": n }))
        .await
        .expect("publish")
        .offset
}

/// A client of `s` (compatibility profile, encrypted) that joins the room and asks for
/// positions, recovering from `position` when given. Returns it and the room's verdict.
async fn joined(s: &TestServer, position: Option<Value>) -> (WsClient, Vec<Value>, Value) {
    let mut c = authenticated(s).await;
    let (replayed, room) = join(&mut c, position).await;
    (c, replayed, room)
}

/// A client of `s` (compatibility profile, encrypted) that asked for positions, in no room.
async fn authenticated(s: &TestServer) -> WsClient {
    let mut c = s.client().await;
    let hs = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
    let data = json!({"token": "quinn", "recover": {}, "publicKey": hs.public_key_base64()});
    c.send_json(&json!({"event": "authenticate", "data": data}))
        .await;
    let connected = c.recv_json().await;
    assert_eq!(connected["event"], "connected", "{connected}");
    let d = &connected["data"];
    c.id = d["id"].as_str().map(str::to_owned);
    c.session = Some(
        hs.finish(
            d["serverPublicKey"].as_str().expect("key"),
            d["salt"].as_str().expect("salt"),
        )
        .expect("session"),
    );
    assert_eq!(c.recv_msg().await["event"], "recovered");
    c
}

/// `c` joins the room, recovering from `position` when given: what was replayed and the
/// room's verdict.
async fn join(c: &mut WsClient, position: Option<Value>) -> (Vec<Value>, Value) {
    let recover = position.map_or_else(|| json!({}), |p| json!({ STREAM: p }));
    c.emit("join", json!({"rooms": [ROOM], "recover": recover}))
        .await;
    until_recovered(c).await
}

/// What `c` gets until its `recovered` (the room's verdict).
async fn until_recovered(c: &mut WsClient) -> (Vec<Value>, Value) {
    let mut replayed = Vec::new();
    loop {
        let m = c.recv_msg().await;
        if m["event"] == "recovered" {
            let room = m["data"]["streams"][0].clone();
            assert_eq!(room["stream"], STREAM, "{m}");
            return (replayed, room);
        }
        replayed.push(m);
    }
}

/// The scenario with the Rust SDK (hardened profile): 500 messages published across
/// two instances while the client's TCP is cut; it reconnects to the other instance and gets
/// every one once, in order, sealed.
#[tokio::test]
async fn a_client_cut_mid_stream_recovers_all_500_from_the_other_instance() {
    let redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 1000, None)).await;
    let b = start_with(instance(&redis, 1000, None)).await;
    let proxy = TcpProxy::start(a.addr).await;
    let (client, mut events) = Client::builder(proxy.ws_url())
        .token("rosa")
        .recover(true)
        .reconnect(
            ReconnectPolicy::default()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(100)),
        )
        .connect()
        .await
        .expect("connect");
    let recovered = |e: &Event| matches!(e, Event::Recovered { .. });
    event_where(&mut events, recovered).await;
    client.join([ROOM]).await.expect("join");
    event_where(&mut events, recovered).await;

    let mut got = Vec::new();
    let take = |m: sealwire::client::Message, got: &mut Vec<u64>| {
        assert!(m.encrypted, "sealed: {m:?}");
        let n = m.data["n"].as_u64().expect("n");
        assert_eq!(m.position, Some((STREAM.to_owned(), n)), "offset = n");
        got.push(n);
    };
    // Both instances publish in turn; the offsets are the stream's, whoever publishes.
    for n in 1..=100 {
        let via = if n % 2 == 1 { &a } else { &b };
        assert_eq!(publish(via, n).await, Some(n));
    }
    while got.len() < 100 {
        take(next_message(&mut events).await, &mut got);
    }
    // Cut: the client's next connections fail until instance b takes them.
    let nowhere = format!("127.0.0.1:{}", common::redis::dead_port());
    proxy.retarget(nowhere.parse().expect("addr"));
    proxy.cut();
    wait_for(|| a.server.counts().authenticated == 0).await;
    for n in 101..=300 {
        let via = if n % 2 == 1 { &a } else { &b };
        assert_eq!(publish(via, n).await, Some(n));
    }
    proxy.retarget(b.addr);
    // Publishing goes on while the client reconnects and recovers.
    for n in 301..=500 {
        let via = if n % 2 == 1 { &a } else { &b };
        assert_eq!(publish(via, n).await, Some(n));
    }
    let mut verdicts: Vec<sealwire::protocol::StreamState> = Vec::new();
    // Until every message is in and the re-join's verdict (which follows its replay) too.
    while got.len() < 500 || !verdicts.iter().any(|v| v.stream == STREAM) {
        match event_where(&mut events, |e| {
            matches!(e, Event::Message(_) | Event::Recovered { .. })
        })
        .await
        {
            Event::Message(m) => take(m, &mut got),
            Event::Recovered { streams } => verdicts.extend(streams),
            _ => unreachable!(),
        }
    }
    assert_eq!(got, (1..=500).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(b.server.counts().authenticated, 1, "reconnected to b");
    let room = verdicts
        .iter()
        .find(|v| v.stream == STREAM)
        .expect("room verdict");
    assert_eq!(room.recovered, Some(true), "{verdicts:?}");
    assert!(room.replayed >= 200, "{verdicts:?}");
    // Live afterwards, from either instance.
    publish(&a, 501).await;
    take(next_message(&mut events).await, &mut got);
    assert_eq!(got.last(), Some(&501));
    client.close();
    a.stop().await;
    b.stop().await;
}

/// A client that enters a room without a position is told where the stream stands only once
/// it has every publication made since it became a member: here its instance's pub/sub
/// replies come 800 ms late, so one made while the instance waits for its subscription to the
/// room is still on the bus when the join is answered. It comes with the answer (from the
/// stream), and its late live copy is not delivered again.
#[tokio::test]
async fn a_fresh_join_is_answered_with_no_offset_it_has_not_delivered() {
    let redis = RedisServer::start().await;
    let (_slow, late) = behind_slow_pubsub(&redis).await;
    let mut c = base_config();
    c.history.size = 100;
    let a = start_with(instance_on(late, c)).await;
    let b = start_with(instance(&redis, 100, None)).await;
    assert_eq!(
        publish(&b, 1).await,
        Some(1),
        "before the client is a member"
    );

    let mut client = authenticated(&a).await;
    client
        .emit("join", json!({"rooms": [ROOM], "recover": {}}))
        .await;
    // The instance is subscribing to the room (its first member): Redis has the subscription,
    // the instance has no confirmation yet.
    let channel = sealwire::protocol::BusTarget::Room(ROOM.to_owned()).channel();
    redis.wait_numsub(&channel, 1).await;
    assert_eq!(publish(&b, 2).await, Some(2), "after it is a member");
    let (before, room) = until_recovered(&mut client).await;
    assert_eq!(room["offset"], 2, "{room}");
    let got: Vec<&Value> = before.iter().map(|m| &m["data"]["n"]).collect();
    assert_eq!(
        got,
        [&json!(2)],
        "every offset up to the one reported, first"
    );
    assert_eq!(room["replayed"], 1, "{room}");
    assert!(
        room.get("recovered").is_none(),
        "no position was given: {room}"
    );
    // Live delivery goes on, without the late copy of 2.
    publish(&b, 3).await;
    let next = client.recv_msg().await;
    assert_eq!(next["data"]["n"], 3, "{next}");
    assert_eq!(next["offset"], 3, "{next}");
    a.stop().await;
    b.stop().await;
}

/// A user that reconnects at once (its instance unsubscribes from the user's channel as the
/// last session ends, and subscribes again for the new one) is answered only once the new
/// subscription is in place: here the unsubscription's reply is 800 ms late, and a recovery
/// that took the old confirmation for the new one answered while the instance received
/// nothing, so what was published right after its answer was lost.
#[tokio::test]
async fn a_session_that_replaces_the_last_one_is_answered_once_subscribed_again() {
    let redis = RedisServer::start().await;
    let (_slow, late) = behind_slow_pubsub(&redis).await;
    let a = start_with(instance_on(late, base_config())).await;
    let b = start_with(instance(&redis, 100, None)).await;
    let channel = sealwire::protocol::BusTarget::User("quinn".to_owned()).channel();
    let first = authenticated(&a).await;
    redis.wait_numsub(&channel, 1).await;
    drop(first);
    // Redis has the unsubscription; the instance has not heard back yet.
    redis.wait_numsub(&channel, 0).await;
    let mut again = a.client().await;
    again
        .send_json(&json!({"event": "authenticate", "data": {"token": "quinn", "recover": {}}}))
        .await;
    assert_eq!(again.recv_json().await["event"], "connected");
    assert_eq!(again.recv_json().await["event"], "recovered");
    let sent = b
        .server
        .to_user("quinn")
        .emit("note", &json!({"n": 1}))
        .await
        .expect("publish");
    let m = again.recv_json().await;
    assert_eq!(m["data"]["n"], 1, "{m}");
    assert_eq!(m["offset"].as_u64(), sent.offset, "{m}");
    a.stop().await;
    b.stop().await;
}

/// The same at authentication, for the client's user stream: a publication to the user made
/// while the instance waits for its subscription comes before `recovered`, once.
#[tokio::test]
async fn a_first_connection_is_answered_with_no_offset_it_has_not_delivered() {
    let redis = RedisServer::start().await;
    let (_slow, late) = behind_slow_pubsub(&redis).await;
    let a = start_with(instance_on(late, base_config())).await;
    let b = start_with(instance(&redis, 100, None)).await;
    let server = b.server.clone();
    let to_quinn = |n: u64| {
        let server = server.clone();
        async move {
            server
                .to_user("quinn")
                .emit("note", &json!({ "n": n }))
                .await
                .expect("publish")
                .offset
        }
    };
    assert_eq!(to_quinn(1).await, Some(1), "before the client is connected");

    let mut c = a.client().await;
    c.send_json(&json!({"event": "authenticate", "data": {"token": "quinn", "recover": {}}}))
        .await;
    let channel = sealwire::protocol::BusTarget::User("quinn".to_owned()).channel();
    redis.wait_numsub(&channel, 1).await;
    assert_eq!(to_quinn(2).await, Some(2), "after it is connected");
    assert_eq!(c.recv_json().await["event"], "connected");
    let first = c.recv_json().await;
    assert_eq!(first["event"], "note", "the publication first: {first}");
    assert_eq!(
        (&first["data"]["n"], &first["offset"]),
        (&json!(2), &json!(2))
    );
    let answer = c.recv_json().await;
    assert_eq!(answer["event"], "recovered", "{answer}");
    let user = answer["data"]["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stream"] == "user:quinn"))
        .cloned()
        .expect("the user stream");
    assert_eq!(
        (&user["offset"], &user["replayed"]),
        (&json!(2), &json!(1)),
        "{answer}"
    );
    assert_eq!(to_quinn(3).await, Some(3));
    let next = c.recv_json().await;
    assert_eq!(next["data"]["n"], 3, "not the late copy of 2: {next}");
    a.stop().await;
    b.stop().await;
}

/// History trimmed below the client's position: `recovered: false`, then live delivery.
#[tokio::test]
async fn trimmed_history_is_answered_recovered_false() {
    let redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let b = start_with(instance(&redis, 100, None)).await;
    let (mut c, _, room) = joined(&a, None).await;
    let epoch = room["epoch"].clone();
    for n in 1..=10 {
        publish(&a, n).await;
    }
    for _ in 1..=10 {
        c.recv_msg().await;
    }
    drop(c);
    wait_for(|| a.server.counts().authenticated == 0).await;
    for n in 11..=400 {
        publish(if n % 2 == 0 { &a } else { &b }, n).await;
    }
    let (mut c, replayed, room) = joined(&b, Some(json!({"offset": 10, "epoch": epoch}))).await;
    assert_eq!(room["recovered"], false, "{room}");
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(room["offset"], 400);
    publish(&a, 401).await;
    let m = c.recv_msg().await;
    assert_eq!(
        (m["data"]["n"].clone(), m["offset"].clone()),
        (json!(401), json!(401))
    );
    // Within the bound, the same gap is filled.
    let (_, replayed, room) = joined(&b, Some(json!({"offset": 350, "epoch": epoch}))).await;
    assert_eq!(room["recovered"], true, "{room}");
    let ns: Vec<u64> = replayed
        .iter()
        .filter_map(|m| m["data"]["n"].as_u64())
        .collect();
    assert_eq!(ns, (351..=401).collect::<Vec<_>>());
    a.stop().await;
    b.stop().await;
}

/// With history in Redis too, a publication that skipped a client is not replayed to it when
/// it leaves and joins again from its last position.
#[tokio::test]
async fn what_skipped_a_client_is_not_replayed_to_it() {
    let redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let (mut c, _, room) = joined(&a, None).await;
    let epoch = room["epoch"].clone();
    publish(&a, 1).await;
    a.server
        .to_room(ROOM)
        .except(c.id())
        .emit("order", &json!({ "n": 2 }))
        .await
        .expect("publish");
    publish(&a, 3).await;
    for n in [1, 3] {
        assert_eq!(c.recv_msg().await["data"]["n"], n);
    }
    c.emit("leave", json!({"rooms": [ROOM]})).await;
    c.sync().await;
    let (replayed, room) = join(&mut c, Some(json!({"offset": 0, "epoch": epoch}))).await;
    assert_eq!(room["recovered"], true, "{room}");
    let ns: Vec<Value> = replayed.iter().map(|m| m["data"]["n"].clone()).collect();
    assert_eq!(ns, vec![json!(1), json!(3)]);
    a.stop().await;
}

/// A batch from the admin API is published like any send: kept in the shared store with its
/// offsets, so a client that missed it recovers it from the other instance.
#[tokio::test]
async fn admin_batches_are_kept_in_the_shared_history() {
    let redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let b = start_with(instance(&redis, 100, None)).await;
    let (mut c, _, room) = joined(&a, None).await;
    let epoch = room["epoch"].clone();
    let messages: Vec<Value> = (1..=3)
        .map(|n| json!({"destination": ROOM, "topic": "order", "data": {"n": n}}))
        .collect();
    let r = reqwest::Client::new()
        .post(a.http("/socket/batch"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .expect("batch");
    assert!(r.status().is_success(), "{}", r.status());
    for n in 1..=3 {
        let m = c.recv_msg().await;
        assert_eq!(
            (m["data"]["n"].clone(), m["offset"].clone()),
            (json!(n), json!(n)),
            "{m}"
        );
    }
    drop(c);
    let (_, replayed, room) = joined(&b, Some(json!({"offset": 1, "epoch": epoch}))).await;
    assert_eq!(room["recovered"], true, "{room}");
    let ns: Vec<u64> = replayed
        .iter()
        .filter_map(|m| m["data"]["n"].as_u64())
        .collect();
    assert_eq!(ns, vec![2, 3]);
    a.stop().await;
    b.stop().await;
}

/// A Redis restart loses the streams (no persistence): the next publication starts a new
/// epoch, and a client recovering from the old one is told `recovered: false`.
#[tokio::test]
async fn a_redis_restart_starts_a_new_epoch() {
    let mut redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let b = start_with(instance(&redis, 100, None)).await;
    let (mut c, _, room) = joined(&a, None).await;
    let old = room["epoch"].clone();
    publish(&b, 1).await;
    assert_eq!(c.recv_msg().await["epoch"], old);
    drop(c);
    redis.restart().await;
    wait_for(|| a.server.bus_status().connected && b.server.bus_status().connected).await;
    // Once the bus is back, the store's connection from before the restart has been
    // replaced: the first publication is kept (and the first read finds the stream).
    assert_eq!(publish(&a, 2).await, Some(1), "kept, first of a new stream");
    let (mut c, replayed, room) = joined(&b, Some(json!({"offset": 1, "epoch": old}))).await;
    assert_eq!(room["recovered"], false, "{room}");
    assert!(replayed.is_empty());
    assert_ne!(room["epoch"], old, "a new epoch");
    publish(&a, 100).await;
    let m = c.recv_msg().await;
    assert_eq!(m["epoch"], room["epoch"]);
    assert_eq!(m["data"]["n"], 100);
    a.stop().await;
    b.stop().await;
}

/// With a bus key, Redis holds and carries only sealed payloads: nothing of a marker
/// published through both instances appears in a MONITOR capture or an XRANGE of the stream,
/// while recovery from it still works.
#[tokio::test]
async fn with_a_bus_key_redis_never_sees_a_plaintext_payload() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MARKER: &str = "PLAINTEXT-MARKER-7c1e";
    let redis = RedisServer::start().await;
    let key = BusKey::generate(&mut rand::rng());
    let a = start_with(instance(&redis, 100, Some(&key))).await;
    let b = start_with(instance(&redis, 100, Some(&key))).await;
    // Everything Redis executes, from here on.
    let mut monitor = tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .expect("monitor");
    monitor.write_all(b"MONITOR\r\n").await.expect("monitor");
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let capture = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            tokio::select! {
                _ = &mut stopped => return String::from_utf8_lossy(&all).into_owned(),
                r = monitor.read(&mut buf) => match r {
                    Ok(n) if n > 0 => all.extend_from_slice(&buf[..n]),
                    _ => return String::from_utf8_lossy(&all).into_owned(),
                },
            }
        }
    });
    let (c, _, room) = joined(&a, None).await;
    let epoch = room["epoch"].clone();
    drop(c);
    wait_for(|| a.server.counts().authenticated == 0).await;
    for n in 1..=10 {
        let via = if n % 2 == 0 { &a } else { &b };
        via.server
            .to_room(ROOM)
            .emit("order", &json!({"n": n, "secret": MARKER}))
            .await
            .expect("publish");
    }
    let (_, replayed, room) = joined(&b, Some(json!({"offset": 0, "epoch": epoch}))).await;
    assert_eq!(room["recovered"], true, "{room}");
    assert_eq!(replayed.len(), 10);
    assert!(replayed.iter().all(|m| m["data"]["secret"] == MARKER));
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let entries: ::redis::Value = ::redis::cmd("XRANGE")
        .arg(format!("sealwire:history:s:{STREAM}"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("xrange");
    let entries = format!("{entries:?}");
    assert!(entries.contains("sw-bus-2"), "sealed entries: {entries}");
    assert!(
        !entries.contains(MARKER),
        "plaintext in the stream: {entries}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(());
    let captured = capture.await.expect("capture");
    assert!(
        captured.contains("XADD") || captured.contains("evalsha"),
        "captured traffic"
    );
    assert!(captured.contains("sw-bus-2"), "sealed traffic captured");
    assert!(!captured.contains(MARKER), "plaintext on the wire to Redis");
    a.stop().await;
    b.stop().await;
}

/// A kept publication reaches the publishing instance's clients through Redis, and a publish
/// returns only once it has (the waiting itself is unit-tested in `history/echo.rs`): what the
/// same publisher sends next, kept or not, never overtakes it.
#[tokio::test]
async fn kept_and_unkept_messages_to_one_client_keep_their_order() {
    let redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let (mut c, _, _) = joined(&a, None).await;
    let id = c.id();
    for n in 0..50u64 {
        let kept = a.server.to_room(ROOM).emit("order", &json!({ "n": n }));
        assert!(kept.await.expect("kept").offset.is_some());
        a.server
            .to_client(id.clone())
            .emit("direct", &json!({ "n": n }))
            .await
            .expect("direct");
    }
    for n in 0..50u64 {
        let m = c.recv_msg().await;
        assert_eq!(
            (m["event"].clone(), m["data"]["n"].clone()),
            (json!("order"), json!(n))
        );
        let m = c.recv_msg().await;
        assert_eq!(
            (m["event"].clone(), m["data"]["n"].clone()),
            (json!("direct"), json!(n))
        );
    }
    a.stop().await;
}

/// Across instances: what one publisher sends live (over the bus's publish queue) before a
/// kept publication (appended and published by the history store, on another connection)
/// reaches a client on the other instance first.
#[tokio::test]
async fn live_publications_are_not_overtaken_by_a_later_kept_one_across_instances() {
    let redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let b = start_with(instance(&redis, 100, None)).await;
    let (mut c, _, _) = joined(&b, None).await;
    let id = c.id();
    wait_for(|| a.server.is_ready()).await;
    let mut want = Vec::new();
    for n in 0..60u64 {
        if n % 3 == 2 {
            let kept = a.server.to_room(ROOM).emit("order", &json!({ "n": n }));
            assert!(kept.await.expect("kept").offset.is_some());
            want.push(("order", n));
        } else {
            a.server
                .to_client(id.clone())
                .emit("direct", &json!({ "n": n }))
                .await
                .expect("direct");
            want.push(("direct", n));
        }
    }
    let mut got = Vec::new();
    for _ in 0..want.len() {
        let m = c.recv_msg().await;
        got.push((
            m["event"].as_str().unwrap_or_default().to_owned(),
            m["data"]["n"].as_u64().unwrap_or(u64::MAX),
        ));
    }
    let want: Vec<(String, u64)> = want.into_iter().map(|(e, n)| (e.to_owned(), n)).collect();
    assert_eq!(got, want);
    a.stop().await;
    b.stop().await;
}

/// Redis stops answering (frozen, nothing lost): a publication to a kept stream still reaches
/// the instance's clients live, with no offset in its receipt; once Redis answers again, the
/// stream goes on in a new epoch, so a client that recovers across the outage is told
/// `recovered: false` instead of being silently short of what may not have been kept. The
/// frozen append, which Redis runs when it thaws, is not delivered twice.
#[tokio::test]
async fn a_redis_outage_delivers_live_and_then_starts_a_new_epoch() {
    let redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let b = start_with(instance(&redis, 100, None)).await;
    let (mut c, _, room) = joined(&a, None).await;
    let (mut other, _, _) = joined(&b, None).await;
    let epoch = room["epoch"].clone();
    assert_eq!(publish(&a, 1).await, Some(1));
    assert_eq!(c.recv_msg().await["offset"], 1);

    redis.pause();
    assert_eq!(publish(&a, 2).await, None, "not kept: no offset");
    let live = c.recv_msg().await;
    assert_eq!(live["data"]["n"], 2, "delivered live: {live}");
    assert!(live.get("offset").is_none(), "{live}");
    redis.resume();
    wait_for(|| a.server.bus_status().connected).await;

    let mut n = 3;
    let next = loop {
        if let Some(offset) = publish(&a, n).await {
            break offset;
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // What was published before the store was tried again went out live (no offset); Redis
    // runs the frozen append when it thaws, and its copy is not delivered a second time.
    for live in 3..n {
        let m = c.recv_msg().await;
        assert_eq!(m["data"]["n"], live, "each publication once, in order: {m}");
        assert!(m.get("offset").is_none(), "{m}");
    }
    let m = c.recv_msg().await;
    assert_eq!(m["data"]["n"], n, "each publication once: {m}");
    assert_ne!(
        m["epoch"], epoch,
        "a new epoch after the failed append: {m}"
    );
    assert_eq!(m["offset"], next);
    // The other instance's client gets every publication at most once: the frozen one only
    // if Redis ran it after thawing (then from Redis, kept), never also over the bus.
    let mut seen = Vec::new();
    loop {
        let m = other.recv_msg().await;
        seen.push(m["data"]["n"].as_u64().expect("n"));
        if m["data"]["n"] == n {
            break;
        }
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        seen.len(),
        unique.len(),
        "no duplicates on the other instance: {seen:?}"
    );
    assert!(seen.starts_with(&[1]) && seen.ends_with(&[n]), "{seen:?}");
    drop(c);
    let (_, replayed, room) = joined(&a, Some(json!({"offset": 1, "epoch": epoch}))).await;
    assert_eq!(room["recovered"], false, "{room}");
    assert!(replayed.is_empty(), "{replayed:?}");
    let (metrics, _) = a.server.render_metrics();
    let failed = format!(
        "sealwire_history_appends_total{{result=\"failed\"}} {}",
        n - 2
    );
    assert!(metrics.contains(&failed), "{failed} in:\n{metrics}");
    assert!(
        metrics.contains("sealwire_history_appends_total{result=\"kept\"} 2"),
        "{metrics}"
    );
    a.stop().await;
    b.stop().await;
}

/// Redis down when a client recovers: the answer says `recovered: false` for what it asked
/// (nothing can be read), and the client is served live meanwhile.
#[tokio::test]
async fn recovering_while_redis_is_down_is_answered_as_a_gap() {
    let mut redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let (c, _, room) = joined(&a, None).await;
    let epoch = room["epoch"].clone();
    drop(c);
    redis.kill();
    wait_for(|| !a.server.bus_status().connected).await;
    let (mut c, replayed, room) = joined(&a, Some(json!({"offset": 0, "epoch": epoch}))).await;
    assert_eq!(room["recovered"], false, "{room}");
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(publish(&a, 1).await, None, "not kept while Redis is down");
    assert_eq!(c.recv_msg().await["data"]["n"], 1, "served live");
    a.stop().await;
}

/// Redis gone: a publisher is not held back by the history it cannot keep. Once an append has
/// found Redis unreachable, the next ones are not tried until the bus is back: each
/// publication is delivered live at once (no offset), and a recovery is answered at once.
/// Before, every publication waited for a reconnection attempt (about 150 ms each, 150 s for
/// a batch of 1,000).
#[tokio::test]
async fn publications_while_redis_is_gone_are_not_held_back() {
    let mut redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let (mut c, _, room) = joined(&a, None).await;
    let epoch = room["epoch"].clone();
    redis.kill();
    wait_for(|| !a.server.bus_status().connected).await;
    // A failure guard with a wide margin, not a speed target.
    tokio::time::timeout(Duration::from_secs(30), async {
        for n in 1..=300 {
            assert_eq!(publish(&a, n).await, None, "not kept while Redis is gone");
        }
    })
    .await
    .expect("300 publications are not held back by the outage");
    for n in 1..=300 {
        assert_eq!(c.recv_msg().await["data"]["n"], n, "served live, in order");
    }
    let (_, replayed, answer) = tokio::time::timeout(
        Duration::from_secs(10),
        joined(&a, Some(json!({"offset": 0, "epoch": epoch}))),
    )
    .await
    .expect("a recovery is answered while Redis is gone");
    assert_eq!(answer["recovered"], false, "{answer}");
    assert!(replayed.is_empty(), "{replayed:?}");
    // Back: kept again once the bus has reconnected.
    redis.restart().await;
    wait_for(|| a.server.bus_status().connected).await;
    let mut n = 301;
    loop {
        if publish(&a, n).await.is_some() {
            break;
        }
        n += 1;
        assert!(n < 1000, "never kept again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
}

/// An instance that could not keep a publication (it went out live only) starts the stream
/// again as soon as Redis takes the command, not at its own next append: otherwise the other
/// instance's appends continue the old epoch, and a client that was away during the lost one
/// recovers there with `recovered: true`.
#[tokio::test]
async fn a_publication_one_instance_could_not_keep_restarts_the_stream_for_all() {
    use common::redis::dead_port;
    let redis = RedisServer::start().await;
    let upstream = format!("127.0.0.1:{}", redis.port).parse().expect("addr");
    let proxy = TcpProxy::start(upstream).await;
    let via_proxy = RedisBusConfig::new(format!("redis://{}", proxy.addr))
        .backoff(Duration::from_millis(20), Duration::from_millis(300))
        .ping_interval(Duration::from_millis(300))
        .response_timeout(Duration::from_secs(2));
    let mut c = base_config();
    c.history.size = 100;
    let a = start_with(instance_on(via_proxy, c)).await;
    let b = start_with(instance(&redis, 100, None)).await;
    let (mut client, _, room) = joined(&b, None).await;
    assert_eq!(publish(&a, 1).await, Some(1));
    let m = client.recv_msg().await;
    assert_eq!(
        (&m["data"]["n"], &m["offset"]),
        (&json!(1), &json!(1)),
        "{m}"
    );
    drop(client);

    // A loses Redis; what it publishes now is not kept (and reaches nobody: the client left).
    proxy.retarget(format!("127.0.0.1:{}", dead_port()).parse().expect("addr"));
    proxy.cut();
    wait_for(|| !a.server.bus_status().connected).await;
    assert_eq!(publish(&a, 2).await, None, "not kept");
    proxy.retarget(upstream);
    wait_for(|| a.server.bus_status().connected).await;
    // The stream starts again once Redis takes A's command.
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let meta = format!("sealwire:history:m:{STREAM}");
    let old = room["epoch"].as_str().expect("epoch").to_owned();
    let mut restarted = false;
    for _ in 0..250 {
        let epoch: Option<String> = ::redis::cmd("HGET")
            .arg(&meta)
            .arg("epoch")
            .query_async(&mut conn)
            .await
            .expect("HGET");
        if epoch.is_some_and(|e| e != old) {
            restarted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(restarted, "the stream did not start a new epoch");
    assert_eq!(publish(&b, 3).await, Some(1), "kept in the new epoch");

    // The client comes back to B from where it stood: it missed 2, and is told so.
    let (mut back, replayed, verdict) = joined(&b, Some(json!({"offset": 1, "epoch": old}))).await;
    assert_eq!(verdict["recovered"], false, "{verdict}");
    assert!(replayed.is_empty(), "{replayed:?}");
    back.expect_silence(Duration::from_millis(200)).await;
    a.stop().await;
    b.stop().await;
}

/// Redis closes connections idle for longer than its `timeout` (as proxies and NATs do): the
/// store's connection, idle between two publications, is found closed by a ping, not by the
/// append, so the next publication is kept (and reaches the client with its position) rather
/// than going out unkept and starting a new epoch.
#[tokio::test]
async fn a_connection_redis_closed_while_idle_loses_no_publication() {
    let redis = RedisServer::start().await;
    let a = start_with(instance(&redis, 100, None)).await;
    let (mut client, _, room) = joined(&a, None).await;
    assert_eq!(publish(&a, 1).await, Some(1));
    assert_eq!(client.recv_msg().await["offset"], 1);
    let mut admin = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: () = ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("timeout")
        .arg(1)
        .query_async(&mut admin)
        .await
        .expect("CONFIG SET timeout");
    for n in 2..=3 {
        // Idle long enough for Redis to close the store's connection (it checks every
        // 100 ms or so, past the 1 s timeout).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(publish(&a, n).await, Some(n), "kept after an idle spell");
        let m = client.recv_msg().await;
        assert_eq!(
            (&m["data"]["n"], &m["offset"], &m["epoch"]),
            (&json!(n), &json!(n), &room["epoch"]),
            "{m}"
        );
    }
    // Kept publications count as published on the bus (the append script publishes them).
    let detail = a.server.bus_status().detail.unwrap_or_default();
    assert!(detail.contains("published=3;"), "{detail}");
    a.stop().await;
}

/// Redis hung (stopped, so commands get no answer): only the append that finds out waits for
/// the response timeout; the next publications go out live at once, without waiting for the
/// bus to notice (here its checks are 10 s apart, and its publisher waits 4 s for an answer),
/// nor, past the first, for the live ones before them to reach Redis; and they are kept
/// again once Redis answers.
#[tokio::test]
async fn a_hung_redis_holds_back_only_the_append_that_finds_out() {
    let redis = RedisServer::start().await;
    let mut c = base_config();
    c.history.size = 100;
    let bus = RedisBusConfig::new(redis.url())
        .backoff(Duration::from_millis(20), Duration::from_millis(300))
        .ping_interval(Duration::from_secs(10))
        .response_timeout(Duration::from_secs(4));
    let a = start_with(instance_on(bus, c)).await;
    let (mut client, _, _) = joined(&a, None).await;
    assert_eq!(publish(&a, 1).await, Some(1));
    // Idle past a second: the store checks its connection (a ping) before the next append,
    // and a ping that gets no answer is the only wait (not a second ping, then the append).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    redis.pause();
    let first = tokio::time::timeout(Duration::from_secs(7), publish(&a, 2))
        .await
        .expect("one response timeout (4 s), not three");
    assert_eq!(first, None, "this one waits, then goes out live");
    // A failure guard with a wide margin, not a speed target: before, each of these waited
    // the response timeout until the bus noticed (10 s of them), and later each waited a
    // second for the live one before it to reach Redis until the publisher gave up (4 s).
    tokio::time::timeout(Duration::from_secs(3), async {
        for n in 3..=50 {
            assert_eq!(publish(&a, n).await, None, "not kept while Redis is hung");
        }
    })
    .await
    .expect("the publications after the first are not held back");
    for n in 1..=50 {
        assert_eq!(client.recv_msg().await["data"]["n"], n, "in order, once");
    }
    redis.resume();
    let mut n = 51;
    while publish(&a, n).await.is_none() {
        n += 1;
        assert!(n < 1000, "never kept again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
}

/// Joins cannot make Redis hold streams without bound: an instance creates at most
/// `max_streams` room streams by lookup per TTL, and past that a lookup of a room stream Redis
/// does not hold is answered without a position and writes nothing (a user's stream is still
/// made). A stream made for a lookup is not
/// kept alive by further lookups (it expires a TTL after it was made); one with publications
/// is, as before. A publication still gets its stream past the budget.
#[tokio::test]
async fn a_stream_budget_bounds_what_joins_can_make_redis_hold() {
    let redis = RedisServer::start().await;
    let mut c = base_config();
    c.history.size = 100;
    c.history.max_streams = 1;
    let a = start_with(instance_with(&redis, c, None)).await;
    let conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let pttl = |key: String| {
        let mut conn = conn.clone();
        async move {
            let ms: i64 = ::redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("pttl");
            ms
        }
    };
    // The first room takes the one creation (a user's stream does not count).
    let (mut c, _, room) = joined(&a, None).await;
    let held = room["epoch"].clone();
    assert_ne!(held, "");
    let made = pttl(format!("sealwire:history:m:{STREAM}")).await;
    assert!(made > 0, "a stream made for a lookup expires: {made}");
    // Past the budget: no position, and no key in Redis.
    c.emit("join", json!({"rooms": ["orders:2"], "recover": {}}))
        .await;
    let m = c.recv_msg().await;
    assert_eq!(m["event"], "recovered", "{m}");
    let unheld = &m["data"]["streams"][0];
    assert_eq!(
        (&unheld["epoch"], &unheld["offset"]),
        (&json!(""), &json!(0))
    );
    assert_eq!(
        pttl("sealwire:history:m:room:orders:2".to_owned()).await,
        -2
    );
    // A user's stream is made past the budget.
    let mut other = a.client().await;
    other
        .send_json(&json!({"event": "authenticate", "data": {"token": "rhea", "recover": {}}}))
        .await;
    assert_eq!(other.recv_json().await["event"], "connected");
    let m = other.recv_json().await;
    assert_eq!(m["data"]["streams"][0]["stream"], "user:rhea", "{m}");
    assert_ne!(m["data"]["streams"][0]["epoch"], "", "{m}");
    // A held stream still answers, and the lookup does not extend its life.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (_, _, again) = joined(&a, None).await;
    assert_eq!(again["epoch"], held);
    let later = pttl(format!("sealwire:history:m:{STREAM}")).await;
    assert!(
        later < made,
        "not refreshed by a lookup: {later} after {made}"
    );
    // A publication gets its stream past the budget; from then on lookups keep it alive.
    a.server
        .to_room("orders:2")
        .emit("order", &json!({"n": 1}))
        .await
        .expect("publish");
    let m = c.recv_msg().await;
    assert_eq!(
        (&m["stream"], &m["offset"]),
        (&json!("room:orders:2"), &json!(1))
    );
    assert_ne!(m["epoch"], "");
    publish(&a, 1).await;
    assert_eq!(c.recv_msg().await["offset"], 1);
    let published = pttl(format!("sealwire:history:m:{STREAM}")).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    joined(&a, None).await;
    let read = pttl(format!("sealwire:history:m:{STREAM}")).await;
    assert!(
        read > published - 30,
        "refreshed by a lookup: {read} after {published}"
    );
    let (metrics, _) = a.server.render_metrics();
    assert_eq!(
        metric_value(&metrics, "sealwire_history_unheld_lookups_total"),
        1.0
    );
    a.stop().await;
}

/// While this instance's subscription is down (its pub/sub connection killed, the store's
/// connection fine), a kept publication does not come back from the bus: its own clients get
/// it anyway, with its position, once and in order with what follows.
#[tokio::test]
async fn kept_publications_reach_local_clients_while_the_subscription_is_down() {
    let redis = RedisServer::start().await;
    let mut c = base_config();
    c.history.rooms = vec!["orders:*".to_owned()];
    let bus = RedisBus::new(
        RedisBusConfig::new(redis.url())
            // Slow to come back, so that publications are made while it is away.
            .backoff(Duration::from_secs(3), Duration::from_secs(3))
            .response_timeout(Duration::from_secs(2)),
    )
    .expect("bus");
    let store = bus.history_store(100, c.history.ttl).expect("store");
    let a = start_with(
        builder(c)
            .validate_rooms(GlobRooms::new(["orders:*"]).expect("glob"))
            .bus(bus)
            .history_store(store),
    )
    .await;
    let (mut client, _, room) = joined(&a, None).await;
    let epoch = room["epoch"].clone();
    assert_eq!(publish(&a, 1).await, Some(1));
    assert_eq!(client.recv_msg().await["data"]["n"], 1);
    kill_subscriptions(&redis).await;
    wait_for(|| !a.server.bus_status().connected).await;
    for n in 2..=4 {
        assert_eq!(
            publish(&a, n).await,
            Some(n),
            "kept while the subscription is down"
        );
    }
    wait_for(|| a.server.bus_status().connected).await;
    assert_eq!(publish(&a, 5).await, Some(5));
    for n in 2..=5 {
        let m = client.recv_msg().await;
        assert_eq!(
            (m["data"]["n"].as_u64(), m["offset"].as_u64()),
            (Some(n), Some(n)),
            "{m}"
        );
        assert_eq!(m["epoch"], epoch);
    }
    client.expect_silence(Duration::from_millis(300)).await;
    a.stop().await;
}

/// A client that stays connected while its instance's subscription is down gets what was
/// kept meanwhile once the subscription is back, in order and once, before anything newer:
/// here Redis restarts (without persistence, so the stream starts a new epoch) and the other
/// instance publishes before this one has resubscribed. Before, the client went on from the
/// next live message and never learnt of the ones it missed. Whatever the old epoch held
/// after the last publication delivered here is gone with it, so the client is first told
/// `recovered: false` at the new epoch's start.
#[tokio::test]
async fn a_connected_client_gets_what_its_instance_missed_while_redis_restarted() {
    let mut redis = RedisServer::start().await;
    let slow_back = slow_to_come_back(&redis);
    let mut c = base_config();
    c.history.size = 100;
    let a = start_with(instance_on(slow_back, c)).await;
    let b = start_with(instance(&redis, 100, None)).await;
    let (mut client, _, room) = joined(&a, None).await;
    assert_eq!(publish(&b, 1).await, Some(1));
    assert_eq!(client.recv_msg().await["data"]["n"], 1);

    redis.restart().await;
    wait_for(|| b.server.bus_status().connected).await;
    for n in 2..=4 {
        assert_eq!(publish(&b, n).await, Some(n - 1), "a new epoch");
    }
    assert!(
        !a.server.bus_status().connected,
        "published while a's subscription is down"
    );
    wait_for(|| a.server.bus_status().connected).await;
    assert_eq!(publish(&b, 5).await, Some(4));
    let notice = client.recv_msg().await;
    assert_eq!(notice["event"], "recovered", "{notice}");
    let state = &notice["data"]["streams"][0];
    assert_eq!(
        (&state["stream"], &state["recovered"], &state["offset"]),
        (&json!(STREAM), &json!(false), &json!(0)),
        "{notice}"
    );
    let epoch = state["epoch"].clone();
    assert_ne!(epoch, room["epoch"], "the new epoch: {notice}");
    for n in 2..=5 {
        let m = client.recv_msg().await;
        assert_eq!(
            (m["data"]["n"].as_u64(), m["offset"].as_u64()),
            (Some(n), Some(n - 1)),
            "{m}"
        );
        assert_eq!(m["epoch"], epoch, "{m}");
    }
    client.expect_silence(Duration::from_millis(300)).await;
    a.stop().await;
    b.stop().await;
}

/// The same when only this instance's pub/sub connection drops (Redis keeps its streams):
/// what the other instance kept meanwhile arrives, in the same epoch, once.
#[tokio::test]
async fn a_connected_client_gets_what_its_instance_missed_while_its_subscription_was_down() {
    let redis = RedisServer::start().await;
    let slow_back = slow_to_come_back(&redis);
    let mut c = base_config();
    c.history.size = 100;
    let a = start_with(instance_on(slow_back, c)).await;
    let (mut client, _, room) = joined(&a, None).await;
    // b publishes, and holds no subscription of its own that a kill would take.
    let b = start_with(instance(&redis, 100, None)).await;
    assert_eq!(publish(&b, 1).await, Some(1));
    assert_eq!(client.recv_msg().await["data"]["n"], 1);
    kill_subscriptions(&redis).await;
    wait_for(|| !a.server.bus_status().connected).await;
    for n in 2..=4 {
        assert_eq!(publish(&b, n).await, Some(n));
    }
    wait_for(|| a.server.bus_status().connected).await;
    assert_eq!(publish(&b, 5).await, Some(5));
    for n in 2..=5 {
        let m = client.recv_msg().await;
        assert_eq!(
            (m["data"]["n"].as_u64(), m["offset"].as_u64()),
            (Some(n), Some(n)),
            "{m}"
        );
        assert_eq!(m["epoch"], room["epoch"]);
    }
    client.expect_silence(Duration::from_millis(300)).await;
    a.stop().await;
    b.stop().await;
}

/// When the store no longer keeps all that an instance missed while its subscription was
/// down (more than `--history-size`), a client that asked for positions is told, as a
/// recovery would tell it: `recovered` with `recovered: false` and where the stream stands,
/// then live delivery goes on.
#[tokio::test]
async fn a_catch_up_the_store_cannot_fill_is_reported_to_the_client() {
    let redis = RedisServer::start().await;
    let slow_back = slow_to_come_back(&redis);
    let mut c = base_config();
    c.history.size = 2;
    let a = start_with(instance_on(slow_back, c)).await;
    let (mut client, _, room) = joined(&a, None).await;
    let b = start_with(instance(&redis, 2, None)).await;
    assert_eq!(publish(&b, 1).await, Some(1));
    assert_eq!(client.recv_msg().await["data"]["n"], 1);
    kill_subscriptions(&redis).await;
    wait_for(|| !a.server.bus_status().connected).await;
    for n in 2..=5 {
        assert_eq!(publish(&b, n).await, Some(n));
    }
    wait_for(|| a.server.bus_status().connected).await;
    let notice = client.recv_msg().await;
    assert_eq!(notice["event"], "recovered", "{notice}");
    let state = &notice["data"]["streams"][0];
    assert_eq!(
        (
            &state["stream"],
            &state["recovered"],
            &state["offset"],
            &state["epoch"]
        ),
        (&json!(STREAM), &json!(false), &json!(5), &room["epoch"]),
        "{notice}"
    );
    assert_eq!(publish(&b, 6).await, Some(6));
    let m = client.recv_msg().await;
    assert_eq!(
        (&m["data"]["n"], &m["offset"]),
        (&json!(6), &json!(6)),
        "{m}"
    );
    client.expect_silence(Duration::from_millis(300)).await;
    a.stop().await;
    b.stop().await;
}

/// The same in a room with room keys: the notice is a system event, so it reaches a room-key
/// member in its own session (a room record carries application envelopes only, and the
/// member would refuse one holding `recovered`), and the room's publications go on as room
/// records.
#[tokio::test]
async fn a_catch_up_gap_reaches_a_room_key_member_in_its_own_session() {
    let redis = RedisServer::start().await;
    let slow_back = slow_to_come_back(&redis);
    let mut c = config_with(Some(identity(7)), HandshakeConfig::default().rekey_after);
    c.history.size = 2;
    c.room_keys.rooms = vec!["orders:*".to_owned()];
    let a = start_with(instance_on(slow_back, c)).await;
    let b = start_with(instance(&redis, 2, None)).await;

    let mut member = a.client().await;
    let (hello, hs) = member
        .hardened_hello(HandshakeConfig::hardened(vec![identity(7).public_key()]))
        .await;
    member
        .confirm_hello(&hello, hs)
        .await
        .expect("server hello");
    member
        .emit(
            "authenticate",
            json!({"token": "quinn", "roomKeys": "sealwire-room-v1", "recover": {}}),
        )
        .await;
    assert_eq!(member.recv_msg().await["event"], "connected");
    assert_eq!(member.recv_msg().await["event"], "recovered");
    member
        .emit("join", json!({"rooms": [ROOM], "recover": {}}))
        .await;
    // A room record as it came; anything else must come in the member's own session
    // (`open` fails the test otherwise) and is opened. The room-key grants are skipped.
    let mut next = async || loop {
        let frame = member.recv_json().await;
        if frame["event"] == "room-encrypted" {
            return frame;
        }
        let m = member.open(frame);
        if m["event"] != "room-key" {
            return m;
        }
    };
    let verdict = next().await;
    assert_eq!(verdict["event"], "recovered", "{verdict}");
    let epoch = verdict["data"]["streams"][0]["epoch"].clone();
    assert_eq!(publish(&b, 1).await, Some(1));
    assert_eq!(next().await["event"], "room-encrypted");

    kill_subscriptions(&redis).await;
    wait_for(|| !a.server.bus_status().connected).await;
    for n in 2..=5 {
        assert_eq!(publish(&b, n).await, Some(n));
    }
    wait_for(|| a.server.bus_status().connected).await;
    let notice = next().await;
    assert_eq!(notice["event"], "recovered", "{notice}");
    let state = &notice["data"]["streams"][0];
    assert_eq!(
        (
            &state["stream"],
            &state["recovered"],
            &state["offset"],
            &state["epoch"]
        ),
        (&json!(STREAM), &json!(false), &json!(5), &epoch),
        "{notice}"
    );
    assert_eq!(publish(&b, 6).await, Some(6));
    assert_eq!(next().await["event"], "room-encrypted");
    a.stop().await;
    b.stop().await;
}

/// Counts the entries the server's reads take out of Redis (the real store underneath).
struct Counting {
    inner: sealwire::bus::RedisHistory,
    entries: Arc<AtomicUsize>,
}

impl HistoryStore for Counting {
    fn append(
        &self,
        stream: &str,
        envelope: sealwire::protocol::BusEnvelope,
    ) -> BoxFuture<'_, Result<sealwire::protocol::Position, HistoryError>> {
        self.inner.append(stream, envelope)
    }

    fn read(
        &self,
        stream: &str,
        since: u64,
        limit: usize,
        create: bool,
    ) -> BoxFuture<'_, Result<KeptPage, HistoryError>> {
        let read = self.inner.read(stream, since, limit, create);
        Box::pin(async move {
            let page = read.await?;
            self.entries.fetch_add(page.entries.len(), Ordering::SeqCst);
            Ok(page)
        })
    }

    fn read_since(
        &self,
        stream: &str,
        from: (u64, &str),
        limit: usize,
        create: bool,
    ) -> BoxFuture<'_, Result<KeptPage, HistoryError>> {
        let read = self.inner.read_since(stream, from, limit, create);
        Box::pin(async move {
            let page = read.await?;
            self.entries.fetch_add(page.entries.len(), Ordering::SeqCst);
            Ok(page)
        })
    }
}

/// A recovery that would be a gap (another epoch, an unheld position, or further behind than
/// the history holds) costs Redis no read of the publications: the read script answers where
/// the stream stands and leaves the entries out. One that can be filled reads what it replays.
#[tokio::test]
async fn a_stale_position_reads_no_publication_from_redis() {
    let redis = RedisServer::start().await;
    let mut c = base_config();
    c.history.size = 5;
    c.history.rooms = vec!["orders:*".to_owned()];
    let bus = RedisBus::new(RedisBusConfig::new(redis.url())).expect("bus");
    let entries = Arc::new(AtomicUsize::new(0));
    let store = Counting {
        inner: bus.history_store(5, c.history.ttl).expect("store"),
        entries: Arc::clone(&entries),
    };
    let s = start_with(
        builder(c)
            .validate_rooms(GlobRooms::new(["orders:*"]).expect("glob"))
            .bus(bus)
            .history_store(store),
    )
    .await;
    let (mut live, _, room) = joined(&s, None).await;
    let epoch = room["epoch"].as_str().expect("epoch").to_owned();
    for n in 1..=9 {
        publish(&s, n).await;
        live.recv_msg().await;
    }
    // Kept: 5..=9 (five).
    for (position, why) in [
        (json!({"offset": 4, "epoch": "another"}), "another epoch"),
        (json!({"offset": 0, "epoch": ""}), "an unheld position"),
        (
            json!({"offset": 3, "epoch": epoch}),
            "further behind than kept",
        ),
    ] {
        let before = entries.load(Ordering::SeqCst);
        let (_c, replayed, room) = joined(&s, Some(position)).await;
        assert_eq!(room["recovered"], false, "{why}: {room}");
        assert!(replayed.is_empty(), "{why}");
        assert_eq!(
            entries.load(Ordering::SeqCst),
            before,
            "{why}: entries were read"
        );
    }
    let before = entries.load(Ordering::SeqCst);
    let (_c, replayed, room) = joined(&s, Some(json!({"offset": 6, "epoch": epoch}))).await;
    assert_eq!(room["recovered"], true, "{room}");
    assert_eq!(replayed.len(), 3);
    assert_eq!(
        entries.load(Ordering::SeqCst),
        before + 3,
        "what it replays"
    );
    s.stop().await;
}
