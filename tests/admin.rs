//! The admin REST API: token check, health, info, client listing, sends, joins and batches.

mod common;

use common::*;
use reqwest::StatusCode;
use sealwire::publish::Publish;
use serde_json::{Value, json};
use std::time::Duration;

struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    fn new(s: &TestServer) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: s.http(""),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        (r.status(), r.json().await.expect("JSON body"))
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_raw(path, body.to_string()).await
    }

    async fn post_raw(&self, path: &str, body: String) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        (r.status(), r.json().await.expect("JSON body"))
    }
}

#[tokio::test]
async fn every_call_but_health_needs_the_admin_token() {
    let s = start(base_config()).await;
    let http = reqwest::Client::new();
    let calls = [
        ("GET", "/socket/info"),
        ("GET", "/socket/clients"),
        ("GET", "/socket/client/x/rooms"),
        ("POST", "/socket/broadcast"),
        ("POST", "/socket/room/r/send"),
        ("POST", "/socket/client/x/send"),
        ("POST", "/socket/user/u/send"),
        ("POST", "/socket/client/x/join"),
        ("POST", "/socket/client/x/leave"),
        ("POST", "/socket/batch"),
    ];
    for (method, path) in calls {
        for token in [None, Some("wrong-token"), Some("")] {
            let mut req = match method {
                "GET" => http.get(s.http(path)),
                _ => http
                    .post(s.http(path))
                    .body(r#"{"topic":"t","data":1,"rooms":["a"],"messages":[]}"#),
            };
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.expect("request");
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            let body: Value = r.json().await.expect("JSON error");
            assert!(body["error"].is_string(), "{body}");
        }
    }
    // A token in another scheme is not accepted either.
    let r = http
        .get(s.http("/socket/info"))
        .header("authorization", format!("Basic {ADMIN_TOKEN}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The scheme it wants is named (RFC 6750).
    assert_eq!(
        r.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    s.stop().await;
}

#[tokio::test]
async fn admin_api_is_disabled_without_a_token() {
    let b = builder(base_config());
    let s = start_with_http(b, sealwire::transport::HttpConfig::default()).await;
    let r = reqwest::Client::new()
        .get(s.http("/socket/info"))
        .bearer_auth("")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = reqwest::get(s.http("/socket/health"))
        .await
        .expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn health_is_open_but_shows_details_only_with_the_admin_token() {
    let s = start(base_config()).await;
    let http = reqwest::Client::new();
    for token in [None, Some("wrong-token"), Some("")] {
        let mut req = http.get(s.http("/socket/health"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("health");
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["healthy"], true);
        let ts = body["timestamp"].as_str().expect("timestamp");
        assert!(
            time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(),
            "{ts}"
        );
        // Whether the bus is up, and nothing else: no server id, no bus kind or error text.
        assert_eq!(body["bus"], json!({"connected": true}), "{body}");
        let mut keys: Vec<&str> = body
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["bus", "healthy", "status", "timestamp"], "{token:?}");
    }
    let r = http
        .get(s.http("/socket/health"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["healthy"], true);
    assert!(body["timestamp"].is_string());
    assert_eq!(body["serverId"], s.server.id());
    assert_eq!(body["bus"]["kind"], "local");
    assert_eq!(body["bus"]["connected"], true);
    s.stop().await;
}

#[tokio::test]
async fn only_the_exact_admin_token_is_accepted() {
    let s = start(base_config()).await;
    let http = reqwest::Client::new();
    let longer = format!("{ADMIN_TOKEN}x");
    let shorter = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];
    let other_case = ADMIN_TOKEN.to_uppercase();
    for token in [longer.as_str(), shorter, other_case.as_str(), " "] {
        let r = http
            .get(s.http("/socket/info"))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{token:?}");
    }
    let r = http
        .get(s.http("/socket/info"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn an_empty_admin_token_is_a_configuration_error() {
    use sealwire::transport::{HttpConfig, HttpConfigError};
    for token in ["", "   ", "\t"] {
        let http = HttpConfig::with_admin_token(token);
        assert_eq!(http.validate(), Err(HttpConfigError::EmptyAdminToken));
        // Serving refuses it before it listens.
        let server = builder(base_config()).build().expect("server");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let served = sealwire::transport::serve_with_shutdown(
            listener,
            server,
            http,
            std::future::pending(),
        )
        .await;
        let err = served.expect_err("an empty admin token must not serve");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{token:?}");
    }
}

#[tokio::test]
async fn info_counts_clients_users_and_rooms() {
    let s = start(base_config()).await;
    let admin = Admin::new(&s);
    let (_a1, _) = s.plain("a").await;
    let (_a2, _) = s.encrypted("a").await;
    let (_b, _) = s.encrypted("b").await;
    let _pending = s.client().await;
    wait_for(|| s.server.counts().clients == 4).await;
    let (status, info) = admin.get("/socket/info").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["serverId"], s.server.id());
    assert_eq!(info["clients"], 4);
    assert_eq!(info["authenticated"], 3);
    assert_eq!(info["encrypted"], 2);
    assert_eq!(info["users"], 2);
    // Three own-id rooms and the two default rooms.
    assert_eq!(info["rooms"], 5);
    s.stop().await;
}

#[tokio::test]
async fn clients_list_and_client_rooms() {
    let s = start(base_config()).await;
    let admin = Admin::new(&s);
    let (p, _) = s.plain("alice").await;
    let (e, _) = s.encrypted("bob").await;
    let pending = s.client().await;
    wait_for(|| s.server.counts().clients == 3).await;
    let (status, body) = admin.get("/socket/clients").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 3);
    // The clients as PRODUCT.md lists them; their ids alone in `clientIds`, as IGNIS has them.
    let ids: Vec<&str> = body["clientIds"]
        .as_array()
        .expect("clientIds")
        .iter()
        .map(|c| c.as_str().expect("an id"))
        .collect();
    assert!(ids.contains(&p.id().as_str()) && ids.len() == 3, "{body}");
    let list = body["clients"].as_array().expect("clients");
    assert_eq!(list.len(), 3, "{body}");
    let find = |id: &str| {
        list.iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed"))
            .clone()
    };
    let pc = find(&p.id());
    assert_eq!(pc["userId"], "alice");
    assert_eq!(pc["state"], "authenticated");
    assert_eq!(pc["encrypted"], false);
    let mut rooms = vec![p.id(), "ws-default".into(), "ws-notification".into()];
    rooms.sort();
    assert_eq!(pc["rooms"], json!(rooms));
    assert_eq!(find(&e.id())["encrypted"], true);
    let unauth: Vec<&Value> = list.iter().filter(|c| c["userId"].is_null()).collect();
    assert_eq!(unauth.len(), 1);
    assert_eq!(unauth[0]["state"], "unauthorized");
    assert_eq!(unauth[0]["rooms"], json!([]));
    drop(pending);

    let (status, body) = admin.get(&format!("/socket/client/{}/rooms", p.id())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"success": true, "rooms": rooms}));
    let (status, body) = admin.get("/socket/client/no-such-client/rooms").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
    s.stop().await;
}

/// Scripts written against either IGNIS example keep working: every answer carries the
/// fields of both shapes (`ok`, and `success`/`message`; `status`, `connectedClients` and
/// `clientIds` on info; `success: false` with the message on a failure).
#[tokio::test]
async fn answers_are_a_superset_of_the_ignis_shapes() {
    let s = start_with(
        builder(base_config())
            .validate_rooms(sealwire::server::GlobRooms::new(["*"]).expect("glob")),
    )
    .await;
    let admin = Admin::new(&s);
    let (c, _) = s.plain("ivy").await;
    let (_, info) = admin.get("/socket/info").await;
    assert_eq!(info["status"], "running");
    assert_eq!(info["connectedClients"], 1);
    assert_eq!(info["clientIds"], json!([c.id()]));
    for (path, message) in [
        (
            "/socket/broadcast".to_owned(),
            "Broadcast sent to 1 clients".to_owned(),
        ),
        (
            "/socket/room/ops/send".to_owned(),
            "Message sent to room: ops".to_owned(),
        ),
        (
            format!("/socket/client/{}/send", c.id()),
            format!("Message sent to client: {}", c.id()),
        ),
        (
            "/socket/user/ivy/send".to_owned(),
            "Message sent to user: ivy".to_owned(),
        ),
    ] {
        let (status, body) = admin.post(&path, &json!({"topic": "t", "data": 1})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (body["ok"].clone(), body["success"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!(body["message"], message, "{path}");
    }
    let join = format!("/socket/client/{}/join", c.id());
    let (_, body) = admin.post(&join, &json!({"rooms": ["ops", "dev"]})).await;
    assert_eq!(body["success"], true);
    assert_eq!(
        body["message"],
        format!("Client {} joined rooms: ops, dev", c.id())
    );
    let leave = format!("/socket/client/{}/leave", c.id());
    let (_, body) = admin.post(&leave, &json!({"rooms": ["dev"]})).await;
    assert_eq!(
        body["message"],
        format!("Client {} left rooms: dev", c.id())
    );
    let (status, body) = admin
        .post("/socket/client/nobody/join", &json!({"rooms": ["ops"]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["success"], false);
    assert_eq!(body["message"], "Client not found: nobody");
    assert_eq!(body["error"], body["message"]);
    let (_, health) = admin.get("/socket/health").await;
    assert_eq!(
        (health["status"].clone(), health["healthy"].clone()),
        (json!("ok"), json!(true))
    );
    assert!(health["timestamp"].is_string());
    s.stop().await;
}

#[tokio::test]
async fn send_endpoints_reach_the_right_clients() {
    let s = start(base_config()).await;
    let admin = Admin::new(&s);
    let (mut p, _) = s.plain("alice").await;
    let (mut e, _) = s.encrypted("bob").await;
    let (mut e2, _) = s.encrypted("bob").await;

    let (status, body) = admin
        .post(
            "/socket/broadcast",
            &json!({"topic": "all", "data": {"x": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["localRecipients"], 3);
    for c in [&mut p, &mut e, &mut e2] {
        assert_eq!(
            c.recv_msg().await,
            json!({"event": "all", "data": {"x": 1}})
        );
    }
    // Encrypted clients get ciphertext from the admin path too.
    admin
        .post(
            &format!("/socket/client/{}/send", e.id()),
            &json!({"topic": "one", "data": "secret"}),
        )
        .await;
    let raw = e.recv_json().await;
    assert_eq!(raw["event"], "encrypted");
    assert!(!raw.to_string().contains("secret"));
    assert_eq!(e.open(raw), json!({"event": "one", "data": "secret"}));

    let (_, body) = admin
        .post("/socket/user/bob/send", &json!({"topic": "dm", "data": 2}))
        .await;
    assert_eq!(body["localRecipients"], 2);
    assert_eq!(e.recv_msg().await["event"], "dm");
    assert_eq!(e2.recv_msg().await["event"], "dm");

    let (_, body) = admin
        .post(
            &format!("/socket/room/{}/send", p.id()),
            &json!({"topic": "room", "data": null}),
        )
        .await;
    assert_eq!(body["localRecipients"], 1);
    assert_eq!(p.recv_msg().await, json!({"event": "room", "data": null}));

    // Nobody got anything else.
    s.server
        .to_all()
        .emit("end", &json!(0))
        .await
        .expect("send");
    for c in [&mut p, &mut e, &mut e2] {
        assert_eq!(c.recv_msg().await["event"], "end");
    }
    // Reserved topics are refused: an application `error` would read as the server's own
    // (a `Refresh failed` one fails the client's pending refresh), a `hello` as the handshake's.
    for topic in ["connected", "error", "hello", "recovered", "room-encrypted"] {
        let (status, body) = admin
            .post("/socket/broadcast", &json!({"topic": topic, "data": 1}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{topic}");
        assert!(body["error"].is_string());
    }
    // A missing or empty topic: 400 in the IGNIS examples' words.
    for bad in [
        json!({"data": 1}),
        json!({"topic": "", "data": 1}),
        json!({"topic": null, "data": 1}),
        json!({"topic": 5, "data": 1}),
    ] {
        let (status, body) = admin.post("/socket/room/r/send", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"], "Topic is required", "{body}");
    }
    s.stop().await;
}

#[tokio::test]
async fn join_and_leave_endpoints() {
    let s = start(base_config()).await;
    let admin = Admin::new(&s);
    let (mut c, _) = s.encrypted("alice").await;
    let path = format!("/socket/client/{}/join", c.id());
    let (status, body) = admin.post(&path, &json!({"rooms": ["vip", "news"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["joined"], json!(["vip", "news"]));
    assert!(
        body["rooms"]
            .as_array()
            .expect("rooms")
            .contains(&json!("vip"))
    );
    s.server
        .to_room("vip")
        .emit("vip", &json!(1))
        .await
        .expect("send");
    assert_eq!(c.recv_msg().await, json!({"event": "vip", "data": 1}));

    let (status, body) = admin.post(&path, &json!({"rooms": ["ws:nope"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].is_string());
    // No rooms: 400 in the IGNIS examples' words, for a join and a leave.
    let leave = format!("/socket/client/{}/leave", c.id());
    for bad in [
        json!({}),
        json!({"rooms": []}),
        json!({"rooms": null}),
        json!({"rooms": "vip"}),
    ] {
        for p in [&path, &leave] {
            let (status, body) = admin.post(p, &bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(body["error"], "Rooms array is required", "{body}");
        }
    }
    // A body that is not an object is named as such, not by an internal type name.
    let (status, body) = admin.post(&path, &json!(null)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"], "invalid JSON body: invalid type: null, expected an object",
        "{body}"
    );
    // Nor an array, which would otherwise be read field by field (`[topic, data]`).
    let send = format!("/socket/client/{}/send", c.id());
    for (p, bad) in [
        (&path, json!([["vip"]])),
        (&send, json!(["array-topic", {"n": 1}])),
    ] {
        let (status, body) = admin.post(p, &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            body["error"], "invalid JSON body: invalid type: sequence, expected an object",
            "{body}"
        );
    }
    // Another client's id names its room: refused.
    let (other, _) = s.plain("olga").await;
    let (status, body) = admin.post(&path, &json!({"rooms": [other.id()]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = admin
        .post(&leave, &json!({"rooms": ["vip", "never"]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["left"], json!(["vip"]));
    assert_eq!(
        s.server
            .to_room("vip")
            .emit("vip", &json!(2))
            .await
            .expect("send")
            .local_recipients,
        0
    );
    // Duplicates count once.
    let (status, body) = admin
        .post(&path, &json!({"rooms": ["dup", "dup", "dup"]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["joined"], json!(["dup"]));
    let (status, body) = admin.post(&leave, &json!({"rooms": ["dup", "dup"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["left"], json!(["dup"]));
    // A list longer than a client may be in is refused whole.
    let many: Vec<String> = (0..=s.server.config().max_rooms_per_client)
        .map(|i| format!("r{i}"))
        .collect();
    for p in [&path, &leave] {
        let (status, body) = admin.post(p, &json!({ "rooms": many })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"]
                .as_str()
                .expect("error")
                .starts_with("Too many rooms"),
            "{body}"
        );
    }
    let (status, _) = admin
        .post("/socket/client/unknown/join", &json!({"rooms": ["a"]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = admin
        .post("/socket/client/unknown/leave", &json!({"rooms": ["a"]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn batch_delivers_in_order_and_is_all_or_nothing() {
    let s = start(base_config()).await;
    let admin = Admin::new(&s);
    let (mut p, _) = s.plain("alice").await;
    let (mut e, _) = s.encrypted("bob").await;
    let mut messages = Vec::new();
    for i in 0..60 {
        let destination = match i % 3 {
            0 => Value::Null,
            1 => json!(e.id()),
            _ => json!("ws-default"),
        };
        messages.push(json!({"destination": destination, "topic": "b", "data": i}));
    }
    let (status, body) = admin
        .post("/socket/batch", &json!({"messages": messages}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 60);
    // Both IGNIS examples' success shape.
    assert_eq!(
        (&body["ok"], &body["success"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(body["message"], "Batch of 60 messages sent");
    for i in 0..60 {
        if i % 3 != 1 {
            assert_eq!(p.recv_msg().await, json!({"event": "b", "data": i}));
        }
        assert_eq!(e.recv_msg().await, json!({"event": "b", "data": i}));
    }

    // One bad item: nothing at all is sent.
    let bad = json!({"messages": [
        {"topic": "ok", "data": 1},
        {"topic": "", "data": 2},
    ]});
    let (status, body) = admin.post("/socket/batch", &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "message 1: Topic is required", "{body}");
    let reserved = json!({"messages": [{"topic": "ok"}, {"topic": "authenticate"}]});
    assert_eq!(
        admin.post("/socket/batch", &reserved).await.0,
        StatusCode::BAD_REQUEST
    );
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({"topic": "t", "data": i}))
        .collect();
    let (status, body) = admin
        .post("/socket/batch", &json!({"messages": too_many}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].is_string());
    s.server
        .to_all()
        .emit("marker", &json!(null))
        .await
        .expect("send");
    assert_eq!(p.recv_msg().await["event"], "marker");
    assert_eq!(e.recv_msg().await["event"], "marker");
    s.stop().await;
}

#[tokio::test]
async fn bad_json_bodies_get_400_with_an_error() {
    let s = start(base_config()).await;
    let admin = Admin::new(&s);
    let (c, _) = s.plain("alice").await;
    let join = format!("/socket/client/{}/join", c.id());
    let cases: Vec<(&str, String)> = vec![
        ("/socket/broadcast", "not json".into()),
        ("/socket/broadcast", "{}".into()),
        ("/socket/broadcast", r#"{"topic": 5}"#.into()),
        ("/socket/room/r/send", "[".into()),
        ("/socket/user/u/send", String::new()),
        ("/socket/batch", r#"{"messages": "nope"}"#.into()),
        ("/socket/batch", r#"{"messages": [{"data": 1}]}"#.into()),
        (join.as_str(), r#"{"rooms": "a"}"#.into()),
        (join.as_str(), r#"{"rooms": [""]}"#.into()),
    ];
    for (path, body) in cases {
        let (status, reply) = admin.post_raw(path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert!(reply["error"].is_string(), "{path} {body}: {reply}");
    }
    s.stop().await;
}

#[tokio::test]
async fn websocket_path_answers_plain_http_requests() {
    let s = start(base_config()).await;
    let http = reqwest::Client::new();
    let url = s.http("/ws");
    let r = http.get(&url).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.expect("JSON body");
    assert!(body["error"].is_string(), "{body}");
    let r = http
        .get(&url)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(r.headers()["sec-websocket-version"], "13");
    // Every other method, HEAD included, is refused by the same decision.
    let r = http.post(&url).send().await.expect("post");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET");
    let r = http.head(&url).send().await.expect("head");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    s.stop().await;
}

#[tokio::test]
async fn the_join_endpoint_refuses_rooms_named_like_a_client_id() {
    let s = start(base_config()).await;
    let admin = Admin::new(&s);
    let (mut a, _) = s.plain("alice").await;
    let (mut b, _) = s.plain("mallory").await;
    let a_id = a.id();
    let path = format!("/socket/client/{}/join", b.id());
    for room in [
        a_id.clone(),
        a_id.to_uppercase(),
        uuid::Uuid::new_v4().to_string(),
    ] {
        let (status, body) = admin.post(&path, &json!({ "rooms": [room, "fine"] })).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"].as_str().expect("error").contains("client id"),
            "{body}"
        );
    }
    let rooms = s.server.client_rooms(&b.id()).expect("rooms");
    assert!(
        !rooms.contains(&a_id) && !rooms.contains(&"fine".to_owned()),
        "{rooms:?}"
    );
    // A send to alice's id, as a room (how another instance would route it), reaches her only.
    let (status, body) = admin
        .post(
            &format!("/socket/room/{a_id}/send"),
            &json!({"topic": "t", "data": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["localRecipients"], 1);
    assert_eq!(a.recv_msg().await, json!({"event": "t", "data": 1}));
    s.server
        .to_all()
        .emit("end", &json!(null))
        .await
        .expect("send");
    assert_eq!(b.recv_msg().await["event"], "end");
    s.stop().await;
}

/// Refusals made before a handler runs are in the API's JSON error shape too: a query string
/// that does not parse (400), a body over the limit (413), an unknown path under `/socket`
/// (404) and a method a route does not take (405). A full batch of messages of a
/// couple of kilobytes each is within the limit.
#[tokio::test]
async fn refusals_before_a_handler_are_json_and_a_full_batch_fits_the_body_limit() {
    let s = start(base_config()).await;
    let admin = Admin::new(&s);
    for query in ["since=-1", "limit=abc"] {
        let (status, body) = admin.get(&format!("/socket/history/room:r?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["success"], false, "{query}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    let (status, body) = admin
        .post_raw("/socket/broadcast", "x".repeat(9 << 20))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].is_string(), "{body}");
    // Unknown paths under the prefix (404) and methods a route does not take (405, with
    // `Allow`): the same shape.
    for path in [
        "/socket/nonexistent",
        "/socket/history/",
        "/socket/info/x",
        "/socket",
        "/socket/",
    ] {
        let (status, body) = admin.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            (&body["success"], &body["message"]),
            (&json!(false), &json!("Not found"))
        );
    }
    for (method, path) in [("PUT", "/socket/broadcast"), ("DELETE", "/socket/info")] {
        let r = admin
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", admin.base),
            )
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(r.headers().contains_key("allow"), "{method} {path}");
        let body: Value = r.json().await.expect("JSON body");
        assert_eq!(body["success"], false, "{method} {path}: {body}");
    }
    let r = admin
        .http
        .post(format!("{}/metrics", admin.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = r.json().await.expect("JSON body");
    assert_eq!(body["success"], false, "{body}");
    // A body announced over the limit is refused at once, before a byte of it arrives.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(s.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /socket/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: 9437184\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.expect("head");
        let mut answer = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer))
            .await
            .expect("answered at once")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"success\":false"), "{answer}");
    }
    // Without the token, an unknown path tells nothing of the routes: 401.
    let r = admin
        .http
        .get(format!("{}/socket/nonexistent", admin.base))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (mut c, _) = s.plain("alice").await;
    let fill = "z".repeat(2000);
    let messages: Vec<Value> = (0..1000)
        .map(|i| json!({"destination": c.id(), "topic": "b", "data": {"i": i, "fill": fill}}))
        .collect();
    let (status, body) = admin
        .post("/socket/batch", &json!({"messages": messages}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for i in 0..1000 {
        assert_eq!(c.recv_msg().await["data"]["i"], i);
    }
    s.stop().await;
}

/// The `Bearer` scheme name is case-insensitive (RFC 7235); another scheme is refused.
#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let s = start(base_config()).await;
    let http = reqwest::Client::new();
    for (value, expected) in [
        (format!("bearer {ADMIN_TOKEN}"), StatusCode::OK),
        (format!("BEARER {ADMIN_TOKEN}"), StatusCode::OK),
        (format!("Basic {ADMIN_TOKEN}"), StatusCode::UNAUTHORIZED),
        (ADMIN_TOKEN.to_owned(), StatusCode::UNAUTHORIZED),
    ] {
        let r = http
            .get(s.http("/socket/info"))
            .header("authorization", &value)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), expected, "{value}");
    }
    s.stop().await;
}

/// A send to a room no client could be in (a reserved `ws:` name, an overlong one)
/// is refused with 400, alone or in a batch (where nothing of the batch is sent).
#[tokio::test]
async fn sends_to_rooms_no_client_can_join_are_refused() {
    let s = start(base_config()).await;
    let admin = Admin::new(&s);
    let long = "r".repeat(257);
    for room in ["ws:x", long.as_str()] {
        let (status, body) = admin
            .post(&format!("/socket/room/{room}/send"), &json!({"topic": "t"}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{room}: {body}");
        assert!(
            body["error"].as_str().expect("error").contains("room"),
            "{body}"
        );
    }
    let batch = json!({"messages": [{"topic": "t"}, {"destination": "ws:x", "topic": "t"}]});
    let (status, body) = admin.post("/socket/batch", &batch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().expect("error").contains("message 1"),
        "{body}"
    );
    let (status, _) = admin
        .post("/socket/room/orders:7/send", &json!({"topic": "t"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

/// The API's catch-all for unknown `/socket/...` paths leaves room for a WebSocket path or a
/// Socket.IO path named `/socket` (the server starts, and each door answers on its path).
#[cfg(feature = "socketio")]
#[tokio::test]
async fn a_door_may_be_named_socket_beside_the_api() {
    use sealwire::transport::socketio::{self, SocketIoConfig};
    for (ws_path, sio_path) in [("/socket", "/io"), ("/ws", "/socket")] {
        let server = builder(base_config()).build().expect("server");
        let mut http = test_http();
        http.path = ws_path.to_owned();
        let mut sio = SocketIoConfig::default();
        sio.path = sio_path.to_owned();
        http.routes = Some(socketio::router(server.clone(), sio));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let s = server.clone();
        tokio::spawn(async move {
            sealwire::transport::serve_with_shutdown(listener, s, http, std::future::pending())
                .await
        });
        wait_for(|| server.is_ready()).await;
        let handshake = reqwest::get(format!("http://{addr}{sio_path}/?EIO=4&transport=polling"))
            .await
            .expect("handshake");
        assert!(handshake.text().await.expect("body").starts_with("0{"));
        let info = reqwest::Client::new()
            .get(format!("http://{addr}/socket/info"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("info");
        assert_eq!(info.status(), StatusCode::OK, "{ws_path} {sio_path}");
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{ws_path}"))
            .await
            .expect("the WebSocket door");
        drop(ws);
        // `/socket` and `/socket/` are the door's, or, where no door answers them, the API's
        // JSON 404.
        for path in ["/socket", "/socket/"] {
            let r = reqwest::Client::new()
                .get(format!("http://{addr}{path}"))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("request");
            let door = path == ws_path || sio_path == "/socket";
            if !door {
                assert_eq!(
                    r.status(),
                    StatusCode::NOT_FOUND,
                    "{ws_path} {sio_path} {path}"
                );
                let body: Value = r.json().await.expect("JSON 404");
                assert_eq!(body["message"], "Not found", "{ws_path} {sio_path} {path}");
            }
        }
        server.shutdown().await;
    }
}

/// A batch may all go to one client, faster than it reads: a batch larger than one client's
/// outbox (bytes or messages) is refused whole, instead of closing that client as a slow
/// consumer with none of it.
#[tokio::test]
async fn a_batch_larger_than_one_outbox_is_refused_whole() {
    let mut config = base_config();
    config.outbox_bytes = 64 * 1024;
    config.outbox_messages = 10;
    config.max_message_bytes = 64 * 1024;
    let s = start(config).await;
    let admin = Admin::new(&s);
    let (mut c, _) = s.plain("alice").await;
    let to_c = |n: usize, size: usize| -> Value {
        let fill = "x".repeat(size);
        let messages: Vec<Value> = (0..n)
            .map(|i| json!({"destination": c.id(), "topic": "b", "data": {"i": i, "fill": fill}}))
            .collect();
        json!({ "messages": messages })
    };
    for (batch, what) in [(to_c(2, 40_000), "bytes"), (to_c(11, 10), "messages")] {
        let (status, body) = admin.post("/socket/batch", &batch).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let error = body["error"].as_str().expect("error");
        assert!(
            error.contains("batch too large") && error.contains(what),
            "{body}"
        );
    }
    let (status, body) = admin.post("/socket/batch", &to_c(2, 20_000)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Only the batch that fits was sent.
    for i in 0..2 {
        assert_eq!(c.recv_msg().await["data"]["i"], i);
    }
    assert!(
        c.recv_within(Duration::from_millis(200)).await.is_none(),
        "nothing else was sent"
    );
    s.stop().await;
}
