//! The socket holds an emit engine.io had no room for, and takes nothing past it.

use std::sync::atomic::Ordering;

use futures_util::SinkExt;
use serde_json::json;

use super::*;

#[tokio::test]
async fn a_full_buffer_holds_the_message_and_takes_nothing_past_it() {
    let (mut socket, _tx, fake) = plain_socket().await;
    fake.full.store(true, Ordering::Relaxed);
    // Taken, and held: engine.io has no room.
    assert!(socket.write_now(&event("a", 1)));
    assert!(fake.take().is_empty());
    // Nothing more is taken at once; a fed message waits for the held one.
    assert!(!socket.write_now(&event("b", 2)));
    let mut called = false;
    assert_eq!(
        socket.write_text_with(3, &mut |_: &mut Vec<u8>| {
            called = true;
            true
        }),
        WrittenWith::Refused
    );
    assert!(!called, "nothing is sealed while a message is held");
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(30),
        socket.feed(Outgoing::Text(event("b", 2))),
    )
    .await;
    assert!(waited.is_err(), "the feed waits while engine.io is full");
    assert!(fake.take().is_empty());
    // Room again: the held message goes first, then the next, and the socket stays up.
    fake.full.store(false, Ordering::Relaxed);
    socket
        .feed(Outgoing::Text(event("b", 2)))
        .await
        .expect("fed once there is room");
    socket.flush().await.expect("flush");
    assert!(socket.write_now(&event("c", 3)));
    assert_eq!(
        fake.take(),
        vec![
            Call::Emit("a".into(), json!(1)),
            Call::Emit("b".into(), json!(2)),
            Call::Emit("c".into(), json!(3)),
        ]
    );
}

#[tokio::test]
async fn a_flush_waits_for_the_held_message() {
    let (mut socket, _tx, fake) = plain_socket().await;
    fake.full.store(true, Ordering::Relaxed);
    assert!(socket.write_now(&event("a", 1)));
    let fake2 = fake.clone();
    let room = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        fake2.full.store(false, Ordering::Relaxed);
    });
    socket.flush().await.expect("flushed once there was room");
    room.await.expect("room");
    assert_eq!(fake.take(), vec![Call::Emit("a".into(), json!(1))]);
}

#[tokio::test]
async fn a_held_message_is_dropped_for_a_slow_consumers_close_and_on_close() {
    let (mut socket, _tx, fake) = plain_socket().await;
    fake.full.store(true, Ordering::Relaxed);
    assert!(socket.write_now(&event("a", 1)));
    socket.discard_unsent();
    fake.full.store(false, Ordering::Relaxed);
    socket
        .send(Outgoing::Close(CloseCode::SlowConsumer))
        .await
        .expect("the close does not wait behind the held message");
    // Its transport ends (the client is to come back), the held message dropped.
    assert_eq!(fake.take(), vec![Call::GoAway]);

    let (mut socket, _tx, fake) = plain_socket().await;
    fake.full.store(true, Ordering::Relaxed);
    assert!(socket.write_now(&event("a", 1)));
    socket.close().await.expect("close");
    assert_eq!(fake.take(), vec![Call::Disconnect]);
}

#[tokio::test]
async fn a_sealed_frame_engine_io_has_no_room_for_is_held_not_lost() {
    let (mut socket, _tx, fake) = encrypted_socket().await;
    let (frame, emitted) = sealed_frame();
    fake.full.store(true, Ordering::Relaxed);
    assert_eq!(
        socket.write_text_with(frame.len(), &mut fill_with(&frame)),
        WrittenWith::Written
    );
    assert!(fake.take().is_empty());
    fake.full.store(false, Ordering::Relaxed);
    socket.flush().await.expect("flush");
    assert_eq!(fake.take(), vec![emitted]);
}

#[tokio::test]
async fn a_socket_gone_while_a_message_is_held_fails_the_next_write() {
    let (mut socket, _tx, fake) = plain_socket().await;
    fake.full.store(true, Ordering::Relaxed);
    assert!(socket.write_now(&event("a", 1)));
    fake.gone.store(true, Ordering::Relaxed);
    assert!(socket.feed(Outgoing::Text(event("b", 2))).await.is_err());
    assert_eq!(fake.take(), vec![Call::Disconnect]);
}
