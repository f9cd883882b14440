use super::*;
use crate::server::{DevAuth, ServerConfig};
use crate::transport::closable::Closable;
use tower::ServiceExt as _;

const HEARTBEAT: Duration = Duration::from_secs(45);

fn server(max: usize, per_ip: usize) -> Server {
    let config = ServerConfig {
        max_connections: Some(max),
        max_connections_per_ip: Some(per_ip),
        ..ServerConfig::default()
    };
    Server::builder()
        .config(config)
        .authenticate(DevAuth)
        .build()
        .expect("server")
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, last]))
}

#[tokio::test]
async fn handshakes_hold_places_until_their_socket_takes_them() {
    let admission = Admission::new(server(3, 2), Duration::from_secs(60), HEARTBEAT);
    admission.open(ip(1)).expect("first");
    admission.open(ip(1)).expect("second");
    assert_eq!(admission.open(ip(1)), Err(SlotRefused::PerIp));
    admission.open(ip(2)).expect("another address");
    assert_eq!(admission.open(ip(3)), Err(SlotRefused::Full));
    assert_eq!(admission.pending(), 3);
    // A socket takes its handshake's slot: no new place is counted.
    let slot = admission.take(ip(1)).expect("taken");
    assert_eq!(admission.pending(), 2);
    assert_eq!(admission.open(ip(3)), Err(SlotRefused::Full));
    drop(slot);
    admission.open(ip(3)).expect("a place was freed");
}

#[test]
fn unused_handshake_slots_expire() {
    let admission = Admission::new(server(1, 1), Duration::ZERO, HEARTBEAT);
    admission.open(ip(1)).expect("first");
    // Expired at once: the next handshake's sweep releases it.
    admission.lock().swept = None;
    admission
        .open(ip(1))
        .expect("the expired slot was released");
    // A socket whose slot expired reserves a fresh one when there is room.
    admission.lock().swept = None;
    let slot = admission.take(ip(1)).expect("fresh slot");
    assert_eq!(admission.pending(), 0);
    drop(slot);
}

#[tokio::test(start_paused = true)]
async fn expired_slots_are_released_without_another_request() {
    let server = server(1, 1);
    let admission = Admission::new(server.clone(), Duration::from_millis(100), HEARTBEAT);
    admission.open(ip(1)).expect("first");
    assert_eq!(
        server.try_reserve_slot(ip(2)).err(),
        Some(SlotRefused::Full)
    );
    // Real time: `Instant::now()` decides expiry; the sweeper's sleep is paused time.
    std::thread::sleep(Duration::from_millis(150));
    tokio::time::sleep(SWEEP_EVERY * 2).await;
    assert_eq!(admission.pending(), 0);
    assert!(server.try_reserve_slot(ip(2)).is_ok(), "the place is free");
    assert!(!admission.lock().sweeper, "the sweeper stopped");
}

#[test]
fn only_get_requests_without_a_session_id_open_sessions() {
    let req = |method: &str, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .expect("request")
    };
    assert!(opens_session(&req("GET", "/io/?EIO=4&transport=polling")));
    assert!(opens_session(&req("GET", "/io/?EIO=4&transport=websocket")));
    let sid = "ABCDEFGHIJ_-1234";
    assert!(!opens_session(&req(
        "GET",
        &format!("/io/?EIO=4&transport=websocket&sid={sid}")
    )));
    assert!(!opens_session(&req(
        "GET",
        &format!("/io/?sid={sid}&EIO=4")
    )));
    assert!(!opens_session(&req("POST", "/io/?EIO=4&transport=polling")));
    // engine.io refuses these (no such session): they open nothing and need no slot.
    for query in ["sid=abc", "sid=", "sid=ABCDEFGHIJ_-123!", "sid=x&sid=y"] {
        assert!(
            !opens_session(&req(
                "GET",
                &format!("/io/?EIO=4&transport=polling&{query}")
            )),
            "{query}"
        );
    }
    // Not a `sid=` pair: a handshake.
    for query in ["sid", "xsid=ABCDEFGHIJ_-1234"] {
        assert!(
            opens_session(&req(
                "GET",
                &format!("/io/?EIO=4&transport=polling&{query}")
            )),
            "{query}"
        );
    }
}

async fn served() -> &'static str {
    "served"
}

/// A session the server went away from: a move to WebSocket is refused at once; its polling
/// requests are served until the shutdown timeout (the last words), then refused the way
/// engine.io refuses an unknown session. New sessions are refused while the server is not
/// serving (engine.io-client then tries again later).
#[tokio::test]
async fn a_session_gone_away_from_is_refused_through_the_middleware() {
    let config = ServerConfig {
        shutdown_timeout: Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let server = Server::builder()
        .config(config)
        .authenticate(DevAuth)
        .build()
        .expect("server");
    server.start().await.expect("start");
    let admission = Arc::new(Admission::new(
        server.clone(),
        Duration::from_secs(60),
        HEARTBEAT,
    ));
    let router: axum::Router = axum::Router::new()
        .route("/io/", axum::routing::get(served))
        .route_layer(axum::middleware::from_fn_with_state::<
            _,
            Arc<Admission>,
            (State<Arc<Admission>>, Request),
        >(Arc::clone(&admission), admit));
    let status = |uri: String, close: Option<CloseHandle>| {
        let router = router.clone();
        async move {
            let mut req = Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .expect("request");
            if let Some(close) = close {
                req.extensions_mut().insert(close);
            }
            router.oneshot(req).await.expect("answer").status()
        }
    };
    let (gone, other) = (Sid::new(), Sid::new());
    let polling = |sid: Sid| format!("/io/?EIO=4&transport=polling&sid={sid}");
    let upgrade = |sid: Sid| format!("/io/?EIO=4&transport=websocket&sid={sid}");
    assert!(!admission.go_away(gone), "no WebSocket connection known");
    let (_stream, close) = Closable::new(());
    assert_eq!(
        status(upgrade(gone), Some(close)).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(polling(gone), None).await,
        StatusCode::OK,
        "last words"
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(status(polling(gone), None).await, StatusCode::BAD_REQUEST);
    assert_eq!(
        status(polling(other), None).await,
        StatusCode::OK,
        "only that one"
    );
    // An upgrade recorded first is the session's connection: going away closes it.
    let (stream, close) = Closable::new(());
    assert_eq!(status(upgrade(other), Some(close)).await, StatusCode::OK);
    assert!(admission.go_away(other), "its connection is known");
    tokio::time::timeout(Duration::from_secs(5), async {
        while !stream.is_closed_for_tests() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("closed once quiet");
    // Shutting down: no new session.
    server.shutdown().await;
    assert_eq!(
        status("/io/?EIO=4&transport=polling".to_owned(), None).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}
