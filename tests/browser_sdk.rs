//! The browser SDK in a real browser: headless Chromium loads a page from localhost (a secure
//! context, so WebCrypto is there) that connects with the hardened profile (`sealwire-v2`,
//! sealed authentication) and a pinned server identity, with a token provider that hands out
//! short-lived tokens; it joins a room and sends an event; the server then pushes a user and a
//! room message, and one to a room with room keys, which reaches the page as a binary room
//! record. The page refreshes its session on its own and is still served after the first
//! token's expiry; a tap on its WebSocket shows that neither the token nor the user id crossed
//! the wire in plaintext. Then its connection is cut while messages are published, and it
//! recovers them on reconnect to another instance (history shared in Redis Streams). A second, shorter test runs the SDK over the Socket.IO
//! transport with socket.io-client's browser build (websocket, then polling). Everything the page sees is reported back over HTTP and checked here. Fails, never skips,
//! when Chromium is missing: CI installs it (`SEALWIRE_CHROMIUM` names another binary).

mod common;

use sealwire::publish::Publish;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::hardened::{config_with, identity};
use common::*;
use sealwire::bus::{RedisBus, RedisBusConfig};
use sealwire::crypto::HandshakeConfig;
use sealwire::server::GlobRooms;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const USER: &str = "browser-user";
/// Lifetime of each token the page's provider hands out (`ttl:<ms>:<user>`).
const TTL_MS: u64 = 3000;
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/js")
}

async fn page() -> impl IntoResponse {
    match tokio::fs::read_to_string(sdk_dir().join("test/browser/page.html")).await {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves the SDK's modules: the `.js` files of `sdk/js/src`, whatever they are.
async fn module(UrlPath(file): UrlPath<String>) -> impl IntoResponse {
    let known = std::fs::read_dir(sdk_dir().join("src"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_str() == Some(file.as_str()));
    if !known || !file.ends_with(".js") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read_to_string(sdk_dir().join("src").join(&file)).await {
        Ok(js) => ([(header::CONTENT_TYPE, "text/javascript")], js).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn socketio_page() -> impl IntoResponse {
    match tokio::fs::read_to_string(sdk_dir().join("test/browser/socketio.html")).await {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

fn sio_harness_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sio")
}

/// socket.io-client's browser build (ES module), from tests/sio (`npm ci` there if missing).
fn socketio_client_bundle() -> PathBuf {
    let bundle = sio_harness_dir().join("node_modules/socket.io-client/dist/socket.io.esm.min.js");
    if !bundle.exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(sio_harness_dir())
            .status()
            .expect("`npm` must be installed for the Socket.IO browser test");
        assert!(status.success(), "npm ci in tests/sio failed");
    }
    bundle
}

async fn vendor() -> impl IntoResponse {
    match tokio::fs::read_to_string(socketio_client_bundle()).await {
        Ok(js) => ([(header::CONTENT_TYPE, "text/javascript")], js).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// What the page's handlers share: its reports, whether it may reconnect (`GET /go`), and
/// where to.
#[derive(Clone)]
struct Shared {
    reports: mpsc::UnboundedSender<Value>,
    go: Arc<AtomicBool>,
    reconnect_to: String,
}

async fn go(State(shared): State<Shared>) -> Response {
    if shared.go.load(Ordering::Acquire) {
        (StatusCode::OK, shared.reconnect_to).into_response()
    } else {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }
}

async fn report(State(shared): State<Shared>, body: String) -> StatusCode {
    let tx = shared.reports;
    let value = serde_json::from_str(&body).unwrap_or_else(|_| json!({"step": "bad-report"}));
    let _ = tx.send(value);
    StatusCode::NO_CONTENT
}

/// The page's reports: everything seen (for failure messages) and those not consumed yet.
#[derive(Default)]
struct Reports {
    seen: Vec<Value>,
    pending: Vec<Value>,
}

/// The first report of `step` not consumed yet (waiting for it if need be), failing on a page
/// error.
async fn next(rx: &mut mpsc::UnboundedReceiver<Value>, reports: &mut Reports, step: &str) -> Value {
    if let Some(i) = reports.pending.iter().position(|r| r["step"] == step) {
        return reports.pending.remove(i);
    }
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let report = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no `{step}` report from the browser; saw {:?}",
                    reports.seen
                )
            })
            .expect("report channel open");
        assert_ne!(report["step"], "page-error", "{report}");
        reports.seen.push(report.clone());
        if report["step"] == step {
            return report;
        }
        reports.pending.push(report);
    }
}

/// Waits until every report the page numbered before `report` has arrived: reports travel as
/// concurrent requests, so one sent earlier can reach the test later.
async fn settle(rx: &mut mpsc::UnboundedReceiver<Value>, reports: &mut Reports, report: &Value) {
    let upto = report["seq"].as_u64().expect("numbered report");
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let have = reports
            .seen
            .iter()
            .filter(|r| r["seq"].as_u64().is_some_and(|s| s < upto))
            .count() as u64;
        if have >= upto {
            return;
        }
        let late = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("reports before #{upto} never arrived: {:?}", reports.seen))
            .expect("report channel open");
        assert_ne!(late["step"], "page-error", "{late}");
        reports.seen.push(late.clone());
        reports.pending.push(late);
    }
}

/// The next `message` report whose event is `event`.
async fn message(
    rx: &mut mpsc::UnboundedReceiver<Value>,
    reports: &mut Reports,
    event: &str,
) -> Value {
    loop {
        let m = next(rx, reports, "message").await;
        if m["event"] == event {
            return m;
        }
    }
}

#[tokio::test]
async fn browser_sdk_runs_in_headless_chromium() {
    let identity = identity(0x24);
    let config = config_with(
        Some(identity.clone()),
        HandshakeConfig::default().rekey_after,
    );
    let mut config = config;
    config.history.rooms = vec!["chat:*".to_owned()];
    config.room_keys.rooms = vec!["chat:keyed*".to_owned()];
    // Two instances on one Redis (bus, and history in Redis Streams): the page reconnects to
    // the other one and recovers there.
    let redis = common::redis::RedisServer::start().await;
    let on_redis = |config: sealwire::server::ServerConfig| {
        let bus = RedisBus::new(RedisBusConfig::new(redis.url())).expect("bus");
        let store = bus
            .history_store(config.history.size, config.history.ttl)
            .expect("history store");
        builder(config)
            .validate_rooms(GlobRooms::new(["chat:*"]).expect("glob"))
            .bus(bus)
            .history_store(store)
    };
    let server = start_with(on_redis(config.clone())).await;
    let twin = start_with(on_redis(config)).await;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let may_reconnect = Arc::new(AtomicBool::new(false));
    let app = Router::new()
        .route("/", get(page))
        .route("/sdk/{file}", get(module))
        .route("/report", post(report))
        .route("/go", get(go))
        .with_state(Shared {
            reports: tx,
            go: Arc::clone(&may_reconnect),
            reconnect_to: twin.ws_url(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let http = listener.local_addr().expect("addr");
    let web = tokio::spawn(async move { axum::serve(listener, app).await });

    let page_url = format!(
        "http://{http}/?ws={}&user={USER}&ttl={TTL_MS}&pin={}",
        server.ws_url(),
        urlencode(&identity.public_key().to_base64())
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let _browser = common::browser::chromium(&page_url, profile.path(), &[]);

    let mut reports = Reports::default();
    let rx = &mut rx;
    let ready = next(rx, &mut reports, "ready").await;
    assert_eq!(ready["userId"], USER);
    assert_eq!(ready["profile"], "sealwire-v2");
    assert_eq!(ready["encrypted"], true);
    let first_expiry = ready["expiresAt"].as_str().expect("expiresAt").to_owned();
    assert!(
        ready["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.contains("Chrome")),
        "{ready}"
    );
    let id = ready["id"].as_str().expect("client id").to_owned();

    // What the page sent arrived encrypted, from a secure context.
    let echo = loop {
        let m = message(rx, &mut reports, "echo").await;
        if m["data"]["event"] == "note" {
            break m;
        }
    };
    assert_eq!(echo["data"]["wasEncrypted"], true, "{echo}");
    assert_eq!(echo["data"]["data"]["secureContext"], true, "{echo}");
    assert!(
        server
            .server
            .client_rooms(&id)
            .expect("known client")
            .contains(&"chat:browser".to_owned())
    );

    // Server pushes reach the page decrypted; on the wire they were records.
    server
        .server
        .to_user(USER)
        .emit("to-user", &json!({"n": 1}))
        .await
        .expect("send to user");
    server
        .server
        .to_room("chat:browser")
        .emit("to-room", &json!({"n": 2}))
        .await
        .expect("send to room");
    for (event, n) in [("to-user", 1), ("to-room", 2)] {
        let m = message(rx, &mut reports, event).await;
        assert_eq!(m["data"]["n"], n);
        assert_eq!(m["encrypted"], true);
        let raw: Value = serde_json::from_str(m["raw"].as_str().expect("raw")).expect("json");
        assert_eq!(raw["event"], "encrypted");
        assert!(raw["data"]["seq"].is_u64());
        assert_eq!(m["binaryFrames"], 0, "{m}");
    }
    // A room with room keys: one record sealed under the room's epoch key, which the page
    // took as a binary message (no text frame to capture) and opened.
    server
        .server
        .to_room("chat:keyed-browser")
        .emit("to-keyed", &json!({"n": 5}))
        .await
        .expect("send to keyed room");
    let m = message(rx, &mut reports, "to-keyed").await;
    assert_eq!(
        (m["data"]["n"].clone(), m["encrypted"].clone()),
        (json!(5), json!(true))
    );
    assert_eq!(
        (m["raw"].clone(), m["binaryFrames"].clone()),
        (Value::Null, json!(1)),
        "{m}"
    );

    // The page refreshed on its own, with a new token from its provider, sealed.
    let refreshed = next(rx, &mut reports, "refreshed").await;
    assert_eq!(refreshed["userId"], USER, "{refreshed}");
    let new_expiry = refreshed["expiresAt"].as_str().expect("new expiresAt");
    assert!(
        new_expiry > first_expiry.as_str(),
        "{new_expiry} after {first_expiry}"
    );
    assert_eq!(
        refreshed["purposes"],
        json!(["connect", "refresh"]),
        "{refreshed}"
    );
    // On the wire: a plaintext hello each way, records otherwise; neither the token nor the
    // user id in any frame.
    assert_eq!(
        refreshed["plaintext"],
        json!(["hello", "hello"]),
        "{refreshed}"
    );
    assert_eq!(refreshed["leaked"], json!([]), "{refreshed}");
    assert!(
        refreshed["framesOut"].as_u64().expect("count") >= 6,
        "{refreshed}"
    );

    // Past the first token's lifetime the same session is still served.
    tokio::time::sleep(Duration::from_millis(TTL_MS + 300)).await;
    assert!(
        server.server.client_rooms(&id).is_some(),
        "session {id} ended"
    );
    server
        .server
        .to_user(USER)
        .emit("after-expiry", &json!({"n": 3}))
        .await
        .expect("send to user");
    let late = message(rx, &mut reports, "after-expiry").await;
    assert_eq!(late["data"]["n"], 3);

    for bad in [
        "decryptFailed",
        "plaintextRejected",
        "disconnected",
        "refreshFailed",
        "serverError",
    ] {
        assert!(
            !reports.seen.iter().any(|r| r["step"] == bad),
            "{bad} reported: {:?}",
            reports.seen
        );
    }

    // Recovery: the page's connection is cut mid-stream and the network kept down while ten
    // room messages are published; on reconnect the page gets each once, in order, sealed
    // under its new session, then `recovered`, then live messages.
    server
        .server
        .to_user(USER)
        .emit("cut-now", &json!(null))
        .await
        .expect("send to user");
    next(rx, &mut reports, "cut").await;
    wait_for(|| server.server.client_rooms(&id).is_none()).await;
    for n in 1..=10 {
        server
            .server
            .to_room("chat:browser")
            .emit("missed", &json!({ "n": n }))
            .await
            .expect("publish while away");
    }
    may_reconnect.store(true, Ordering::Release);
    let recovered = loop {
        let r = next(rx, &mut reports, "recovered").await;
        settle(rx, &mut reports, &r).await;
        let streams = r["streams"].as_array().cloned().unwrap_or_default();
        // The first join's answer (no position yet) came earlier; this is the re-join's.
        if let Some(room) = streams
            .iter()
            .find(|s| s["stream"] == "room:chat:browser" && !s["recovered"].is_null())
        {
            break room.clone();
        }
    };
    assert_eq!(recovered["recovered"], true, "{recovered}");
    assert_eq!(recovered["replayed"], 10, "{recovered}");
    // In the order the page saw them (its reports travel as concurrent requests).
    let mut missed: Vec<Value> = reports
        .seen
        .iter()
        .filter(|r| r["step"] == "message" && r["event"] == "missed")
        .cloned()
        .collect();
    missed.sort_by_key(|m| m["seq"].as_u64());
    let numbers: Vec<u64> = missed
        .iter()
        .filter_map(|m| m["data"]["n"].as_u64())
        .collect();
    assert_eq!(numbers, (1..=10).collect::<Vec<_>>(), "each once, in order");
    for m in &missed {
        assert_eq!(m["encrypted"], true, "{m}");
        assert_eq!(m["position"]["stream"], "room:chat:browser", "{m}");
        let raw: Value = serde_json::from_str(m["raw"].as_str().expect("raw")).expect("json");
        assert_eq!(raw["event"], "encrypted", "sealed on the wire: {m}");
    }
    server
        .server
        .to_room("chat:browser")
        .emit("live", &json!({"n": 11}))
        .await
        .expect("live");
    let live = message(rx, &mut reports, "live").await;
    assert_eq!(
        live["position"]["offset"].as_u64(),
        missed
            .last()
            .and_then(|m| m["position"]["offset"].as_u64())
            .map(|o| o + 1),
        "{live}"
    );
    assert_eq!(
        twin.server.counts().authenticated,
        1,
        "recovered on the twin"
    );
    web.abort();
    server.stop().await;
    twin.stop().await;
}

/// The SDK over the Socket.IO transport in Chromium, with socket.io-client's browser build:
/// hardened with a pinned identity over websocket and then polling, same-origin (the page
/// comes from the sealwire server itself); user and room messages arrive sealed, the note it
/// sends arrives encrypted, and on the raw engine.io packets only `sealwire` events, a hello
/// each way, and neither the token, the user id nor room or event names.
#[tokio::test]
async fn browser_sdk_runs_over_socketio_in_headless_chromium() {
    use sealwire::transport::socketio::{self, SocketIoConfig};
    use sealwire::transport::{HttpConfig, serve_with_shutdown};

    let bundle = socketio_client_bundle();
    assert!(bundle.exists(), "{}", bundle.display());
    let identity = identity(0x25);
    let config = config_with(
        Some(identity.clone()),
        HandshakeConfig::default().rekey_after,
    );
    let rooms = GlobRooms::new(["chat:*"]).expect("glob");
    let server = builder(config)
        .validate_rooms(rooms)
        .build()
        .expect("valid server config");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pages = Router::new()
        .route("/sio.html", get(socketio_page))
        .route("/sdk/{file}", get(module))
        .route("/vendor/socket.io.esm.min.js", get(vendor))
        .route("/report", post(report))
        .with_state(Shared {
            reports: tx,
            go: Arc::new(AtomicBool::new(true)),
            reconnect_to: String::new(),
        });
    let mut http = HttpConfig::default();
    http.routes = Some(socketio::router(server.clone(), SocketIoConfig::default()).merge(pages));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let s = server.clone();
    let task = tokio::spawn(async move {
        serve_with_shutdown(listener, s, http, std::future::pending()).await
    });
    wait_for(|| server.is_ready()).await;
    let server = TestServer {
        server,
        addr,
        path: "/ws".to_owned(),
        task,
    };

    let page_url = format!(
        "http://{addr}/sio.html?user=sio-{USER}&transports=websocket,polling&pin={}",
        urlencode(&identity.public_key().to_base64())
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let _browser = common::browser::chromium(&page_url, profile.path(), &[]);
    let mut reports = Reports::default();
    let rx = &mut rx;
    for transport in ["websocket", "polling"] {
        let user = format!("sio-{USER}-{transport}");
        let ready = next(rx, &mut reports, "ready").await;
        assert_eq!(ready["transport"], transport, "{ready}");
        assert_eq!(ready["userId"], user.as_str());
        assert_eq!(ready["profile"], "sealwire-v2");
        assert_eq!(ready["encrypted"], true);
        let id = ready["id"].as_str().expect("client id").to_owned();
        let echo = loop {
            let m = message(rx, &mut reports, "echo").await;
            if m["data"]["event"] == "note" && m["transport"] == transport {
                break m;
            }
        };
        assert_eq!(echo["data"]["wasEncrypted"], true, "{echo}");
        assert_eq!(echo["data"]["data"]["secureContext"], true, "{echo}");
        assert!(
            server
                .server
                .client_rooms(&id)
                .expect("known client")
                .contains(&"chat:sio".to_owned())
        );
        let s = &server.server;
        s.to_user(&user)
            .emit("to-user", &json!({"n": 1}))
            .await
            .expect("send to user");
        s.to_room("chat:sio")
            .emit("to-room", &json!({"n": 2}))
            .await
            .expect("send to room");
        for (event, n) in [("to-user", 1), ("to-room", 2)] {
            let m = message(rx, &mut reports, event).await;
            assert_eq!(m["data"]["n"], n, "{m}");
            assert_eq!(m["encrypted"], true, "{m}");
        }
        s.to_client(&id)
            .emit("done", &json!(null))
            .await
            .expect("send to client");
        let wire = next(rx, &mut reports, "wire").await;
        assert_eq!(wire["transport"], transport, "{wire}");
        assert_eq!(wire["events"], json!(["sealwire"]), "{wire}");
        assert_eq!(wire["hellos"], json!(["out", "in"]), "{wire}");
        assert_eq!(wire["leaked"], json!([]), "{wire}");
        assert!(wire["framesOut"].as_u64().expect("count") >= 5, "{wire}");
    }
    next(rx, &mut reports, "finished").await;
    for r in &reports.seen {
        for bad in [
            "decryptFailed",
            "plaintextRejected",
            "serverError",
            "page-error",
        ] {
            assert_ne!(r["step"], bad, "{:?}", reports.seen);
        }
        if r["step"] == "disconnected" {
            assert_eq!(r["reason"]["kind"], "client-closed", "{r}");
        }
    }
    server.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
