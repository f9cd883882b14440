//! `GET /metrics`: the admin token guards it, the counters move with real traffic, and the
//! page passes `promtool check metrics`.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::*;
use reqwest::StatusCode;
use serde_json::json;

/// The value of the sample line `series` (name and labels exactly as rendered).
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{page}"))
}

async fn scrape(s: &TestServer) -> String {
    let r = reqwest::Client::new()
        .get(s.http("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    r.text().await.expect("body")
}

/// Runs `promtool check metrics` on the page. Fails (never skips) when promtool is missing:
/// `scripts/install-deps.sh` installs it.
fn promtool_check(page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/install-deps.sh installs `prometheus`)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write page");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\npage:\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_need_the_admin_token() {
    let s = start(base_config()).await;
    let http = reqwest::Client::new();
    let none = http.get(s.http("/metrics")).send().await.expect("request");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let wrong = http
        .get(s.http("/metrics"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn metrics_follow_the_traffic_and_pass_promtool() {
    let s = start_with(builder(base_config())).await;
    let (mut plain, _) = s.plain("alice").await;
    let (mut sealed, _) = s.encrypted("bob").await;

    let mut refused = s.client().await;
    refused
        .send_json(&json!({"event": "authenticate", "data": {"token": "reject-me"}}))
        .await;
    assert_eq!(refused.expect_close().await, Some(4003));
    s.wait_authenticated(2).await;

    // Two sends answered with an echo each, then a broadcast from the admin API.
    plain.emit("hi", json!({"n": 1})).await;
    assert_eq!(plain.recv_msg().await["event"], "echo");
    sealed.emit("hi", json!({"n": 2})).await;
    assert_eq!(sealed.recv_msg().await["event"], "echo");
    let r = reqwest::Client::new()
        .post(s.http("/socket/broadcast"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"topic": "news", "data": {"x": 1}}))
        .send()
        .await
        .expect("broadcast");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(plain.recv_msg().await["event"], "news");
    assert_eq!(sealed.recv_msg().await["event"], "news");

    let page = scrape(&s).await;
    assert_eq!(
        value(&page, "sealwire_connections{state=\"authenticated\"}"),
        2.0
    );
    assert_eq!(
        value(
            &page,
            "sealwire_connections_by_profile{profile=\"plaintext\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&page, "sealwire_connections_by_profile{profile=\"compat\"}"),
        1.0
    );
    assert_eq!(value(&page, "sealwire_authentications_total"), 2.0);
    assert!(value(&page, "sealwire_handshakes_total") >= 1.0);
    assert_eq!(value(&page, "sealwire_auth_duration_seconds_count"), 2.0);
    assert!(value(&page, "sealwire_auth_failures_total{code=\"4003\"}") >= 1.0);
    assert!(value(&page, "sealwire_server_closes_total{code=\"4003\"}") >= 1.0);
    // connected x2, echo x2, news x2, and the refusal's error frame.
    assert!(value(&page, "sealwire_messages_out_total") >= 6.0);
    assert!(value(&page, "sealwire_bytes_out_total") > 0.0);
    // authenticate x3, the two sends.
    assert!(value(&page, "sealwire_messages_in_total") >= 5.0);
    assert!(value(&page, "sealwire_bytes_in_total") > 0.0);
    assert_eq!(value(&page, "sealwire_slow_consumer_closes_total"), 0.0);
    assert_eq!(value(&page, "sealwire_bus_connected"), 1.0);
    promtool_check(&page);

    // A client that leaves is no longer counted.
    drop(plain);
    s.wait_authenticated(1).await;
    let page = scrape(&s).await;
    assert_eq!(
        value(&page, "sealwire_connections{state=\"authenticated\"}"),
        1.0
    );
    assert_eq!(
        value(
            &page,
            "sealwire_connections_by_profile{profile=\"plaintext\"}"
        ),
        0.0
    );
    drop(sealed);
    s.stop().await;
}
