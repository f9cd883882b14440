//! Room keys (`docs/PROTOCOL.md` §14) over real sockets: members that opt in get one grant per
//! room epoch inside their own session and the same sealed record for every publication; a
//! new epoch on every join and leave (a leaver's keys open nothing sent after it left, a
//! joiner's nothing sent before it joined); a mixed room where every kind of member gets its
//! own kind of frame and no encrypted member ever sees plaintext; two instances on one Redis,
//! with no epoch secret on the bus; and the Rust SDK opting in.

mod common;

use std::time::Duration;

use common::hardened::{config_with, identity};
use common::sdk::next_message;
use common::*;
use sealwire::client::{Client, Encryption};
use sealwire::crypto::room::{BinaryRecord, RoomKeyring};
use sealwire::crypto::{AeadBackend, HandshakeConfig};
use sealwire::publish::Publish;
use sealwire::server::ServerConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "vault:eu";
const MARKER: &str = "plaintext-marker-4242";

fn room_config() -> ServerConfig {
    let mut c = config_with(Some(identity(7)), HandshakeConfig::default().rekey_after);
    c.room_keys.rooms = vec!["vault:*".to_owned()];
    c
}

/// The client side of the hardened profile, pinning the test server's identity.
fn hardened() -> HandshakeConfig {
    HandshakeConfig::hardened(vec![identity(7).public_key()])
}

/// A room-key member speaking the wire protocol by hand, keeping every grant it was sent.
struct Member {
    ws: WsClient,
    keyring: RoomKeyring,
    /// `(room, epoch, key)` of every grant, in order.
    grants: Vec<(String, u64, String)>,
    /// It agreed to binary room records (§14.6): every room record must come in that form,
    /// and one that comes in the other fails the test.
    binary: bool,
}

/// What a member received next.
#[derive(Debug)]
enum Got {
    /// An application message from a room record: the record as the text frame carries it
    /// (a binary record is rewritten in that form, so the same record compares equal in both
    /// forms) and the opened envelope.
    Room(Value, Value),
    /// An application message in a per-client record.
    Own(Value),
}

impl Member {
    /// A member taking room records as text frames.
    async fn join(server: &TestServer, user: &str) -> Self {
        Self::join_as(server, user, false).await
    }

    /// A member taking room records as binary messages (§14.6).
    async fn join_binary(server: &TestServer, user: &str) -> Self {
        Self::join_as(server, user, true).await
    }

    async fn join_as(server: &TestServer, user: &str, binary: bool) -> Self {
        let mut ws = server.client().await;
        let (hello, hs) = ws.hardened_hello(hardened()).await;
        assert_eq!(hello["event"], "hello", "{hello}");
        ws.confirm_hello(&hello, hs).await.expect("server hello");
        let mut auth = json!({"token": user, "roomKeys": "sealwire-room-v1"});
        if binary {
            auth["roomRecords"] = json!("binary");
        }
        ws.emit("authenticate", auth).await;
        let connected = ws.recv_msg().await;
        assert_eq!(connected["event"], "connected", "{connected}");
        assert_eq!(connected["data"]["roomKeys"], "sealwire-room-v1");
        let agreed = connected["data"].get("roomRecords");
        assert_eq!(agreed, binary.then(|| json!("binary")).as_ref());
        ws.id = connected["data"]["id"].as_str().map(str::to_owned);
        Self {
            ws,
            keyring: RoomKeyring::new(),
            grants: Vec::new(),
            binary,
        }
    }

    fn id(&self) -> String {
        self.ws.id()
    }

    /// The next application message; grants on the way are taken.
    async fn next(&mut self) -> Got {
        loop {
            let frame = match self.ws.recv_data().await {
                Message::Binary(bytes) => return self.binary_record(&bytes),
                Message::Text(text) => serde_json::from_str::<Value>(&text).expect("JSON"),
                other => unreachable!("recv_data returns data messages: {other:?}"),
            };
            match frame["event"].as_str() {
                Some("room-encrypted") => {
                    assert!(
                        !self.binary,
                        "a text room record to a binary member: {frame}"
                    );
                    let d = &frame["data"];
                    let pt = self
                        .keyring
                        .open(
                            d["room"].as_str().expect("room"),
                            d["epoch"].as_u64().expect("epoch"),
                            d["seq"].as_u64().expect("seq"),
                            d["ct"].as_str().expect("ct"),
                        )
                        .expect("a room record opens with the latest grant");
                    let inner = serde_json::from_slice(&pt).expect("envelope");
                    return Got::Room(frame, inner);
                }
                Some("encrypted") => {
                    let inner = self.ws.open(frame);
                    if inner["event"] == "room-key" {
                        let d = &inner["data"];
                        let (room, epoch, key) = (
                            d["room"].as_str().expect("room").to_owned(),
                            d["epoch"].as_u64().expect("epoch"),
                            d["key"].as_str().expect("key").to_owned(),
                        );
                        self.keyring
                            .grant(&room, epoch, &key, AeadBackend::default())
                            .expect("grants only move forward");
                        self.grants.push((room, epoch, key));
                        continue;
                    }
                    return Got::Own(inner);
                }
                _ => panic!("plaintext frame reached an encrypted client: {frame}"),
            }
        }
    }

    /// Opens a binary room record; returns it in its text form (see [`Got::Room`]).
    fn binary_record(&mut self, bytes: &[u8]) -> Got {
        assert!(
            self.binary,
            "a binary message to a member that did not agree"
        );
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "plaintext in a binary record"
        );
        let record = BinaryRecord::parse(bytes).expect("a binary room record");
        let pt = self
            .keyring
            .open_binary(&record)
            .expect("a room record opens with the latest grant");
        let raw = json!({"event": "room-encrypted", "data": {
            "room": record.room, "epoch": record.epoch, "seq": record.seq,
            "ct": base64_encode(record.ct),
        }});
        Got::Room(raw, serde_json::from_slice(&pt).expect("envelope"))
    }

    /// The next message, which must come as a room record.
    async fn next_room(&mut self) -> (Value, Value) {
        match self.next().await {
            Got::Room(raw, inner) => (raw, inner),
            Got::Own(inner) => panic!("expected a room record, got {inner}"),
        }
    }
}

/// Whether any of `keys` (grants of `room`) opens the room record `raw`, at any epoch label.
fn any_key_opens(keys: &[(String, u64, String)], raw: &Value) -> bool {
    let d = &raw["data"];
    let (room, epoch, seq, ct) = (
        d["room"].as_str().expect("room"),
        d["epoch"].as_u64().expect("epoch"),
        d["seq"].as_u64().expect("seq"),
        d["ct"].as_str().expect("ct"),
    );
    keys.iter().any(|(_, _, key)| {
        let mut ring = RoomKeyring::new();
        ring.grant(room, epoch, key, AeadBackend::default())
            .expect("grant");
        ring.open(room, epoch, seq, ct).is_ok()
    })
}

async fn publish(server: &TestServer, n: u32) {
    server
        .server
        .to_room(ROOM)
        .emit("order", &json!({"n": n, "note": MARKER}))
        .await
        .expect("publish");
}

#[tokio::test]
async fn members_get_one_record_and_a_new_epoch_on_every_join_and_leave() {
    let s = start(room_config()).await;
    let mut a = Member::join(&s, "alice").await;
    assert!(s.server.join(&a.id(), &[ROOM.to_owned()]).is_some());
    publish(&s, 1).await;
    let (before_join, m1) = a.next_room().await;
    assert_eq!(m1["data"]["n"], 1);

    // A joins B: the next publication is under a new epoch that both hold. (B takes binary
    // records: the same record as A's text one.)
    let mut b = Member::join_binary(&s, "bob").await;
    assert!(s.server.join(&b.id(), &[ROOM.to_owned()]).is_some());
    publish(&s, 2).await;
    let (raw_a, m2) = a.next_room().await;
    let (raw_b, m2b) = b.next_room().await;
    assert_eq!(raw_a, raw_b, "one record, the same bytes for every member");
    assert_eq!((m2["data"]["n"].clone(), m2b), (json!(2), m2.clone()));
    assert!(raw_a["data"]["epoch"].as_u64() > before_join["data"]["epoch"].as_u64());
    // The joiner's key opens nothing sent before it joined.
    assert_eq!(b.grants.len(), 1);
    assert!(!any_key_opens(&b.grants, &before_join));
    assert!(any_key_opens(&a.grants, &before_join));

    // A leaves: B gets the next publication under a new epoch; none of A's keys opens it,
    // and A receives nothing of it.
    assert!(s.server.leave(&a.id(), &[ROOM.to_owned()]).is_some());
    publish(&s, 3).await;
    let (after_leave, m3) = b.next_room().await;
    assert_eq!(m3["data"]["n"], 3);
    assert!(after_leave["data"]["epoch"].as_u64() > raw_b["data"]["epoch"].as_u64());
    assert!(!any_key_opens(&a.grants, &after_leave));
    a.ws.expect_silence(Duration::from_millis(300)).await;

    // No membership change: the epoch stays, the sequence number moves on.
    publish(&s, 4).await;
    let (same, _) = b.next_room().await;
    assert_eq!(same["data"]["epoch"], after_leave["data"]["epoch"]);
    assert_eq!(
        same["data"]["seq"].as_u64(),
        after_leave["data"]["seq"].as_u64().map(|n| n + 1)
    );
    s.stop().await;
}

#[tokio::test]
async fn an_excluded_member_and_a_disconnect() {
    let s = start(room_config()).await;
    let mut a = Member::join(&s, "alice").await;
    let mut b = Member::join(&s, "bob").await;
    for m in [&a, &b] {
        assert!(s.server.join(&m.id(), &[ROOM.to_owned()]).is_some());
    }
    // Excluded from one publication, B still gets the key for the next (a gap in `seq`).
    s.server
        .to_room(ROOM)
        .except(b.id())
        .emit("order", &json!(1))
        .await
        .expect("publish");
    publish(&s, 2).await;
    let (first, _) = a.next_room().await;
    let (second_a, _) = a.next_room().await;
    let (second_b, m) = b.next_room().await;
    assert_eq!(m["data"]["n"], 2);
    assert_eq!(second_a, second_b);
    assert_eq!(first["data"]["epoch"], second_b["data"]["epoch"]);
    // B disconnects: a new epoch for what follows.
    b.ws.ws.close(None).await.expect("close");
    wait_until(|| async { s.server.counts().authenticated == 1 }).await;
    publish(&s, 3).await;
    let (after, _) = a.next_room().await;
    assert!(after["data"]["epoch"].as_u64() > second_a["data"]["epoch"].as_u64());
    assert!(!any_key_opens(&b.grants, &after));
    s.stop().await;
}

#[tokio::test]
async fn a_mixed_room_gives_every_member_its_own_kind_of_frame() {
    let s = start(room_config()).await;
    let (mut plain, _) = s.plain("plain").await;
    let (mut compat, _) = s.encrypted("compat").await;
    let mut own = s.client().await;
    own.authenticate_hardened("hardened", hardened())
        .await
        .expect("hardened login");
    let mut a = Member::join(&s, "alice").await;
    let mut b = Member::join_binary(&s, "bob").await;
    let ids = [plain.id(), compat.id(), own.id(), a.id(), b.id()];
    for id in &ids {
        assert!(s.server.join(id, &[ROOM.to_owned()]).is_some());
    }
    for n in 1..=3 {
        publish(&s, n).await;
    }
    for n in 1..=3 {
        // Plaintext member: the plaintext frame.
        let p = plain.recv_json().await;
        assert_eq!(
            (p["event"].clone(), p["data"]["n"].clone()),
            (json!("order"), json!(n))
        );
        // Per-client encrypted members: `encrypted` records of their own (`open` fails the
        // test on anything else).
        for c in [&mut compat, &mut own] {
            let raw = c.recv_json().await;
            assert_eq!(raw["event"], "encrypted", "{raw}");
            assert!(!raw.to_string().contains(MARKER), "plaintext leaked: {raw}");
            assert_eq!(c.open(raw)["data"]["n"], n);
        }
        // Room-key members: one shared record (A's text frame, B's binary message).
        let (ra, ma) = a.next_room().await;
        let (rb, _) = b.next_room().await;
        assert_eq!(ra, rb);
        assert!(!ra.to_string().contains(MARKER), "plaintext leaked: {ra}");
        assert_eq!(ma["data"]["n"], n);
    }
    // A per-client message to a room-key member still comes in its own record.
    s.server
        .to_client(a.id())
        .emit("direct", &json!(MARKER))
        .await
        .expect("publish");
    match a.next().await {
        Got::Own(inner) => assert_eq!(inner["data"], MARKER),
        Got::Room(raw, _) => panic!("a client message came as a room record: {raw}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn without_the_opt_in_or_outside_the_globs_members_get_their_own_records() {
    // The server uses no room keys: a client that asks is not told it has them.
    let s = start(config_with(None, HandshakeConfig::default().rekey_after)).await;
    let mut ws = s.client().await;
    let (hello, hs) = ws.hardened_hello(HandshakeConfig::hardened(vec![])).await;
    ws.confirm_hello(&hello, hs).await.expect("server hello");
    ws.emit(
        "authenticate",
        json!({"token": "alice", "roomKeys": "sealwire-room-v1"}),
    )
    .await;
    let connected = ws.recv_msg().await;
    assert_eq!(connected["event"], "connected");
    assert!(connected["data"].get("roomKeys").is_none(), "{connected}");
    s.stop().await;

    // A room outside the globs: per-client records, no grant.
    let s = start(room_config()).await;
    let mut a = Member::join(&s, "alice").await;
    assert!(s.server.join(&a.id(), &["other".to_owned()]).is_some());
    s.server
        .to_room("other")
        .emit("order", &json!(1))
        .await
        .expect("publish");
    match a.next().await {
        Got::Own(inner) => assert_eq!(inner["data"], 1),
        Got::Room(raw, _) => panic!("room record outside the globs: {raw}"),
    }
    assert!(a.grants.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn the_rust_sdk_opts_in_and_receives_room_records() {
    let s = start(room_config()).await;
    let pins = vec![identity(7).public_key()];
    let connect = |user: &str, room_keys: bool, binary: bool| {
        Client::builder(s.ws_url())
            .token(user)
            .encryption(Encryption::Hardened {
                pinned_server_keys: pins.clone(),
            })
            .room_keys(room_keys)
            .binary_room_records(binary)
            .capture_raw_frames(true)
            .connect()
    };
    // Room keys with binary records (the default), with text records, and none.
    let (binary, mut binary_events) = connect("alice", true, true).await.expect("connect");
    let (text, mut text_events) = connect("carol", true, false).await.expect("connect");
    let (own, mut own_events) = connect("bob", false, true).await.expect("connect");
    s.wait_authenticated(3).await;
    let clients = [&binary, &text, &own];
    for c in clients {
        let id = c.connection().expect("connected").client_id;
        assert!(s.server.join(&id, &[ROOM.to_owned()]).is_some());
    }
    for n in 1..=2 {
        publish(&s, n).await;
    }
    for n in 1..=2 {
        for events in [&mut binary_events, &mut text_events, &mut own_events] {
            let m = next_message(events).await;
            assert_eq!((m.event.as_str(), m.data["n"].clone()), ("order", json!(n)));
            assert!(m.encrypted);
        }
    }
    // What each got on the wire: the binary member's messages have no text frame to capture;
    // the others' are a room record and the member's own record.
    publish(&s, 3).await;
    let m = next_message(&mut binary_events).await;
    assert_eq!((m.data["n"].clone(), m.raw), (json!(3), None));
    for (events, kind) in [
        (&mut text_events, "room-encrypted"),
        (&mut own_events, "encrypted"),
    ] {
        let m = next_message(events).await;
        let raw: Value = serde_json::from_str(m.raw.as_deref().expect("raw")).expect("json");
        assert_eq!(
            (m.data["n"].clone(), &raw["event"]),
            (json!(3), &json!(kind))
        );
    }
    for c in clients {
        c.close();
    }
    s.stop().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn two_instances_run_their_own_epochs_and_no_secret_crosses_the_bus() {
    use futures_util::StreamExt;
    use sealwire::bus::{RedisBus, RedisBusConfig};
    use std::sync::{Arc, Mutex};

    let redis = common::redis::RedisServer::start().await;
    // Everything published on this Redis, on any channel.
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let mut snoop = redis.client().get_async_pubsub().await.expect("pubsub");
    snoop.psubscribe("*").await.expect("psubscribe");
    let log = Arc::clone(&seen);
    let snooper = tokio::spawn(async move {
        let mut messages = snoop.on_message();
        while let Some(m) = messages.next().await {
            log.lock()
                .expect("log")
                .push(m.get_payload_bytes().to_vec());
        }
    });
    let node = || async {
        let bus = RedisBus::new(RedisBusConfig::new(redis.url())).expect("bus");
        start_with(builder(room_config()).bus(bus)).await
    };
    let (s1, s2) = (node().await, node().await);
    let mut a = Member::join(&s1, "alice").await;
    let mut b = Member::join_binary(&s2, "bob").await;
    assert!(s1.server.join(&a.id(), &[ROOM.to_owned()]).is_some());
    assert!(s2.server.join(&b.id(), &[ROOM.to_owned()]).is_some());
    redis.wait_numsub(&format!("ws:room:{ROOM}"), 2).await;

    for n in 1..=4 {
        // From either instance.
        publish(if n < 4 { &s1 } else { &s2 }, n).await;
        let (raw_a, ma) = a.next_room().await;
        let (raw_b, mb) = b.next_room().await;
        assert_eq!((ma["data"]["n"].clone(), mb), (json!(n), ma.clone()));
        // Each instance sealed for its own members, under its own secret.
        assert!(!any_key_opens(&a.grants, &raw_b));
        assert!(!any_key_opens(&b.grants, &raw_a));
    }
    let keys: Vec<String> = a
        .grants
        .iter()
        .chain(&b.grants)
        .map(|g| g.2.clone())
        .collect();
    assert!(!keys.is_empty());
    // The publications crossed the bus; no epoch secret did (in base64 or raw).
    let seen = seen.lock().expect("log").clone();
    assert!(
        seen.iter()
            .any(|p| String::from_utf8_lossy(p).contains(MARKER))
    );
    for key in &keys {
        let raw = base64_decode(key);
        for payload in &seen {
            assert!(!String::from_utf8_lossy(payload).contains(key.as_str()));
            assert!(!payload.windows(raw.len()).any(|w| w == raw.as_slice()));
        }
    }
    snooper.abort();
    s1.stop().await;
    s2.stop().await;
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(feature = "redis")]
fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

/// In a room that also keeps history, members that did not ask for positions still get the
/// one shared room record (carrying the room stream's position), not per-client records.
#[tokio::test]
async fn a_room_with_history_still_sends_one_record_to_every_member() {
    let mut config = room_config();
    config.history.rooms = vec!["vault:*".to_owned()];
    let s = start(config).await;
    let mut a = Member::join(&s, "alice").await;
    let mut b = Member::join_binary(&s, "bob").await;
    for m in [&a, &b] {
        assert!(s.server.join(&m.id(), &[ROOM.to_owned()]).is_some());
    }
    publish(&s, 1).await;
    let (raw_a, m_a) = a.next_room().await;
    let (raw_b, m_b) = b.next_room().await;
    assert_eq!(raw_a, raw_b, "one record, the same bytes for every member");
    assert_eq!(m_a, m_b);
    assert_eq!(m_a["data"]["n"], 1);
    assert_eq!(m_a["stream"], format!("room:{ROOM}"), "{m_a}");
    assert_eq!(m_a["offset"], 1);
    s.stop().await;
}
