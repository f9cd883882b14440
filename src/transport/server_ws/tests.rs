use super::*;
use crate::server::WrittenWith;
use futures_util::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

/// A server over a pipe holding `pipe` bytes, coalescing up to `limit` (configured as the
/// door configures it: no write buffer in tungstenite), and its client.
async fn pair(
    pipe: usize,
    limit: usize,
) -> (ServerWebSocket<DuplexStream>, WebSocketStream<DuplexStream>) {
    let (a, b) = tokio::io::duplex(pipe);
    let config = WebSocketConfig::default().write_buffer_size(0);
    let server =
        WebSocketStream::from_raw_socket(Coalesce::new(a, limit), Role::Server, Some(config));
    let client = WebSocketStream::from_raw_socket(b, Role::Client, None);
    let (server, client) = tokio::join!(server, client);
    let server = ServerWebSocket::new(server);
    assert!(server.direct, "the direct path is on");
    (server, client)
}

/// A close message with `code` and `reason`.
fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

/// Text of `len` bytes that names message `i`.
fn text(i: usize, len: usize) -> String {
    let head = format!("{i}:");
    let fill = len.saturating_sub(head.len());
    format!("{head}{}", "x".repeat(fill))
}

#[tokio::test]
async fn every_message_arrives_whole_and_in_order_through_both_paths_under_backpressure() {
    // A 300-byte pipe and a 1000-byte buffer: most writes meet a full peer, tungstenite falls
    // behind, and messages take both paths (and the large ones the write-through one).
    let (mut server, mut client) = pair(300, 1000).await;
    let sizes = [
        0usize, 1, 125, 126, 127, 999, 1000, 4000, 65_535, 65_536, 70_000, 200,
    ];
    let expected: Vec<String> = (0..600).map(|i| text(i, sizes[i % sizes.len()])).collect();
    let sent = expected.clone();
    let writer = tokio::spawn(async move {
        for (i, t) in sent.into_iter().enumerate() {
            if i % 97 == 0 {
                server
                    .feed(Message::Ping(Vec::new().into()))
                    .await
                    .expect("ping");
            }
            server.feed(Message::text(t)).await.expect("feed");
            if i % 10 == 0 {
                server.flush().await.expect("flush");
            }
        }
        server.send(close(1000, "done")).await.expect("close");
        // The client's reply.
        while let Some(Ok(_)) = server.next().await {}
    });
    let mut got = Vec::new();
    let mut pings = 0;
    loop {
        match client.next().await {
            Some(Ok(Message::Text(t))) => got.push(t.to_string()),
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Answer the close and let the server see it.
    while let Some(Ok(_)) = client.next().await {}
    writer.await.expect("writer");
    assert_eq!(got.len(), expected.len());
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!(
            "message {i} differs: got {} bytes starting {:?}, expected {} bytes",
            got[i].len(),
            &got[i][..got[i].len().min(12)],
            expected[i].len()
        );
    }
    assert_eq!(pings, 7);
}

#[tokio::test]
async fn text_after_the_peer_closed_is_refused_as_tungstenite_refuses_it() {
    let (mut server, mut client) = pair(1 << 16, 1000).await;
    client.close(None).await.expect("client close");
    // The server reads the close (tungstenite queues the reply).
    match server.next().await {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected the close, got {other:?}"),
    }
    // No data frame may follow a close frame: the direct path must not write one.
    let sent = server.send(Message::text("late")).await;
    assert!(sent.is_err(), "a message after the close was accepted");
    // Finish the handshake and hang up, as the connection task does.
    let _ = server.close().await;
    drop(server);
    let mut seen = Vec::new();
    while let Some(Ok(m)) = client.next().await {
        seen.push(m);
    }
    assert!(
        seen.iter().all(|m| !m.is_text()),
        "the client received data after the close: {seen:?}"
    );
}

#[tokio::test]
async fn text_after_a_close_was_sent_is_refused() {
    let (mut server, mut client) = pair(1 << 16, 1000).await;
    server.send(Message::Close(None)).await.expect("close");
    assert!(server.send(Message::text("late")).await.is_err());
    let _ = server.close().await;
    drop(server);
    let mut seen = Vec::new();
    while let Some(Ok(m)) = client.next().await {
        seen.push(m);
    }
    assert!(seen.iter().all(|m| !m.is_text()), "{seen:?}");
}

#[tokio::test]
async fn a_discarded_backlog_of_direct_frames_leaves_the_close_frame_next() {
    use futures_util::FutureExt as _;
    // The client does not read: the pipe fills, the rest stays in the buffer.
    let (mut server, mut client) = pair(64, 4096).await;
    for i in 0..40 {
        server
            .feed(Message::text(text(i, 100)))
            .await
            .expect("feed");
    }
    assert!(server.flush().now_or_never().is_none(), "the peer is full");
    server.discard_unsent();
    // Sent after the discard and before the close: dropped too.
    server.feed(Message::text("dropped")).await.expect("feed");
    let closing = tokio::spawn(async move {
        server.send(close(4005, "slow")).await.expect("close");
    });
    let mut texts = Vec::new();
    let close = loop {
        match client.next().await {
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            other => panic!("unexpected {other:?}"),
        }
    };
    closing.await.expect("close task");
    assert_eq!(close, Some(4005));
    // Only the frames the pipe had taken (and the one in progress) arrive, whole, in order.
    assert!(texts.len() < 40, "nothing was discarded");
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(t, &text(i, 100));
    }
}

#[tokio::test]
async fn messages_made_in_place_arrive_whole_and_failed_ones_leave_nothing() {
    let (mut server, mut client) = pair(1 << 16, 1000).await;
    let made = |server: &mut ServerWebSocket<DuplexStream>, len: usize, bytes: &[u8], ok| {
        let mut called = false;
        let written = server.write_with(len, &mut |buf| {
            called = true;
            buf.extend_from_slice(bytes);
            ok
        });
        (written, called)
    };
    assert_eq!(
        made(&mut server, 5, b"hello", true),
        (WrittenWith::Written, true)
    );
    // Too short, not UTF-8, or a fill that gave up part way: nothing of them is sent.
    assert_eq!(
        made(&mut server, 5, b"hell", true),
        (WrittenWith::Failed, true)
    );
    assert_eq!(
        made(&mut server, 2, &[0xc3, 0x28], true),
        (WrittenWith::Failed, true)
    );
    assert_eq!(
        made(&mut server, 5, b"wor", false),
        (WrittenWith::Failed, true)
    );
    assert_eq!(
        made(&mut server, 200, &[b'y'; 200], true),
        (WrittenWith::Written, true)
    );
    // As large as the buffer: it goes the ordinary way, and is never made here.
    assert_eq!(
        made(&mut server, 1000, &[b'z'; 1000], true),
        (WrittenWith::Refused, false)
    );
    server.flush().await.expect("flush");
    server.send(close(1000, "done")).await.expect("close");
    // After a close frame nothing more is made.
    assert_eq!(
        made(&mut server, 5, b"later", true),
        (WrittenWith::Refused, false)
    );
    let mut texts = Vec::new();
    loop {
        match client.next().await {
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(Message::Close(_))) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(texts, ["hello".to_owned(), "y".repeat(200)]);
}

#[tokio::test]
async fn binary_messages_keep_their_opcode_and_their_place_on_both_paths() {
    // Text and binary interleaved, directly when the buffer takes them and through the `Sink`
    // otherwise (and the large ones written through), under backpressure.
    let (mut server, mut client) = pair(300, 1000).await;
    let sizes = [0usize, 1, 125, 126, 999, 4000, 70_000, 235];
    let expected: Vec<Message> = (0..200)
        .map(|i| {
            let t = text(i, sizes[i % sizes.len()]);
            if i % 3 == 0 {
                Message::binary(t.into_bytes())
            } else {
                Message::text(t)
            }
        })
        .collect();
    let sent = expected.clone();
    let writer = tokio::spawn(async move {
        for m in sent {
            let direct = match &m {
                Message::Binary(b) => server.write_binary_now(b),
                Message::Text(t) => server.write_now(t.as_str()),
                _ => false,
            };
            if !direct {
                server.feed(m).await.expect("feed");
            }
            server.flush().await.expect("flush");
        }
        server.send(close(1000, "done")).await.expect("close");
        while let Some(Ok(_)) = server.next().await {}
    });
    let mut got = Vec::new();
    loop {
        match client.next().await {
            Some(Ok(Message::Close(_))) => break,
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => got.push(m),
            other => panic!("unexpected {other:?}"),
        }
    }
    while let Some(Ok(_)) = client.next().await {}
    writer.await.expect("writer");
    assert_eq!(got, expected);
}
