//! The seam's contract with a door of one's own (`FrameSocket`), over real loopback
//! connections: a door that makes a sealed frame in place and then does not write it leaves
//! its client with a session whose counters moved on, so the connection is dropped, and
//! neither that frame nor a second seal of the same message (nor any plaintext) reaches the
//! client. A door that does not carry binary messages never has its clients agree to binary
//! room records: they get the text form.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};

use common::*;
use futures_util::{Sink, Stream};
use sealwire::publish::Publish;
use sealwire::server::{FrameSocket, Incoming, Outgoing, SocketError, WrittenWith};
use sealwire::transport::WsSocket;
use serde_json::json;
use tokio_tungstenite::WebSocketStream;

/// A door over the built-in WebSocket adapter that lets the core seal a frame in its buffer
/// and then throws the frame away, answering `Refused` (or `Failed`) as if nothing was made;
/// with no answer, it is an honest door. Either way it says nothing of binary messages (the
/// trait's default: it does not carry them).
struct Forgetful {
    inner: WsSocket<WebSocketStream<tokio::net::TcpStream>>,
    answer: Option<WrittenWith>,
}

impl Stream for Forgetful {
    type Item = Result<Incoming, SocketError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Sink<Outgoing> for Forgetful {
    type Error = SocketError;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Outgoing) -> Result<(), Self::Error> {
        Pin::new(&mut self.inner).start_send(item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

impl FrameSocket for Forgetful {
    fn write_text_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    ) -> WrittenWith {
        let Some(answer) = self.answer else {
            return self.inner.write_text_with(len, fill);
        };
        let mut thrown_away = Vec::with_capacity(len);
        let _ = fill(&mut thrown_away);
        answer
    }
}

/// Serves one connection on `listener` through a [`Forgetful`] door.
fn door(
    server: &sealwire::Server,
    listener: tokio::net::TcpListener,
    answer: Option<WrittenWith>,
) -> tokio::task::JoinHandle<()> {
    let server = server.clone();
    tokio::spawn(async move {
        let (tcp, remote) = listener.accept().await.expect("accept");
        let ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let socket = Forgetful {
            inner: WsSocket::new(ws),
            answer,
        };
        server.serve_socket(socket, Some(remote)).await;
    })
}

async fn forgetful_door_drops_the_connection(answer: WrittenWith) {
    let server = builder(base_config()).build().expect("server");
    server.start().await.expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let door = door(&server, listener, Some(answer));
    let mut c = WsClient::connect(&format!("ws://{addr}/ws")).await;
    c.authenticate_encrypted("forgotten").await;
    server
        .to_client(c.id())
        .emit("payment", &json!({"amount": 42}))
        .await
        .expect("send");
    // Nothing of the message: the connection ends (the first frame it could see is its end).
    match c.recv().await {
        Received::Close(_) => {}
        Received::Text(t) => panic!("{answer:?}: the client got a frame: {t}"),
    }
    door.await.expect("connection task");
    assert_eq!(server.counts().clients, 0, "the connection is gone");
    server.shutdown().await;
}

#[tokio::test]
async fn a_sealed_frame_refused_after_it_was_made_drops_the_connection() {
    forgetful_door_drops_the_connection(WrittenWith::Refused).await;
}

#[tokio::test]
async fn a_sealed_frame_failed_after_it_was_made_drops_the_connection() {
    forgetful_door_drops_the_connection(WrittenWith::Failed).await;
}

#[tokio::test]
async fn a_door_without_binary_messages_gives_binary_members_text_room_records() {
    use common::hardened::{config_with, identity};
    use sealwire::crypto::HandshakeConfig;
    let mut config = config_with(Some(identity(7)), HandshakeConfig::default().rekey_after);
    config.room_keys.rooms = vec!["vault:*".to_owned()];
    let server = builder(config).build().expect("server");
    server.start().await.expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let door = door(&server, listener, None);
    let mut c = WsClient::connect(&format!("ws://{addr}/ws")).await;
    let (hello, hs) = c
        .hardened_hello(HandshakeConfig::hardened(vec![identity(7).public_key()]))
        .await;
    c.confirm_hello(&hello, hs).await.expect("server hello");
    let auth = json!({"token": "alice", "roomKeys": "sealwire-room-v1", "roomRecords": "binary"});
    c.emit("authenticate", auth).await;
    let connected = c.recv_msg().await;
    assert_eq!(
        connected["data"]["roomKeys"], "sealwire-room-v1",
        "{connected}"
    );
    assert!(
        connected["data"].get("roomRecords").is_none(),
        "{connected}"
    );
    c.id = connected["data"]["id"].as_str().map(str::to_owned);
    assert!(server.join(&c.id(), &["vault:1".to_owned()]).is_some());
    server
        .to_room("vault:1")
        .emit("order", &json!(1))
        .await
        .expect("publish");
    // The grant in the client's own record, then the text record (`recv_json` fails the test
    // on a binary message).
    assert_eq!(c.recv_msg().await["event"], "room-key");
    assert_eq!(c.recv_json().await["event"], "room-encrypted");
    c.ws.close(None).await.expect("close");
    door.await.expect("connection task");
    server.shutdown().await;
}
