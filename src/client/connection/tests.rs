use std::time::Duration;

use tokio::net::TcpListener;
use tokio_tungstenite::MaybeTlsStream;

use super::*;

/// A client WebSocket whose server end has reset the connection.
async fn reset_socket() -> Ws {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        let tcp = ws.into_inner();
        // Closing with a zero linger sends a reset instead of a FIN.
        tcp.set_zero_linger().expect("SO_LINGER");
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (ws, _) =
        tokio_tungstenite::client_async(format!("ws://{addr}/ws"), MaybeTlsStream::Plain(tcp))
            .await
            .expect("handshake");
    server.await.expect("server");
    // Let the reset arrive.
    tokio::time::sleep(Duration::from_millis(50)).await;
    ws
}

#[tokio::test]
async fn a_message_whose_write_fails_is_reported_not_dropped_silently() {
    let (_commands_tx, commands) = mpsc::channel(4);
    let (events_tx, mut events) = mpsc::channel(4);
    let (info, _info_rx) = watch::channel(None);
    let task = Task::new(
        ClientConfig::new("ws://127.0.0.1:1/ws"),
        Arc::default(),
        commands,
        events_tx,
        info,
        CancellationToken::new(),
    );
    let mut ws = reset_socket().await;
    let frame = frame_json("order:placed", "{\"id\":1}");
    let mut result = Ok(());
    // The first write after a reset may still be taken by the kernel; the reset is reported
    // on the next one at the latest.
    for _ in 0..3 {
        result = task
            .send_message(&mut ws, &mut None, "order:placed".into(), &frame)
            .await;
        if result.is_err() {
            break;
        }
    }
    let Err(DisconnectReason::Network(_)) = result else {
        panic!("the write to a reset connection failed: {result:?}");
    };
    match events.try_recv() {
        Ok(Event::SendFailed { event, message }) => {
            assert_eq!(event, "order:placed");
            assert!(message.contains("broke"), "{message}");
        }
        other => panic!("expected SendFailed, got {other:?}"),
    }
    assert!(events.try_recv().is_err(), "one report per failed message");
}
