//! Limits: inbound message size, binary frames, slow consumers, connection caps (total and per
//! address), the authentication deadline under a flood, and many concurrent clients.

mod common;

use sealwire::publish::Publish;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use sealwire::CloseCode;
use sealwire::server::ClientInfo;
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, Message};

type Closed = Arc<Mutex<Vec<(String, u16)>>>;

/// A builder whose disconnected hook records `(user id, close code)`.
fn recording(cfg: sealwire::ServerConfig) -> (sealwire::server::ServerBuilder, Closed) {
    let closed: Closed = Arc::default();
    let sink = Arc::clone(&closed);
    let b = builder(cfg).on_disconnected(move |info: Arc<ClientInfo>, code: CloseCode| {
        sink.lock()
            .expect("lock")
            .push((info.user_id.clone(), code.code()));
        std::future::ready(())
    });
    (b, closed)
}

fn closed_code(closed: &Closed, user: &str) -> Option<u16> {
    closed
        .lock()
        .expect("lock")
        .iter()
        .find(|(u, _)| u == user)
        .map(|(_, c)| *c)
}

#[tokio::test]
async fn oversized_message_closes_1009_and_spares_others() {
    let mut cfg = base_config();
    cfg.max_message_bytes = 1024;
    let (b, closed) = recording(cfg);
    let s = start_with(b).await;
    let (mut big, _) = s.plain("big").await;
    let (mut other, _) = s.encrypted("other").await;
    // Just under the limit is fine.
    let ok = json!({"event": "fits", "data": "x".repeat(900)});
    big.send_json(&ok).await;
    assert_eq!(big.recv_msg().await["data"]["event"], "fits");
    big.send_text(&format!(
        r#"{{"event":"huge","data":"{}"}}"#,
        "x".repeat(4096)
    ))
    .await;
    assert_eq!(big.expect_close().await, Some(1009));
    wait_for(|| closed_code(&closed, "big") == Some(1009)).await;
    s.server
        .to_all()
        .emit("still", &json!(1))
        .await
        .expect("send");
    assert_eq!(other.recv_msg().await, json!({"event": "still", "data": 1}));
    let (mut fresh, _) = s.plain("fresh").await;
    fresh.emit("hello", json!(null)).await;
    assert_eq!(fresh.recv_msg().await["data"]["event"], "hello");
    s.stop().await;
}

#[tokio::test]
async fn oversized_message_before_authentication_closes_1009() {
    let mut cfg = base_config();
    cfg.max_message_bytes = 1024;
    let s = start(cfg).await;
    let mut c = s.client().await;
    c.send_text(&"y".repeat(2048)).await;
    assert_eq!(c.expect_close().await, Some(1009));
    s.stop().await;
}

#[tokio::test]
async fn binary_frames_are_an_invalid_format() {
    let s = start(base_config()).await;
    let mut c = s.client().await;
    c.ws.send(Message::binary(b"{\"event\":\"authenticate\"}".to_vec()))
        .await
        .expect("send");
    assert_eq!(
        c.recv_json().await,
        json!({"event": "error", "data": {"message": "Invalid message format"}})
    );
    c.authenticate("bin").await;
    c.ws.send(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .expect("send");
    assert_eq!(
        c.recv_json().await["data"]["message"],
        "Invalid message format"
    );
    // An encrypted client's error is sealed.
    let (mut e, _) = s.encrypted("bin-enc").await;
    e.ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(
        e.recv_msg().await,
        json!({"event": "error", "data": {"message": "Invalid message format"}})
    );
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_as_a_slow_consumer() {
    let mut cfg = base_config();
    cfg.outbox_messages = 32;
    cfg.outbox_bytes = 64 * 1024;
    // The bound on getting the close frame out and its reply back: generous, so that a
    // loaded machine does not turn the clean close into a plain disconnect. The test does
    // not wait for it: the client reads as soon as the server has refused a message.
    cfg.shutdown_timeout = Duration::from_secs(15);
    let (b, closed) = recording(cfg);
    // Room for many messages in the server's write buffer, which a slow consumer's close
    // drops from (those not started yet).
    let mut http = common::test_http();
    http.write_buffer_bytes = 256 * 1024;
    let s = common::start_with_http(b, http).await;
    let (mut slow, _) = s.plain("slow").await;
    let (mut fine, _) = s.encrypted("fine").await;
    let blob = "z".repeat(8 * 1024);
    let payload = json!({ "blob": blob });
    let mut sent = 0usize;
    let mut refused = false;
    // Bounded: ~1.6 GB would be needed to get here without a limit.
    for _ in 0..200_000 {
        if s.server
            .to_client(slow.id())
            .emit("flood", &payload)
            .await
            .expect("send")
            .local_recipients
            == 0
        {
            refused = true;
            break;
        }
        sent += 1;
        // In bursts, so that the connection writes batches of several messages.
        if sent.is_multiple_of(4) {
            tokio::task::yield_now().await;
        }
    }
    assert!(refused, "the outbox never filled after {sent} messages");
    // The client now reads: some prefix of the flood, every message whole (a cut frame would
    // end the stream with a protocol error, seen here as a close without a code), then the
    // close frame with 4005. What the server had not written yet was dropped for it.
    let mut read = 0usize;
    let code = loop {
        match slow.recv().await {
            Received::Text(t) => {
                let msg: serde_json::Value = serde_json::from_str(&t).expect("a whole message");
                assert_eq!(msg, json!({"event": "flood", "data": payload}));
                read += 1;
            }
            Received::Close(code) => break code,
        }
    };
    assert_eq!(
        code,
        Some(4005),
        "closed with {code:?} after {read} of {sent}"
    );
    // Reading on sends the reply to the close frame and sees the server hang up.
    let _ = slow.recv().await;
    wait_for(|| closed_code(&closed, "slow").is_some()).await;
    assert_eq!(closed_code(&closed, "slow"), Some(4005));
    // Everyone else is served as before.
    s.server
        .to_all()
        .emit("after", &json!(sent))
        .await
        .expect("send");
    assert_eq!(fine.recv_msg().await["event"], "after");
    assert_eq!(s.server.counts().authenticated, 1);
    // Gone before the shutdown, which would otherwise wait `shutdown_timeout` for their
    // replies to its close frames.
    drop((slow, fine));
    s.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_get_http_503() {
    let mut cfg = base_config();
    cfg.max_connections = Some(2);
    let s = start(cfg).await;
    let (_a, _) = s.plain("a").await;
    let _b = s.client().await;
    wait_for(|| s.server.counts().clients == 2).await;
    match tokio_tungstenite::connect_async(s.ws_url()).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("third connection accepted"),
    }
    // A freed place can be taken again (once the closed connection's task has ended).
    drop(_b);
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    let mut c = loop {
        match tokio_tungstenite::connect_async(s.ws_url()).await {
            Ok((ws, _)) => break ws,
            Err(tungstenite::Error::Http(resp)) if resp.status() == 503 => {
                assert!(tokio::time::Instant::now() < deadline, "place never freed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    };
    c.send(Message::text(
        json!({"event": "authenticate", "data": {"token": "c"}}).to_string(),
    ))
    .await
    .expect("send");
    s.wait_authenticated(2).await;
    s.stop().await;
}

#[tokio::test]
async fn connections_from_one_address_over_the_per_ip_limit_get_http_429() {
    let mut cfg = base_config();
    cfg.max_connections_per_ip = Some(2);
    let s = start(cfg).await;
    let (_a, _) = s.plain("a").await;
    let b = s.client().await;
    wait_for(|| s.server.counts().clients == 2).await;
    for _ in 0..2 {
        match tokio_tungstenite::connect_async(s.ws_url()).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("third connection from 127.0.0.1 accepted"),
        }
    }
    // The admin API on the same listener is not counted.
    let r = reqwest::get(s.http("/socket/health"))
        .await
        .expect("health");
    assert_eq!(r.status(), 200);
    // Once one closes (and its task has ended), the address may connect again.
    drop(b);
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    let mut c = loop {
        match tokio_tungstenite::connect_async(s.ws_url()).await {
            Ok((ws, _)) => break ws,
            Err(tungstenite::Error::Http(resp)) if resp.status() == 429 => {
                assert!(tokio::time::Instant::now() < deadline, "place never freed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    };
    c.send(Message::text(
        json!({"event": "authenticate", "data": {"token": "c"}}).to_string(),
    ))
    .await
    .expect("send");
    s.wait_authenticated(2).await;
    s.stop().await;
}

#[test]
fn the_default_connection_limit_follows_the_descriptor_limit() {
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    let expected = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(sealwire::server::RESERVED_FDS)
        .max(sealwire::server::MIN_MAX_CONNECTIONS);
    assert_eq!(
        sealwire::ServerConfig::default().max_connections,
        Some(expected)
    );
}

/// An unauthenticated client that floods invalid frames and never reads the error replies
/// fills the socket; every reply then waits on it. The authentication deadline must still
/// end the connection.
#[tokio::test]
async fn a_client_that_floods_without_reading_is_dropped_by_the_auth_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth_timeout = Duration::from_millis(300);
    let mut cfg = base_config();
    cfg.auth_timeout = auth_timeout;
    // Pings are queued for every connection at each sweep, also for one not yet
    // authenticated; writing one to the backed-up socket must not outlast the deadline either.
    cfg.heartbeat_interval = Duration::from_millis(10);
    let s = start(cfg).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    // A small receive window, so the replies back up at once.
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut tcp = socket.connect(s.addr).await.expect("connect");
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .expect("write upgrade");
    // The response head, and nothing more is ever read.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Empty masked text frames: each is 6 bytes and gets a 60-byte "Invalid message format".
    let chunk = [0x81u8, 0x80, 1, 2, 3, 4].repeat(10_000);
    // A liveness bound, generous: the deadline plus the bounded close is 2x the timeout.
    let flood = async {
        loop {
            if let Err(e) = tcp.write_all(&chunk).await {
                return e;
            }
        }
    };
    let ended = tokio::time::timeout(auth_timeout * 10, flood).await;
    assert!(ended.is_ok(), "still connected long past the auth deadline");
    wait_for(|| s.server.counts().clients == 0).await;
    s.stop().await;
}

/// The heartbeat sweep queues a ping for every connection, also for one not yet
/// authenticated. Writing pings to a client that never reads backs up the socket; the
/// authentication deadline must still end the connection (not the heartbeat timeout, 90 s).
#[tokio::test]
async fn pings_to_a_client_that_never_reads_do_not_outlast_the_auth_deadline() {
    let auth_timeout = Duration::from_millis(300);
    let mut cfg = base_config();
    cfg.auth_timeout = auth_timeout;
    cfg.heartbeat_interval = Duration::from_millis(5);
    let server = builder(cfg).build().expect("server");
    server.start().await.expect("start");
    // A pipe of 16 bytes: eight 2-byte pings fill it long before the deadline.
    let (io, _peer) = tokio::io::duplex(16);
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        io,
        tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    let conn = server.serve_socket(sealwire::transport::WsSocket::new(ws), None);
    // A liveness bound: the deadline plus the bounded close is 2x the timeout.
    let ended = tokio::time::timeout(auth_timeout * 10, conn).await;
    assert!(ended.is_ok(), "still open long past the auth deadline");
    assert_eq!(server.counts().clients, 0);
    server.shutdown().await;
}

/// Before authentication the authentication deadline governs: with a heartbeat timeout far
/// shorter than it, an idle unauthenticated connection still ends with 4001, not 4002.
#[tokio::test]
async fn an_unauthenticated_connection_ends_at_its_auth_deadline_not_the_heartbeat_timeout() {
    let mut cfg = base_config();
    cfg.auth_timeout = Duration::from_millis(800);
    cfg.heartbeat_interval = Duration::from_millis(20);
    cfg.heartbeat_timeout = Duration::from_millis(100);
    let s = start(cfg).await;
    let mut c = s.client().await;
    assert_eq!(c.expect_close().await, Some(4001));
    s.stop().await;
}

async fn client_task(url: String, i: usize) -> WsClient {
    let mut c = WsClient::connect(&url).await;
    if i.is_multiple_of(2) {
        c.authenticate(&format!("plain-{i}")).await;
    } else {
        c.authenticate_encrypted(&format!("enc-{i}")).await;
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_mixed_clients_each_get_a_broadcast_exactly_once() {
    const N: usize = 300;
    let s = start(base_config()).await;
    let mut tasks = Vec::new();
    for i in 0..N {
        tasks.push(tokio::spawn(client_task(s.ws_url(), i)));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("connect task"));
    }
    s.wait_authenticated(N).await;
    assert_eq!(s.server.counts().encrypted, N / 2);
    assert_eq!(
        s.server
            .to_all()
            .emit("once", &json!({"hello": "all"}))
            .await
            .expect("send")
            .local_recipients,
        N
    );
    s.server
        .to_all()
        .emit("end", &json!(null))
        .await
        .expect("send");
    let mut readers = Vec::new();
    for mut c in clients {
        readers.push(tokio::spawn(async move {
            assert_eq!(
                c.recv_msg().await,
                json!({"event": "once", "data": {"hello": "all"}})
            );
            assert_eq!(c.recv_msg().await["event"], "end");
            c
        }));
    }
    for r in readers {
        r.await.expect("reader");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_upgrades_cannot_exceed_the_connection_limit() {
    let mut cfg = base_config();
    cfg.max_connections = Some(3);
    let s = start(cfg).await;
    let attempts: Vec<_> = (0..40)
        .map(|_| tokio::spawn(tokio_tungstenite::connect_async(s.ws_url())))
        .collect();
    let mut open = Vec::new();
    for a in attempts {
        match a.await.expect("task") {
            Ok((ws, _)) => open.push(ws),
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(open.len() <= 3, "{} connections accepted", open.len());
    wait_for(|| s.server.counts().clients == open.len()).await;
    s.stop().await;
}

#[tokio::test]
async fn malformed_input_never_takes_a_connection_or_the_server_down() {
    let s = start_with(builder(base_config())).await;
    let (mut plain, _) = s.plain("p").await;
    let (mut enc, _) = s.encrypted("e").await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let nested_event = format!(
        r#"{{"event":"x","data":{}{}}}"#,
        "{\"a\":".repeat(2000),
        "1".to_owned() + &"}".repeat(2000)
    );
    let inputs: Vec<String> = vec![
        deep,
        nested_event,
        r#"{"event":"join"}"#.into(),
        r#"{"event":"join","data":null}"#.into(),
        r#"{"event":"leave","data":{"rooms":[1,2]}}"#.into(),
        r#"{"event":"join","data":{"rooms":[null]}}"#.into(),
        r#"{"event":"encrypted"}"#.into(),
        r#"{"event":"encrypted","data":{"iv":null,"ct":7}}"#.into(),
        r#"{"event":"x","id":5}"#.into(),
        r#"{"event":"x","data":1e999}"#.into(),
        r#"{"event":"\u0000\ud800"}"#.into(),
        r#"{"event":"authenticate","data":"not an object"}"#.into(),
        "\u{feff}{}".into(),
        String::new(),
    ];
    for c in [&mut plain, &mut enc] {
        for input in &inputs {
            c.send_text(input).await;
        }
        // Whatever errors came back, the connection still works and every reply decrypts.
        for m in c.sync().await {
            assert_eq!(m["event"], "error", "{m}");
        }
    }
    assert_eq!(s.server.counts().authenticated, 2);
    s.stop().await;
}

#[tokio::test]
async fn a_message_larger_than_the_outbox_is_refused_without_closing_anyone() {
    let mut cfg = base_config();
    cfg.outbox_bytes = 64 * 1024;
    let s = start_with(builder(cfg)).await;
    let (mut plain, _) = s.plain("p").await;
    let (mut enc, _) = s.encrypted("e").await;
    // Just under the budget: delivered to both, the encrypted copy included.
    let fits = "f".repeat(60 * 1024);
    assert_eq!(
        s.server
            .to_all()
            .emit("fits", &fits)
            .await
            .expect("send")
            .local_recipients,
        2
    );
    assert_eq!(plain.recv_msg().await["data"], fits.as_str());
    assert_eq!(enc.recv_msg().await["data"], fits.as_str());
    // Over the budget: an error for the sender, and nobody is disconnected.
    let huge = "h".repeat(100 * 1024);
    assert!(matches!(
        s.server.to_all().emit("huge", &huge).await,
        Err(sealwire::PublishError::Message(
            sealwire::server::SendError::TooLarge { .. }
        ))
    ));
    let admin = reqwest::Client::new()
        .post(s.http("/socket/broadcast"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"topic": "huge", "data": huge}))
        .send()
        .await
        .expect("admin");
    assert_eq!(admin.status(), 400);
    s.server
        .to_all()
        .emit("after", &json!(1))
        .await
        .expect("send");
    assert_eq!(plain.recv_msg().await["event"], "after");
    assert_eq!(enc.recv_msg().await["event"], "after");
    assert_eq!(s.server.counts().authenticated, 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_frames_are_handled_while_outbound_traffic_never_stops() {
    let mut cfg = base_config();
    cfg.heartbeat_interval = Duration::from_millis(50);
    cfg.heartbeat_timeout = Duration::from_millis(400);
    let s = start_with(builder(cfg)).await;
    let (mut c, _) = s.plain("busy").await;
    let id = c.id();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let server = s.server.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..16 {
                    server
                        .to_client(&id)
                        .emit("tick", &json!(0))
                        .await
                        .expect("send");
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    // Heartbeats and custom events keep flowing in while ticks flow out; the client must
    // neither time out (4002) nor miss its echoes.
    for round in 0..20u32 {
        c.send_json(&json!({"event": "heartbeat"})).await;
        c.emit("round", json!(round)).await;
        loop {
            let m = c.recv_msg().await;
            if m["event"] == "echo" {
                assert_eq!(m["data"]["data"], round);
                break;
            }
            assert_eq!(m["event"], "tick", "{m}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.await.expect("flood");
    assert_eq!(s.server.counts().authenticated, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outbound_backlog_does_not_starve_inbound_heartbeats() {
    const TICKS: u32 = 100_000;
    let mut cfg = base_config();
    cfg.heartbeat_interval = Duration::from_millis(50);
    cfg.heartbeat_timeout = Duration::from_millis(300);
    cfg.outbox_messages = 200_000;
    cfg.outbox_bytes = 64 * 1024 * 1024;
    let s = start(cfg).await;
    let (mut c, _) = s.plain("reader").await;
    let producer = {
        let server = s.server.clone();
        let id = c.id();
        tokio::spawn(async move {
            for i in 0..TICKS {
                server.to_client(&id).emit("t", &i).await.expect("send");
                if i.is_multiple_of(1000) {
                    tokio::task::yield_now().await;
                }
            }
            server
                .to_client(&id)
                .emit("end", &json!(null))
                .await
                .expect("send");
        })
    };
    // The client reads the whole backlog, sending a heartbeat every 500 messages; the
    // server must read those while it still has messages queued for the client.
    for i in 0..TICKS {
        if i.is_multiple_of(500) {
            c.send_json(&json!({"event": "heartbeat"})).await;
        }
        match c.recv().await {
            Received::Text(t) => assert_eq!(t, format!(r#"{{"event":"t","data":{i}}}"#)),
            Received::Close(code) => panic!("closed with {code:?} after {i} messages"),
        }
    }
    producer.await.expect("producer");
    assert_eq!(c.recv_msg().await["event"], "end");
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_headers_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = builder(base_config()).build().expect("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut http = sealwire::transport::HttpConfig::default();
    http.header_read_timeout = Duration::from_millis(200);
    let s = server.clone();
    let task = tokio::spawn(async move {
        sealwire::transport::serve_with_shutdown(listener, s, http, std::future::pending()).await
    });
    wait_for(|| server.is_ready()).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // The server gives up on the request: the read ends (EOF or an error response).
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(RECV_TIMEOUT, tcp.read_to_end(&mut buf))
        .await
        .expect("server closed the idle request");
    let answer = String::from_utf8_lossy(&buf);
    assert!(!answer.contains(" 101 "), "upgraded anyway: {answer}");
    // A well-behaved client is still served.
    let mut c = WsClient::connect(&format!("ws://{addr}/ws")).await;
    c.authenticate("after-slowloris").await;
    server.shutdown().await;
    let _ = task.await;
}

/// Every connection keeps its task's future for its whole life, so its size is memory per
/// idle connection. It holds the socket, the connection state and the wait; a layout
/// regression (a future stored twice, a large state kept inline) costs kilobytes per
/// connection and fails here.
#[tokio::test]
async fn the_per_connection_future_stays_small() {
    let server = builder(base_config()).build().expect("server");
    let (io, _peer) = tokio::io::duplex(64);
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        io,
        tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    let ws = sealwire::transport::WsSocket::new(ws);
    let socket = std::mem::size_of_val(&ws);
    let fut = server.serve_socket(ws, None);
    let size = std::mem::size_of_val(&fut);
    assert!(
        size <= socket + 640,
        "connection future is {size} bytes for a {socket}-byte socket"
    );
    drop(fut);
    assert_eq!(server.counts().clients, 0, "dropping it deregisters");
}

/// A WebSocket opened by hand on a raw TCP stream (to send frames no client library would),
/// returned after the server's 101.
async fn raw_websocket(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = "GET /ws HTTP/1.1\r\nHost: sealwire\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    tcp.write_all(head.as_bytes())
        .await
        .expect("upgrade request");
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.expect("response head");
        got.push(byte[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    tcp
}

/// Everything the server sends until it closes the TCP connection, as frames: the close
/// frame's code, if one came.
async fn close_frame_code(tcp: &mut tokio::net::TcpStream) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, tcp.read_to_end(&mut bytes))
        .await
        .expect("the server ends the connection")
        .ok()?;
    let mut rest = bytes.as_slice();
    while rest.len() >= 2 {
        let (opcode, len) = (rest[0] & 0x0f, usize::from(rest[1] & 0x7f));
        let (len, start) = match len {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => panic!("no frame here is that long"),
            n => (n, 2),
        };
        let payload = &rest[start..start + len];
        if opcode == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
        rest = &rest[start + len..];
    }
    None
}

/// A client frame: FIN, `first` (opcode and reserved bits), masked with a zero key unless
/// `masked` is false.
fn client_frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let len = u8::try_from(payload.len()).expect("short");
    let mut frame = vec![first];
    if masked {
        frame.push(0x80 | len);
        frame.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as it is
    } else {
        frame.push(len);
    }
    frame.extend_from_slice(payload);
    frame
}

/// A client that breaks the WebSocket framing rules is told why in a close frame (RFC 6455
/// §7.1.7): 1002 for broken framing, 1007 for a text message that is not UTF-8; before and
/// after authentication, and the disconnected hook sees the same code.
#[tokio::test]
async fn framing_violations_close_1002_and_invalid_utf8_closes_1007() {
    use tokio::io::AsyncWriteExt;
    let (b, closed) = recording(base_config());
    let ts = start_with(b).await;
    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("unmasked text", client_frame(0x81, b"hi", false), 1002),
        ("reserved bit", client_frame(0xC1, b"hi", true), 1002),
        ("reserved opcode", client_frame(0x83, b"", true), 1002),
        (
            "continuation without a start",
            client_frame(0x80, b"hi", true),
            1002,
        ),
        ("fragmented ping", client_frame(0x09, b"", true), 1002),
        (
            "invalid UTF-8",
            client_frame(0x81, &[0x7b, 0xc3, 0x28, 0x7d], true),
            1007,
        ),
    ];
    for (name, frame, code) in cases {
        for authenticated in [false, true] {
            let mut tcp = raw_websocket(ts.addr).await;
            if authenticated {
                let auth = br#"{"event":"authenticate","data":{"token":"framing"}}"#;
                tcp.write_all(&client_frame(0x81, auth, true))
                    .await
                    .expect("auth");
                wait_for(|| ts.server.counts().clients == 1).await;
            }
            tcp.write_all(&frame).await.expect("frame");
            assert_eq!(close_frame_code(&mut tcp).await, Some(code), "{name}");
            if authenticated {
                wait_for(|| closed_code(&closed, "framing") == Some(code)).await;
                closed.lock().expect("lock").clear();
                wait_for(|| ts.server.counts().clients == 0).await;
            }
        }
    }
    ts.stop().await;
}

/// A client that sends requests and never reads the answers cannot hold its HTTP connection
/// (and its place under `max_tcp_connections`): once a write has waited `send_timeout` for it
/// to read, the connection is closed. (Without that, the server would write all 60,000
/// answers as the client drains them.)
#[tokio::test]
async fn a_client_that_does_not_read_its_answers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut http = test_http();
    http.send_timeout = Duration::from_secs(1);
    let s = start_with_http(builder(base_config()), http).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut tcp = socket.connect(s.addr).await.expect("connect");
    // Answers of about 200 bytes: 12 MB in all, well past what the kernel's socket buffers
    // take on both sides (a send buffer grows to `tcp_wmem`'s maximum, 4 MiB by default).
    const REQUESTS: usize = 60_000;
    let request = b"GET /socket/health HTTP/1.1\r\nHost: x\r\n\r\n".repeat(REQUESTS);
    // The server answers while the requests arrive; it may stop reading them once stalled.
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&request)).await;
    // Long enough for a slow (debug) build to fill its send buffer (about 3 MB of answers,
    // some 15,000 of them) and then wait out the send timeout: the client reads nothing until
    // then. (Reading earlier lets the server make progress, which is the point of the timeout.)
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut answers = Vec::new();
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answers.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection is still open");
    let answered = answers.windows(8).filter(|w| w == b"HTTP/1.1").count();
    assert!(
        answered < REQUESTS,
        "cut off before all {REQUESTS} answers: {answered}"
    );
    s.stop().await;
}
