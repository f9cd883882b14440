//! The browser SDK in a real browser: headless Chromium loads a page from localhost (a secure
//! context, so WebCrypto is there) that connects with the hardened profile and a pinned server
//! identity, joins a room and sends an event; the server then pushes a user and a room message.
//! Everything the page sees is reported back over HTTP and checked here. Fails, never skips,
//! when Chromium is missing: CI installs it (`SEALWIRE_CHROMIUM` names another binary).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use common::hardened::{config_with, identity};
use common::*;
use sealwire::crypto::HandshakeConfig;
use sealwire::server::GlobRooms;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const USER: &str = "browser-user";
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

async fn module(UrlPath(file): UrlPath<String>) -> impl IntoResponse {
    let known = [
        "index.js",
        "client.js",
        "crypto.js",
        "encoding.js",
        "reason.js",
    ];
    if !known.contains(&file.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read_to_string(sdk_dir().join("src").join(&file)).await {
        Ok(js) => ([(header::CONTENT_TYPE, "text/javascript")], js).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn report(State(tx): State<mpsc::UnboundedSender<Value>>, body: String) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or_else(|_| json!({"step": "bad-report"}));
    let _ = tx.send(value);
    StatusCode::NO_CONTENT
}

/// Waits for the next report of `step`, failing on a page error.
async fn next(rx: &mut mpsc::UnboundedReceiver<Value>, seen: &mut Vec<Value>, step: &str) -> Value {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let report = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no `{step}` report from the browser; saw {seen:?}"))
            .expect("report channel open");
        assert_ne!(report["step"], "page-error", "{report}");
        seen.push(report.clone());
        if report["step"] == step {
            return report;
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
    let rooms = GlobRooms::new(["chat:*"]).expect("glob");
    let server = start_with(builder(config).validate_rooms(rooms)).await;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/", get(page))
        .route("/sdk/{file}", get(module))
        .route("/report", post(report))
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let http = listener.local_addr().expect("addr");
    let web = tokio::spawn(async move { axum::serve(listener, app).await });

    let page_url = format!(
        "http://{http}/?ws={}&user={USER}&pin={}",
        server.ws_url(),
        urlencode(&identity.public_key().to_base64())
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let chromium = std::env::var("SEALWIRE_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let _browser = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&page_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("`{chromium}` must be installed for the browser test: {e}"));

    let mut seen = Vec::new();
    let ready = next(&mut rx, &mut seen, "ready").await;
    assert_eq!(ready["userId"], USER);
    assert_eq!(ready["profile"], "sealwire-v1");
    assert_eq!(ready["encrypted"], true);
    assert!(
        ready["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.contains("Chrome")),
        "{ready}"
    );
    let id = ready["id"].as_str().expect("client id").to_owned();

    // What the page sent arrived encrypted, from a secure context.
    let echo = loop {
        let m = next(&mut rx, &mut seen, "message").await;
        if m["event"] == "echo" && m["data"]["event"] == "note" {
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
        .send_to_user(USER, "to-user", &json!({"n": 1}))
        .expect("send to user");
    server
        .server
        .send_to_room("chat:browser", "to-room", &json!({"n": 2}), &[])
        .expect("send to room");
    for (event, n) in [("to-user", 1), ("to-room", 2)] {
        let m = loop {
            let m = next(&mut rx, &mut seen, "message").await;
            if m["event"] == event {
                break m;
            }
        };
        assert_eq!(m["data"]["n"], n);
        assert_eq!(m["encrypted"], true);
        let raw: Value = serde_json::from_str(m["raw"].as_str().expect("raw")).expect("json");
        assert_eq!(raw["event"], "encrypted");
        assert!(raw["data"]["seq"].is_u64());
    }
    for bad in ["decryptFailed", "plaintextRejected", "disconnected"] {
        assert!(
            !seen.iter().any(|r| r["step"] == bad),
            "{bad} reported: {seen:?}"
        );
    }
    web.abort();
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
