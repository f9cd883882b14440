//! Rooms, users and the delivery API: default rooms, validated joins, leave, limits,
//! exclude, broadcast scope, multi-session users, `send()` routing and index cleanup.

mod common;

use sealwire::compat::IgnisSend;
use sealwire::publish::Publish;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sealwire::server::{ClientInfo, GlobRooms};
use serde_json::json;

const QUIET: Duration = Duration::from_millis(150);

fn globs(patterns: &[&str]) -> GlobRooms {
    GlobRooms::new(patterns).expect("glob")
}

fn rooms_of(s: &TestServer, c: &WsClient) -> Vec<String> {
    s.server.client_rooms(&c.id()).expect("known client")
}

#[tokio::test]
async fn authenticated_clients_join_their_own_room_and_the_default_rooms() {
    let s = start(base_config()).await;
    let (c, _) = s.plain("alice").await;
    let mut expected = vec![c.id(), "ws-default".into(), "ws-notification".into()];
    expected.sort();
    assert_eq!(rooms_of(&s, &c), expected);
    s.stop().await;

    let mut cfg = base_config();
    cfg.default_rooms = vec!["lobby".into()];
    let s = start(cfg).await;
    let (c, _) = s.plain("bob").await;
    let mut expected = vec![c.id(), "lobby".into()];
    expected.sort();
    assert_eq!(rooms_of(&s, &c), expected);
    // The own-id room reaches the client.
    s.server
        .to_room(c.id())
        .emit("own", &json!(1))
        .await
        .expect("send");
    let mut c = c;
    assert_eq!(c.recv_json().await, json!({"event": "own", "data": 1}));
    s.stop().await;
}

#[tokio::test]
async fn joins_go_through_the_glob_validator() {
    let s = start_with(builder(base_config()).validate_rooms(globs(&["chat-*", "news"]))).await;
    let (mut c, _) = s.plain("alice").await;
    c.emit(
        "join",
        json!({"rooms": ["chat-1", "secret", "news", "chat-2"]}),
    )
    .await;
    c.sync().await;
    let rooms = rooms_of(&s, &c);
    for r in ["chat-1", "chat-2", "news"] {
        assert!(rooms.contains(&r.to_owned()), "{r} in {rooms:?}");
    }
    assert!(!rooms.contains(&"secret".to_owned()));
    s.stop().await;
}

#[tokio::test]
async fn joins_go_through_a_closure_validator() {
    // Users may join only rooms prefixed with their own user id.
    let validator = |client: Arc<ClientInfo>, rooms: Vec<String>| async move {
        rooms
            .into_iter()
            .filter(|r| r.starts_with(&format!("{}:", client.user_id)))
            .collect::<Vec<_>>()
    };
    let s = start_with(builder(base_config()).validate_rooms(validator)).await;
    let (mut c, _) = s.plain("alice").await;
    c.emit("join", json!({"rooms": ["alice:inbox", "bob:inbox"]}))
        .await;
    c.sync().await;
    let rooms = rooms_of(&s, &c);
    assert!(rooms.contains(&"alice:inbox".to_owned()));
    assert!(!rooms.contains(&"bob:inbox".to_owned()));
    s.stop().await;
}

#[tokio::test]
async fn without_a_validator_clients_cannot_join() {
    let s = start_with(builder(base_config())).await;
    let (mut c, _) = s.plain("alice").await;
    let before = rooms_of(&s, &c);
    c.emit("join", json!({"rooms": ["anything"]})).await;
    c.sync().await;
    assert_eq!(rooms_of(&s, &c), before);
    s.stop().await;
}

#[tokio::test]
async fn room_names_are_checked_before_the_validator() {
    let s = start_with(builder(base_config()).validate_rooms(globs(&["*"]))).await;
    let (mut c, _) = s.plain("alice").await;
    let before = rooms_of(&s, &c);
    let long = "r".repeat(257);
    c.emit(
        "join",
        json!({"rooms": ["", long, "ws:internal", "ws:broadcast"]}),
    )
    .await;
    c.sync().await;
    assert_eq!(rooms_of(&s, &c), before);
    let max = "é".repeat(256);
    c.emit("join", json!({"rooms": [max]})).await;
    c.sync().await;
    assert!(rooms_of(&s, &c).contains(&max));
    // Malformed payloads get an error, not a close.
    c.emit("join", json!({"rooms": "not-a-list"})).await;
    assert_eq!(
        c.recv_json().await,
        json!({"event": "error", "data": {"message": "Invalid rooms"}})
    );
    s.stop().await;
}

#[tokio::test]
async fn leave_only_affects_joined_rooms() {
    let s = start_with(builder(base_config()).validate_rooms(globs(&["*"]))).await;
    let (mut c, _) = s.plain("alice").await;
    let (other, _) = s.plain("bob").await;
    c.emit("join", json!({"rooms": ["a", "b"]})).await;
    c.emit(
        "leave",
        json!({"rooms": ["a", "never-joined", other.id(), c.id()]}),
    )
    .await;
    c.sync().await;
    let rooms = rooms_of(&s, &c);
    assert!(!rooms.contains(&"a".to_owned()));
    assert!(rooms.contains(&"b".to_owned()));
    // The own-id room cannot be left; the other client's room is untouched.
    assert!(rooms.contains(&c.id()));
    assert!(rooms_of(&s, &other).contains(&other.id()));
    assert!(!rooms.contains(&"never-joined".to_owned()));
    // The emptied room is pruned from the index.
    assert_eq!(
        s.server
            .to_room("a")
            .emit("x", &json!(1))
            .await
            .expect("send")
            .local_recipients,
        0
    );
    s.stop().await;
}

#[tokio::test]
async fn rooms_per_client_are_capped() {
    let mut cfg = base_config();
    cfg.max_rooms_per_client = 5;
    let s = start_with(builder(cfg).validate_rooms(globs(&["*"]))).await;
    let (mut c, _) = s.plain("alice").await;
    // Own id + two default rooms = 3; two more fit.
    c.emit("join", json!({"rooms": ["r1", "r2", "r3", "r4"]}))
        .await;
    c.sync().await;
    let rooms = rooms_of(&s, &c);
    assert_eq!(rooms.len(), 5, "{rooms:?}");
    assert!(!rooms.contains(&"r3".to_owned()) && !rooms.contains(&"r4".to_owned()));
    // Leaving frees a slot.
    c.emit("leave", json!({"rooms": ["r1"]})).await;
    c.emit("join", json!({"rooms": ["r3"]})).await;
    c.sync().await;
    assert!(rooms_of(&s, &c).contains(&"r3".to_owned()));
    s.stop().await;
}

#[tokio::test]
async fn send_to_room_honours_exclude() {
    let s = start(base_config()).await;
    let (mut a, _) = s.plain("a").await;
    let (mut b, _) = s.encrypted("b").await;
    let (mut c, _) = s.plain("c").await;
    let n = s
        .server
        .to_room("ws-default")
        .except_all(&[c.id()])
        .emit("r", &json!("x"))
        .await
        .expect("send");
    assert_eq!(n.local_recipients, 2);
    assert_eq!(a.recv_msg().await, json!({"event": "r", "data": "x"}));
    assert_eq!(b.recv_msg().await, json!({"event": "r", "data": "x"}));
    // The next thing c sees is the marker, not the room message.
    s.server
        .to_client(c.id())
        .emit("marker", &json!(null))
        .await
        .expect("send");
    assert_eq!(c.recv_msg().await["event"], "marker");
    s.stop().await;
}

#[tokio::test]
async fn broadcast_honours_exclude_and_skips_unauthenticated_clients() {
    let s = start(base_config()).await;
    let (mut a, _) = s.plain("a").await;
    let (mut b, _) = s.encrypted("b").await;
    let (mut excluded, _) = s.plain("x").await;
    let mut pending = s.client().await;
    wait_for(|| s.server.counts().clients == 4).await;
    let n = s
        .server
        .to_all()
        .except_all(&[excluded.id()])
        .emit("all", &json!(1))
        .await
        .expect("send");
    assert_eq!(n.local_recipients, 2);
    assert_eq!(a.recv_msg().await, json!({"event": "all", "data": 1}));
    assert_eq!(b.recv_msg().await, json!({"event": "all", "data": 1}));
    s.server
        .to_client(excluded.id())
        .emit("marker", &json!(null))
        .await
        .expect("send");
    assert_eq!(excluded.recv_msg().await["event"], "marker");
    // The unauthenticated client got nothing: its first frame is `connected`.
    pending.expect_silence(QUIET).await;
    pending.authenticate("late").await;
    s.server
        .to_client(pending.id())
        .emit("marker", &json!(null))
        .await
        .expect("send");
    assert_eq!(pending.recv_msg().await["event"], "marker");
    s.stop().await;
}

#[tokio::test]
async fn send_to_user_reaches_every_session() {
    let s = start(base_config()).await;
    let (mut u1, _) = s.plain("u").await;
    let (mut u2, _) = s.encrypted("u").await;
    let (mut v, _) = s.plain("v").await;
    assert_eq!(s.server.counts().users, 2);
    let n = s
        .server
        .to_user("u")
        .emit("dm", &json!("hi"))
        .await
        .expect("send");
    assert_eq!(n.local_recipients, 2);
    assert_eq!(u1.recv_msg().await, json!({"event": "dm", "data": "hi"}));
    assert_eq!(u2.recv_msg().await, json!({"event": "dm", "data": "hi"}));
    s.server
        .to_client(v.id())
        .emit("marker", &json!(null))
        .await
        .expect("send");
    assert_eq!(v.recv_msg().await["event"], "marker");
    assert_eq!(
        s.server
            .to_user("nobody")
            .emit("dm", &json!(1))
            .await
            .expect("send")
            .local_recipients,
        0
    );
    s.stop().await;
}

#[tokio::test]
async fn send_routes_by_destination() {
    let mut cfg = base_config();
    cfg.default_rooms = vec!["lobby".into()];
    let s = start_with(builder(cfg).validate_rooms(globs(&["team"]))).await;
    let (mut a, _) = s.plain("a").await;
    let (mut b, _) = s.encrypted("b").await;
    b.emit("join", json!({"rooms": ["team"]})).await;
    b.sync().await;

    // No destination: everyone.
    assert_eq!(
        s.server
            .send(None, "e", &json!(0))
            .await
            .expect("send")
            .local_recipients,
        2
    );
    assert_eq!(a.recv_msg().await["data"], 0);
    assert_eq!(b.recv_msg().await["data"], 0);
    // A local client id: that client only.
    assert_eq!(
        s.server
            .send(Some(&a.id()), "e", &json!(1))
            .await
            .expect("send")
            .local_recipients,
        1
    );
    assert_eq!(a.recv_msg().await["data"], 1);
    // A local room: its members.
    assert_eq!(
        s.server
            .send(Some("team"), "e", &json!(2))
            .await
            .expect("send")
            .local_recipients,
        1
    );
    assert_eq!(b.recv_msg().await["data"], 2);
    // Anything else: nobody locally (it is published for other instances).
    assert_eq!(
        s.server
            .send(Some("unknown"), "e", &json!(3))
            .await
            .expect("send")
            .local_recipients,
        0
    );
    s.server
        .to_all()
        .emit("end", &json!(null))
        .await
        .expect("send");
    assert_eq!(a.recv_msg().await["event"], "end");
    assert_eq!(b.recv_msg().await["event"], "end");
    // Reserved and invalid event names are refused.
    assert!(s.server.send(None, "connected", &json!(1)).await.is_err());
    assert!(s.server.send(None, "encrypted", &json!(1)).await.is_err());
    assert!(s.server.send(None, "error", &json!(1)).await.is_err());
    assert!(s.server.send(None, "hello", &json!(1)).await.is_err());
    assert!(s.server.send(None, "", &json!(1)).await.is_err());
    s.stop().await;
}

#[tokio::test]
async fn indexes_are_cleaned_up_on_disconnect() {
    let s = start_with(builder(base_config()).validate_rooms(globs(&["*"]))).await;
    let mut clients = Vec::new();
    for i in 0..6u32 {
        let user = format!("user-{}", i % 3);
        let (mut c, _) = if i.is_multiple_of(2) {
            s.plain(&user).await
        } else {
            s.encrypted(&user).await
        };
        c.emit("join", json!({"rooms": [format!("room-{i}"), "shared"]}))
            .await;
        c.sync().await;
        clients.push(c);
    }
    let counts = s.server.counts();
    assert_eq!(counts.clients, 6);
    assert_eq!(counts.authenticated, 6);
    assert_eq!(counts.encrypted, 3);
    assert_eq!(counts.users, 3);
    // 6 own-id + 2 default + 6 room-i + shared.
    assert_eq!(counts.rooms, 15);
    // Close some politely, drop the rest abruptly.
    for (i, mut c) in clients.into_iter().enumerate() {
        if i.is_multiple_of(2) {
            c.ws.close(None).await.expect("close");
        }
    }
    wait_for(|| s.server.counts() == sealwire::server::Counts::default()).await;
    assert!(s.server.clients().is_empty());
    assert_eq!(
        s.server
            .to_user("user-0")
            .emit("x", &json!(1))
            .await
            .expect("send")
            .local_recipients,
        0
    );
    assert_eq!(
        s.server
            .to_room("shared")
            .emit("x", &json!(1))
            .await
            .expect("send")
            .local_recipients,
        0
    );
    s.stop().await;
}

/// Every client is in the room of its own id, and `send(destination)` routes an id that is not
/// a local client to the room of that name. If another client could join that room, a send to
/// the id from an instance where the client is not local would reach it too.
#[tokio::test]
async fn nobody_can_join_the_room_of_another_client_id() {
    let hub = sealwire::server::LocalBus::new();
    let one = start_with(
        builder(base_config())
            .validate_rooms(globs(&["*"]))
            .bus(hub.attach()),
    )
    .await;
    let two = start_with(
        builder(base_config())
            .validate_rooms(globs(&["*"]))
            .bus(hub.attach()),
    )
    .await;
    let (mut a, _) = one.plain("alice").await;
    let (mut b, _) = two.plain("mallory").await;
    let a_id = a.id();
    // Every spelling of a UUID is reserved, also on the instance where alice is not local.
    b.emit(
        "join",
        json!({"rooms": [
            a_id.clone(),
            a_id.to_uppercase(),
            a_id.replace('-', ""),
            format!("{{{a_id}}}"),
            "open",
        ]}),
    )
    .await;
    b.sync().await;
    let mut expected = vec![
        b.id(),
        "open".into(),
        "ws-default".into(),
        "ws-notification".into(),
    ];
    expected.sort();
    assert_eq!(rooms_of(&two, &b), expected);
    // Nor through the application API.
    assert_eq!(
        two.server.join(&b.id(), std::slice::from_ref(&a_id)),
        Some(vec![])
    );
    assert_eq!(rooms_of(&two, &b), expected);

    // On instance two, alice's id is not a local client: it resolves to her room, which on
    // instance one holds her alone.
    assert_eq!(
        two.server.resolve_destination(Some(&a_id)),
        sealwire::protocol::BusTarget::Room(a_id.clone())
    );
    assert_eq!(
        two.server
            .send(Some(&a_id), "secret", &json!(1))
            .await
            .expect("send")
            .local_recipients,
        0
    );
    assert_eq!(a.recv_msg().await, json!({"event": "secret", "data": 1}));
    one.server
        .send(Some(&a_id), "secret", &json!(2))
        .await
        .expect("send");
    assert_eq!(a.recv_msg().await, json!({"event": "secret", "data": 2}));
    // Mallory got neither: the next thing she receives is this broadcast.
    two.server
        .to_all()
        .emit("end", &json!(null))
        .await
        .expect("send");
    assert_eq!(b.recv_msg().await["event"], "end");
    one.stop().await;
    two.stop().await;
}

/// Servers on clones of one `LocalBus` are separate members of its hub: each reaches the
/// others' clients (room, user, broadcast) but hears nothing back from itself, and one
/// server's shutdown leaves the others connected to each other.
#[tokio::test]
async fn servers_on_clones_of_one_local_bus_are_separate_members() {
    let hub = sealwire::server::LocalBus::new();
    let cfg = || builder(base_config()).validate_rooms(globs(&["*"]));
    let one = start_with(cfg().bus(hub.clone())).await;
    let two = start_with(cfg().bus(hub.clone())).await;
    let three = start_with(cfg().bus(hub.clone())).await;
    let (mut a, _) = one.plain("alice").await;
    let (mut b, _) = two.plain("bob").await;
    let (mut c, _) = three.plain("carol").await;
    for client in [&mut a, &mut b, &mut c] {
        client.emit("join", json!({"rooms": ["lobby"]})).await;
        client.sync().await;
    }

    // Each message reaches every instance's client exactly once: locally on the sender's
    // instance, over the hub on the others, never echoed back to the sender's instance.
    one.server
        .to_room("lobby")
        .emit("room", &json!(1))
        .await
        .expect("send");
    two.server
        .to_user("alice")
        .emit("user", &json!(2))
        .await
        .expect("send");
    three
        .server
        .to_all()
        .emit("all", &json!(3))
        .await
        .expect("send");
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(client.recv_msg().await, json!({"event": "room", "data": 1}));
    }
    assert_eq!(a.recv_msg().await, json!({"event": "user", "data": 2}));
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(client.recv_msg().await, json!({"event": "all", "data": 3}));
        assert!(client.sync().await.is_empty(), "a message arrived twice");
    }

    // Stopping one leaves the other two exchanging messages.
    one.stop().await;
    two.server
        .to_room("lobby")
        .emit("after", &json!(4))
        .await
        .expect("send");
    three
        .server
        .to_user("bob")
        .emit("after", &json!(5))
        .await
        .expect("send");
    assert_eq!(b.recv_msg().await, json!({"event": "after", "data": 4}));
    assert_eq!(b.recv_msg().await, json!({"event": "after", "data": 5}));
    assert_eq!(c.recv_msg().await, json!({"event": "after", "data": 4}));
    assert!(b.sync().await.is_empty());
    assert!(c.sync().await.is_empty());
    two.stop().await;
    three.stop().await;
}

#[tokio::test]
async fn room_lists_are_bounded_and_deduplicated() {
    let mut cfg = base_config();
    cfg.max_rooms_per_client = 8;
    let s = start_with(builder(cfg).validate_rooms(globs(&["*"]))).await;
    let (mut c, _) = s.plain("alice").await;
    let before = rooms_of(&s, &c);
    // Longer than a client may ever be in: refused whole, before any other work.
    let many: Vec<String> = (0..9).map(|i| format!("r{i}")).collect();
    for event in ["join", "leave"] {
        c.emit(event, json!({ "rooms": many })).await;
        assert_eq!(
            c.recv_json().await,
            json!({"event": "error", "data": {"message": "Too many rooms"}})
        );
    }
    assert_eq!(rooms_of(&s, &c), before);
    // A huge list is refused as cheaply (a 16,000-name leave used to be de-duplicated in
    // quadratic time); the connection stays open.
    let huge: Vec<String> = (0..16_000).map(|i| format!("{i}")).collect();
    c.emit("leave", json!({ "rooms": huge })).await;
    assert_eq!(
        c.recv_json().await["data"]["message"],
        json!("Too many rooms")
    );
    // Duplicates count once: 3 rooms already, these are 2 distinct ones.
    c.emit("join", json!({"rooms": ["x", "x", "y", "x", "y"]}))
        .await;
    c.sync().await;
    let rooms = rooms_of(&s, &c);
    assert_eq!(rooms.len(), before.len() + 2, "{rooms:?}");
    assert!(rooms.contains(&"x".to_owned()) && rooms.contains(&"y".to_owned()));
    c.emit("leave", json!({"rooms": ["x", "x", "x"]})).await;
    c.sync().await;
    assert_eq!(rooms_of(&s, &c).len(), before.len() + 1);
    s.stop().await;
}

/// A target no client can have (a reserved or empty room name, an empty user or client id)
/// is refused when the message is sent, not published to nobody without a word; the same
/// holds for every publisher (the admin API answers 400 for such rooms).
#[tokio::test]
async fn a_target_no_client_can_have_is_refused() {
    let s = start(base_config()).await;
    let sends = [
        s.server.to_room("").emit("n", &1).await,
        s.server.to_room("ws:broadcast").emit("n", &1).await,
        s.server.to_room("x".repeat(300)).emit("n", &1).await,
        s.server.to_user("").emit("n", &1).await,
        s.server.to_client("").emit("n", &1).await,
    ];
    for (i, sent) in sends.into_iter().enumerate() {
        assert!(
            matches!(
                sent,
                Err(sealwire::PublishError::Message(
                    sealwire::protocol::SendError::InvalidTarget(_)
                ))
            ),
            "{i}: {sent:?}"
        );
    }
    let (_c, _) = s.plain("u").await;
    let sent = s
        .server
        .to_room("ws-default")
        .emit("n", &1)
        .await
        .expect("a valid room");
    assert_eq!(sent.local_recipients, 1);
    s.stop().await;
}
