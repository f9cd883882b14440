//! The WebSocket upgrade at the socket level: requests the accept loop answers itself, bytes
//! sent right behind the request, and upgrades it leaves to hyper. `tests/front_door.rs`
//! checks that both paths answer a corpus of requests alike.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A masked client text frame (payload shorter than 126 bytes).
fn client_text_frame(payload: &str) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let bytes = payload.as_bytes();
    assert!(bytes.len() < 126);
    let mut frame = vec![0x81, 0x80 | bytes.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(bytes.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Sends `request` (and `after` in the same write), reads the response head, and returns it
/// with the stream wrapped as a client WebSocket.
async fn raw_upgrade(
    s: &TestServer,
    request: &str,
    after: &[u8],
) -> (String, WebSocketStream<TcpStream>) {
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    let mut out = request.as_bytes().to_vec();
    out.extend_from_slice(after);
    tcp.write_all(&out).await.expect("write");
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout(RECV_TIMEOUT, tcp.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let rest = buf[head_end..].to_vec();
    let ws = WebSocketStream::from_partially_read(tcp, rest, Role::Client, None).await;
    (head, ws)
}

async fn recv_json(ws: &mut WebSocketStream<TcpStream>) -> Value {
    loop {
        let msg = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("JSON");
        }
    }
}

/// Whether the response head carries the `Sec-WebSocket-Accept` of [`KEY`].
fn has_accept_for_key(head: &str) -> bool {
    let expected = derive_accept_key(KEY.as_bytes());
    head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        })
    })
}

fn upgrade_request(extra_headers: &str) -> String {
    format!(
        "GET /ws?v=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         {extra_headers}\r\n"
    )
}

#[tokio::test]
async fn an_upgrade_with_a_frame_right_behind_it_is_served() {
    let s = start(base_config()).await;
    let auth = json!({"event": "authenticate", "data": {"token": "eager"}}).to_string();
    let (head, mut ws) = raw_upgrade(&s, &upgrade_request(""), &client_text_frame(&auth)).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(has_accept_for_key(&head), "{head}");
    let connected = recv_json(&mut ws).await;
    assert_eq!(connected["event"], "connected");
    assert_eq!(connected["data"]["userId"], "eager");
    s.stop().await;
}

#[tokio::test]
async fn an_upgrade_left_to_http_still_works() {
    let s = start(base_config()).await;
    // An empty body declared, and more headers than the accept loop parses itself (hyper
    // answers that one, after the same decision).
    let many: String = (0..80).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    for extra in ["Content-Length: 0\r\n".to_owned(), many] {
        let (head, mut ws) = raw_upgrade(&s, &upgrade_request(&extra), &[]).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let auth = json!({"event": "authenticate", "data": {"token": "via-hyper"}});
        ws.send(Message::text(auth.to_string()))
            .await
            .expect("send");
        let connected = recv_json(&mut ws).await;
        assert_eq!(connected["data"]["userId"], "via-hyper");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_request_with_two_keys_is_refused() {
    let s = start(base_config()).await;
    // Ambiguous: hyper used to take the first key and upgrade; both paths now refuse it.
    let request = upgrade_request("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n");
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(RECV_TIMEOUT, tcp.read_to_end(&mut answer))
        .await
        .expect("the refused connection closes");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(!has_accept_for_key(&answer), "{answer}");
    s.stop().await;
}

/// RFC 6455 §5.5.1: a close frame from the client is answered with a close frame before the
/// server drops the TCP connection, on both upgrade paths.
#[tokio::test]
async fn a_close_from_the_client_is_answered_before_the_connection_ends() {
    let s = start(base_config()).await;
    let many: String = (0..80).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    // The accept loop's own upgrade, then one left to hyper.
    for extra in [String::new(), many] {
        let (head, mut ws) = raw_upgrade(&s, &upgrade_request(&extra), &[]).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        ws.send(Message::Close(None)).await.expect("send close");
        let reply = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("reply in time");
        assert!(
            matches!(reply, Some(Ok(Message::Close(_)))),
            "expected a close frame, got {reply:?}"
        );
    }
    s.stop().await;
}
