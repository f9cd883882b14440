//! Message history and recovery on reconnect, over real WebSockets: positions only for
//! clients that ask, exactly-once in-order replay sealed under the new session, the switch to
//! live delivery under concurrent publishing, and honest `recovered: false` answers.

mod common;

use std::time::Duration;

use common::*;
use sealwire::crypto::{ClientHandshake, HandshakeConfig};
use sealwire::publish::Publish;
use sealwire::server::{GlobRooms, ServerConfig};
use serde_json::{Value, json};

const ROOM: &str = "orders:1";
const STREAM: &str = "room:orders:1";

fn config(size: usize) -> ServerConfig {
    let mut c = base_config();
    c.history.rooms = vec!["orders:*".to_owned()];
    c.history.users = true;
    c.history.size = size;
    c
}

async fn server(config: ServerConfig) -> TestServer {
    start_with(builder(config).validate_rooms(GlobRooms::new(["orders:*"]).expect("glob"))).await
}

/// Connects and authenticates with `recover`, encrypted (compatibility profile) or not.
/// Returns the client and the `connected` frame; the `recovered` answer is left to read.
async fn connect(s: &TestServer, user: &str, recover: Value, encrypted: bool) -> WsClient {
    let mut c = s.client().await;
    let hs = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
    let mut data = json!({"token": user, "recover": recover});
    if encrypted {
        data["publicKey"] = json!(hs.public_key_base64());
    }
    c.send_json(&json!({"event": "authenticate", "data": data}))
        .await;
    let connected = c.recv_json().await;
    assert_eq!(connected["event"], "connected", "{connected}");
    let d = &connected["data"];
    c.id = d["id"].as_str().map(str::to_owned);
    if encrypted {
        let session = hs
            .finish(
                d["serverPublicKey"].as_str().expect("key"),
                d["salt"].as_str().expect("salt"),
            )
            .expect("session");
        c.session = Some(session);
    }
    c
}

/// Reads application messages until `recovered`; returns them and the answer's streams.
async fn until_recovered(c: &mut WsClient) -> (Vec<Value>, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let m = c.recv_msg().await;
        if m["event"] == "recovered" {
            let streams = m["data"]["streams"].as_array().cloned().unwrap_or_default();
            return (before, streams);
        }
        before.push(m);
    }
}

fn stream<'a>(streams: &'a [Value], name: &str) -> &'a Value {
    streams
        .iter()
        .find(|s| s["stream"] == name)
        .unwrap_or_else(|| panic!("no {name} in {streams:?}"))
}

async fn join(c: &mut WsClient, recover: Value) -> Vec<Value> {
    c.emit("join", json!({"rooms": [ROOM], "recover": recover}))
        .await;
    let (before, streams) = until_recovered(c).await;
    assert!(
        before.is_empty(),
        "nothing precedes the join's answer: {before:?}"
    );
    streams
}

async fn publish(s: &TestServer, n: u64) {
    s.server
        .to_room(ROOM)
        .emit("order", &json!({ "n": n }))
        .await
        .expect("publish");
}

#[tokio::test]
async fn positions_reach_only_clients_that_ask() {
    let s = server(config(100)).await;
    let (mut ignis, _) = s.plain("ignis").await;
    ignis.emit("join", json!({"rooms": [ROOM]})).await;
    ignis.sync().await;
    let mut tracked = connect(&s, "tracked", json!({}), false).await;
    let (_, streams) = until_recovered(&mut tracked).await;
    // Its own user stream, with no position asked for: where it starts, no verdict.
    let own = stream(&streams, "user:tracked");
    assert_eq!(own["offset"], 0);
    assert!(own.get("recovered").is_none(), "{own}");
    let streams = join(&mut tracked, json!({})).await;
    assert_eq!(stream(&streams, STREAM)["offset"], 0);

    publish(&s, 1).await;
    let plain = ignis.recv_json().await;
    assert_eq!(
        plain,
        json!({"event": "order", "data": {"n": 1}}),
        "today's frame exactly"
    );
    let m = tracked.recv_msg().await;
    assert_eq!(m["data"]["n"], 1);
    assert_eq!(m["stream"], STREAM);
    assert_eq!(m["offset"], 1);
    assert_eq!(m["epoch"], stream(&streams, STREAM)["epoch"]);
    s.stop().await;
}

/// A publication that skipped a client (`except`) is not replayed to it either: leaving and
/// joining again with its last position does not hand it what it was excluded from, while
/// another member recovering the same stream gets everything.
#[tokio::test]
async fn what_skipped_a_client_is_not_replayed_to_it() {
    let s = server(config(100)).await;
    let mut skipped = connect(&s, "skipped", json!({}), true).await;
    until_recovered(&mut skipped).await;
    let epoch = stream(&join(&mut skipped, json!({})).await, STREAM)["epoch"].clone();
    let mut other = connect(&s, "other", json!({}), false).await;
    until_recovered(&mut other).await;
    join(&mut other, json!({})).await;

    publish(&s, 1).await;
    s.server
        .to_room(ROOM)
        .except(skipped.id())
        .emit("order", &json!({ "n": 2 }))
        .await
        .expect("publish");
    publish(&s, 3).await;
    for n in [1, 3] {
        assert_eq!(skipped.recv_msg().await["data"]["n"], n);
    }
    for n in [1, 2, 3] {
        assert_eq!(other.recv_msg().await["data"]["n"], n);
    }

    let since = json!({ STREAM: {"offset": 0, "epoch": epoch} });
    for c in [&mut skipped, &mut other] {
        c.emit("leave", json!({"rooms": [ROOM]})).await;
        c.sync().await;
        c.emit("join", json!({"rooms": [ROOM], "recover": since}))
            .await;
    }
    let (replayed, streams) = until_recovered(&mut skipped).await;
    assert_eq!(stream(&streams, STREAM)["recovered"], true);
    let ns: Vec<Value> = replayed.iter().map(|m| m["data"]["n"].clone()).collect();
    assert_eq!(ns, vec![json!(1), json!(3)], "the skipped client's replay");
    let (replayed, _) = until_recovered(&mut other).await;
    let ns: Vec<Value> = replayed.iter().map(|m| m["data"]["n"].clone()).collect();
    assert_eq!(
        ns,
        vec![json!(1), json!(2), json!(3)],
        "another member's replay"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_reconnect_replays_what_was_missed_in_order_sealed_once() {
    let s = server(config(1000)).await;
    let mut c = connect(&s, "alice", json!({}), true).await;
    until_recovered(&mut c).await;
    let streams = join(&mut c, json!({})).await;
    let epoch = stream(&streams, STREAM)["epoch"].clone();
    for n in 1..=3 {
        publish(&s, n).await;
    }
    for n in 1..=3 {
        assert_eq!(c.recv_msg().await["offset"], n);
    }
    drop(c);
    // Missed while away: 50 to the room and one to the user.
    for n in 4..=53 {
        publish(&s, n).await;
    }
    s.server
        .to_user("alice")
        .emit("dm", &json!("while away"))
        .await
        .expect("dm");

    // Back, encrypted under a new session: the user stream recovers at authentication...
    let mut c = connect(&s, "alice", json!({}), true).await;
    let (_, streams) = until_recovered(&mut c).await;
    let user = stream(&streams, "user:alice");
    assert_eq!(
        user["recovered"],
        json!(null),
        "no position asked: no verdict"
    );
    let user_epoch = user["epoch"].clone();
    drop(c);
    s.server
        .to_user("alice")
        .emit("dm", &json!("second"))
        .await
        .expect("dm");
    let mut c = connect(
        &s,
        "alice",
        json!({"user:alice": {"offset": 1, "epoch": user_epoch}}),
        true,
    )
    .await;
    let (replayed, streams) = until_recovered(&mut c).await;
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0]["data"], "second");
    let user = stream(&streams, "user:alice");
    assert_eq!(
        (user["recovered"].clone(), user["replayed"].clone()),
        (json!(true), json!(1))
    );

    // ... and the room at the join, each message once, in order, sealed (recv_msg fails on
    // any plaintext frame to an encrypted client).
    c.emit(
        "join",
        json!({"rooms": [ROOM], "recover": {STREAM: {"offset": 3, "epoch": epoch}}}),
    )
    .await;
    let (replayed, streams) = until_recovered(&mut c).await;
    let offsets: Vec<u64> = replayed
        .iter()
        .map(|m| m["offset"].as_u64().expect("offset"))
        .collect();
    assert_eq!(offsets, (4..=53).collect::<Vec<_>>());
    let data: Vec<u64> = replayed
        .iter()
        .map(|m| m["data"]["n"].as_u64().expect("n"))
        .collect();
    assert_eq!(data, (4..=53).collect::<Vec<_>>());
    let room = stream(&streams, STREAM);
    assert_eq!(room["recovered"], true);
    assert_eq!(room["replayed"], 50);
    assert_eq!(room["offset"], 53);
    publish(&s, 54).await;
    assert_eq!(c.recv_msg().await["offset"], 54, "then live");
    s.stop().await;
}

/// The switch from replay to live under concurrent publishing: no duplicate, no gap.
#[tokio::test]
async fn no_gap_and_no_duplicate_at_the_switch_to_live() {
    const TOTAL: u64 = 600;
    let s = server(config(TOTAL as usize)).await;
    let mut c = connect(&s, "bob", json!({}), false).await;
    until_recovered(&mut c).await;
    let streams = join(&mut c, json!({})).await;
    let epoch = stream(&streams, STREAM)["epoch"].clone();
    let publisher = s.server.clone();
    let publishing = tokio::spawn(async move {
        for n in 1..=TOTAL {
            publisher
                .to_room(ROOM)
                .emit("order", &json!({ "n": n }))
                .await
                .expect("publish");
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut last = 0;
    while last < 100 {
        let m = c.recv_msg().await;
        let offset = m["offset"].as_u64().expect("offset");
        assert_eq!(offset, last + 1);
        last = offset;
    }
    drop(c); // cut mid-stream, publishing goes on

    let mut c = connect(&s, "bob", json!({}), false).await;
    until_recovered(&mut c).await;
    c.emit(
        "join",
        json!({"rooms": [ROOM], "recover": {STREAM: {"offset": last, "epoch": epoch}}}),
    )
    .await;
    let (replayed, streams) = until_recovered(&mut c).await;
    assert_eq!(stream(&streams, STREAM)["recovered"], true);
    for m in replayed {
        assert_eq!(m["offset"].as_u64(), Some(last + 1), "replay in order: {m}");
        last += 1;
    }
    while last < TOTAL {
        let m = c.recv_msg().await;
        assert_eq!(
            m["offset"].as_u64(),
            Some(last + 1),
            "live after replay, no gap or duplicate: {m}"
        );
        last += 1;
    }
    publishing.await.expect("publisher");
    s.stop().await;
}

#[tokio::test]
async fn a_gap_that_cannot_be_filled_is_reported_and_live_delivery_goes_on() {
    let s = server(config(5)).await;
    let mut c = connect(&s, "carol", json!({}), false).await;
    until_recovered(&mut c).await;
    let streams = join(&mut c, json!({})).await;
    let epoch = stream(&streams, STREAM)["epoch"].clone();
    drop(c);
    for n in 1..=10 {
        publish(&s, n).await; // only 6..=10 are kept
    }
    let mut c = connect(&s, "carol", json!({}), false).await;
    until_recovered(&mut c).await;
    // Trimmed below the position.
    let streams = join(&mut c, json!({STREAM: {"offset": 2, "epoch": epoch}})).await;
    let room = stream(&streams, STREAM);
    assert_eq!(
        (room["recovered"].clone(), room["offset"].clone()),
        (json!(false), json!(10))
    );
    publish(&s, 11).await;
    assert_eq!(c.recv_msg().await["offset"], 11);
    // Still within what is kept: recovered.
    let mut d = connect(&s, "dave", json!({}), false).await;
    until_recovered(&mut d).await;
    d.emit(
        "join",
        json!({"rooms": [ROOM], "recover": {STREAM: {"offset": 7, "epoch": epoch}}}),
    )
    .await;
    let (replayed, streams) = until_recovered(&mut d).await;
    let offsets: Vec<_> = replayed.iter().map(|m| m["offset"].clone()).collect();
    assert_eq!(offsets, vec![json!(8), json!(9), json!(10), json!(11)]);
    assert_eq!(stream(&streams, STREAM)["recovered"], true);
    s.stop().await;
}

#[tokio::test]
async fn another_epoch_or_no_history_is_never_trusted() {
    let s = server(config(100)).await;
    publish(&s, 1).await;
    let mut c = connect(&s, "erin", json!({}), false).await;
    until_recovered(&mut c).await;
    let streams = join(
        &mut c,
        json!({STREAM: {"offset": 0, "epoch": "from-a-restart"}}),
    )
    .await;
    assert_eq!(stream(&streams, STREAM)["recovered"], false);
    s.stop().await;

    // A server without history answers every asked stream with a gap.
    let s = start_with(
        builder(base_config()).validate_rooms(GlobRooms::new(["orders:*"]).expect("glob")),
    )
    .await;
    let mut c = connect(
        &s,
        "erin",
        json!({"user:erin": {"offset": 4, "epoch": "x"}}),
        false,
    )
    .await;
    let (_, streams) = until_recovered(&mut c).await;
    assert_eq!(stream(&streams, "user:erin")["recovered"], false);
    s.stop().await;
}

/// The Rust SDK tracks positions and recovers on every reconnect by itself: its TCP is cut
/// mid-stream, messages are published while it is away, and it gets each one once, in order,
/// sealed (hardened profile), then a typed `Recovered` per stream, then live messages.
#[tokio::test]
async fn the_rust_sdk_recovers_on_reconnect() {
    use common::proxy::TcpProxy;
    use common::sdk::{event_where, next_message};
    use sealwire::client::{Client, Event};

    let s = server(config(1000)).await;
    let proxy = TcpProxy::start(s.addr).await;
    let (client, mut events) = Client::builder(proxy.ws_url())
        .token("frank")
        .recover(true)
        .reconnect(common::sdk::fast_reconnect())
        .connect()
        .await
        .expect("connect");
    let recovered = |e: &Event| matches!(e, Event::Recovered { .. });
    event_where(&mut events, recovered).await; // after connected: the user stream
    client.join([ROOM]).await.expect("join");
    let Event::Recovered { streams } = event_where(&mut events, recovered).await else {
        unreachable!()
    };
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].stream, STREAM);
    for n in 1..=5 {
        publish(&s, n).await;
    }
    for n in 1..=5 {
        let m = next_message(&mut events).await;
        assert!(m.encrypted);
        assert_eq!(m.position, Some((STREAM.to_owned(), n)));
    }

    proxy.cut();
    wait_for(|| s.server.counts().authenticated == 0).await;
    for n in 6..=25 {
        publish(&s, n).await;
    }
    s.server
        .to_user("frank")
        .emit("dm", &json!("while away"))
        .await
        .expect("dm");

    // Reconnected: the user stream at authentication, the room at the automatic re-join.
    let mut got = Vec::new();
    let mut verdicts = Vec::new();
    while verdicts.len() < 2 {
        match event_where(&mut events, |e| {
            matches!(e, Event::Message(_) | Event::Recovered { .. })
        })
        .await
        {
            Event::Message(m) => {
                assert!(m.encrypted, "replays are sealed");
                got.push((m.event, m.position));
            }
            Event::Recovered { streams } => verdicts.extend(streams),
            _ => unreachable!(),
        }
    }
    let dm = ("dm".to_owned(), Some(("user:frank".to_owned(), 1)));
    let orders: Vec<_> = (6..=25)
        .map(|n| ("order".to_owned(), Some((STREAM.to_owned(), n))))
        .collect();
    assert_eq!(got[0], dm, "the user stream recovers at authentication");
    assert_eq!(&got[1..], &orders[..], "each missed message once, in order");
    for v in &verdicts {
        assert_eq!(v.recovered, Some(true), "{v:?}");
    }
    assert_eq!(client.positions()[STREAM].offset, 25);
    publish(&s, 26).await;
    assert_eq!(
        next_message(&mut events).await.position,
        Some((STREAM.to_owned(), 26))
    );
    client.close();
    s.stop().await;
}

/// A stream that expires and starts again (new epoch, offsets from 1) while a client that
/// recovered it stays connected is delivered in full: the replay's floor belongs to the old
/// epoch only.
#[tokio::test]
async fn a_stream_that_starts_again_is_delivered_to_a_recovered_client() {
    let mut c = config(100);
    c.history.ttl = Duration::from_millis(100);
    c.heartbeat_interval = Duration::from_millis(50); // the sweep that forgets idle streams
    c.heartbeat_timeout = Duration::from_secs(60);
    let s = server(c).await;
    let mut a = connect(&s, "gus", json!({}), false).await;
    until_recovered(&mut a).await;
    let streams = join(&mut a, json!({})).await;
    let epoch = stream(&streams, STREAM)["epoch"].clone();
    for n in 1..=3 {
        publish(&s, n).await;
        assert_eq!(a.recv_msg().await["offset"], n);
    }
    // A second client recovers at offset 3 of this epoch: its floor is (epoch, 3).
    let mut b = connect(&s, "hal", json!({}), false).await;
    until_recovered(&mut b).await;
    let streams = join(&mut b, json!({STREAM: {"offset": 3, "epoch": epoch}})).await;
    assert_eq!(stream(&streams, STREAM)["recovered"], true);
    // The stream expires and is forgotten; the next publication starts a new epoch at 1.
    wait_until(|| async { s.server.history(STREAM, 0, 1).await.is_none() }).await;
    publish(&s, 4).await;
    let m = b.recv_msg().await;
    assert_eq!(
        (m["data"]["n"].clone(), m["offset"].clone()),
        (json!(4), json!(1))
    );
    assert_ne!(m["epoch"], epoch, "a new epoch");
    s.stop().await;
}

/// Joins of rooms with history cannot make the server hold streams without bound: past
/// `max_streams` held streams, a lookup of a room stream the server does not hold is answered
/// without a position (epoch `""`), a position like that never recovers, and a publication
/// still gets its stream (and its position) as always, as does a user's stream. The count is
/// on the metrics page.
#[tokio::test]
async fn a_stream_budget_bounds_what_joins_can_make_the_server_hold() {
    let mut c = config(100);
    c.history.max_streams = 2;
    let s = server(c).await;
    // The user stream and the first room take the two streams.
    let mut a = connect(&s, "ida", json!({}), false).await;
    let (_, streams) = until_recovered(&mut a).await;
    assert_ne!(stream(&streams, "user:ida")["epoch"], "");
    let streams = join(&mut a, json!({})).await;
    let held = stream(&streams, STREAM)["epoch"].clone();
    assert_ne!(held, "");
    // A room the server holds no stream of: no position, and nothing held for it.
    a.emit("join", json!({"rooms": ["orders:2"], "recover": {}}))
        .await;
    let (_, streams) = until_recovered(&mut a).await;
    let unheld = stream(&streams, "room:orders:2");
    assert_eq!(
        (&unheld["epoch"], &unheld["offset"]),
        (&json!(""), &json!(0))
    );
    assert!(unheld.get("recovered").is_none(), "{unheld}");
    assert!(s.server.history("room:orders:2", 0, 1).await.is_none());
    // A stream already held still answers with its position.
    let mut b = connect(&s, "ida", json!({}), false).await;
    until_recovered(&mut b).await;
    assert_eq!(
        stream(&join(&mut b, json!({})).await, STREAM)["epoch"],
        held
    );
    // An unheld position recovers nothing: whatever its stream held meanwhile is unknown.
    b.emit(
        "join",
        json!({"rooms": ["orders:3"], "recover": {"room:orders:3": {"offset": 0, "epoch": ""}}}),
    )
    .await;
    let (_, streams) = until_recovered(&mut b).await;
    assert_eq!(stream(&streams, "room:orders:3")["recovered"], false);
    // A user's stream is not a name clients choose: it is made past the budget too.
    let mut c = connect(&s, "jo", json!({}), false).await;
    let (_, streams) = until_recovered(&mut c).await;
    assert_ne!(stream(&streams, "user:jo")["epoch"], "");
    // A publication gets its stream past the budget, and its members their positions.
    s.server
        .to_room("orders:2")
        .emit("order", &json!({"n": 1}))
        .await
        .expect("publish");
    let m = a.recv_msg().await;
    assert_eq!(
        (&m["stream"], &m["offset"]),
        (&json!("room:orders:2"), &json!(1))
    );
    assert_ne!(m["epoch"], "");
    let (metrics, _) = s.server.render_metrics();
    assert_eq!(
        metric_value(&metrics, "sealwire_history_unheld_lookups_total"),
        2.0,
        "two lookups answered without a position"
    );
    s.stop().await;
}

/// The Rust SDK keeps an unheld position (the stream budget spent when it joined) and sends it
/// back on reconnect, so the stream it could not be tracked in is answered `recovered: false`
/// (refetch) instead of passing for one that missed nothing, although a publication was made
/// there while it was away.
#[tokio::test]
async fn the_rust_sdk_reports_a_stream_it_was_not_tracked_in() {
    use common::proxy::TcpProxy;
    use common::sdk::event_where;
    use sealwire::client::{Client, Event, ReconnectPolicy};

    let mut c = config(100);
    c.history.max_streams = 1; // the user stream takes it
    let s = server(c).await;
    let proxy = TcpProxy::start(s.addr).await;
    let (client, mut events) = Client::builder(proxy.ws_url())
        .token("gil")
        .recover(true)
        .reconnect(ReconnectPolicy::default().initial_delay(Duration::from_millis(20)))
        .connect()
        .await
        .expect("connect");
    let recovered = |e: &Event| matches!(e, Event::Recovered { .. });
    event_where(&mut events, recovered).await;
    client.join([ROOM]).await.expect("join");
    let Event::Recovered { streams } = event_where(&mut events, recovered).await else {
        unreachable!()
    };
    assert_eq!(
        (streams[0].stream.as_str(), streams[0].epoch.as_str()),
        (STREAM, "")
    );
    assert_eq!(client.positions()[STREAM].epoch, "", "kept");

    proxy.cut();
    wait_for(|| s.server.counts().authenticated == 0).await;
    publish(&s, 1).await; // makes the stream; the client is away
    let mut verdicts = Vec::new();
    while !verdicts
        .iter()
        .any(|v: &sealwire::protocol::StreamState| v.stream == STREAM)
    {
        if let Event::Recovered { streams } = event_where(&mut events, recovered).await {
            verdicts.extend(streams);
        }
    }
    let room = verdicts.iter().find(|v| v.stream == STREAM).expect("room");
    assert_eq!(room.recovered, Some(false), "{room:?}");
    assert_eq!(room.offset, 1);
    assert_eq!(client.positions()[STREAM].offset, 1, "tracked from now on");
    client.close();
    s.stop().await;
}

/// A `recover` that is not an object of positions counts as `{}` in `authenticate` as in
/// `join`: the client is admitted (its token is read as usual) and gets positions, with
/// nothing recovered. A malformed position is one that matches nothing.
#[tokio::test]
async fn a_malformed_recover_in_authenticate_is_an_empty_one() {
    let s = server(config(8)).await;
    for (i, recover) in [
        json!(5),
        json!([]),
        json!("x"),
        json!({"user:z": 5}),
        json!({"user:z": {"offset": -1, "epoch": "e"}}),
    ]
    .into_iter()
    .enumerate()
    {
        let user = format!("u{i}");
        let mut c = connect(&s, &user, recover.clone(), i % 2 == 0).await;
        let (_, streams) = until_recovered(&mut c).await;
        let own = stream(&streams, &format!("user:{user}"));
        assert!(own["recovered"].is_null(), "{recover}: {streams:?}");
        assert!(own["epoch"].is_string(), "{recover}: {streams:?}");
    }
    // A malformed position for a stream the client is in matches nothing: that stream is
    // answered `recovered: false` (the client named it), and the others' positions still count.
    for (i, position) in [json!(5), json!({"offset": -1, "epoch": "e"}), json!(null)]
        .into_iter()
        .enumerate()
    {
        let user = format!("m{i}");
        let recover =
            json!({ format!("user:{user}"): position, "broadcast": {"offset": 0, "epoch": "old"} });
        let mut c = connect(&s, &user, recover.clone(), false).await;
        let (_, streams) = until_recovered(&mut c).await;
        let own = stream(&streams, &format!("user:{user}"));
        assert_eq!(own["recovered"], false, "{recover}: {streams:?}");
        assert_eq!(
            stream(&streams, "broadcast")["recovered"],
            false,
            "{streams:?}"
        );
    }
    s.stop().await;
}

/// Recoveries are bounded per connection: a burst that covers recovering every stream a
/// client can be in once, then one stream per second. A stream over the allowance is answered
/// `recovered: false` with where it stands (so the client can go on from there), and its
/// publications are not replayed.
#[tokio::test]
async fn recoveries_past_the_connections_allowance_are_answered_without_a_replay() {
    let mut cfg = config(100);
    // Two default rooms and this one, and a burst of 4 + 2 stream reads.
    cfg.max_rooms_per_client = 4;
    let s = server(cfg).await;
    let mut c = connect(&s, "fred", json!({}), false).await;
    until_recovered(&mut c).await;
    let streams = join(&mut c, json!({})).await;
    let epoch = stream(&streams, STREAM)["epoch"].clone();
    publish(&s, 1).await;
    publish(&s, 2).await;
    c.recv_msg().await;
    c.recv_msg().await;
    let from_start = json!({STREAM: {"offset": 0, "epoch": epoch}});
    let rejoin = async |c: &mut WsClient| {
        c.emit("leave", json!({"rooms": [ROOM]})).await;
        c.emit(
            "join",
            json!({"rooms": [ROOM], "recover": from_start.clone()}),
        )
        .await;
        until_recovered(c).await
    };
    // The burst, then more as the allowance refills (one a second: a loaded machine may be
    // slow enough for one), until one is answered without a replay.
    let mut recovered = 0;
    let (replayed, streams) = loop {
        let (replayed, streams) = rejoin(&mut c).await;
        if stream(&streams, STREAM)["recovered"] != true {
            break (replayed, streams);
        }
        assert_eq!(replayed.len(), 2, "{replayed:?}");
        recovered += 1;
        assert!(recovered < 40, "the allowance never ran out");
    };
    assert!(recovered >= 6, "the burst: {recovered}");
    assert!(replayed.is_empty(), "over the allowance: {replayed:?}");
    let room = stream(&streams, STREAM);
    assert_eq!(
        (room["recovered"].clone(), room["offset"].clone()),
        (json!(false), json!(2)),
        "{room}"
    );
    assert_eq!(room["epoch"], epoch, "where the stream stands");
    // Still a member, live.
    publish(&s, 3).await;
    assert_eq!(c.recv_msg().await["offset"], 3);
    // A repeated join of the room it is in, over the allowance: the room's live delivery went
    // on, so it is left out of the answer (the client keeps its own position).
    c.emit(
        "join",
        json!({"rooms": [ROOM], "recover": from_start.clone()}),
    )
    .await;
    let (replayed, streams) = until_recovered(&mut c).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert!(
        streams.iter().all(|s| s["stream"] != STREAM),
        "not answered: {streams:?}"
    );
    // A second later, one more stream may be read.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (replayed, streams) = rejoin(&mut c).await;
    assert_eq!(replayed.len(), 3, "{replayed:?}");
    assert_eq!(stream(&streams, STREAM)["recovered"], true);
    s.stop().await;
}

/// A join of a room the client is in already, with a position, is answered with where the
/// stream stands (and what it missed since that position), not as a room it is not in.
#[tokio::test]
async fn a_repeated_join_is_answered_for_the_room_the_client_is_in() {
    let s = server(config(100)).await;
    let mut c = connect(&s, "gail", json!({}), false).await;
    until_recovered(&mut c).await;
    let streams = join(&mut c, json!({})).await;
    let epoch = stream(&streams, STREAM)["epoch"].clone();
    publish(&s, 1).await;
    publish(&s, 2).await;
    assert_eq!(c.recv_msg().await["offset"], 1);
    assert_eq!(c.recv_msg().await["offset"], 2);
    c.emit(
        "join",
        json!({"rooms": [ROOM], "recover": {STREAM: {"offset": 1, "epoch": epoch}}}),
    )
    .await;
    let (replayed, streams) = until_recovered(&mut c).await;
    let room = stream(&streams, STREAM);
    assert_eq!(
        (&room["epoch"], &room["offset"], &room["recovered"]),
        (&epoch, &json!(2), &json!(true)),
        "{room}"
    );
    let offsets: Vec<_> = replayed.iter().map(|m| m["offset"].clone()).collect();
    assert_eq!(
        offsets,
        vec![json!(2)],
        "what it missed since the position given"
    );
    // Again from the same position (and from the start): the replay follows the position
    // given each time, and `replayed` counts what was sent.
    for (from, expected) in [(1, vec![json!(2)]), (0, vec![json!(1), json!(2)])] {
        c.emit(
            "join",
            json!({"rooms": [ROOM], "recover": {STREAM: {"offset": from, "epoch": epoch}}}),
        )
        .await;
        let (replayed, streams) = until_recovered(&mut c).await;
        let offsets: Vec<_> = replayed.iter().map(|m| m["offset"].clone()).collect();
        assert_eq!(offsets, expected, "from {from}");
        assert_eq!(stream(&streams, STREAM)["replayed"], expected.len());
    }
    // Live delivery goes on once, in order.
    publish(&s, 3).await;
    assert_eq!(c.recv_msg().await["offset"], 3);
    c.expect_silence(Duration::from_millis(200)).await;
    s.stop().await;
}
