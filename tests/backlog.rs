//! A backlog larger than every buffer between the server and its clients: the write path
//! (batched takes from the outbox, messages copied straight into the socket's buffer, fed
//! through the `Sink` when that buffer is full, the rest put back) delivers every message
//! whole, once and in order, to plaintext and encrypted clients alike.

mod common;

use common::*;
use sealwire::protocol::BusTarget;
use sealwire::publish::Publish;
use sealwire::server::GlobRooms;
use serde_json::{Value, json};
use std::time::Duration;

/// Messages in the backlog, and the padding that makes it far larger than the socket buffers.
const COUNT: u64 = 3000;
const PAD: usize = 600;

/// Reads `COUNT` application messages and checks they are `0..COUNT` in order, whole.
async fn read_all(c: &mut WsClient, who: &str) {
    let pad = "p".repeat(PAD);
    for n in 0..COUNT {
        let m: Value = c.recv_msg().await;
        assert_eq!(m["event"], "tick", "{who}: {m}");
        assert_eq!(m["data"]["n"].as_u64(), Some(n), "{who}: out of order");
        assert_eq!(m["data"]["pad"], pad.as_str(), "{who}: damaged");
    }
}

#[tokio::test]
async fn a_backlog_beyond_every_buffer_arrives_whole_once_and_in_order() {
    let rooms = GlobRooms::new(["ticks"]).expect("glob");
    let s = start_with(builder(base_config()).validate_rooms(rooms)).await;
    let (mut plain, _) = s.plain("alice").await;
    let (mut sealed, _) = s.encrypted("bob").await;
    let (mut room, _) = s.plain("carol").await;
    room.emit("join", json!({"rooms": ["ticks"]})).await;
    room.sync().await;
    // Nobody reads while the backlog is queued: it fills the kernel buffers, then the
    // connection's own, and most of it waits in the outbox.
    let pad = "p".repeat(PAD);
    for n in 0..COUNT {
        let data = json!({"n": n, "pad": pad});
        s.server
            .to(BusTarget::Broadcast)
            .except(room.id())
            .emit("tick", &data)
            .await
            .expect("broadcast");
        s.server
            .to(BusTarget::Room("ticks".into()))
            .emit("tick", &data)
            .await
            .expect("room");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    read_all(&mut plain, "plaintext").await;
    read_all(&mut sealed, "encrypted").await;
    read_all(&mut room, "room member").await;
    // Nothing more, and the connections still work.
    for c in [&mut plain, &mut sealed, &mut room] {
        assert!(c.sync().await.is_empty(), "an extra message arrived");
    }
    s.stop().await;
}
