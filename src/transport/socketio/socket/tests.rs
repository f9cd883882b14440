use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use super::*;
use crate::protocol::{CloseCode, Text};
use crate::transport::socketio::raw_json::Args;

/// What the socket asked of its outlet, in order.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Emit(String, Value),
    Authenticated(Value, bool),
    Refuse(String),
    Hello(String),
    Admitted(String),
    Close(u16, String),
    Disconnect,
    GoAway,
}

#[derive(Clone, Default)]
struct Fake {
    calls: Arc<Mutex<Vec<Call>>>,
    /// The socket is gone: emits fail and disconnect it.
    gone: Arc<AtomicBool>,
    /// engine.io's buffer is full: emits take nothing.
    full: Arc<AtomicBool>,
}

impl Fake {
    fn record(&self, call: Call) {
        self.calls.lock().expect("calls").push(call);
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().expect("calls"))
    }
}

impl Outlet for Fake {
    fn emit(&self, event: &str, args: &Args<'_>) -> Emitted {
        if self.gone.load(Ordering::Relaxed) {
            self.record(Call::Disconnect);
            return Emitted::Failed;
        }
        if self.full.load(Ordering::Relaxed) {
            return Emitted::Full;
        }
        let data = serde_json::to_value(args).expect("emitted arguments are JSON");
        self.record(Call::Emit(event.to_owned(), data));
        Emitted::Sent
    }

    fn authenticated(&self, payload: &Value, encrypted: bool) -> bool {
        self.record(Call::Authenticated(payload.clone(), encrypted));
        !self.gone.load(Ordering::Relaxed)
    }

    fn refuse(&self, message: &str) {
        self.record(Call::Refuse(message.to_owned()));
    }

    fn hello(&self, id: &str) {
        self.record(Call::Hello(id.to_owned()));
    }

    fn admitted(&self, id: &str) {
        self.record(Call::Admitted(id.to_owned()));
    }

    fn close(&self, code: u16, reason: &str) {
        self.record(Call::Close(code, reason.to_owned()));
    }

    fn disconnect(&self) {
        self.record(Call::Disconnect);
    }

    fn go_away(&self) {
        self.record(Call::GoAway);
    }
}

fn text(v: &Value) -> Outgoing {
    Outgoing::Text(Text::from(v.to_string().as_str()))
}

fn socket(hardened: bool) -> (BridgeSocket<Fake>, mpsc::Sender<Incoming>, Fake) {
    let fake = Fake::default();
    let (socket, tx) = BridgeSocket::new(fake.clone(), hardened, 4);
    (socket, tx, fake)
}

#[tokio::test]
async fn a_shutdown_ends_the_transport_of_an_ignis_socket_and_tells_a_hardened_one() {
    let (mut plain, _tx, fake) = socket(false);
    plain
        .send(Outgoing::Close(CloseCode::GoingAway))
        .await
        .expect("close");
    assert_eq!(fake.take(), vec![Call::GoAway], "no namespace disconnect");
    assert!(plain.send(text(&json!({"event": "x"}))).await.is_err());
    // The SDK reconnects by itself, after the close code.
    let (mut hardened, _tx, fake) = socket(true);
    hardened
        .send(Outgoing::Close(CloseCode::GoingAway))
        .await
        .expect("close");
    assert_eq!(
        fake.take(),
        vec![Call::Close(1001, "Server shutting down".to_owned())]
    );
}

#[tokio::test]
async fn carries_inbound_and_answers_a_close() {
    let (mut socket, tx, fake) = socket(false);
    tx.send(Incoming::Text(Text::from("in")))
        .await
        .expect("send");
    let got = socket.next().await.expect("message").expect("ok");
    assert_eq!(got, Incoming::Text(Text::from("in")));
    socket
        .send(Outgoing::Close(CloseCode::Normal))
        .await
        .expect("close");
    assert_eq!(fake.take(), vec![Call::Disconnect]);
    assert!(matches!(socket.next().await, Some(Ok(Incoming::Close(_)))));
    assert!(socket.next().await.is_none());
    // The socket is gone: nothing more is emitted.
    assert!(socket.send(text(&json!({"event": "x"}))).await.is_err());
    assert!(fake.take().is_empty());
}

#[tokio::test]
async fn a_session_is_emitted_from_the_writing_task() {
    let (mut socket, _tx, fake) = socket(false);
    let connected = json!({"id": "c", "userId": "u", "time": "t"});
    socket
        .send(text(&json!({"event": "connected", "data": connected})))
        .await
        .expect("connected");
    socket
        .feed(text(&json!({"event": "topic", "data": 0})))
        .await
        .expect("feed");
    socket
        .feed(text(&json!({"event": "bare"})))
        .await
        .expect("feed");
    socket.feed(Outgoing::Ping).await.expect("ping");
    socket.flush().await.expect("flush");
    assert_eq!(
        fake.take(),
        vec![
            Call::Authenticated(connected, false),
            Call::Emit("topic".into(), json!(0)),
            Call::Emit("bare".into(), Value::Null),
        ]
    );
}

#[tokio::test]
async fn an_encrypted_socket_gets_sealed_frames_only() {
    let (mut socket, _tx, fake) = socket(false);
    let connected = json!({"id": "c", "serverPublicKey": "k", "salt": "s"});
    socket
        .send(text(&json!({"event": "connected", "data": connected})))
        .await
        .expect("connected");
    let sealed = json!({"iv": "i", "ct": "c"});
    socket
        .send(text(&json!({"event": "topic", "data": "secret"})))
        .await
        .expect("dropped, not failed");
    socket
        .send(text(&json!({"event": "encrypted", "data": sealed})))
        .await
        .expect("sealed");
    assert_eq!(
        fake.take(),
        vec![
            Call::Authenticated(connected, true),
            Call::Emit("encrypted".into(), sealed),
        ]
    );
}

#[tokio::test]
async fn a_refusal_is_unauthenticated_then_closed() {
    let (mut socket, _tx, fake) = socket(false);
    let error = json!({"event": "error", "data": {"message": "Authentication failed"}});
    socket.send(text(&error)).await.expect("error");
    socket
        .send(Outgoing::Close(CloseCode::AuthFailed))
        .await
        .expect("close");
    assert_eq!(
        fake.take(),
        vec![Call::Refuse("Authentication failed".into())]
    );
}

#[tokio::test]
async fn a_gone_socket_fails_the_write_and_every_later_one() {
    let (mut socket, _tx, fake) = socket(false);
    let connected = json!({"id": "c"});
    socket
        .send(text(&json!({"event": "connected", "data": connected})))
        .await
        .expect("connected");
    fake.take();
    fake.gone.store(true, Ordering::Relaxed);
    assert!(
        socket
            .send(text(&json!({"event": "topic", "data": 1})))
            .await
            .is_err()
    );
    fake.gone.store(false, Ordering::Relaxed);
    assert!(
        socket
            .send(text(&json!({"event": "topic", "data": 2})))
            .await
            .is_err()
    );
    assert_eq!(fake.take(), vec![Call::Disconnect]);
}

#[tokio::test]
async fn a_failed_authenticated_disconnects() {
    let (mut socket, _tx, fake) = socket(false);
    fake.gone.store(true, Ordering::Relaxed);
    let connected = json!({"id": "c"});
    assert!(
        socket
            .send(text(&json!({"event": "connected", "data": connected})))
            .await
            .is_err()
    );
    assert_eq!(
        fake.take(),
        vec![Call::Authenticated(connected, false), Call::Disconnect]
    );
}

#[tokio::test]
async fn closing_the_socket_disconnects_once() {
    let (mut socket, _tx, fake) = socket(false);
    socket.close().await.expect("close");
    assert_eq!(fake.take(), vec![Call::Disconnect]);
    let (mut socket, _tx, fake) = socket_after_close();
    socket.close().await.expect("close");
    assert_eq!(fake.take(), vec![]);
}

fn socket_after_close() -> (BridgeSocket<Fake>, mpsc::Sender<Incoming>, Fake) {
    let (mut s, tx, fake) = socket(false);
    let delivered = s
        .route
        .deliver(&s.outlet, &Outgoing::Close(CloseCode::Normal));
    assert!(matches!(delivered, Delivered::Closed), "{delivered:?}");
    s.done = true;
    fake.take();
    (s, tx, fake)
}

#[tokio::test]
async fn a_hardened_socket_carries_frames_in_the_tunnel() {
    let (mut socket, _tx, fake) = socket(true);
    let hello = json!({"event": "hello", "data": {"id": "c1"}});
    let record = json!({"event": "encrypted", "data": {"iv": "i", "ct": "c", "seq": 0}});
    for frame in [&hello, &json!({"event": "topic", "data": 1}), &record] {
        socket.send(text(frame)).await.expect("frame");
    }
    // The core admits the client after a sealed reply (say, an error for an early event):
    // the socket learns it from the core, not from which record comes first.
    socket.admitted("c1");
    socket.send(text(&record)).await.expect("connected");
    socket
        .send(Outgoing::Close(CloseCode::EncryptionRequired))
        .await
        .expect("close");
    assert_eq!(
        fake.take(),
        vec![
            Call::Hello("c1".into()),
            Call::Emit("sealwire".into(), hello),
            Call::Emit("sealwire".into(), record.clone()),
            Call::Admitted("c1".into()),
            Call::Emit("sealwire".into(), record),
            Call::Close(4004, "Encryption required".into()),
        ]
    );
    assert!(matches!(socket.next().await, Some(Ok(Incoming::Close(_)))));
}

#[tokio::test]
async fn an_ignis_socket_learns_of_its_admission_from_connected() {
    let (mut socket, _tx, fake) = socket(false);
    // The admission call is for hardened sockets; the IGNIS path turns `connected` into
    // `authenticated` instead.
    socket.admitted("c1");
    assert_eq!(fake.take(), vec![]);
}

/// An encrypted IGNIS-path socket, admitted; its outlet's calls so far taken.
async fn encrypted_socket() -> (BridgeSocket<Fake>, mpsc::Sender<Incoming>, Fake) {
    admitted_socket(json!({"id": "c", "serverPublicKey": "k", "salt": "s"})).await
}

/// A plaintext IGNIS-path socket, admitted; its outlet's calls so far taken.
async fn plain_socket() -> (BridgeSocket<Fake>, mpsc::Sender<Incoming>, Fake) {
    admitted_socket(json!({"id": "c"})).await
}

/// An IGNIS-path socket admitted with this `connected` payload; its outlet's calls so far
/// taken.
async fn admitted_socket(connected: Value) -> (BridgeSocket<Fake>, mpsc::Sender<Incoming>, Fake) {
    let (mut socket, tx, fake) = socket(false);
    socket
        .send(text(&json!({"event": "connected", "data": connected})))
        .await
        .expect("connected");
    fake.take();
    (socket, tx, fake)
}

/// A data message `{"event": name, "data": n}`.
fn event(name: &str, n: u32) -> Text {
    Text::from(json!({"event": name, "data": n}).to_string().as_str())
}

/// A fill that appends `s` whole.
fn fill_with(s: &str) -> impl FnMut(&mut Vec<u8>) -> bool {
    let s = s.to_owned();
    move |buf: &mut Vec<u8>| {
        buf.extend_from_slice(s.as_bytes());
        true
    }
}

/// The sealed frame the in-place tests make, and what its emit records.
fn sealed_frame() -> (String, Call) {
    let data = json!({"iv": "i", "ct": "c"});
    let frame = json!({"event": "encrypted", "data": data}).to_string();
    (frame, Call::Emit("encrypted".into(), data))
}

#[tokio::test]
async fn a_message_is_emitted_at_once_in_order_with_the_sink() {
    let (mut socket, _tx, fake) = plain_socket().await;
    assert!(socket.write_now(&event("a", 1)));
    socket
        .feed(Outgoing::Text(event("b", 2)))
        .await
        .expect("feed");
    let third = event("c", 3);
    assert!(socket.write_now(&third));
    assert_eq!(
        fake.take(),
        vec![
            Call::Emit("a".into(), json!(1)),
            Call::Emit("b".into(), json!(2)),
            Call::Emit("c".into(), json!(3)),
        ]
    );
    // An emit that fails is not taken: the core feeds it, the write fails, and so does
    // every later one.
    fake.gone.store(true, Ordering::Relaxed);
    let lost = event("d", 4);
    assert!(!socket.write_now(&lost));
    assert!(socket.send(Outgoing::Text(lost)).await.is_err());
    fake.gone.store(false, Ordering::Relaxed);
    assert!(!socket.write_now(&third));
    assert_eq!(fake.take(), vec![Call::Disconnect]);
}

#[tokio::test]
async fn a_frame_made_in_place_is_emitted_whole_or_not_at_all() {
    let (mut socket, _tx, fake) = encrypted_socket().await;
    let (frame, emitted) = sealed_frame();
    assert_eq!(
        socket.write_text_with(frame.len(), &mut fill_with(&frame)),
        WrittenWith::Written
    );
    assert_eq!(fake.take(), vec![emitted.clone()]);
    // Short, long, failed or not UTF-8: nothing is emitted, and the socket goes on.
    assert_eq!(
        socket.write_text_with(frame.len() + 1, &mut fill_with(&frame)),
        WrittenWith::Failed
    );
    assert_eq!(
        socket.write_text_with(frame.len() - 1, &mut fill_with(&frame)),
        WrittenWith::Failed
    );
    assert_eq!(
        socket.write_text_with(frame.len(), &mut |buf: &mut Vec<u8>| {
            buf.extend_from_slice(&frame.as_bytes()[..3]);
            false
        }),
        WrittenWith::Failed
    );
    assert_eq!(
        socket.write_text_with(2, &mut |buf: &mut Vec<u8>| {
            buf.extend_from_slice(&[0xff, 0xfe]);
            true
        }),
        WrittenWith::Failed
    );
    assert!(fake.take().is_empty());
    // What a fill leaves behind never reaches the next frame.
    assert_eq!(
        socket.write_text_with(frame.len(), &mut fill_with(&frame)),
        WrittenWith::Written
    );
    assert_eq!(fake.take(), vec![emitted]);
    // A plaintext frame made in place is dropped like a fed one: fail closed.
    let plain = json!({"event": "topic", "data": "secret"}).to_string();
    assert_eq!(
        socket.write_text_with(plain.len(), &mut fill_with(&plain)),
        WrittenWith::Written
    );
    assert!(fake.take().is_empty());
}

#[tokio::test]
async fn a_frame_made_in_place_that_cannot_be_emitted_fails() {
    let (mut socket, _tx, fake) = encrypted_socket().await;
    let (frame, _) = sealed_frame();
    let mut fill = fill_with(&frame);
    fake.gone.store(true, Ordering::Relaxed);
    assert_eq!(
        socket.write_text_with(frame.len(), &mut fill),
        WrittenWith::Failed
    );
    assert_eq!(fake.take(), vec![Call::Disconnect]);
    // The socket is gone: the next one is refused before anything is made.
    fake.gone.store(false, Ordering::Relaxed);
    let mut called = false;
    assert_eq!(
        socket.write_text_with(frame.len(), &mut |_: &mut Vec<u8>| {
            called = true;
            true
        }),
        WrittenWith::Refused
    );
    assert!(!called, "nothing is made for a socket that is gone");
}

mod held;
