//! Graceful shutdown: every socket gets 1001, the disconnected hook runs for every
//! authenticated client, and no new connection is accepted afterwards.

mod common;

use sealwire::publish::Publish;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sealwire::CloseCode;
use sealwire::server::ClientInfo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_socket_with_1001_and_runs_the_hooks() {
    let gone: Arc<Mutex<Vec<(String, CloseCode)>>> = Arc::default();
    let sink = Arc::clone(&gone);
    let s = start_with(builder(base_config()).on_disconnected(
        move |info: Arc<ClientInfo>, code: CloseCode| {
            let sink = Arc::clone(&sink);
            async move {
                // An async hook that takes a moment still completes before shutdown returns.
                tokio::time::sleep(Duration::from_millis(20)).await;
                sink.lock()
                    .expect("lock")
                    .push((info.user_id.clone(), code));
            }
        },
    ))
    .await;
    let mut clients = Vec::new();
    for i in 0..10u32 {
        let user = format!("user-{i}");
        let (c, _) = if i.is_multiple_of(2) {
            s.plain(&user).await
        } else {
            s.encrypted(&user).await
        };
        clients.push(c);
    }
    // Two connections that never authenticate.
    clients.push(s.client().await);
    clients.push(s.client().await);
    wait_for(|| s.server.counts().clients == 12).await;

    let server = s.server.clone();
    let stopping = tokio::spawn(async move { server.shutdown().await });
    for c in &mut clients {
        assert_eq!(c.expect_close().await, Some(1001));
    }
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown finished in time")
        .expect("shutdown task");

    let mut gone = gone.lock().expect("lock").clone();
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    let expected: Vec<(String, CloseCode)> = (0..10)
        .map(|i| (format!("user-{i}"), CloseCode::GoingAway))
        .collect();
    assert_eq!(gone, expected);
    assert_eq!(s.server.counts(), sealwire::server::Counts::default());
    assert!(!s.server.is_ready());
    s.stop().await;
}

#[tokio::test]
async fn no_new_connections_after_shutdown() {
    let s = start(base_config()).await;
    let url = s.ws_url();
    let health = s.http("/socket/health");
    s.server.shutdown().await;
    // The accept loop has stopped: the upgrade is refused one way or another.
    let r = tokio::time::timeout(RECV_TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .expect("refused promptly");
    assert!(r.is_err(), "connected after shutdown");
    let r = tokio::time::timeout(RECV_TIMEOUT, reqwest::get(health))
        .await
        .expect("refused promptly");
    assert!(r.map(|r| r.status() != 200).unwrap_or(true));
    s.stop().await;
}

#[tokio::test]
async fn upgrades_are_refused_with_503_once_shutdown_began() {
    // Mounted in an application's own router, the upgrade handler itself refuses.
    let s = start(base_config()).await;
    let app = sealwire::transport::router(s.server.clone(), &test_http());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app_task = tokio::spawn(async move { axum::serve(listener, app).await });
    s.server.shutdown().await;
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("upgrade accepted after shutdown"),
    }
    // Health tells load balancers to stop sending traffic.
    let r = reqwest::get(format!("http://{addr}/socket/health"))
        .await
        .expect("health");
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["status"], "unavailable");
    app_task.abort();
    s.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_slow_authentication() {
    let gone: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&gone);
    let s = start_with(builder(base_config()).on_disconnected(
        move |info: Arc<ClientInfo>, _code: CloseCode| {
            sink.lock().expect("lock").push(info.user_id.clone());
            std::future::ready(())
        },
    ))
    .await;
    let mut c = s.client().await;
    // The authenticate hook sleeps 10 s: far longer than the shutdown timeout.
    c.send_json(&serde_json::json!({"event": "authenticate", "data": {"token": "slow:10000"}}))
        .await;
    wait_for(|| {
        s.server
            .clients()
            .iter()
            .any(|c| c.state == sealwire::server::ClientState::Authenticating)
    })
    .await;
    let server = s.server.clone();
    let stopping = tokio::spawn(async move { server.shutdown().await });
    // The first thing the client sees is the close, not a late `connected`.
    match c.recv().await {
        Received::Close(code) => assert_eq!(code, Some(1001)),
        Received::Text(t) => panic!("expected close 1001, got {t}"),
    }
    stopping.await.expect("shutdown");
    assert!(gone.lock().expect("lock").is_empty());
    s.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_slow_message_handler() {
    let s = start_with(
        sealwire::Server::builder()
            .config(base_config())
            .authenticate(test_auth())
            .on_message(|_server, _msg| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }),
    )
    .await;
    let (mut c, _) = s.plain("busy").await;
    c.emit("work", serde_json::json!(null)).await;
    // Give the handler a chance to start (not required for the assertion).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let server = s.server.clone();
    let stopping = tokio::spawn(async move { server.shutdown().await });
    match c.recv().await {
        Received::Close(code) => assert_eq!(code, Some(1001)),
        Received::Text(t) => panic!("expected close 1001, got {t}"),
    }
    stopping.await.expect("shutdown");
    s.stop().await;
}

/// Shutdown in the middle of a slow connected hook: the client was announced, so its
/// disconnected hook runs, once, with 1001. Hooks come in pairs.
#[tokio::test]
async fn shutdown_during_the_connected_hook_still_pairs_the_hooks() {
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let (on_connect, on_gone) = (Arc::clone(&events), Arc::clone(&events));
    let s = start_with(
        builder(base_config())
            .on_connected(move |_server: sealwire::Server, info: Arc<ClientInfo>| {
                let log = Arc::clone(&on_connect);
                async move {
                    log.lock()
                        .expect("lock")
                        .push(format!("connected {}", info.user_id));
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            })
            .on_disconnected(move |info: Arc<ClientInfo>, code: CloseCode| {
                on_gone.lock().expect("lock").push(format!(
                    "disconnected {} {}",
                    info.user_id,
                    code.code()
                ));
                std::future::ready(())
            }),
    )
    .await;
    let (mut c, _) = s.plain("dora").await;
    wait_for(|| events.lock().expect("lock").len() == 1).await;
    let server = s.server.clone();
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown did not wait for the hook");
    assert_eq!(c.expect_close().await, Some(1001));
    assert_eq!(
        *events.lock().expect("lock"),
        vec![
            "connected dora".to_owned(),
            "disconnected dora 1001".to_owned()
        ]
    );
    s.stop().await;
}

#[tokio::test]
async fn an_embedded_router_starts_the_server_without_a_separate_call() {
    // Built but never started: mounting the router is enough.
    let server = builder(base_config()).build().expect("server");
    assert!(!server.is_ready());
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "app" }))
        .merge(sealwire::transport::router(server.clone(), &test_http()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app_task = tokio::spawn(async move { axum::serve(listener, app).await });
    wait_for(|| server.is_ready()).await;
    let mut c = WsClient::connect(&format!("ws://{addr}/ws")).await;
    let connected = c.authenticate("alice").await;
    assert_eq!(connected["data"]["userId"], "alice");
    server
        .to_user("alice")
        .emit("hi", &serde_json::json!(1))
        .await
        .expect("send");
    assert_eq!(c.recv_msg().await["event"], "hi");
    server.shutdown().await;
    app_task.abort();
}

/// A rolling deploy: with `drain`, the clients are closed (1001) in slices spread over the
/// drain time, health turns 503 at once, and every message that was accepted for a client
/// before its close reaches it, in order.
#[tokio::test]
async fn a_drain_spreads_the_closes_and_loses_no_accepted_message() {
    let mut cfg = base_config();
    cfg.drain = Duration::from_millis(1200);
    let s = start(cfg).await;
    let mut clients = Vec::new();
    for i in 0..12 {
        let (c, _) = if i % 2 == 0 {
            s.plain(&format!("u{i}")).await
        } else {
            s.encrypted(&format!("u{i}")).await
        };
        clients.push(c);
    }
    // A publisher keeps sending to every client through the drain, remembering which
    // messages the server accepted (queued) for whom.
    let publisher = {
        let server = s.server.clone();
        let ids: Vec<String> = clients.iter().map(WsClient::id).collect();
        tokio::spawn(async move {
            let mut accepted: Vec<Vec<u64>> = vec![Vec::new(); ids.len()];
            for seq in 0..400u64 {
                for (i, id) in ids.iter().enumerate() {
                    if server
                        .to_client(id)
                        .emit("tick", &serde_json::json!(seq))
                        .await
                        .is_ok_and(|n| n.local_recipients == 1)
                    {
                        accepted[i].push(seq);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = {
        let server = s.server.clone();
        tokio::spawn(async move { server.shutdown().await })
    };
    let mut received: Vec<Vec<u64>> = Vec::new();
    let mut closed_at = Vec::new();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                loop {
                    match c.recv().await {
                        Received::Text(t) => {
                            let frame: serde_json::Value = serde_json::from_str(&t).expect("json");
                            let msg = c.open(frame);
                            if msg["event"] == "tick" {
                                seqs.push(msg["data"].as_u64().expect("seq"));
                            }
                        }
                        Received::Close(code) => {
                            assert_eq!(code, Some(1001));
                            return (seqs, tokio::time::Instant::now());
                        }
                    }
                }
            })
        })
        .collect();
    wait_for(|| !s.server.is_ready()).await;
    for r in readers {
        let (seqs, at) = r.await.expect("reader");
        received.push(seqs);
        closed_at.push(at);
    }
    let accepted = publisher.await.expect("publisher");
    for (i, (got, want)) in received.iter().zip(&accepted).enumerate() {
        assert_eq!(
            got, want,
            "client {i}: every accepted message, in order, before 1001"
        );
        assert!(
            !want.is_empty(),
            "client {i} received messages during the drain"
        );
    }
    let first = closed_at.iter().min().expect("closes");
    let last = closed_at.iter().max().expect("closes");
    assert!(
        *last - *first >= Duration::from_millis(600),
        "closes were spread over the drain, not sent at once"
    );
    stopping.await.expect("shutdown");
    s.stop().await;
}

/// Without a drain, the stop still writes what was queued for a client before its 1001: a
/// client that was not reading when the stop began, holding far more than the socket
/// buffers take, gets every message, in order, once it reads again within
/// `shutdown_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_without_a_drain_writes_the_backlog_before_1001() {
    const MESSAGES: u64 = 300;
    let mut cfg = base_config();
    cfg.outbox_bytes = 64 * 1024 * 1024;
    cfg.shutdown_timeout = Duration::from_secs(5);
    let s = start(cfg).await;
    let (mut c, _) = s.plain("backlog").await;
    let id = c.id();
    // 300 x 60 KiB: about 18 MB, far beyond what loopback socket buffers hold, so most of
    // it is still in the server's outbox when the stop begins.
    let body = "x".repeat(60 * 1024);
    for seq in 0..MESSAGES {
        let sent = s
            .server
            .to_client(&id)
            .emit("bulk", &serde_json::json!({ "seq": seq, "body": body }))
            .await
            .expect("accepted");
        assert_eq!(sent.local_recipients, 1);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = {
        let server = s.server.clone();
        tokio::spawn(async move { server.shutdown().await })
    };
    wait_for(|| !s.server.is_ready()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut next = 0u64;
    loop {
        match c.recv().await {
            Received::Text(t) => {
                let frame: serde_json::Value = serde_json::from_str(&t).expect("json");
                if frame["event"] == "bulk" {
                    assert_eq!(frame["data"]["seq"].as_u64(), Some(next), "in order");
                    next += 1;
                }
            }
            Received::Close(code) => {
                assert_eq!(code, Some(1001));
                break;
            }
        }
    }
    assert_eq!(next, MESSAGES, "every queued message before the 1001");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown finished in time")
        .expect("shutdown task");
    s.stop().await;
}
