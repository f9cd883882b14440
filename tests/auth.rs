//! Authentication flow: timeouts, hook outcomes, state rules, connected payload, heartbeats.

mod common;

use sealwire::publish::Publish;
use std::time::Duration;

use common::*;
use serde_json::json;

fn fast() -> sealwire::server::ServerConfig {
    let mut c = base_config();
    c.auth_timeout = Duration::from_millis(200);
    c
}

#[tokio::test]
async fn connected_payload_has_id_user_and_utc_time() {
    let s = start(base_config()).await;
    let (_c, connected) = s.plain("alice").await;
    let d = &connected["data"];
    assert_eq!(d["userId"], "alice");
    let id = d["id"].as_str().expect("id");
    assert_eq!(
        uuid::Uuid::parse_str(id).expect("uuid").get_version_num(),
        4
    );
    let t = d["time"].as_str().expect("time");
    assert!(t.ends_with('Z'));
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .expect("ISO-8601");
    assert!(d.get("serverPublicKey").is_none() && d.get("salt").is_none());
    s.stop().await;
}

#[tokio::test]
async fn no_authenticate_in_time_closes_4001() {
    let s = start(fast()).await;
    let mut c = s.client().await;
    assert_eq!(c.expect_close().await, Some(4001));
    s.stop().await;
}

#[tokio::test]
async fn authentication_not_finished_in_3x_closes_4001() {
    let s = start(fast()).await;
    let mut c = s.client().await;
    // The hook sleeps 1 s > 3 x 200 ms.
    c.send_json(&json!({"event": "authenticate", "data": {"token": "slow:1000"}}))
        .await;
    assert_eq!(c.expect_close().await, Some(4001));
    s.stop().await;
}

#[tokio::test]
async fn slow_but_in_time_authentication_succeeds() {
    let s = start(fast()).await;
    let mut c = s.client().await;
    // 400 ms: past auth_timeout, within 3x.
    let connected = c.authenticate("slow:400").await;
    assert_eq!(connected["data"]["userId"], "slow:400");
    s.stop().await;
}

#[tokio::test]
async fn rejected_credentials_close_4003_authentication_failed() {
    let s = start(base_config()).await;
    let mut c = s.client().await;
    c.send_json(&json!({"event": "authenticate", "data": {"token": "reject-me"}}))
        .await;
    let e = c.recv_json().await;
    assert_eq!(
        e,
        json!({"event": "error", "data": {"message": "Authentication failed"}})
    );
    assert_eq!(c.expect_close().await, Some(4003));
    s.stop().await;
}

#[tokio::test]
async fn failing_hook_closes_4003_authentication_error() {
    let s = start(base_config()).await;
    let mut c = s.client().await;
    c.send_json(&json!({"event": "authenticate", "data": {"token": "error-please"}}))
        .await;
    let e = c.recv_json().await;
    assert_eq!(e["data"]["message"], "Authentication error");
    assert_eq!(c.expect_close().await, Some(4003));
    s.stop().await;
}

#[tokio::test]
async fn second_authenticate_is_refused_without_closing() {
    let s = start(base_config()).await;
    let (mut c, _) = s.plain("bob").await;
    c.send_json(&json!({"event": "authenticate", "data": {"token": "mallory"}}))
        .await;
    assert_eq!(
        c.recv_json().await["data"]["message"],
        "Already authenticated"
    );
    // Still connected and still bob.
    s.server
        .to_user("bob")
        .emit("ping", &json!(1))
        .await
        .expect("send");
    assert_eq!(c.recv_json().await, json!({"event": "ping", "data": 1}));
    s.stop().await;
}

#[tokio::test]
async fn events_before_authentication_are_refused() {
    let s = start(base_config()).await;
    let mut c = s.client().await;
    c.send_json(&json!({"event": "join", "data": {"rooms": ["a"]}}))
        .await;
    assert_eq!(c.recv_json().await["data"]["message"], "Not authenticated");
    c.send_json(&json!({"event": "custom", "data": {}})).await;
    assert_eq!(c.recv_json().await["data"]["message"], "Not authenticated");
    // Heartbeat is accepted silently, authentication still works afterwards.
    c.send_json(&json!({"event": "heartbeat"})).await;
    c.authenticate("carol").await;
    s.stop().await;
}

#[tokio::test]
async fn invalid_json_gets_an_error_and_the_connection_survives() {
    let s = start(base_config()).await;
    let (mut c, _) = s.plain("dave").await;
    for bad in ["not json", "[1,2,3]", "42", "{\"event\": 5}"] {
        c.send_text(bad).await;
        assert_eq!(
            c.recv_json().await,
            json!({"event": "error", "data": {"message": "Invalid message format"}}),
            "{bad}"
        );
    }
    // A message without `event` is dropped silently: the next frame is our own send.
    c.send_text(r#"{"data": {"x": 1}}"#).await;
    s.server
        .to_user("dave")
        .emit("after", &json!(null))
        .await
        .expect("send");
    assert_eq!(c.recv_json().await["event"], "after");
    s.stop().await;
}

#[tokio::test]
async fn idle_clients_are_closed_4002_and_heartbeats_keep_them() {
    let mut cfg = base_config();
    cfg.heartbeat_interval = Duration::from_millis(50);
    cfg.heartbeat_timeout = Duration::from_millis(300);
    let s = start(cfg).await;
    let (mut idle, _) = s.plain("idle").await;
    let (mut busy, _) = s.plain("busy").await;
    let beat = tokio::spawn(async move {
        for _ in 0..12 {
            busy.send_json(&json!({"event": "heartbeat"})).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        busy
    });
    assert_eq!(idle.expect_close().await, Some(4002));
    let mut busy = beat.await.expect("heartbeat task");
    // Still alive after 600 ms of heartbeats.
    s.server
        .to_user("busy")
        .emit("alive", &json!(true))
        .await
        .expect("send");
    assert_eq!(busy.recv_json().await["event"], "alive");
    s.stop().await;
}

/// `connected` announces the largest message the server takes, so that an SDK can refuse a
/// larger one itself instead of losing it to a 1009.
#[tokio::test]
async fn connected_announces_the_message_limit() {
    let mut cfg = base_config();
    cfg.max_message_bytes = 4096;
    let s = start(cfg).await;
    let (_c, connected) = s.plain("lena").await;
    assert_eq!(connected["data"]["maxMessageBytes"], 4096, "{connected}");
    let (_e, connected) = s.encrypted("lena").await;
    assert_eq!(connected["data"]["maxMessageBytes"], 4096, "{connected}");
    s.stop().await;
}
