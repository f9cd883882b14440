//! `GET /metrics`: the admin token guards it, the counters move with real traffic, and the
//! page passes `promtool check metrics`.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::*;
use reqwest::StatusCode;
use sealwire::crypto::HandshakeConfig;
use serde_json::json;

/// The value of the sample line `series` (name and labels exactly as rendered).
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
    let mut hardened = s.client().await;
    hardened
        .authenticate_hardened("carol", HandshakeConfig::hardened(vec![]))
        .await
        .expect("hardened login");

    let mut refused = s.client().await;
    refused
        .send_json(&json!({"event": "authenticate", "data": {"token": "reject-me"}}))
        .await;
    assert_eq!(refused.expect_close().await, Some(4003));
    s.wait_authenticated(3).await;

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
    assert_eq!(hardened.recv_msg().await["event"], "news");

    let page = scrape(&s).await;
    assert_eq!(
        metric_value(&page, "sealwire_connections{state=\"authenticated\"}"),
        3.0
    );
    assert_eq!(
        metric_value(
            &page,
            "sealwire_connections_by_profile{profile=\"plaintext\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(&page, "sealwire_connections_by_profile{profile=\"compat\"}"),
        1.0
    );
    assert_eq!(
        metric_value(
            &page,
            "sealwire_connections_by_profile{profile=\"hardened\"}"
        ),
        1.0
    );
    assert_eq!(metric_value(&page, "sealwire_authentications_total"), 3.0);
    assert_eq!(metric_value(&page, "sealwire_handshakes_total"), 2.0);
    assert_eq!(
        metric_value(&page, "sealwire_auth_duration_seconds_count"),
        3.0
    );
    assert!(metric_value(&page, "sealwire_auth_failures_total{code=\"4003\"}") >= 1.0);
    assert!(metric_value(&page, "sealwire_server_closes_total{code=\"4003\"}") >= 1.0);
    // connected x2 (+ the hardened hello and connected), echo x2, news x3, and the refusal's
    // error frame.
    assert!(metric_value(&page, "sealwire_messages_out_total") >= 10.0);
    assert!(metric_value(&page, "sealwire_bytes_out_total") > 0.0);
    // authenticate x3, the hardened hello and confirmation, the two sends.
    assert!(metric_value(&page, "sealwire_messages_in_total") >= 7.0);
    assert!(metric_value(&page, "sealwire_bytes_in_total") > 0.0);
    assert_eq!(
        metric_value(&page, "sealwire_slow_consumer_closes_total"),
        0.0
    );
    assert_eq!(metric_value(&page, "sealwire_bus_connected"), 1.0);
    let queued = metric_value(&page, "sealwire_outbox{measure=\"messages\"}");
    assert!(metric_value(&page, "sealwire_outbox{measure=\"deepest_messages\"}") <= queued);
    assert!(metric_value(&page, "sealwire_outbox{measure=\"bytes\"}") >= 0.0);
    promtool_check(&page);

    // A client that leaves is no longer counted.
    drop(plain);
    s.wait_authenticated(2).await;
    let page = scrape(&s).await;
    assert_eq!(
        metric_value(&page, "sealwire_connections{state=\"authenticated\"}"),
        2.0
    );
    assert_eq!(
        metric_value(
            &page,
            "sealwire_connections_by_profile{profile=\"plaintext\"}"
        ),
        0.0
    );
    drop(sealed);
    drop(hardened);
    s.stop().await;
}

/// The Redis bus's own counters reach the page: a broadcast published by one node and
/// received by the other, and a forged envelope the other rejects.
#[cfg(feature = "redis")]
#[tokio::test]
async fn bus_counters_come_from_the_redis_bus() {
    use common::redis::RedisServer;
    use sealwire::bus::{RedisBus, RedisBusConfig};

    let redis = RedisServer::start().await;
    let node = || async {
        let bus = RedisBus::new(RedisBusConfig::new(redis.url())).expect("bus");
        start_with(builder(base_config()).bus(bus)).await
    };
    let (a, b) = (node().await, node().await);
    redis.wait_numsub("ws:broadcast", 2).await;
    let (mut client, _) = b.plain("dora").await;

    let r = reqwest::Client::new()
        .post(a.http("/socket/broadcast"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"topic": "news", "data": {}}))
        .send()
        .await
        .expect("broadcast");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(client.recv_msg().await["event"], "news");
    redis.publish("ws:broadcast", "not an envelope").await;
    wait_for(|| {
        b.server
            .bus_status()
            .detail
            .is_some_and(|d| d.contains("rejected=1"))
    })
    .await;

    let page_a = scrape(&a).await;
    assert!(metric_value(&page_a, "sealwire_bus_published_total") >= 1.0);
    assert_eq!(metric_value(&page_a, "sealwire_bus_connected"), 1.0);
    let page_b = scrape(&b).await;
    assert!(metric_value(&page_b, "sealwire_bus_received_total") >= 1.0);
    assert_eq!(metric_value(&page_b, "sealwire_bus_rejected_total"), 1.0);
    assert_eq!(metric_value(&page_b, "sealwire_bus_reconnects_total"), 0.0);
    promtool_check(&page_b);
    drop(client);
    a.stop().await;
    b.stop().await;
}
