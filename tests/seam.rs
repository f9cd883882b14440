//! The seam's contract with a door of one's own (`FrameSocket`), over real loopback
//! connections: a door that makes a sealed frame in place and then does not write it leaves
//! its client with a session whose counters moved on, so the connection is dropped, and
//! neither that frame nor a second seal of the same message (nor any plaintext) reaches the
//! client.

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
/// and then throws the frame away, answering `Refused` (or `Failed`) as if nothing was made.
struct Forgetful {
    inner: WsSocket<WebSocketStream<tokio::net::TcpStream>>,
    answer: WrittenWith,
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
        let mut thrown_away = Vec::with_capacity(len);
        let _ = fill(&mut thrown_away);
        self.answer
    }
}

async fn forgetful_door_drops_the_connection(answer: WrittenWith) {
    let server = builder(base_config()).build().expect("server");
    server.start().await.expect("start");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let door = {
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
    };
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
