//! The Socket.IO transport against the real npm `socket.io-client` (tests/sio/harness.mjs,
//! run by Node; `npm ci` once per run), the IGNIS `SocketIOClientHelper` and
//! `@socket.io/redis-emitter`: authentication (success, refusal, timeout), default
//! rooms, validated join and leave, delivery from the Rust API to Socket.IO and WebSocket
//! clients alike, encrypted sockets decrypting with WebCrypto (with a plaintext-leak check),
//! the `--require-encryption` refusal, and the polling transport. The hardened profile over
//! Socket.IO with the JS SDK (`transport: "socket.io"`, sdk/js) on the same socket.io-client:
//! sealed delivery and inbound events over websocket and polling with a leak check on the raw
//! engine.io packets both ways, refusals (wrong pin, rejected token, tampered record, a first
//! frame that is not a hello, policy `off`), `hardened-only` admitting it and refusing the
//! IGNIS path, refresh and recovery, and the SDK's `SocketIOClientHelper`. Fails, never skips,
//! when `node` or `npm` is missing: CI installs them.
#![cfg(feature = "socketio")]

mod common;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use sealwire::server::{EncryptionPolicy, GlobRooms, ServerBuilder, ServerConfig};
use sealwire::transport::serve_with_shutdown;
use sealwire::transport::socketio::{self, SocketIoConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The delivery calls these tests make on a server, in one place.
trait Deliver {
    fn deliver_to_client(&self, id: &str, event: &str, data: &impl serde::Serialize);
    fn deliver_to_user(&self, user: &str, event: &str, data: &impl serde::Serialize);
    fn deliver_to_room(&self, room: &str, event: &str, data: &impl serde::Serialize);
    fn deliver_broadcast(&self, event: &str, data: &impl serde::Serialize);
}

impl Deliver for sealwire::server::Server {
    fn deliver_to_client(&self, id: &str, event: &str, data: &impl serde::Serialize) {
        use futures_util::FutureExt as _;
        use sealwire::publish::Publish as _;
        let sent = self.to_client(id).emit(event, data).now_or_never();
        sent.expect("published now").expect("send");
    }
    fn deliver_to_user(&self, user: &str, event: &str, data: &impl serde::Serialize) {
        use futures_util::FutureExt as _;
        use sealwire::publish::Publish as _;
        let sent = self.to_user(user).emit(event, data).now_or_never();
        sent.expect("published now").expect("send");
    }
    fn deliver_to_room(&self, room: &str, event: &str, data: &impl serde::Serialize) {
        use futures_util::FutureExt as _;
        use sealwire::publish::Publish as _;
        let sent = self.to_room(room).emit(event, data).now_or_never();
        sent.expect("published now").expect("send");
    }
    fn deliver_broadcast(&self, event: &str, data: &impl serde::Serialize) {
        use futures_util::FutureExt as _;
        use sealwire::publish::Publish as _;
        let sent = self
            .to(sealwire::protocol::BusTarget::Broadcast)
            .emit(event, data)
            .now_or_never();
        sent.expect("published now").expect("send");
    }
}

fn harness_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sio"))
}

/// `npm ci` in tests/sio once per test binary (when a package is missing).
fn install_harness() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let installed = [
            "socket.io-client",
            "@socket.io/redis-emitter",
            "ioredis",
            "@venizia/ignis-helpers",
        ]
        .iter()
        .all(|p| harness_dir().join("node_modules").join(p).exists());
        if installed {
            return;
        }
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(harness_dir())
            .status()
            .expect("`npm` must be installed to test the Socket.IO transport");
        assert!(status.success(), "npm ci in tests/sio failed");
    });
}

/// A server serving the Socket.IO endpoint next to `/ws`.
async fn start_sio(builder: ServerBuilder, sio: SocketIoConfig) -> TestServer {
    start_sio_on(builder, sio, "127.0.0.1:0").await
}

/// [`start_sio`] on address `at`.
async fn start_sio_on(builder: ServerBuilder, sio: SocketIoConfig, at: &str) -> TestServer {
    let server = builder.build().expect("valid server config");
    let listener = tokio::net::TcpListener::bind(at).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut http = common::test_http();
    http.routes = Some(socketio::router(server.clone(), sio));
    let path = http.path.clone();
    let s = server.clone();
    let task = tokio::spawn(async move {
        serve_with_shutdown(listener, s, http, std::future::pending()).await
    });
    wait_for(|| server.is_ready()).await;
    TestServer {
        server,
        addr,
        path,
        task,
    }
}

/// Whether a WebSocket upgrade to `server` gets a place within `within` (tried every 20 ms):
/// a connection slot was released.
async fn a_place_frees_within(server: &TestServer, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if tokio_tungstenite::connect_async(server.ws_url())
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn public_rooms() -> GlobRooms {
    GlobRooms::new(["public-*"]).expect("glob")
}

async fn start_default() -> TestServer {
    start_sio(
        builder(base_config()).validate_rooms(public_rooms()),
        SocketIoConfig::default(),
    )
    .await
}

/// One Node process running socket.io-client sockets, driven line by line.
struct Harness {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// Lines read but not consumed yet, per socket name.
    queued: HashMap<String, VecDeque<Value>>,
    /// Every line seen, per socket name.
    seen: HashMap<String, Vec<Value>>,
    url: String,
}

impl Harness {
    async fn start(server: &TestServer) -> Self {
        Self::start_at(&server.http("")).await
    }

    /// A harness whose sockets connect to `url` (`http://host:port`).
    async fn start_at(url: &str) -> Self {
        install_harness();
        let mut child = tokio::process::Command::new("node")
            .arg("harness.mjs")
            .current_dir(harness_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("`node` must be installed to test the Socket.IO transport");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut h = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            queued: HashMap::new(),
            seen: HashMap::new(),
            url: url.to_owned(),
        };
        let ready = h.read_line(RECV_TIMEOUT).await.expect("harness ready");
        assert_eq!(ready["type"], "ready");
        h
    }

    async fn send(&mut self, cmd: Value) {
        let mut line = cmd.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to harness");
    }

    /// Connects socket `name` with extra options (`auth`, `transports`, `encrypt`, ...).
    async fn connect(&mut self, name: &str, options: Value) {
        let mut cmd = json!({"cmd": "connect", "name": name, "url": self.url, "path": "/io"});
        if let (Some(cmd), Some(opts)) = (cmd.as_object_mut(), options.as_object()) {
            for (k, v) in opts {
                cmd.insert(k.clone(), v.clone());
            }
        }
        self.send(cmd).await;
        let connected = self.next(name).await;
        assert_eq!(connected["type"], "connect", "{connected}");
    }

    async fn emit(&mut self, name: &str, event: &str, args: Value) {
        self.send(json!({"cmd": "emit", "name": name, "event": event, "args": args}))
            .await;
    }

    /// Connects `name` as `token` and authenticates; returns the `authenticated` payload.
    /// The `socket.id` socket `name` saw at its last connect.
    fn socket_id(&self, name: &str) -> String {
        self.seen
            .get(name)
            .into_iter()
            .flatten()
            .filter(|l| l["type"] == "connect")
            .filter_map(|l| l["id"].as_str())
            .next_back()
            .expect("a connect line with the socket id")
            .to_owned()
    }

    async fn login(&mut self, name: &str, token: &str) -> Value {
        self.connect(name, json!({"auth": {"token": token}})).await;
        self.authenticate(name).await
    }

    async fn authenticate(&mut self, name: &str) -> Value {
        self.emit(name, "authenticate", json!([])).await;
        self.event(name, "authenticated").await
    }

    async fn read_line(&mut self, limit: Duration) -> Option<Value> {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .ok()?
            .expect("harness output")?;
        Some(serde_json::from_str(&line).expect("harness prints JSON"))
    }

    /// The next line for socket `name`, or `None` after `limit`.
    async fn next_within(&mut self, name: &str, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = self.queued.get_mut(name).and_then(VecDeque::pop_front) {
                return Some(v);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let v = self.read_line(left).await?;
            assert_ne!(v["type"], "harness_error", "{v}");
            let owner = v["name"].as_str().unwrap_or_default().to_owned();
            self.seen.entry(owner.clone()).or_default().push(v.clone());
            self.queued.entry(owner).or_default().push_back(v);
        }
    }

    async fn next(&mut self, name: &str) -> Value {
        self.next_within(name, RECV_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("{name}: nothing within {RECV_TIMEOUT:?}"))
    }

    /// Skips lines of `name` until event `event`; returns its first argument.
    async fn event(&mut self, name: &str, event: &str) -> Value {
        loop {
            let v = self.next(name).await;
            assert_ne!(
                v["type"], "disconnect",
                "{name} disconnected waiting for {event}"
            );
            if v["type"] == "event" && v["event"] == event {
                return v["args"][0].clone();
            }
        }
    }

    /// Skips lines of `name` until a decrypted event `event`; returns its data.
    async fn decrypted(&mut self, name: &str, event: &str) -> Value {
        loop {
            let v = self.next(name).await;
            assert_ne!(
                v["type"], "disconnect",
                "{name} disconnected waiting for {event}"
            );
            assert_ne!(v["type"], "decrypt_error", "{v}");
            if v["type"] == "decrypted" && v["event"] == event {
                return v["data"].clone();
            }
        }
    }

    /// Skips lines of `name` until its disconnect; returns the reason.
    async fn disconnected(&mut self, name: &str, limit: Duration) -> String {
        let v = self.next_of(name, "disconnect", limit).await;
        v["reason"].as_str().unwrap_or_default().to_owned()
    }

    /// Skips lines of `name` until one of type `kind`, and returns it.
    async fn next_of(&mut self, name: &str, kind: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .next_within(name, left)
                .await
                .unwrap_or_else(|| panic!("{name}: no {kind} within {limit:?}"));
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Sends `sync` and waits for its echo: every earlier event of `name` has been handled.
    async fn sync(&mut self, name: &str) {
        let tag = uuid::Uuid::new_v4().to_string();
        self.emit(name, "sync", json!([tag])).await;
        loop {
            let echo = self.event(name, "echo").await;
            if echo["event"] == "sync" && echo["data"] == tag {
                return;
            }
        }
    }

    /// Asserts nothing arrives for `name` within `limit`.
    async fn silence(&mut self, name: &str, limit: Duration) {
        if let Some(v) = self.next_within(name, limit).await {
            panic!("{name}: expected nothing, got {v}");
        }
    }

    async fn stop(mut self) {
        self.send(json!({"cmd": "exit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
    }
}

fn rooms_of(server: &TestServer, id: &str) -> Vec<String> {
    let mut rooms = server.server.client_rooms(id).unwrap_or_default();
    rooms.sort();
    rooms
}

#[tokio::test]
async fn authenticate_answers_ping_then_authenticated_and_joins_the_default_rooms() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    h.connect("a", json!({"auth": {"token": "alice"}})).await;
    h.emit("a", "authenticate", json!([])).await;
    let ping = h.next("a").await;
    assert_eq!(
        (&ping["type"], &ping["event"]),
        (&json!("event"), &json!("ping")),
        "{ping}"
    );
    assert!(ping["args"][0]["time"].is_string());
    let auth = h.next("a").await;
    assert_eq!(auth["event"], "authenticated", "{auth}");
    let payload = &auth["args"][0];
    let id = payload["id"].as_str().expect("id");
    assert_eq!(payload["userId"], "alice");
    assert!(payload["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(payload.get("serverPublicKey").is_none());
    // The server's message limit, as in `/ws`'s `connected`.
    assert_eq!(payload["maxMessageBytes"], 128 * 1024);
    server.wait_authenticated(1).await;
    // As on IGNIS, the socket is in the room of its `socket.id` too.
    let sid = h.socket_id("a");
    let mut want = vec![
        id.to_owned(),
        sid.clone(),
        "io-default".into(),
        "io-notification".into(),
    ];
    want.sort();
    assert_eq!(rooms_of(&server, id), want);
    assert_eq!(
        rooms_of(&server, &sid),
        want,
        "the socket.id names the client"
    );
    // A second authenticate is ignored, as IGNIS does.
    h.emit("a", "authenticate", json!([])).await;
    h.sync("a").await;
    let client = server.server.clients().into_iter().find(|c| c.id == id);
    assert!(client.is_some(), "the socket is a client of the core");
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn credentials_come_from_the_bearer_header_or_the_query() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    h.connect("h", json!({"headers": {"authorization": "Bearer bob"}}))
        .await;
    assert_eq!(h.authenticate("h").await["userId"], "bob");
    h.connect("q", json!({"query": {"token": "carol"}})).await;
    assert_eq!(h.authenticate("q").await["userId"], "carol");
    // The event's arguments are ignored: credentials come from the handshake only.
    h.connect("e", json!({})).await;
    h.emit("e", "authenticate", json!([{"token": "mallory"}]))
        .await;
    let refused = h.event("e", "unauthenticated").await;
    assert_eq!(refused["message"], "Authentication failed");
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn refused_credentials_get_unauthenticated_before_the_disconnect() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    for (name, token, message) in [
        ("r", "reject-me", "Authentication failed"),
        ("x", "error-hook", "Authentication error"),
    ] {
        h.connect(name, json!({"auth": {"token": token}})).await;
        h.emit(name, "authenticate", json!([])).await;
        let refused = h.next(name).await;
        assert_eq!(refused["event"], "unauthenticated", "{refused}");
        assert_eq!(refused["args"][0]["message"], message);
        assert!(refused["args"][0]["time"].is_string());
        assert_eq!(
            h.disconnected(name, RECV_TIMEOUT).await,
            "io server disconnect"
        );
    }
    assert_eq!(server.server.counts().clients, 0);
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_socket_that_does_not_authenticate_in_time_is_disconnected() {
    let server = start_sio(
        builder(base_config()),
        SocketIoConfig::default().auth_timeout(Duration::from_millis(400)),
    )
    .await;
    let mut h = Harness::start(&server).await;
    let started = Instant::now();
    h.connect("idle", json!({"auth": {"token": "alice"}})).await;
    // Events before authentication are dropped, not answered.
    h.emit("idle", "join", json!([{"rooms": ["public-a"]}]))
        .await;
    assert_eq!(
        h.disconnected("idle", Duration::from_secs(5)).await,
        "io server disconnect"
    );
    assert!(started.elapsed() >= Duration::from_millis(350));
    let lines = h.seen.get("idle").cloned().unwrap_or_default();
    assert!(
        lines.iter().all(|l| l["type"] != "event"),
        "nothing is emitted to an unauthenticated socket: {lines:?}"
    );
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn join_and_leave_are_validated_and_malformed_payloads_are_ignored() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    let auth = h.login("a", "alice").await;
    let id = auth["id"].as_str().expect("id").to_owned();
    h.emit("a", "join", json!([{"rooms": ["public-x", "private-y"]}]))
        .await;
    for bad in [
        json!({"rooms": "public-z"}),
        json!(5),
        json!(null),
        json!({}),
    ] {
        h.emit("a", "join", json!([bad])).await;
        h.emit("a", "leave", json!([bad])).await;
    }
    h.emit("a", "join", json!([])).await;
    // A binary attachment beside the rooms (a Buffer) does not make the payload malformed.
    h.emit(
        "a",
        "join",
        json!([{"rooms": ["public-bin"], "extra": {"$bytes": [1, 2]}}]),
    )
    .await;
    h.sync("a").await;
    // As on /ws, each malformed payload is answered with an error event and changes nothing.
    let errors = h.seen["a"]
        .iter()
        .filter(|l| l["event"] == "error" && l["args"][0]["message"] == "Invalid rooms")
        .count();
    assert_eq!(errors, 9, "{:?}", h.seen["a"]);
    let rooms = rooms_of(&server, &id);
    assert!(rooms.contains(&"public-x".to_owned()), "{rooms:?}");
    assert!(rooms.contains(&"public-bin".to_owned()), "{rooms:?}");
    assert!(
        !rooms.iter().any(|r| r == "private-y" || r == "public-z"),
        "{rooms:?}"
    );
    // A client cannot leave its own id room (nor that of its socket.id); it can leave the
    // others.
    let sid = h.socket_id("a");
    h.emit(
        "a",
        "leave",
        json!([{"rooms": [id, sid, "public-x", "io-default"]}]),
    )
    .await;
    h.sync("a").await;
    let mut want = vec![
        id.clone(),
        sid,
        "io-notification".to_owned(),
        "public-bin".to_owned(),
    ];
    want.sort();
    assert_eq!(rooms_of(&server, &id), want);
    server.server.deliver_to_client(&id, "still", &1);
    assert_eq!(h.event("a", "still").await, json!(1));
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn sends_reach_socketio_and_websocket_clients_alike() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    let a = h.login("a", "alice").await;
    let a_id = a["id"].as_str().expect("id").to_owned();
    h.emit("a", "join", json!([{"rooms": ["public-r"]}])).await;
    h.sync("a").await;
    let (mut ws, _) = server.plain("bob").await;
    ws.send_json(&json!({"event": "join", "data": {"rooms": ["public-r"]}}))
        .await;
    ws.sync().await;
    let s = &server.server;

    s.deliver_to_client(&a_id, "direct", &json!({"n": 1}));
    assert_eq!(h.event("a", "direct").await, json!({"n": 1}));
    s.deliver_to_user("alice", "to-user", &json!("hi"));
    assert_eq!(h.event("a", "to-user").await, json!("hi"));
    s.deliver_to_room("public-r", "to-room", &json!([1, 2]));
    assert_eq!(
        h.event("a", "to-room").await,
        json!([1, 2]),
        "an array is one argument"
    );
    let m = ws.recv_json().await;
    assert_eq!(
        (&m["event"], &m["data"]),
        (&json!("to-room"), &json!([1, 2]))
    );
    s.deliver_broadcast("to-all", &json!({"b": true}));
    assert_eq!(h.event("a", "to-all").await, json!({"b": true}));
    let m = ws.recv_json().await;
    assert_eq!(m["event"], "to-all");
    s.deliver_to_room("io-default", "io-only", &json!(7));
    assert_eq!(h.event("a", "io-only").await, json!(7));
    // Falsy data is delivered (IGNIS drops it).
    for falsy in [json!(0), json!(false), json!(""), json!(null)] {
        s.deliver_to_client(&a_id, "falsy", &falsy);
        assert_eq!(h.event("a", "falsy").await, falsy);
    }
    // The client's own events reach the message hook.
    h.emit("a", "chat:message", json!([{"text": "hello"}]))
        .await;
    let echo = h.event("a", "echo").await;
    assert_eq!(echo["event"], "chat:message");
    assert_eq!(echo["data"], json!({"text": "hello"}));
    assert_eq!(echo["wasEncrypted"], false);
    // The WebSocket client was in none of the Socket.IO default rooms.
    ws.expect_silence(Duration::from_millis(200)).await;

    h.send(json!({"cmd": "close", "name": "a"})).await;
    assert_eq!(
        h.disconnected("a", RECV_TIMEOUT).await,
        "io client disconnect"
    );
    wait_for(|| server.server.client_rooms(&a_id).is_none()).await;
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_polling_transport_works_end_to_end() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    h.connect(
        "p",
        json!({"auth": {"token": "pat"}, "transports": ["polling"]}),
    )
    .await;
    let auth = h.authenticate("p").await;
    let id = auth["id"].as_str().expect("id").to_owned();
    h.emit("p", "join", json!([{"rooms": ["public-poll"]}]))
        .await;
    h.sync("p").await;
    server
        .server
        .deliver_to_room("public-poll", "polled", &json!({"ok": 1}));
    assert_eq!(h.event("p", "polled").await, json!({"ok": 1}));
    h.connect(
        "r",
        json!({"auth": {"token": "reject"}, "transports": ["polling"]}),
    )
    .await;
    h.emit("r", "authenticate", json!([])).await;
    assert_eq!(
        h.event("r", "unauthenticated").await["message"],
        "Authentication failed"
    );
    assert_eq!(
        h.disconnected("r", RECV_TIMEOUT).await,
        "io server disconnect"
    );
    assert!(rooms_of(&server, &id).contains(&"public-poll".to_owned()));
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn encrypted_sockets_get_only_sealed_frames_and_decrypt_them_with_webcrypto() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    h.connect("e", json!({"auth": {"token": "eve"}, "encrypt": true}))
        .await;
    let auth = h.authenticate("e").await;
    assert!(
        auth["serverPublicKey"].is_string() && auth["salt"].is_string(),
        "{auth}"
    );
    let id = auth["id"].as_str().expect("id").to_owned();
    // The first ping comes sealed.
    assert!(h.decrypted("e", "ping").await["time"].is_string());
    const SECRET: &str = "TOP-SECRET-payload-4711";
    server
        .server
        .deliver_to_client(&id, "secret", &json!({"s": SECRET}));
    assert_eq!(h.decrypted("e", "secret").await, json!({"s": SECRET}));
    server.server.deliver_broadcast("news", &json!(SECRET));
    assert_eq!(h.decrypted("e", "news").await, json!(SECRET));
    // Plaintext inbound events still work (IGNIS compatibility profile); the echo is sealed.
    h.emit("e", "join", json!([{"rooms": ["public-enc"]}]))
        .await;
    h.emit("e", "sync", json!(["tag"])).await;
    let echo = h.decrypted("e", "echo").await;
    assert_eq!(echo["event"], "sync");
    assert!(rooms_of(&server, &id).contains(&"public-enc".to_owned()));
    server
        .server
        .deliver_to_room("public-enc", "room-secret", &json!(SECRET));
    assert_eq!(h.decrypted("e", "room-secret").await, json!(SECRET));
    // Sealed inbound events are opened by the connection.
    h.send(json!({"cmd": "emit_sealed", "name": "e", "event": "sealed-chat", "data": {"t": 1}}))
        .await;
    let echo = h.decrypted("e", "echo").await;
    assert_eq!(echo["event"], "sealed-chat");
    assert_eq!(echo["data"], json!({"t": 1}));
    assert_eq!(echo["wasEncrypted"], true);

    let lines = h.seen.get("e").cloned().unwrap_or_default();
    for line in &lines {
        if line["type"] == "event" {
            let event = line["event"].as_str().unwrap_or_default();
            assert!(
                event == "authenticated" || event == "encrypted",
                "plaintext event to an encrypted socket: {line}"
            );
        }
        if line["type"] == "raw" {
            let raw = line["data"].as_str().unwrap_or_default();
            assert!(
                !raw.contains(SECRET) && !raw.contains("room-secret"),
                "leak: {raw}"
            );
        }
    }
    assert!(
        lines.iter().any(|l| l["type"] == "raw"),
        "raw frames were recorded"
    );

    // The polling transport carries sealed frames the same way.
    h.connect(
        "ep",
        json!({"auth": {"token": "eve"}, "encrypt": true, "transports": ["polling"]}),
    )
    .await;
    let auth = h.authenticate("ep").await;
    assert!(auth["serverPublicKey"].is_string());
    server.server.deliver_to_user("eve", "both", &json!(SECRET));
    assert_eq!(h.decrypted("ep", "both").await, json!(SECRET));
    assert_eq!(h.decrypted("e", "both").await, json!(SECRET));
    for line in h.seen.get("ep").into_iter().flatten() {
        if line["type"] == "event" {
            assert!(
                line["event"] == "authenticated" || line["event"] == "encrypted",
                "{line}"
            );
        }
        if line["type"] == "raw" {
            assert!(
                !line["data"].as_str().unwrap_or_default().contains(SECRET),
                "leak: {line}"
            );
        }
    }
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn require_encryption_refuses_sockets_without_a_key() {
    let mut config: ServerConfig = base_config();
    config.encryption = EncryptionPolicy::Required;
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let mut h = Harness::start(&server).await;
    h.connect("plain", json!({"auth": {"token": "alice"}}))
        .await;
    h.emit("plain", "authenticate", json!([])).await;
    let refused = h.next("plain").await;
    assert_eq!(refused["event"], "unauthenticated", "{refused}");
    assert_eq!(refused["args"][0]["message"], "Encryption handshake failed");
    assert_eq!(
        h.disconnected("plain", RECV_TIMEOUT).await,
        "io server disconnect"
    );
    // A bad key is refused the same way; a good one gets in.
    h.connect(
        "bad",
        json!({"auth": {"token": "alice", "publicKey": "AAAA"}}),
    )
    .await;
    h.emit("bad", "authenticate", json!([])).await;
    assert_eq!(
        h.event("bad", "unauthenticated").await["message"],
        "Encryption handshake failed"
    );
    h.connect("enc", json!({"auth": {"token": "alice"}, "encrypt": true}))
        .await;
    let auth = h.authenticate("enc").await;
    assert!(auth["serverPublicKey"].is_string());
    h.silence("plain", Duration::from_millis(50)).await;
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn socketio_clients_are_clients_of_the_admin_api() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    let auth = h.login("a", "alice").await;
    let id = auth["id"].as_str().expect("id").to_owned();
    let http = reqwest::Client::new();
    let clients: Value = http
        .get(server.http("/socket/clients"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("clients")
        .json()
        .await
        .expect("json");
    let listed = clients["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .find(|c| c["id"] == id.as_str())
        .cloned()
        .expect("the socket is listed");
    assert_eq!(listed["userId"], "alice");
    assert_eq!(listed["socketId"], h.socket_id("a").as_str());
    let sent = http
        .post(server.http(&format!("/socket/client/{id}/send")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"topic": "from-admin", "data": {"x": 1}}))
        .send()
        .await
        .expect("send");
    assert!(sent.status().is_success(), "{}", sent.status());
    assert_eq!(h.event("a", "from-admin").await, json!({"x": 1}));
    let joined = http
        .post(server.http(&format!("/socket/client/{id}/join")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"rooms": ["private-admin"]}))
        .send()
        .await
        .expect("join");
    assert!(joined.status().is_success());
    let sent = http
        .post(server.http("/socket/room/private-admin/send"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"topic": "room-admin", "data": false}))
        .send()
        .await
        .expect("send");
    assert!(sent.status().is_success());
    assert_eq!(h.event("a", "room-admin").await, json!(false));
    h.stop().await;
    server.stop().await;
}

/// As on IGNIS, the `socket.id` a client sees names it wherever its client id does: the
/// admin API's client calls, sends to a client, `send()` routing. Its room is the socket's
/// alone: nobody else is put in it, and the socket cannot leave it.
#[tokio::test]
async fn the_socket_id_names_the_client_like_its_id() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    let auth = h.login("a", "alice").await;
    let id = auth["id"].as_str().expect("id").to_owned();
    let sid = h.socket_id("a");
    assert_ne!(sid, id);
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| {
        http.post(server.http(&path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let sent = post(
        format!("/socket/client/{sid}/send"),
        json!({"topic": "by-sid", "data": 1}),
    )
    .await
    .expect("send");
    assert!(sent.status().is_success(), "{}", sent.status());
    assert_eq!(h.event("a", "by-sid").await, json!(1));
    let joined: Value = post(
        format!("/socket/client/{sid}/join"),
        json!({"rooms": ["extra"]}),
    )
    .await
    .expect("join")
    .json()
    .await
    .expect("json");
    assert_eq!(joined["joined"], json!(["extra"]), "{joined}");
    let rooms: Value = http
        .get(server.http(&format!("/socket/client/{sid}/rooms")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("rooms")
        .json()
        .await
        .expect("json");
    let rooms = rooms["rooms"].as_array().expect("rooms").clone();
    for r in [&id, &sid, "extra"] {
        assert!(rooms.contains(&json!(r)), "{r}: {rooms:?}");
    }
    // IGNIS `send()` routing, and a room send to the socket.id.
    sealwire::compat::IgnisSend::send(&server.server, Some(&sid), "routed", &json!("r"))
        .await
        .expect("send");
    assert_eq!(h.event("a", "routed").await, json!("r"));
    server
        .server
        .deliver_to_room(&sid, "as-room", &json!(false));
    assert_eq!(h.event("a", "as-room").await, json!(false));
    // Nobody else is put in the socket's room; the socket cannot leave it.
    let other = h.login("b", "bob").await;
    let other_id = other["id"].as_str().expect("id").to_owned();
    assert_eq!(
        server.server.join(&other_id, std::slice::from_ref(&sid)),
        Some(vec![])
    );
    // The admin API says so (as for a client id).
    let refused = post(
        format!("/socket/client/{other_id}/join"),
        json!({"rooms": [sid.clone()]}),
    )
    .await
    .expect("join");
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("names another client")),
        "{body}"
    );
    assert_eq!(
        server.server.leave(&sid, std::slice::from_ref(&sid)),
        Some(vec![])
    );
    server.server.deliver_to_room(&sid, "only-a", &json!(2));
    assert_eq!(h.event("a", "only-a").await, json!(2));
    h.silence("b", Duration::from_millis(200)).await;
    // Gone with the socket.
    h.send(json!({"cmd": "close", "name": "a"})).await;
    wait_for(|| server.server.client_rooms(&sid).is_none()).await;
    h.stop().await;
    server.stop().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn sends_from_another_instance_reach_socketio_clients_through_redis() {
    use common::redis::RedisServer;
    use sealwire::bus::{RedisBus, RedisBusConfig, SubscriptionMode};

    let redis = RedisServer::start().await;
    let node = |redis: &RedisServer| {
        let bus = RedisBus::new(
            RedisBusConfig::new(redis.url())
                .mode(SubscriptionMode::Pattern)
                .backoff(Duration::from_millis(20), Duration::from_millis(300)),
        )
        .expect("bus");
        start_sio(
            builder(base_config())
                .validate_rooms(public_rooms())
                .bus(bus),
            SocketIoConfig::default(),
        )
    };
    let a = node(&redis).await;
    let b = node(&redis).await;
    let mut h = Harness::start(&b).await;
    let auth = h.login("b", "bea").await;
    let id = auth["id"].as_str().expect("id").to_owned();
    h.emit("b", "join", json!([{"rooms": ["public-x"]}])).await;
    h.sync("b").await;
    // Until both instances are subscribed, a probe may be lost: repeat it until one arrives.
    let mut ready = false;
    for _ in 0..50 {
        a.server.deliver_broadcast("probe", &1);
        if let Some(v) = h.next_within("b", Duration::from_millis(100)).await
            && v["event"] == "probe"
        {
            ready = true;
            break;
        }
    }
    assert!(ready, "instance B never got a broadcast from A");
    // Drain probes still in flight.
    while h
        .next_within("b", Duration::from_millis(200))
        .await
        .is_some()
    {}
    a.server.deliver_to_client(&id, "to-client", &json!("c"));
    assert_eq!(h.event("b", "to-client").await, json!("c"));
    // By its socket.id too, which only instance B knows.
    let sid = h.socket_id("b");
    a.server.deliver_to_client(&sid, "to-sid", &json!("s"));
    assert_eq!(h.event("b", "to-sid").await, json!("s"));
    a.server.deliver_to_user("bea", "to-user", &json!("u"));
    assert_eq!(h.event("b", "to-user").await, json!("u"));
    a.server.deliver_to_room("public-x", "to-room", &json!(0));
    assert_eq!(h.event("b", "to-room").await, json!(0));
    a.server.deliver_broadcast("to-all", &json!(null));
    assert_eq!(h.event("b", "to-all").await, json!(null));
    // sealwire's own Redis-only emitter reaches Socket.IO clients like any other.
    let emitter =
        sealwire::emitter::Emitter::connect(sealwire::emitter::EmitterConfig::new(redis.url()))
            .await
            .expect("emitter");
    {
        use sealwire::publish::Publish as _;
        emitter
            .to_user("bea")
            .emit("from-emitter", &json!({"e": 1}))
            .await
            .expect("emit");
    }
    assert_eq!(h.event("b", "from-emitter").await, json!({"e": 1}));
    {
        use sealwire::publish::Publish as _;
        emitter
            .to_room("public-x")
            .emit("room-emitter", &json!(""))
            .await
            .expect("emit");
    }
    assert_eq!(h.event("b", "room-emitter").await, json!(""));
    emitter.shutdown().await;
    h.stop().await;
    a.stop().await;
    b.stop().await;
}

/// A Socket.IO socket on `addr` whose connect is acknowledged and which sends nothing more
/// (no `authenticate`); returns its connection and its `socket.id`.
async fn unauthenticated_socket(
    addr: std::net::SocketAddr,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
) {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{addr}/io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("upgrade");
    ws.send(Message::text("40")).await.expect("connect");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the acknowledgement in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = frame
            && let Some(ack) = t.strip_prefix("40")
        {
            let ack: Value = serde_json::from_str(ack).expect("ack");
            let sid = ack["sid"].as_str().expect("sid").to_owned();
            return (ws, sid);
        }
    }
}

/// `POST /socket/client/{client}/join {rooms}` on `server`; its status.
async fn admin_join(server: &TestServer, client: &str, rooms: Value) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(server.http(&format!("/socket/client/{client}/join")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "rooms": rooms }))
        .send()
        .await
        .expect("admin join")
        .status()
}

/// Whether `key` exists in `redis` within `tries` looks, 20 ms apart.
#[cfg(feature = "redis")]
async fn key_appears(redis: &common::redis::RedisServer, key: &str, tries: usize) -> bool {
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    for _ in 0..tries {
        let exists = ::redis::cmd("EXISTS")
            .arg(key)
            .query_async::<bool>(&mut conn)
            .await
            .unwrap_or(false);
        if exists {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// How long `redis` has been up (`INFO server`'s `uptime_in_seconds`).
#[cfg(feature = "redis")]
async fn redis_uptime_secs(redis: &common::redis::RedisServer) -> u64 {
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let info: String = ::redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("uptime")
}

/// A publication from another instance that excludes a socket by its `socket.id` (as a
/// worker or an IGNIS backend names it) skips that socket, as one that names its client id
/// does: broadcast, room and user sends, over the bus between two instances.
#[tokio::test]
async fn a_socket_excluded_by_its_socket_id_on_another_instance_is_skipped() {
    use sealwire::publish::Publish as _;
    let hub = sealwire::server::LocalBus::new();
    let a = start_with(builder(base_config()).bus(hub.clone())).await;
    let b = start_sio(
        builder(base_config())
            .validate_rooms(public_rooms())
            .bus(hub.clone()),
        SocketIoConfig::default(),
    )
    .await;
    let mut h = Harness::start(&b).await;
    h.login("v", "victim").await;
    let sid = h.socket_id("v");
    let except = [sid.clone()];
    a.server
        .to_all()
        .except_all(&except)
        .emit("skipped", &json!(1))
        .await
        .expect("broadcast");
    a.server
        .to_user("victim")
        .except_all(&except)
        .emit("skipped", &json!(2))
        .await
        .expect("user");
    a.server
        .to_room("io-default")
        .except_all(&except)
        .emit("skipped", &json!(3))
        .await
        .expect("room");
    a.server
        .to_all()
        .emit("marker", &json!(null))
        .await
        .expect("marker");
    let next = h.next("v").await;
    assert_eq!(next["event"], "marker", "{next}");
    h.stop().await;
    a.stop().await;
    b.stop().await;
}

/// A departed socket's `socket.id` stays unjoinable (retired for a day), so a send that
/// still names it reaches nobody: not a client that joins the room of that name once the
/// socket has gone. One instance, rooms open to every name.
#[tokio::test]
async fn a_departed_sockets_id_cannot_be_joined() {
    use sealwire::compat::IgnisSend as _;
    let server = start_sio(
        builder(base_config()).validate_rooms(GlobRooms::new(["*"]).expect("glob")),
        SocketIoConfig::default(),
    )
    .await;
    let mut h = Harness::start(&server).await;
    h.login("v", "victim").await;
    let sid = h.socket_id("v");
    h.send(json!({"cmd": "close", "name": "v"})).await;
    let _ = h.disconnected("v", RECV_TIMEOUT).await;
    wait_for(|| server.server.client_named(&sid).is_none()).await;

    let (mut attacker, connected) = server.plain("mallory").await;
    let attacker_id = connected["data"]["id"].as_str().expect("id").to_owned();
    attacker
        .send_json(&json!({"event": "join", "data": {"rooms": [sid, "ordinary"]}}))
        .await;
    wait_for(|| {
        server
            .server
            .client_rooms(&attacker_id)
            .is_some_and(|r| r.contains(&"ordinary".to_owned()))
    })
    .await;
    let rooms = server.server.client_rooms(&attacker_id).expect("rooms");
    assert!(!rooms.contains(&sid), "joined {sid}: {rooms:?}");
    assert_eq!(admin_join(&server, &attacker_id, json!([sid])).await, 400);
    // A late send to the departed socket, then a marker: the attacker gets the marker only.
    server
        .server
        .send(Some(&sid), "to-sid", &json!("late"))
        .await
        .expect("send");
    server
        .server
        .send(Some("ordinary"), "marker", &json!(null))
        .await
        .expect("marker");
    assert_eq!(attacker.recv_json().await["event"], "marker");
    h.stop().await;
    server.stop().await;
}

/// The room of a Socket.IO socket's `socket.id` is its client's alone on every instance: a
/// client of another instance cannot join it (neither by a `join` nor through the admin API),
/// so neither an IGNIS `send(socket.id)` made there nor an emitter's `to(socket.id)` reaches
/// anyone else. In both subscription modes, with rooms open to every name.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_socket_id_room_cannot_be_joined_on_another_instance() {
    use common::redis::RedisServer;
    use sealwire::bus::{RedisBus, RedisBusConfig, SubscriptionMode};
    use sealwire::compat::IgnisSend as _;
    use sealwire::publish::Publish as _;

    // For this long after Redis started, every socket-id shaped name counts as held: the
    // checks below run once Redis is older, and one right after a restart.
    const GRACE: Duration = Duration::from_secs(3);
    let mut redis = RedisServer::start().await;
    for mode in [SubscriptionMode::Interest, SubscriptionMode::Pattern] {
        while redis_uptime_secs(&redis).await <= GRACE.as_secs() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let node = |redis: &RedisServer| {
            let bus = RedisBus::new(
                RedisBusConfig::new(redis.url())
                    .mode(mode)
                    .backoff(Duration::from_millis(20), Duration::from_millis(300))
                    .restart_grace(GRACE),
            )
            .expect("bus");
            start_sio(
                builder(base_config())
                    .validate_rooms(GlobRooms::new(["*"]).expect("glob"))
                    .bus(bus),
                SocketIoConfig::default(),
            )
        };
        let (a, b) = (node(&redis).await, node(&redis).await);
        let mut h = Harness::start(&b).await;
        h.login("v", "victim").await;
        let sid = h.socket_id("v");
        let key = format!("sealwire:socket-id:{sid}");
        // Waits for the key (the checks below hold whether it is there yet or not).
        let _ = key_appears(&redis, &key, 100).await;
        // On instance A, a client asks for the socket's room and an ordinary one.
        let (mut attacker, connected) = a.plain("mallory").await;
        let attacker_id = connected["data"]["id"].as_str().expect("id").to_owned();
        attacker
            .send_json(&json!({"event": "join", "data": {"rooms": [sid, "ordinary"]}}))
            .await;
        wait_for(|| {
            a.server
                .client_rooms(&attacker_id)
                .is_some_and(|r| r.contains(&"ordinary".to_owned()))
        })
        .await;
        let rooms = a.server.client_rooms(&attacker_id).expect("rooms");
        assert!(!rooms.contains(&sid), "{mode:?}: joined {sid}: {rooms:?}");
        let refused = admin_join(&a, &attacker_id, json!([sid])).await;
        assert_eq!(refused, 400, "{mode:?}");
        // Addressed to the socket from A, and through the emitter: the socket only.
        a.server
            .send(Some(&sid), "to-sid", &json!("from A"))
            .await
            .expect("send");
        assert_eq!(h.event("v", "to-sid").await, json!("from A"), "{mode:?}");
        let emitter =
            sealwire::emitter::Emitter::connect(sealwire::emitter::EmitterConfig::new(redis.url()))
                .await
                .expect("emitter");
        emitter
            .to_room(&sid)
            .emit("to-sid-room", &json!("emitter"))
            .await
            .expect("emit");
        assert_eq!(
            h.event("v", "to-sid-room").await,
            json!("emitter"),
            "{mode:?}"
        );
        emitter.shutdown().await;
        a.server
            .send(Some("ordinary"), "marker", &json!(null))
            .await
            .expect("marker");
        let next = attacker.recv_json().await;
        assert_eq!(next["event"], "marker", "{mode:?}: {next}");
        // A socket connected but not yet authenticated: its `socket.id` is reserved before
        // the acknowledgement tells the client what it is.
        let (mut pending, pending_sid) = unauthenticated_socket(b.addr).await;
        let early = admin_join(&a, &attacker_id, json!([pending_sid])).await;
        assert_eq!(early, 400, "{mode:?}: before authenticate");
        let _ = pending.close(None).await;
        // A Redis restarted without its data gets the name again once the bus is back; until
        // every instance has had the time to write its names again, every socket-id shaped
        // name counts as held.
        redis.restart().await;
        wait_for(|| a.server.bus_status().connected).await;
        let after_restart = admin_join(&a, &attacker_id, json!(["Zz0123456789-_aB"])).await;
        assert_eq!(after_restart, 400, "{mode:?}: just after a restart");
        let back = key_appears(&redis, &key, 250).await;
        assert!(back, "{mode:?}: the socket id is not written again");
        // Once the socket has left, its id stays retired: a late send to it reaches nobody
        // rather than whoever joins the room next.
        h.send(json!({"cmd": "close", "name": "v"})).await;
        let _ = h.disconnected("v", RECV_TIMEOUT).await;
        wait_for(|| b.server.client_named(&sid).is_none()).await;
        let mut conn = redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let mut retired = false;
        for _ in 0..250 {
            let value: Option<String> = ::redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("GET");
            if value.as_deref() == Some("0") {
                retired = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(retired, "{mode:?}: the socket id is not marked retired");
        let ttl: i64 = ::redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("TTL");
        assert!(ttl > 23 * 3600, "{mode:?}: retired for {ttl} s");
        while redis_uptime_secs(&redis).await <= GRACE.as_secs() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let after_leaving = admin_join(&a, &attacker_id, json!([sid])).await;
        assert_eq!(after_leaving, 400, "{mode:?}: after the socket left");
        h.stop().await;
        a.stop().await;
        b.stop().await;
    }
}

/// Spawns `sealwire serve --dev --listen 127.0.0.1:0 <args>`; returns the process and the
/// Socket.IO base URL (`http://host:port`) it printed.
async fn sealwire_serve(args: &[&str], sio_path: &str) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealwire"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("SEALWIRE_LISTEN")
        .env_remove("SEALWIRE_SOCKETIO_PATH")
        .env_remove("SEALWIRE_SOCKETIO_AUTH_TIMEOUT_MS")
        .env_remove("SEALWIRE_SOCKETIO_REDIS_KEY")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sealwire");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let suffix = format!("{sio_path}/");
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("sealwire printed its address in time")
            .expect("read stdout")
            .expect("sealwire exited before listening");
        if let Some(rest) = line.strip_prefix("socket.io listening on ") {
            break rest.trim().trim_end_matches(&suffix).to_owned();
        }
    };
    // Keep reading stdout so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

#[tokio::test]
async fn sealwire_serve_exposes_the_socketio_endpoint_with_its_options() {
    let (mut child, url) = sealwire_serve(
        &[
            "--socketio-path",
            "/rt",
            "--socketio-auth-timeout-ms",
            "300",
        ],
        "/rt",
    )
    .await;
    let mut h = Harness::start_at(&url).await;
    h.send(json!({"cmd": "connect", "name": "a", "url": url, "path": "/rt", "auth": {"token": "dev-user"}}))
        .await;
    assert_eq!(h.next("a").await["type"], "connect");
    assert_eq!(h.authenticate("a").await["userId"], "dev-user");
    h.send(json!({"cmd": "connect", "name": "idle", "url": url, "path": "/rt"}))
        .await;
    assert_eq!(h.next("idle").await["type"], "connect");
    assert_eq!(
        h.disconnected("idle", Duration::from_secs(5)).await,
        "io server disconnect"
    );
    h.stop().await;
    let _ = child.kill().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn sealwire_serve_with_redis_delivers_redis_emitter_messages() {
    let redis = common::redis::RedisServer::start().await;
    let (mut child, url) = sealwire_serve(&["--redis-url", &redis.url()], "/io").await;
    let mut h = Harness::start_at(&url).await;
    let auth = h.login("a", "alice").await;
    let id = auth["id"].as_str().expect("id").to_owned();
    let mut delivered = None;
    for _ in 0..50 {
        redis_emit(
            redis.port,
            json!([{"op": "emit", "to": [id], "event": "from-worker", "args": [{"n": 1}]}]),
        )
        .await;
        if let Some(v) = h.next_within("a", Duration::from_millis(200)).await {
            delivered = Some(v);
            break;
        }
    }
    let v = delivered.expect("an emitter message arrived");
    assert_eq!(
        (&v["event"], &v["args"][0]),
        (&json!("from-worker"), &json!({"n": 1}))
    );
    h.stop().await;
    let _ = child.kill().await;
}

/// With `--bus-key` only key holders publish to clients: unsealed `@socket.io/redis-emitter`
/// messages are not accepted, while sealed ones from sealwire's emitter still arrive.
#[cfg(feature = "redis")]
#[tokio::test]
async fn with_a_bus_key_unsealed_redis_emitter_messages_are_refused() {
    use sealwire::Publish;
    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let redis = common::redis::RedisServer::start().await;
    let (mut child, url) =
        sealwire_serve(&["--redis-url", &redis.url(), "--bus-key", KEY], "/io").await;
    let mut h = Harness::start_at(&url).await;
    let auth = h.login("a", "alice").await;
    let id = auth["id"].as_str().expect("id").to_owned();
    redis.wait_numsub(&format!("ws:client:{id}"), 1).await;
    for _ in 0..5 {
        redis_emit(
            redis.port,
            json!([{"op": "emit", "to": [id], "event": "unsealed", "args": [1]}]),
        )
        .await;
    }
    let emitter = sealwire::emitter::Emitter::connect(
        sealwire::emitter::EmitterConfig::new(redis.url()).bus_key(Some(
            sealwire::crypto::backplane::BusKey::from_base64(KEY).expect("key"),
        )),
    )
    .await
    .expect("emitter");
    emitter
        .to_client(id.clone())
        .emit("sealed", &json!(2))
        .await
        .expect("emit");
    // No subscription to the socket.io channels at all (interest mode uses no patterns).
    assert_eq!(
        redis.numpat().await,
        0,
        "the emitter bridge is not listening"
    );
    // The sealed message comes after the unsealed ones on the wire; only it arrives.
    let v = h
        .next_within("a", Duration::from_secs(10))
        .await
        .expect("the sealed message arrived");
    assert_eq!((&v["event"], &v["args"][0]), (&json!("sealed"), &json!(2)));
    emitter.shutdown().await;
    h.stop().await;
    let _ = child.kill().await;
}

/// Runs tests/sio/emit.mjs: `ops` through the real `@socket.io/redis-emitter`.
#[cfg(feature = "redis")]
async fn redis_emit(port: u16, ops: Value) {
    install_harness();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new("node")
            .args(["emit.mjs", &port.to_string(), &ops.to_string()])
            .current_dir(harness_dir())
            .output(),
    )
    .await
    .expect("emit.mjs finished in time")
    .expect("run node");
    assert!(
        out.status.success(),
        "emit.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_emitter_messages_reach_socketio_and_websocket_clients_on_every_instance() {
    use common::redis::RedisServer;

    let redis = RedisServer::start().await;
    let a = start_default().await;
    let b = start_default().await;
    for s in [&a, &b] {
        socketio::spawn_redis_emitter_bridge(&s.server, &redis.url(), socketio::DEFAULT_KEY)
            .expect("bridge");
    }
    let mut h = Harness::start(&a).await;
    let auth = h.login("a", "alice").await;
    let a_id = auth["id"].as_str().expect("id").to_owned();
    h.url = b.http("");
    let auth = h.login("b", "bob").await;
    let b_id = auth["id"].as_str().expect("id").to_owned();
    let (mut ws, _) = b.plain("walt").await;
    // Until both bridges are subscribed, a probe may be lost: repeat it until both get one.
    let (mut got_a, mut got_b) = (false, false);
    for _ in 0..50 {
        redis_emit(
            redis.port,
            json!([{"op": "emit", "event": "probe", "args": [1]}]),
        )
        .await;
        got_a |= h
            .next_within("a", Duration::from_millis(100))
            .await
            .is_some();
        got_b |= h
            .next_within("b", Duration::from_millis(100))
            .await
            .is_some();
        if got_a && got_b {
            break;
        }
    }
    assert!(got_a && got_b, "the bridges never delivered a probe");
    for name in ["a", "b"] {
        while h
            .next_within(name, Duration::from_millis(200))
            .await
            .is_some()
        {}
    }
    while ws.recv_within(Duration::from_millis(100)).await.is_some() {}

    // To one socket (its id is a room), on the other instance; by its socket.id as well.
    redis_emit(
        redis.port,
        json!([{"op": "emit", "to": [b_id], "event": "direct", "args": [{"x": 1}]}]),
    )
    .await;
    assert_eq!(h.event("b", "direct").await, json!({"x": 1}));
    let b_sid = h.socket_id("b");
    redis_emit(
        redis.port,
        json!([
            {"op": "emit", "to": [b_sid], "event": "by-sid", "args": [{"x": 2}]},
            {"op": "emit", "except": [b_sid], "event": "all-but-b", "args": [3]},
        ]),
    )
    .await;
    assert_eq!(h.event("b", "by-sid").await, json!({"x": 2}));
    assert_eq!(h.event("a", "all-but-b").await, json!(3));
    let m = ws.recv_json().await;
    assert_eq!(m["event"], "all-but-b", "{m}");
    // A room joined through socketsJoin, with falsy data; WebSocket clients are members too.
    redis_emit(
        redis.port,
        json!([
            {"op": "join", "in": [a_id], "rooms": ["team"]},
            {"op": "join", "in": [b_id], "rooms": ["team"]},
            {"op": "emit", "to": ["team"], "event": "team-msg", "args": [0]},
        ]),
    )
    .await;
    assert_eq!(h.event("a", "team-msg").await, json!(0));
    assert_eq!(h.event("b", "team-msg").await, json!(0));
    assert!(
        a.server
            .client_rooms(&a_id)
            .unwrap_or_default()
            .contains(&"team".to_owned())
    );
    // Broadcast with an exception; several rooms deliver once per client. A room that names
    // no room (`to(null)`, `to(undefined)`: a stale socket.id) reaches nobody.
    redis_emit(
        redis.port,
        json!([
            {"op": "emit", "to": [null], "event": "to-nobody", "args": [1]},
            {"op": "emit", "except": [a_id], "event": "all-but-a", "args": ["x"]},
            {"op": "emit", "to": ["team", "io-default"], "event": "once", "args": [null]},
        ]),
    )
    .await;
    assert_eq!(h.event("b", "all-but-a").await, json!("x"));
    let m = ws.recv_json().await;
    assert_eq!(
        (&m["event"], &m["data"]),
        (&json!("all-but-a"), &json!("x"))
    );
    assert_eq!(h.event("a", "once").await, json!(null));
    assert_eq!(h.event("b", "once").await, json!(null));
    h.silence("a", Duration::from_millis(200)).await;
    h.silence("b", Duration::from_millis(50)).await;
    // socketsLeave.
    redis_emit(
        redis.port,
        json!([{"op": "leave", "in": ["team"], "rooms": ["team"]}]),
    )
    .await;
    wait_for(|| {
        !a.server
            .client_rooms(&a_id)
            .unwrap_or_default()
            .contains(&"team".to_owned())
    })
    .await;
    h.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn connected_sockets_outlive_the_core_heartbeat_timeout() {
    let mut config = base_config();
    config.heartbeat_interval = Duration::from_millis(100);
    config.heartbeat_timeout = Duration::from_millis(600);
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let mut h = Harness::start(&server).await;
    let auth = h.login("a", "alice").await;
    let id = auth["id"].as_str().expect("id").to_owned();
    // The socket sends nothing itself; the bridge's heartbeats keep it from 4002.
    h.silence("a", Duration::from_millis(1500)).await;
    server.server.deliver_to_client(&id, "alive", &1);
    assert_eq!(h.event("a", "alive").await, json!(1));
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn allowed_origins_apply_to_socketio_sockets() {
    let sio = SocketIoConfig::default().allowed_origins(["https://app.example"]);
    let server = start_sio(builder(base_config()), sio).await;
    let mut h = Harness::start(&server).await;
    h.send(
        json!({"cmd": "connect", "name": "evil", "url": h.url, "path": "/io",
        "auth": {"token": "alice"}, "headers": {"origin": "https://evil.example"}}),
    )
    .await;
    let mut lines = Vec::new();
    loop {
        let v = h.next("evil").await;
        lines.push(v.clone());
        if v["type"] == "disconnect" || v["type"] == "connect_error" {
            break;
        }
    }
    assert!(
        lines.iter().all(|l| l["type"] != "event"),
        "nothing is emitted to a refused socket: {lines:?}"
    );
    h.connect(
        "good",
        json!({"auth": {"token": "alice"}, "headers": {"origin": "https://app.example"}}),
    )
    .await;
    assert_eq!(h.authenticate("good").await["userId"], "alice");
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn socketio_sockets_count_under_the_connection_limits() {
    let mut config = base_config();
    config.max_connections_per_ip = Some(1);
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let mut h = Harness::start(&server).await;
    h.connect("first", json!({"auth": {"token": "alice"}}))
        .await;
    // The unauthenticated socket already holds the address's only place: the second
    // session is refused at its engine.io handshake.
    h.send(
        json!({"cmd": "connect", "name": "second", "url": h.url, "path": "/io",
        "auth": {"token": "bob"}}),
    )
    .await;
    assert_eq!(h.next("second").await["type"], "connect_error");
    let refused = tokio_tungstenite::connect_async(server.ws_url()).await;
    assert!(refused.is_err(), "the WebSocket upgrade shares the limit");
    assert_eq!(h.authenticate("first").await["userId"], "alice");
    h.send(json!({"cmd": "close", "name": "first"})).await;
    assert_eq!(
        h.disconnected("first", RECV_TIMEOUT).await,
        "io client disconnect"
    );
    // The place is free again once the socket is gone.
    let freed = a_place_frees_within(&server, Duration::from_secs(2)).await;
    assert!(freed, "the slot was released");
    h.stop().await;
    server.stop().await;
}

/// A polling client that closes (`socket.close()`: its `41`, then engine.io's `close`) gives
/// its place back at once, as a WebSocket one does, not when its departed session is
/// forgotten (about 50 s later).
#[tokio::test]
async fn a_polling_client_that_closes_frees_its_place_at_once() {
    let mut config = base_config();
    config.max_connections_per_ip = Some(1);
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let mut h = Harness::start(&server).await;
    h.connect(
        "first",
        json!({"auth": {"token": "alice"}, "transports": ["polling"]}),
    )
    .await;
    assert_eq!(h.authenticate("first").await["userId"], "alice");
    h.send(json!({"cmd": "close", "name": "first"})).await;
    assert_eq!(
        h.disconnected("first", RECV_TIMEOUT).await,
        "io client disconnect"
    );
    let freed = a_place_frees_within(&server, Duration::from_secs(2)).await;
    assert!(freed, "the place was released within 2 s");
    h.stop().await;
    server.stop().await;
}

/// An engine.io session that never sends the Socket.IO `CONNECT` still holds its place under
/// the connection limits, from its handshake until the connect timeout: sessions opened
/// only to hold descriptors are refused like any connection over the limit.
#[tokio::test]
async fn engine_io_sessions_count_under_the_limits_before_they_connect() {
    let mut config = base_config();
    config.max_connections_per_ip = Some(2);
    let mut sio = SocketIoConfig::default();
    sio.auth_timeout = Duration::from_millis(600);
    let server = start_sio(builder(config), sio).await;
    let session = format!("ws://{}/io/?EIO=4&transport=websocket", server.addr);
    let open = || async { tokio_tungstenite::connect_async(session.as_str()).await };
    let first = open().await.expect("first session");
    let second = open().await.expect("second session");
    let refused = open().await;
    assert!(
        refused.is_err(),
        "a third session from one address is refused"
    );
    assert!(
        tokio_tungstenite::connect_async(server.ws_url())
            .await
            .is_err(),
        "the WebSocket door shares the limit"
    );
    // Past the connect timeout the sessions are gone and their places free again.
    let freed = a_place_frees_within(&server, Duration::from_secs(5)).await;
    assert!(
        freed,
        "the places of sessions that never connected were released"
    );
    drop((first, second));
    server.stop().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_redis_emitter_bridge_resubscribes_after_redis_restarts() {
    let mut redis = common::redis::RedisServer::start().await;
    let server = start_default().await;
    socketio::spawn_redis_emitter_bridge(&server.server, &redis.url(), "app").expect("bridge");
    redis.wait_numsub("app-request#/#", 1).await;
    let mut h = Harness::start(&server).await;
    let auth = h.login("a", "alice").await;
    let id = auth["id"].as_str().expect("id").to_owned();
    redis.kill();
    redis.restart().await;
    redis.wait_numsub("app-request#/#", 1).await;
    // The broadcast subscription is a pattern; it was made before the request one.
    assert_eq!(redis.numpat().await, 1);
    let out = tokio::process::Command::new("node")
        .args([
            "-e",
            &format!(
                "import('@socket.io/redis-emitter').then(async ({{ Emitter }}) => {{\
                 const {{ Redis }} = await import('ioredis');\
                 const r = new Redis({{ port: {port}, lazyConnect: true }}); await r.connect();\
                 new Emitter(r, {{ key: 'app' }}).to('{id}').emit('again', 'ok');\
                 await r.quit(); }})",
                port = redis.port
            ),
        ])
        .current_dir(harness_dir())
        .output()
        .await
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(h.event("a", "again").await, json!("ok"));
    h.stop().await;
    server.stop().await;
}

/// A shutdown ends the transport of every socket, authenticated or still waiting, instead of
/// disconnecting it from the namespace (`41`), after which socket.io-client would not
/// reconnect.
#[tokio::test]
async fn shutdown_ends_the_transport_of_authenticated_and_waiting_sockets() {
    let server = start_default().await;
    let mut h = Harness::start(&server).await;
    h.login("a", "alice").await;
    h.connect("idle", json!({"auth": {"token": "bob"}})).await;
    let started = Instant::now();
    server.stop().await;
    for name in ["a", "idle"] {
        assert_eq!(h.disconnected(name, RECV_TIMEOUT).await, "transport close");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not held until the 10 s authentication timeout"
    );
    h.stop().await;
}

/// What a rolling deploy looks like to an IGNIS-style app: the instance goes away, and its
/// plain socket.io-clients (automatic reconnection on, their default) reconnect by
/// themselves, over WebSocket and over polling, to the instance that replaces it, and
/// authenticate again.
#[tokio::test]
async fn after_a_shutdown_plain_socketio_clients_reconnect_by_themselves() {
    let sio = || {
        let mut c = SocketIoConfig::default();
        // A polling client learns that the session is gone at its next request: soon.
        c.eio_ping_interval = Duration::from_millis(300);
        c.eio_ping_timeout = Duration::from_millis(300);
        c
    };
    let builder = || builder(base_config()).validate_rooms(public_rooms());
    let first = start_sio(builder(), sio()).await;
    let at = first.addr.to_string();
    let mut h = Harness::start(&first).await;
    let sockets = [
        ("ws", "alice", json!(["websocket"])),
        ("poll", "bob", json!(["polling"])),
        ("idle", "carol", json!(["websocket"])),
    ];
    let mut ids = HashMap::new();
    for (name, token, transports) in &sockets {
        h.connect(
            name,
            json!({"auth": {"token": token}, "transports": transports, "reconnection": true}),
        )
        .await;
        if *name != "idle" {
            let auth = h.authenticate(name).await;
            ids.insert(*name, auth["id"].clone());
        }
    }
    first.stop().await;
    for (name, _, _) in &sockets {
        let gone = h.next_of(name, "disconnect", RECV_TIMEOUT).await;
        assert_ne!(gone["reason"], "io server disconnect", "{name}: {gone}");
        assert_eq!(gone["active"], true, "{name} reconnects by itself: {gone}");
    }
    let second = start_sio_on(builder(), sio(), &at).await;
    for (name, token, _) in &sockets {
        h.next_of(name, "connect", RECV_TIMEOUT).await;
        let auth = h.authenticate(name).await;
        assert_eq!(auth["userId"], *token, "{auth}");
        assert_ne!(Some(&auth["id"]), ids.get(name), "a new connection");
        assert_eq!(rooms_of(&second, auth["id"].as_str().expect("id")).len(), 4);
    }
    h.stop().await;
    second.stop().await;
}

/// A drain closes each socket after what was queued for it: a burst delivered just before the
/// shutdown reaches each socket whole and in order, over WebSocket and over polling, before
/// its transport ends, and the client then reconnects by itself.
#[tokio::test]
async fn a_drain_delivers_what_was_queued_before_the_transport_ends() {
    const N: u64 = 200;
    let mut config = base_config();
    config.drain = Duration::from_millis(500);
    let server = start_sio(
        builder(config).validate_rooms(public_rooms()),
        SocketIoConfig::default(),
    )
    .await;
    let mut h = Harness::start(&server).await;
    let mut ids = Vec::new();
    for (name, transports) in [("ws", json!(["websocket"])), ("poll", json!(["polling"]))] {
        h.connect(
            name,
            json!({"auth": {"token": name}, "transports": transports, "reconnection": true}),
        )
        .await;
        let auth = h.authenticate(name).await;
        ids.push((name, auth["id"].as_str().expect("id").to_owned()));
    }
    for (_, id) in &ids {
        for n in 0..N {
            server.server.deliver_to_client(id, "burst", &json!(n));
        }
    }
    let stopping = tokio::spawn(server.stop());
    for (name, _) in &ids {
        for n in 0..N {
            assert_eq!(h.event(name, "burst").await, json!(n), "{name}");
        }
        let gone = h.next_of(name, "disconnect", RECV_TIMEOUT).await;
        assert_ne!(gone["reason"], "io server disconnect", "{name}: {gone}");
        assert_eq!(gone["active"], true, "{name} reconnects by itself: {gone}");
    }
    stopping.await.expect("stopped");
    h.stop().await;
}

/// `sealwire serve` keeps serving through a drain after SIGTERM, also clients that open a
/// connection per request (socket.io-client's polling under Node): they are closed in their
/// turn, not all at once when the signal comes, and what is published meanwhile reaches the
/// ones not closed yet. Everything new is refused with 503.
#[tokio::test]
async fn sealwire_serve_serves_polling_clients_through_a_drain() {
    let (mut child, url) =
        sealwire_serve(&["--drain-secs", "3", "--admin-token", "tok"], "/io").await;
    let mut h = Harness::start_at(&url).await;
    let names = ["p1", "p2", "p3"];
    for name in names {
        h.connect(
            name,
            json!({"auth": {"token": name}, "transports": ["polling"]}),
        )
        .await;
        h.authenticate(name).await;
    }
    let pid = child.id().expect("pid");
    let status = tokio::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .await
        .expect("kill");
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = reqwest::Client::new();
    let sent = http
        .post(format!("{url}/socket/broadcast"))
        .bearer_auth("tok")
        .json(&json!({"topic": "during", "data": 1}))
        .send()
        .await
        .expect("the listener is open through the drain");
    assert!(sent.status().is_success(), "{}", sent.status());
    let new_session = http
        .get(format!("{url}/io/?EIO=4&transport=polling"))
        .send()
        .await
        .expect("answered");
    assert_eq!(new_session.status(), 503);
    // Closed in turn over the 3 s: the last ones were still served when `during` went out.
    let mut reached = 0;
    for name in names {
        loop {
            let v = h.next_within(name, Duration::from_secs(10)).await;
            let v = v.unwrap_or_else(|| panic!("{name}: no disconnect"));
            if v["type"] == "event" && v["event"] == "during" {
                reached += 1;
            }
            if v["type"] == "disconnect" {
                assert_ne!(v["reason"], "io server disconnect", "{v}");
                break;
            }
        }
    }
    assert!(reached >= 1, "nobody was served after the signal");
    let exited = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    assert!(exited.is_ok(), "the process exits after the drain");
    h.stop().await;
}

/// Without a drain too, a SIGTERM loses nothing queued for a polling client: its polls,
/// each on a connection of its own (socket.io-client under Node), are served while the
/// shutdown writes what was queued, so everything published before the signal arrives
/// before the transport ends (and the client would reconnect by itself).
#[tokio::test]
async fn a_stop_without_a_drain_delivers_what_was_queued_to_polling_clients() {
    const MESSAGES: u64 = 1000;
    let (mut child, url) = sealwire_serve(&["--admin-token", "tok"], "/io").await;
    let mut h = Harness::start_at(&url).await;
    h.connect(
        "p",
        json!({"auth": {"token": "p"}, "transports": ["polling"]}),
    )
    .await;
    h.authenticate("p").await;
    // One batch, queued at once, then the signal: most of it is still queued then.
    let messages: Vec<Value> = (0..MESSAGES)
        .map(|n| json!({"topic": "n", "data": n}))
        .collect();
    let sent = reqwest::Client::new()
        .post(format!("{url}/socket/batch"))
        .bearer_auth("tok")
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .expect("published");
    assert!(sent.status().is_success(), "{}", sent.status());
    let pid = child.id().expect("pid");
    let status = tokio::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .await
        .expect("kill");
    assert!(status.success());
    let mut next = 0;
    loop {
        let v = h
            .next_within("p", Duration::from_secs(10))
            .await
            .expect("the client hears of the end");
        if v["type"] == "event" && v["event"] == "n" {
            assert_eq!(v["args"][0], json!(next), "in order: {v}");
            next += 1;
        }
        if v["type"] == "disconnect" {
            assert_ne!(v["reason"], "io server disconnect", "{v}");
            break;
        }
    }
    assert_eq!(next, MESSAGES, "every message published before the signal");
    let exited = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    assert!(exited.is_ok(), "the process exits");
    h.stop().await;
}

/// Runs tests/sio/ignis_client.mjs (the IGNIS `SocketIOClientHelper`) as `token`, joining
/// `room`; `on_echo` runs once the join has been handled. Returns the lines it printed.
async fn ignis_client(
    server: &TestServer,
    token: &str,
    room: &str,
    on_echo: impl FnOnce(),
) -> Vec<Value> {
    helper_script(server, "ignis_client.mjs", &[token, room], on_echo).await
}

/// Runs `script` of tests/sio with the server's URL and `args`; `on_echo` runs once it
/// printed `echo`. Returns the lines it printed.
async fn helper_script(
    server: &TestServer,
    script: &str,
    args: &[&str],
    on_echo: impl FnOnce(),
) -> Vec<Value> {
    install_harness();
    // The IGNIS logger writes rotating log files; keep them out of the tree.
    let logs = tempfile::tempdir().expect("tempdir");
    let mut child = tokio::process::Command::new("node")
        .arg(script)
        .arg(server.http(""))
        .args(args)
        .env("APP_ENV_LOGGER_FOLDER_PATH", logs.path())
        .current_dir(harness_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let mut on_echo = Some(on_echo);
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the IGNIS client printed in time")
            .expect("read stdout");
        let Some(line) = line else { break };
        // The helper's logger may print too; only JSON objects are ours.
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["type"] == "echo"
            && let Some(f) = on_echo.take()
        {
            f();
        }
        let done = v["type"] == "disconnected";
        seen.push(v);
        if done {
            break;
        }
    }
    let _ = child.wait().await;
    seen
}

#[tokio::test]
async fn the_ignis_client_helper_works_unchanged() {
    let server = start_default().await;
    let s = server.server.clone();
    let lines = ignis_client(&server, "alice", "public-ignis", move || {
        s.deliver_to_room("public-ignis", "news", &json!({"n": 1}));
    })
    .await;
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(
        types,
        ["connected", "authenticated", "echo", "news", "disconnected"],
        "{lines:?}"
    );
    assert_eq!(lines[3]["data"], json!({"n": 1}));
    assert_eq!(lines[4]["reason"], "io client disconnect");

    let lines = ignis_client(&server, "reject-me", "public-ignis", || {}).await;
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(
        types,
        ["connected", "unauthenticated", "disconnected"],
        "{lines:?}"
    );
    assert_eq!(lines[1]["message"], "Authentication failed");
    assert_eq!(lines[2]["reason"], "io server disconnect");
    server.stop().await;
}

#[tokio::test]
async fn sealwire_serve_checks_the_socketio_path() {
    for (path, why) in [("io", "no leading slash"), ("/ws", "the WebSocket path")] {
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_sealwire"))
                .args([
                    "serve",
                    "--dev",
                    "--listen",
                    "127.0.0.1:0",
                    "--socketio-path",
                    path,
                ])
                .env_remove("SEALWIRE_PATH")
                .env_remove("REDIS_URL")
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("exited in time")
        .expect("run sealwire");
        assert!(!out.status.success(), "{why}: accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--socketio-path"), "{why}: {stderr}");
    }
    // `off`: no endpoint.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealwire"))
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--socketio-path",
            "off",
        ])
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sealwire");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ws_url = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("printed in time")
            .expect("read")
            .expect("still running");
        assert!(!line.starts_with("socket.io listening"), "{line}");
        if let Some(url) = line.strip_prefix("sealwire listening on ") {
            break url.trim().to_owned();
        }
    };
    let base = ws_url.replacen("ws://", "http://", 1).replace("/ws", "");
    let status = reqwest::get(format!("{base}/io/?EIO=4&transport=polling"))
        .await
        .expect("request")
        .status();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    let _ = child.kill().await;
}

// ---- The hardened profile over Socket.IO: the SDK (sdk/js) with `transport: "socket.io"` ----

/// A hardened server: identity key `identity(0x42)` (the SDK pins it), rooms `public-*`, the
/// echo handler, encryption `policy`.
async fn start_hardened(policy: EncryptionPolicy) -> (TestServer, String) {
    start_hardened_with(policy, |_| ()).await
}

/// [`start_hardened`], with `tweak` applied to the configuration.
async fn start_hardened_with(
    policy: EncryptionPolicy,
    tweak: impl FnOnce(&mut ServerConfig),
) -> (TestServer, String) {
    let identity = common::hardened::identity(0x42);
    let pin = identity.public_key().to_base64();
    let mut config = common::hardened::config_with(
        Some(identity),
        sealwire::crypto::HandshakeConfig::default().rekey_after,
    );
    config.encryption = policy;
    tweak(&mut config);
    let server = start_sio(
        builder(config).validate_rooms(public_rooms()),
        SocketIoConfig::default(),
    )
    .await;
    (server, pin)
}

impl Harness {
    /// Starts an SDK client `name` over Socket.IO (`transports`) as `token`, pinning `pins`.
    async fn sdk_start(&mut self, name: &str, token: &str, pins: &[&str], transports: &[&str]) {
        self.sdk_start_with(
            name,
            json!({"token": token, "pins": pins, "transports": transports}),
        )
        .await;
    }

    /// Starts an SDK client `name` with the harness options `options` (`token`, `pins`,
    /// `transports`, `recover`, `ttl`, `reconnect`).
    async fn sdk_start_with(&mut self, name: &str, options: Value) {
        let url = format!("{}/io", self.url);
        let mut cmd = json!({"cmd": "sdk_connect", "name": name, "url": url});
        if let (Some(cmd), Some(opts)) = (cmd.as_object_mut(), options.as_object()) {
            for (k, v) in opts {
                cmd.insert(k.clone(), v.clone());
            }
        }
        self.send(cmd).await;
    }

    /// [`Harness::sdk_start`], then waits for `connected`; returns the connection info.
    async fn sdk_connect(
        &mut self,
        name: &str,
        token: &str,
        pins: &[&str],
        transports: &[&str],
    ) -> Value {
        self.sdk_start(name, token, pins, transports).await;
        self.sdk_line(name, "sdk_connected").await["info"].clone()
    }

    /// Skips lines of SDK client `name` until one of type `ty`; fails on an unexpected
    /// disconnect or SDK error.
    async fn sdk_line(&mut self, name: &str, ty: &str) -> Value {
        loop {
            let v = self.next(name).await;
            if v["type"] == ty {
                return v;
            }
            assert_ne!(v["type"], "sdk_disconnected", "waiting for {ty}: {v}");
            assert_ne!(v["type"], "sdk_error", "waiting for {ty}: {v}");
        }
    }

    /// Skips lines of `name` until its `sdk_disconnected` line; returns it.
    async fn sdk_disconnected(&mut self, name: &str) -> Value {
        loop {
            let v = self.next(name).await;
            if v["type"] == "sdk_disconnected" {
                return v;
            }
        }
    }

    /// The next application message `event` of SDK client `name`; returns the line.
    async fn sdk_message(&mut self, name: &str, event: &str) -> Value {
        loop {
            let v = self.sdk_line(name, "message").await;
            if v["event"] == event {
                return v;
            }
        }
    }

    /// Round trip through the echo handler, sealed both ways.
    async fn sdk_sync(&mut self, name: &str) {
        let tag = uuid::Uuid::new_v4().to_string();
        self.send(json!({"cmd": "sdk_send", "name": name, "event": "sync", "data": tag}))
            .await;
        loop {
            let echo = self.sdk_message(name, "echo").await;
            if echo["data"]["event"] == "sync" && echo["data"]["data"] == tag {
                assert_eq!(echo["encrypted"], true, "{echo}");
                assert_eq!(echo["data"]["wasEncrypted"], true, "{echo}");
                return;
            }
        }
    }

    /// Every engine.io packet recorded for `name`, as `(dir, data)`.
    fn raw(&self, name: &str) -> Vec<(String, String)> {
        self.seen
            .get(name)
            .into_iter()
            .flatten()
            .filter(|l| l["type"] == "raw")
            .map(|l| {
                (
                    l["dir"].as_str().unwrap_or_default().to_owned(),
                    l["data"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }
}

/// The event names of socket.io EVENT packets (`2[...]`, possibly with an ack id).
fn packet_event(data: &str) -> Option<String> {
    let body = data.strip_prefix('2')?;
    let start = body.find('[')?;
    let args: Value = serde_json::from_str(&body[start..]).ok()?;
    args.get(0).and_then(Value::as_str).map(str::to_owned)
}

#[tokio::test]
async fn the_sdk_over_socketio_is_hardened_and_sealed_with_websocket_and_polling() {
    let (server, pin) = start_hardened(EncryptionPolicy::Optional).await;
    let mut h = Harness::start(&server).await;
    const SECRET: &str = "TOP-SECRET-sio-hardened-0815";
    for (name, transport) in [("sw", "websocket"), ("sp", "polling")] {
        let user = format!("hardened-user-{transport}");
        let token = user.clone();
        let room = format!("public-sealed-{transport}");
        let info = h.sdk_connect(name, &token, &[&pin], &[transport]).await;
        assert_eq!(info["profile"], "sealwire-v2", "{info}");
        assert_eq!(info["userId"], user.as_str());
        assert_eq!(info["encrypted"], true);
        let id = info["id"].as_str().expect("id").to_owned();
        let client = server
            .server
            .client_info(&id)
            .expect("a client of the core");
        assert!(client.encrypted);
        // The Socket.IO default rooms replace the server's, as for every Socket.IO socket,
        // and the room of its socket.id, which names the same client.
        let rooms = rooms_of(&server, &id);
        let others: Vec<&String> = rooms
            .iter()
            .filter(|r| ![id.as_str(), "io-default", "io-notification"].contains(&r.as_str()))
            .collect();
        assert_eq!((rooms.len(), others.len()), (4, 1), "{rooms:?}");
        assert_eq!(rooms_of(&server, others[0]), rooms);

        // Inbound events are sealed records: join, then a custom event the echo answers.
        h.send(json!({"cmd": "sdk_join", "name": name, "rooms": [room, "private-x"]}))
            .await;
        h.sdk_sync(name).await;
        let rooms = rooms_of(&server, &id);
        assert!(rooms.contains(&room), "{rooms:?}");
        assert!(!rooms.iter().any(|r| r == "private-x"), "{rooms:?}");

        let s = &server.server;
        s.deliver_to_user(&user, "to-user", &json!({"s": SECRET, "n": 1}));
        s.deliver_to_room(&room, "to-room", &json!({"s": SECRET, "n": 2}));
        s.deliver_broadcast("to-all", &json!({"s": SECRET, "n": 3}));
        s.deliver_to_room("io-default", "to-io-default", &json!({"s": SECRET, "n": 4}));
        for (event, n) in [
            ("to-user", 1),
            ("to-room", 2),
            ("to-all", 3),
            ("to-io-default", 4),
        ] {
            let m = h.sdk_message(name, event).await;
            assert_eq!(m["data"], json!({"s": SECRET, "n": n}), "{m}");
            assert_eq!(m["encrypted"], true, "{m}");
        }
        h.send(json!({"cmd": "sdk_leave", "name": name, "rooms": [room]}))
            .await;
        h.sdk_sync(name).await;
        assert!(!rooms_of(&server, &id).contains(&room));

        // On the wire: only `sealwire` events, both ways; the hello exchange in plaintext,
        // then records; never the token, the user id, a room name, an event name or data.
        let raw = h.raw(name);
        assert!(raw.iter().any(|(d, _)| d == "in") && raw.iter().any(|(d, _)| d == "out"));
        let mut sealed_in = 0;
        for (dir, data) in &raw {
            for needle in [
                SECRET,
                &token,
                &user,
                &room,
                "private-x",
                "to-user",
                "to-room",
                "to-all",
                // Short names with their quotes: base64 never holds a `"`.
                "\"join\"",
                "\"echo\"",
                "\"sync\"",
            ] {
                assert!(!data.contains(needle), "{needle} leaked ({dir}): {data}");
            }
            if let Some(event) = packet_event(data) {
                assert_eq!(event, "sealwire", "{dir}: {data}");
                if dir == "in" && data.contains("\"encrypted\"") {
                    sealed_in += 1;
                }
            }
        }
        assert!(sealed_in >= 5, "sealed records arrived: {raw:?}");
        let hello_in = raw
            .iter()
            .find(|(d, data)| d == "in" && packet_event(data).is_some())
            .expect("a first event");
        assert!(hello_in.1.contains("\"hello\""), "{hello_in:?}");
        assert!(hello_in.1.contains(&id), "the hello names the client id");

        h.send(json!({"cmd": "sdk_close", "name": name})).await;
        let gone = h.sdk_line(name, "sdk_disconnected").await;
        assert_eq!(gone["reason"]["kind"], "client-closed", "{gone}");
        wait_for(|| server.server.client_info(&id).is_none()).await;
    }
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_sdk_over_socketio_takes_room_keys() {
    let (server, pin) = start_hardened_with(EncryptionPolicy::Optional, |c| {
        c.room_keys.rooms = vec!["public-keyed*".to_owned()];
    })
    .await;
    let mut h = Harness::start(&server).await;
    const SECRET: &str = "TOP-SECRET-sio-room-key-4711";
    const ROOM: &str = "public-keyed-1";
    for (name, transport) in [("kw", "websocket"), ("kp", "polling")] {
        h.sdk_connect(name, name, &[&pin], &[transport]).await;
        h.send(json!({"cmd": "sdk_join", "name": name, "rooms": [ROOM]}))
            .await;
        h.sdk_sync(name).await;
    }
    for n in 1..=3 {
        server
            .server
            .deliver_to_room(ROOM, "keyed", &json!({"s": SECRET, "n": n}));
    }
    for name in ["kw", "kp"] {
        for n in 1..=3 {
            let m = h.sdk_message(name, "keyed").await;
            assert_eq!(m["data"], json!({"s": SECRET, "n": n}), "{m}");
            assert_eq!(m["encrypted"], true, "{m}");
        }
    }
    // On the wire: the room's records, the same bytes for both sockets, inside `sealwire`
    // events; never the payload.
    let records = |name: &str| -> Vec<String> {
        h.raw(name)
            .into_iter()
            .filter(|(dir, data)| dir == "in" && data.contains("room-encrypted"))
            .map(|(_, data)| {
                assert!(!data.contains(SECRET), "leaked: {data}");
                assert_eq!(packet_event(&data).as_deref(), Some("sealwire"), "{data}");
                let ct = data.split("\"ct\":\"").nth(1).expect("ct");
                ct.split('"').next().expect("ct").to_owned()
            })
            .collect()
    };
    let (kw, kp) = (records("kw"), records("kp"));
    assert_eq!(kw.len(), 3, "{kw:?}");
    assert_eq!(kw, kp);
    h.stop().await;
    server.stop().await;
}

/// A hardened socket counts only records as activity in the core; engine.io's own heartbeat
/// keeps it connected past the core's idle timeout, on both transports.
#[tokio::test]
async fn hardened_socketio_sockets_outlive_the_core_heartbeat_timeout() {
    let (server, pin) = start_hardened_with(EncryptionPolicy::Optional, |c| {
        c.heartbeat_interval = Duration::from_millis(100);
        c.heartbeat_timeout = Duration::from_millis(600);
    })
    .await;
    let mut h = Harness::start(&server).await;
    for (name, transport) in [("hw", "websocket"), ("hp", "polling")] {
        let info = h.sdk_connect(name, name, &[&pin], &[transport]).await;
        assert_eq!(info["profile"], "sealwire-v2", "{info}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for name in ["hw", "hp"] {
        // Fails on an `sdk_disconnected` line (a 4002 would be one).
        h.sdk_sync(name).await;
    }
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn hardened_socketio_sockets_are_refused_like_ws_clients() {
    let (server, pin) = start_hardened(EncryptionPolicy::Optional).await;
    let other = common::hardened::identity(0x43).public_key().to_base64();
    let mut h = Harness::start(&server).await;

    // A wrong pinned identity: the client refuses the server before its token leaves.
    h.sdk_start("pin", "pinned-token-secret", &[&other], &["websocket"])
        .await;
    let refused = h.sdk_line("pin", "sdk_disconnected").await;
    assert_eq!(refused["reason"]["kind"], "handshake", "{refused}");
    assert!(
        h.raw("pin")
            .iter()
            .all(|(_, d)| !d.contains("pinned-token-secret")),
        "the token never left"
    );

    // Credentials refused by the authenticate hook: the sealed error, then 4003.
    h.sdk_start("rej", "reject-me", &[&pin], &["websocket"])
        .await;
    let refused = h.sdk_line("rej", "sdk_disconnected").await;
    assert_eq!(refused["reason"]["kind"], "auth-failed", "{refused}");
    assert_eq!(refused["reason"]["code"], 4003);
    assert_eq!(refused["reason"]["message"], "Authentication failed");

    // A tampered record closes the connection (4004): the receive sequence cannot skip it. On
    // an established session the SDK takes that as a record failure (`crypto`, retryable).
    let info = h
        .sdk_connect("tam", "tamper-user", &[&pin], &["websocket"])
        .await;
    let id = info["id"].as_str().expect("id").to_owned();
    h.send(json!({"cmd": "sdk_tamper", "name": "tam"})).await;
    h.send(json!({"cmd": "sdk_send", "name": "tam", "event": "chat", "data": 1}))
        .await;
    let closed = h.sdk_line("tam", "sdk_disconnected").await;
    assert_eq!(closed["reason"]["kind"], "crypto", "{closed}");
    assert_eq!(closed["reason"]["code"], 4004);
    wait_for(|| server.server.client_info(&id).is_none()).await;

    // A first tunnel frame that is not a hello (a plaintext authenticate) is refused
    // before it reaches the core: the plaintext error, then the 4004 close.
    h.connect("raw", json!({"auth": {"profile": "sealwire-v2"}}))
        .await;
    h.emit(
        "raw",
        "sealwire",
        json!([{"event": "authenticate", "data": {"token": "alice"}}]),
    )
    .await;
    let error = h.event("raw", "sealwire").await;
    assert_eq!(error["event"], "error");
    assert_eq!(error["data"]["message"], "Encryption handshake failed");
    let close = h.event("raw", "sealwire:close").await;
    assert_eq!(
        close,
        json!({"code": 4004, "reason": "Encryption required"})
    );
    assert_eq!(
        h.disconnected("raw", RECV_TIMEOUT).await,
        "io server disconnect"
    );
    // A hardened profile next to a token in the handshake is the IGNIS path, where a
    // profile in the plaintext credentials is refused.
    h.connect(
        "tok",
        json!({"auth": {"profile": "sealwire-v2", "token": "alice"}}),
    )
    .await;
    h.emit("tok", "authenticate", json!([])).await;
    assert_eq!(
        h.event("tok", "unauthenticated").await["message"],
        "Encryption handshake failed"
    );
    // A hardened socket's events outside the tunnel are dropped: it stays unauthenticated.
    h.connect("out", json!({"auth": {"profile": "sealwire-v2"}}))
        .await;
    h.emit("out", "authenticate", json!([])).await;
    h.emit("out", "join", json!([{"rooms": ["public-a"]}]))
        .await;
    h.silence("out", Duration::from_millis(200)).await;
    assert_eq!(server.server.counts().authenticated, 0);
    h.stop().await;
    server.stop().await;

    // With encryption off, the hello is refused like on /ws: a 4004 before the key exchange,
    // which the SDK cannot tell from a forged one, so it is a `handshake` failure it would
    // retry (this client does not reconnect), not a final `encryption-required`.
    let (server, pin) = start_hardened(EncryptionPolicy::Off).await;
    let mut h = Harness::start(&server).await;
    h.sdk_start("off", "alice", &[&pin], &["websocket"]).await;
    let refused = h.sdk_line("off", "sdk_disconnected").await;
    assert_eq!(refused["reason"]["kind"], "handshake", "{refused}");
    assert_eq!(refused["reason"]["code"], 4004);
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn hardened_only_admits_hardened_socketio_and_refuses_compat_and_plaintext() {
    let (server, pin) = start_hardened(EncryptionPolicy::HardenedOnly).await;
    let mut h = Harness::start(&server).await;
    for (name, options) in [
        ("plain", json!({"auth": {"token": "alice"}})),
        (
            "compat",
            json!({"auth": {"token": "alice"}, "encrypt": true}),
        ),
    ] {
        h.connect(name, options).await;
        h.emit(name, "authenticate", json!([])).await;
        assert_eq!(
            h.event(name, "unauthenticated").await["message"],
            "Encryption handshake failed"
        );
        assert_eq!(
            h.disconnected(name, RECV_TIMEOUT).await,
            "io server disconnect"
        );
    }
    let info = h.sdk_connect("hard", "alice", &[&pin], &["polling"]).await;
    assert_eq!(info["profile"], "sealwire-v2");
    h.sdk_sync("hard").await;
    server.server.deliver_to_user("alice", "hi", &json!(1));
    assert_eq!(h.sdk_message("hard", "hi").await["data"], json!(1));
    assert_eq!(server.server.counts().authenticated, 1);
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn the_sdk_socketio_helper_speaks_the_ignis_helper_api() {
    let (server, pin) = start_hardened(EncryptionPolicy::HardenedOnly).await;
    let s = server.server.clone();
    let lines = helper_script(
        &server,
        "sealwire_helper.mjs",
        &["helper-user", "public-helper", &pin],
        move || s.deliver_to_room("public-helper", "news", &json!({"n": 1})),
    )
    .await;
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(
        types,
        ["connected", "authenticated", "echo", "news", "disconnected"],
        "{lines:?}"
    );
    assert_eq!(lines[0]["state"], "authenticated");
    assert_eq!(lines[2]["data"]["event"], "sync");
    assert_eq!(lines[2]["data"]["wasEncrypted"], true);
    assert_eq!(lines[3]["data"], json!({"n": 1}));
    assert_eq!(lines[4]["reason"], "io client disconnect");

    let lines = helper_script(
        &server,
        "sealwire_helper.mjs",
        &["reject-me", "public-helper", &pin],
        || {},
    )
    .await;
    let types: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(
        types,
        ["error", "unauthenticated", "disconnected"],
        "{lines:?}"
    );
    assert_eq!(lines[1]["message"], "Authentication failed");
    server.stop().await;
}

#[tokio::test]
async fn the_sdk_over_socketio_refreshes_and_recovers_what_it_missed() {
    let identity = common::hardened::identity(0x42);
    let pin = identity.public_key().to_base64();
    let mut config = common::hardened::config_with(
        Some(identity),
        sealwire::crypto::HandshakeConfig::default().rekey_after,
    );
    config.history.rooms = vec!["public-hist*".to_owned()];
    let server = start_sio(
        builder(config).validate_rooms(public_rooms()),
        SocketIoConfig::default(),
    )
    .await;
    let mut h = Harness::start(&server).await;
    // Sessions of 1.5 s, refreshed by the token provider at 80 %.
    h.sdk_start_with(
        "r",
        json!({"token": "recovering-user", "pins": [pin], "transports": ["websocket"],
            "recover": true, "ttl": 1500, "reconnect": true}),
    )
    .await;
    let info = h.sdk_line("r", "sdk_connected").await["info"].clone();
    let first_id = info["id"].as_str().expect("id").to_owned();
    h.send(json!({"cmd": "sdk_join", "name": "r", "rooms": ["public-hist-1"]}))
        .await;
    h.sdk_sync("r").await;
    let refreshed = h.sdk_line("r", "refreshed").await;
    assert!(refreshed["expiresAt"].is_string(), "{refreshed}");
    let s = &server.server;
    s.deliver_to_room("public-hist-1", "m", &json!(1));
    let m1 = h.sdk_message("r", "m").await;
    assert_eq!(m1["position"]["stream"], "room:public-hist-1", "{m1}");
    assert_eq!(m1["position"]["offset"], 1);

    // The connection drops; what is published while the client is away is replayed, sealed,
    // on its next connection.
    h.send(json!({"cmd": "sdk_gate", "name": "r"})).await;
    h.send(json!({"cmd": "sdk_drop", "name": "r"})).await;
    let gone = h.sdk_disconnected("r").await;
    assert_eq!(gone["reason"]["kind"], "network", "{gone}");
    assert!(gone["retryIn"].is_number(), "{gone}");
    wait_for(|| s.client_info(&first_id).is_none()).await;
    s.deliver_to_room("public-hist-1", "m", &json!(2));
    s.deliver_to_room("public-hist-1", "m", &json!(3));
    h.send(json!({"cmd": "sdk_go", "name": "r"})).await;
    let again = h.sdk_line("r", "sdk_connected").await["info"].clone();
    assert_ne!(again["id"], first_id.as_str());
    for n in [2, 3] {
        let m = h.sdk_message("r", "m").await;
        assert_eq!(m["data"], json!(n), "{m}");
        assert_eq!(m["position"]["offset"], n);
        assert_eq!(m["encrypted"], true);
    }
    loop {
        let rec = h.sdk_line("r", "recovered").await;
        let streams = rec["streams"].as_array().cloned().unwrap_or_default();
        if let Some(room) = streams.iter().find(|s| s["stream"] == "room:public-hist-1") {
            assert_eq!(room["recovered"], true, "{rec}");
            assert_eq!(room["replayed"], 2, "{rec}");
            break;
        }
    }
    let raw = h.raw("r");
    assert!(
        raw.iter()
            .all(|(_, d)| !d.contains("recovering-user") && !d.contains("public-hist")),
        "token, user id and room stay sealed"
    );
    h.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn sealwire_serve_refuse_compat_admits_the_hardened_sdk_over_socketio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("identity.hex");
    std::fs::write(&key_file, "42".repeat(32)).expect("write key");
    let pin = common::hardened::identity(0x42).public_key().to_base64();
    let key_arg = key_file.to_str().expect("utf-8 path").to_owned();
    let (mut child, url) =
        sealwire_serve(&["--refuse-compat", "--identity-key-file", &key_arg], "/io").await;
    let mut h = Harness::start_at(&url).await;
    let info = h
        .sdk_connect("s", "serve-user", &[&pin], &["websocket"])
        .await;
    assert_eq!(info["userId"], "serve-user");
    assert_eq!(info["profile"], "sealwire-v2");
    h.connect(
        "compat",
        json!({"auth": {"token": "serve-user"}, "encrypt": true}),
    )
    .await;
    h.emit("compat", "authenticate", json!([])).await;
    assert_eq!(
        h.event("compat", "unauthenticated").await["message"],
        "Encryption handshake failed"
    );
    h.stop().await;
    let _ = child.kill().await;
}

/// A client may emit `authenticate` the moment its `CONNECT` is acknowledged (IGNIS's own
/// client does, on `connect`). socketioxide acknowledges before it marks the socket connected
/// and runs the connect handler, so an event could arrive before the socket's handlers were
/// registered and be lost (the client then waited for its authentication timeout), or be
/// answered on a socket that could not take the answer yet (`opening.rs` keeps such events
/// until the socket is connected; its unit tests pin the order). Here a few hundred raw
/// clients, on a runtime with two worker threads, each send `authenticate` as soon as they
/// read the acknowledgement, and every one of them must be authenticated. The race is a
/// matter of thread timing (about one connection in several thousand lost its `authenticate`
/// under the load tool before the fix), so this checks the eager client's path end to end
/// rather than reproducing the race on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_sent_on_the_connect_ack_is_never_lost() {
    let server = start_default().await;
    let racers: Vec<_> = (0..300)
        .map(|i| tokio::spawn(raw_sio_client(server.addr, format!("racer-{i}"))))
        .collect();
    let mut failures = Vec::new();
    for (i, racer) in racers.into_iter().enumerate() {
        if let Err(e) = racer.await.expect("client task") {
            failures.push(format!("client {i}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
    server.stop().await;
}

type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw engine.io websocket client of `addr`, authenticated as `token` the IGNIS way: it
/// sends `authenticate` the moment its `CONNECT` is acknowledged, and answers engine.io
/// pings. An error when it is disconnected first or not authenticated within 8 s (the
/// server's authentication timeout is 10 s).
async fn raw_sio_client(addr: std::net::SocketAddr, token: String) -> Result<RawSocket, String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://{addr}/io/?EIO=4&transport=websocket");
    let login = async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        ws.send(Message::text(format!(r#"40{{"token":"{token}"}}"#)))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t.to_string(),
                Some(Ok(_)) => continue,
                other => return Err(format!("ended before authenticated: {other:?}")),
            };
            if text.starts_with("40") {
                ws.send(Message::text(r#"42["authenticate"]"#))
                    .await
                    .map_err(|e| e.to_string())?;
            } else if text.starts_with(r#"42["authenticated""#) {
                return Ok(ws);
            } else if text == "2" {
                let _ = ws.send(Message::text("3")).await;
            } else if text.starts_with("41") || text.starts_with("44") {
                return Err(format!("disconnected: {text}"));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(8), login)
        .await
        .map_err(|_| "no authenticated within 8 s".to_owned())?
}

/// A burst larger than engine.io's buffer reaches a client that reads: the socket holds what
/// engine.io has no room for and goes on once the writer has caught up, instead of taking a
/// client that reads for a slow consumer. (With a buffer of 8 packets and 2,000 messages
/// queued at once, the buffer is full many times over.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_engine_io_buffer_reaches_a_reading_client() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut sio = SocketIoConfig::default();
    sio.max_buffer_packets = 8;
    let server = start_sio(builder(base_config()), sio).await;
    let mut ws = raw_sio_client(server.addr, "reader".to_owned())
        .await
        .expect("authenticated");
    const N: u32 = 2000;
    for n in 0..N {
        server.server.deliver_broadcast("burst", &json!({ "n": n }));
    }
    let mut next = 0;
    let read = async {
        while next < N {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("ended after {next} of {N}: {other:?}"),
            };
            let Some(body) = text.strip_prefix("42") else {
                assert!(!text.starts_with("41"), "disconnected after {next} of {N}");
                continue;
            };
            let (name, data): (String, Value) = serde_json::from_str(body).expect("event");
            if name == "burst" {
                assert_eq!(data["n"], next, "in order, none missing");
                next += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the whole burst arrived");
    server.stop().await;
}

/// A client that stops reading is still closed as a slow consumer: once engine.io's buffer
/// and the socket's held message are full, the backlog fills the connection's outbox, whose
/// bound closes it, and the server lets go of it. Its transport ends, without a namespace
/// disconnect (`41`), which a plain socket.io-client would take as final: it reconnects, as
/// after a shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socketio_client_that_stops_reading_is_closed_as_a_slow_consumer() {
    let mut config = base_config();
    config.outbox_messages = 64;
    let mut sio = SocketIoConfig::default();
    sio.max_buffer_packets = 8;
    let server = start_sio(builder(config), sio).await;
    let ws = raw_sio_client(server.addr, "staller".to_owned())
        .await
        .expect("authenticated");
    wait_for(|| {
        server
            .server
            .clients()
            .iter()
            .any(|c| c.user_id.as_deref() == Some("staller"))
    })
    .await;
    // 64 KiB per message: the socket buffers fill after a few of them.
    let blob = "z".repeat(64 * 1024);
    for n in 0..400 {
        server
            .server
            .deliver_broadcast("flood", &json!({ "n": n, "blob": blob }));
        tokio::task::yield_now().await;
    }
    wait_for(|| server.server.clients().is_empty()).await;
    let mut ws = ws;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt;
        while let Some(Ok(frame)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = frame {
                assert!(!t.starts_with("41"), "a namespace disconnect: {t}");
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the transport ends");
    server.stop().await;
}

/// A polling request whose `sid` is empty or malformed names no session: engine.io refuses it
/// (400), and it holds no place under the limits; handshakes are counted as before, and a
/// made-up `sid` opens no session outside them.
#[tokio::test]
async fn a_made_up_sid_does_not_open_sessions_outside_the_limits() {
    let mut config = base_config();
    config.max_connections_per_ip = Some(2);
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let http = reqwest::Client::new();
    let handshake = |sid: &'static str| {
        let url = format!("http://{}/io/?EIO=4&transport=polling&{sid}", server.addr);
        let http = http.clone();
        async move {
            let response = http.get(url).send().await.expect("request");
            let status = response.status();
            (status, response.text().await.unwrap_or_default())
        }
    };
    for sid in ["sid=x", "sid=", "sid=ABCDEFGHIJ_-123!", "sid=x", "sid="] {
        let (status, body) = handshake(sid).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{sid}: {body}");
    }
    for _ in 0..2 {
        let (status, body) = handshake("").await;
        assert!(body.starts_with("0{"), "a new session: {status} {body}");
    }
    let (status, body) = handshake("").await;
    assert_eq!(
        status,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "the limit holds: {body}"
    );
    server.stop().await;
}

/// A request body must arrive whole within `body_read_timeout` of its head: a Socket.IO
/// polling `POST` (no credential needed) and an admin call that announce a body and trickle
/// it a byte a second get an error answer at the deadline and their connection is closed,
/// instead of holding it (and its place under `max_tcp_connections`) for as long as they
/// keep sending.
#[tokio::test]
async fn a_request_body_that_trickles_is_cut_off_at_the_deadline() {
    let server = builder(base_config()).build().expect("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut http = common::test_http();
    http.body_read_timeout = Duration::from_secs(1);
    http.routes = Some(socketio::router(server.clone(), SocketIoConfig::default()));
    let s = server.clone();
    tokio::spawn(
        async move { serve_with_shutdown(listener, s, http, std::future::pending()).await },
    );
    wait_for(|| server.is_ready()).await;
    let session = Polling::open(addr).await;
    let sid = session.sid();
    let requests = [
        format!(
            "POST /io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\
             Content-Type: text/plain\r\nContent-Length: 100000\r\n\r\n40"
        ),
        format!(
            "POST /socket/broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{",
            common::ADMIN_TOKEN
        ),
    ];
    for request in requests {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(request.as_bytes()).await.expect("head");
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        // A byte a second until the server closes the connection (or 20 s: a failure).
        let closed = loop {
            if started.elapsed() > Duration::from_secs(20) {
                break false;
            }
            let read = tokio::time::timeout(Duration::from_secs(1), async {
                tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await
            })
            .await;
            match read {
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {
                    if tcp.write_all(b"x").await.is_err() {
                        break true;
                    }
                }
            }
        };
        let answer = String::from_utf8_lossy(&answer);
        assert!(closed, "still open after 20 s: {answer}");
        assert!(
            answer.starts_with("HTTP/1.1 4") || answer.starts_with("HTTP/1.1 5"),
            "an error answer before the close: {answer:?}"
        );
    }
    server.shutdown().await;
}

/// An engine.io session whose socket left the namespace (here the client's `41`) does not
/// outlive it: its polling requests are served for a few seconds (the last words can be
/// collected), then refused as engine.io refuses an unknown session, so the client can no
/// longer answer pings and engine.io ends the session. Another session is not affected.
#[tokio::test]
async fn a_polling_session_whose_socket_left_is_refused_after_a_grace() {
    let mut sio = SocketIoConfig::default();
    sio.eio_ping_interval = Duration::from_millis(1_000);
    sio.eio_ping_timeout = Duration::from_millis(2_000);
    let server = start_sio(builder(base_config()), sio).await;
    let http = reqwest::Client::new();
    let open = async || Polling::open(server.addr).await.session;
    let post = async |url: &str, packet: &'static str| {
        let r = http.post(url).body(packet).send().await.expect("post");
        r.status()
    };
    // A poll: what the server had for the session; its pings are answered at once.
    let get = async |url: &str| {
        let r = http.get(url).send().await.expect("get");
        let (status, body) = (r.status(), r.text().await.unwrap_or_default());
        if status.is_success() && body.split('\u{1e}').any(|p| p == "2") {
            // Refused when the grace ended meanwhile: the next poll says so.
            post(url, "3").await;
        }
        (status, body)
    };
    let leaving = open().await;
    let staying = open().await;
    for url in [&leaving, &staying] {
        assert!(post(url, "40").await.is_success());
        let (status, body) = get(url).await;
        // Packets are separated by a record separator; a ping may come first.
        assert!(
            status.is_success() && body.split('\u{1e}').any(|p| p.starts_with("40")),
            "{status} {body:?}"
        );
    }
    assert!(post(&leaving, "41").await.is_success());
    // Within the grace the session is still served. Both clients keep polling and answering
    // pings: the one whose socket left is refused after the grace; the other is served.
    let (status, _) = get(&leaving).await;
    assert!(status.is_success(), "{status}");
    let refused = async {
        for _ in 0..30 {
            let (status, body) = get(&leaving).await;
            if status == reqwest::StatusCode::BAD_REQUEST {
                return body;
            }
            assert!(status.is_success(), "{status} {body}");
        }
        panic!("still served after 30 polls");
    };
    // A third client leaves and tries to connect a socket again on its session: the session
    // is done, the `CONNECT` is refused (`connect_error`).
    let returning = open().await;
    for packet in ["40", "41"] {
        assert!(post(&returning, packet).await.is_success());
    }
    let mut refusals = Vec::new();
    // While the old socket is still leaving, the answer is `Already connected`; then it is
    // `Session closed`.
    while !refusals
        .iter()
        .any(|r: &String| r.contains("Session closed"))
    {
        assert!(refusals.len() < 20, "{refusals:?}");
        assert!(post(&returning, "40").await.is_success());
        let mut answer = String::new();
        while !answer.contains("44{") {
            let (status, body) = get(&returning).await;
            assert!(status.is_success(), "{status} {body}");
            answer = body;
        }
        refusals.push(answer);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = async |url: &str| {
        let until = Instant::now() + Duration::from_millis(7_000);
        while Instant::now() < until {
            let (status, body) = get(url).await;
            assert!(status.is_success(), "{url}: {status} {body}");
        }
    };
    let (body, ()) = tokio::join!(refused, served(&staying));
    assert!(body.contains("Session ID unknown"), "{body}");
    assert_eq!(
        post(&leaving, "3").await,
        reqwest::StatusCode::BAD_REQUEST,
        "nor can it answer a ping"
    );
    // The other one is still served.
    assert!(post(&staying, "42[\"heartbeat\"]").await.is_success());
    let (status, body) = get(&staying).await;
    assert!(status.is_success(), "{status} {body}");
    server.stop().await;
}

/// A hardened socket that stops reading and keeps sending events into its full inbound queue
/// is disconnected once, however many events it sends: its disconnect, which cannot go
/// through while engine.io's buffer is full, is retried by one task, not one per event.
/// (Over polling, each `POST` is handled before it is answered, and a client that sends no
/// `GET` reads nothing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_floods_a_full_queue_is_disconnected_by_one_task() {
    use sealwire::crypto::HandshakeConfig;
    let mut sio = SocketIoConfig::default();
    sio.max_buffer_packets = 4;
    sio.inbound_queue = 4;
    let config = common::hardened::config_with(
        Some(common::hardened::identity(0x42)),
        HandshakeConfig::default().rekey_after,
    );
    let server = start_sio(builder(config), sio).await;
    let (client, mut session_keys) = Polling::hardened(server.addr).await;
    // Sealed events before `authenticate`: each is answered with a sealed error. One at a
    // time, paced, so that the core answers each before the next: four answers fill
    // engine.io's buffer, the fifth is held and the core waits, four more events fill its
    // inbound queue, and the one after that has the socket disconnected, which cannot go
    // through while the buffer is full.
    let mut events = |n: usize| {
        (0..n)
            .map(|_| {
                let frame = session_keys
                    .seal_frame(br#"{"event":"x","data":{}}"#)
                    .expect("seal");
                Polling::tunnel(&frame)
            })
            .collect::<Vec<_>>()
            .join("\u{1e}")
    };
    for _ in 0..12 {
        assert!(client.post(&events(1)).await);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    for _ in 0..15 {
        // Still there: its disconnect is pending, not done.
        assert!(client.post(&events(100)).await);
    }
    let after = tasks();
    assert!(
        // One disconnect task at most; HTTP connections come and go beside it.
        after <= before + 150,
        "tasks {before} -> {after} over 1,500 events after the queue filled"
    );
    server.stop().await;
}

/// A raw engine.io polling client: each `GET` returns what the server has for it (waiting
/// until there is something), each `POST` is handled before it is answered.
struct Polling {
    http: reqwest::Client,
    session: String,
}

impl Polling {
    /// Opens a session on `addr` and connects it to the namespace with `auth`; returns once
    /// the connect is acknowledged.
    async fn connect(addr: std::net::SocketAddr, auth: Value) -> Self {
        let client = Self::open(addr).await;
        assert!(client.post(&format!("40{auth}")).await);
        client.until(|p| p.starts_with("40{")).await;
        client
    }

    /// Opens a polling session on `addr` (the engine.io handshake only).
    async fn open(addr: std::net::SocketAddr) -> Self {
        let http = reqwest::Client::new();
        let base = format!("http://{addr}/io/?EIO=4&transport=polling");
        let open = http.get(&base).send().await.expect("handshake");
        let open = open.text().await.expect("open");
        let open: Value =
            serde_json::from_str(open.strip_prefix('0').expect("open packet")).expect("open");
        Self {
            http,
            session: format!("{base}&sid={}", open["sid"].as_str().expect("sid")),
        }
    }

    /// The session's id.
    fn sid(&self) -> &str {
        self.session.rsplit("&sid=").next().unwrap_or_default()
    }

    /// A hardened socket on `addr` (`auth {profile: "sealwire-v2"}`) whose keys are agreed
    /// and confirmed: the server's hello is read, nothing after it.
    async fn hardened(addr: std::net::SocketAddr) -> (Self, sealwire::crypto::Session) {
        use sealwire::crypto::{ClientHandshake, HandshakeConfig};
        let client = Self::connect(addr, json!({"profile": "sealwire-v2"})).await;
        let hs = ClientHandshake::new(HandshakeConfig::hardened(Vec::new()), &mut rand::rng());
        assert!(client.post(&Self::tunnel(&hs.hello_json())).await);
        let read = client
            .until(|p| p.starts_with(r#"42["sealwire",{"event":"hello""#))
            .await;
        let (_, hello): (String, Value) =
            serde_json::from_str(&read[read.len() - 1][2..]).expect("hello");
        let hello: sealwire::protocol::HelloPayload =
            serde_json::from_value(hello["data"].clone()).expect("hello");
        let done = hs.finish_hello(&hello).expect("keys");
        if let Some(confirmation) = done.confirmation {
            assert!(client.post(&Self::tunnel(&confirmation)).await);
        }
        (client, done.session)
    }

    /// The `sealwire` event that carries a `/ws` frame.
    fn tunnel(frame: &str) -> String {
        let frame: Value = serde_json::from_str(frame).expect("frame");
        format!("42{}", json!(["sealwire", frame]))
    }

    /// Authenticates the IGNIS way: `authenticate`, then waits for `authenticated`.
    async fn authenticate(&self) {
        assert!(self.post(r#"42["authenticate"]"#).await);
        self.until(|p| p.starts_with(r#"42["authenticated""#)).await;
    }

    /// The socket of `user` still gets what is sent to it, with no disconnect before.
    async fn still_served(&self, server: &TestServer, user: &str) {
        server
            .server
            .deliver_to_user(user, "still", &json!({"here": true}));
        let got = self.until(|p| p.starts_with(r#"42["still""#)).await;
        assert!(!got.iter().any(|p| p.starts_with("41")), "{got:?}");
    }

    /// Sends `packets` (engine.io payload); whether the server took them.
    async fn post(&self, packets: &str) -> bool {
        let response = self
            .http
            .post(&self.session)
            .body(packets.to_owned())
            .send()
            .await;
        response.is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
    }

    /// One `GET`: the packets the server had (empty when the session is gone).
    async fn get(&self) -> Vec<String> {
        let response = self.http.get(&self.session).send().await.expect("GET");
        if response.status() != reqwest::StatusCode::OK {
            return Vec::new();
        }
        let body = response.text().await.expect("body");
        body.split('\u{1e}').map(str::to_owned).collect()
    }

    /// Reads until a packet matches `wanted`; every packet read, in order, up to it.
    async fn until(&self, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..50 {
            let packets = self.get().await;
            assert!(!packets.is_empty(), "session gone after {seen:?}");
            for packet in packets {
                let hit = wanted(&packet);
                seen.push(packet);
                if hit {
                    return seen;
                }
            }
        }
        panic!("not seen in 50 polls: {seen:?}");
    }
}

/// `user` is the server's one client.
fn assert_only_client(server: &TestServer, user: &str) {
    let users: Vec<_> = server
        .server
        .clients()
        .into_iter()
        .map(|c| c.user_id)
        .collect();
    assert_eq!(users, [Some(user.to_owned())]);
}

/// A second `CONNECT` on a session whose socket is connected is ignored, and the connected
/// socket carries on: it stays the server's client and gets what is sent to it, and the
/// second one's token is never authenticated. (socketioxide names both after the session;
/// the second would have taken the first's place, and left it without a disconnect.)
#[tokio::test]
async fn a_second_connect_on_a_connected_session_is_refused() {
    let server = start_default().await;
    let client = Polling::connect(server.addr, json!({"token": "twice"})).await;
    client.authenticate().await;
    assert!(client.post(r#"40{"token":"again"}"#).await);
    assert!(client.post(r#"42["authenticate"]"#).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_only_client(&server, "twice");
    client.still_served(&server, "twice").await;
    server.stop().await;
}

/// A socket that leaves the namespace (`41`) and tries to connect again on the same session
/// (`40`) is refused (`Session closed`): the session is ending. What the old socket does as
/// it winds down (here its authentication timer, due after the refusal) harms nothing, and
/// the same client is served on a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_left_cannot_connect_again_on_its_session() {
    let mut sio = SocketIoConfig::default();
    sio.auth_timeout = Duration::from_millis(400);
    let server = start_sio(builder(base_config()), sio).await;
    let client = Polling::connect(server.addr, json!({"token": "first"})).await;
    assert!(client.post("41").await);
    // socketioxide takes the old socket out of the namespace just after the `41`.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client.post(r#"40{"token":"second"}"#).await);
    let seen = client.until(|p| p.starts_with("44{")).await;
    let refusal = seen.last().expect("the refusal");
    assert!(
        refusal.contains("Session closed") || refusal.contains("Already connected"),
        "{refusal}"
    );
    // Past the old socket's authentication deadline.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(server.server.clients().is_empty());
    let fresh = Polling::connect(server.addr, json!({"token": "second"})).await;
    fresh.authenticate().await;
    assert_only_client(&server, "second");
    fresh.still_served(&server, "second").await;
    server.stop().await;
}

/// The periodic `ping` of a plaintext socket whose engine.io buffer is full (a burst the
/// writer is behind on) is skipped, not a reason to disconnect a client that reads: the
/// whole burst arrives, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_due_while_the_buffer_is_full_does_not_disconnect_the_client() {
    let mut sio = SocketIoConfig::default();
    sio.max_buffer_packets = 4;
    sio.ping_interval = Duration::from_millis(40);
    let server = start_sio(builder(base_config()), sio).await;
    let client = Polling::connect(server.addr, json!({"token": "burst"})).await;
    client.authenticate().await;
    const N: u32 = 40;
    for n in 0..N {
        server.server.deliver_to_user("burst", "n", &json!(n));
    }
    // Nothing read for a while: the buffer is full through several ping ticks.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut next = 0;
    for _ in 0..200 {
        if next == N {
            break;
        }
        let packets = client.get().await;
        assert!(!packets.is_empty(), "session gone after {next} of {N}");
        for packet in packets {
            assert!(
                !packet.starts_with("41"),
                "disconnected after {next} of {N}"
            );
            if let Some(n) = packet.strip_prefix(r#"42["n","#) {
                assert_eq!(n, format!("{next}]"), "in order, none missing");
                next += 1;
            }
        }
    }
    assert_eq!(next, N);
    // And it is still connected afterwards (a disconnect asked for while the buffer was full
    // would come through once it drained).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.still_served(&server, "burst").await;
    server.stop().await;
}

/// A hardened socket that stops reading is closed as a slow consumer and still gets its
/// `sealwire:close` 4005 before the disconnect: both wait for room in engine.io's buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardened_slow_consumer_gets_its_close_code_before_the_disconnect() {
    use sealwire::crypto::HandshakeConfig;
    let mut config = common::hardened::config_with(
        Some(common::hardened::identity(0x42)),
        HandshakeConfig::default().rekey_after,
    );
    config.outbox_messages = 32;
    let mut sio = SocketIoConfig::default();
    sio.max_buffer_packets = 4;
    let server = start_sio(builder(config), sio).await;
    let (client, mut keys) = Polling::hardened(server.addr).await;
    let auth = json!({"event": "authenticate", "data": {"token": "slow"}}).to_string();
    let sealed = keys.seal_frame(auth.as_bytes()).expect("seal");
    assert!(client.post(&Polling::tunnel(&sealed)).await);
    wait_for(|| !server.server.clients().is_empty()).await;
    // Nothing is read: the buffer fills, then the outbox, and the core closes it (4005).
    for n in 0..200 {
        server.server.deliver_to_user("slow", "n", &json!(n));
        tokio::task::yield_now().await;
    }
    wait_for(|| server.server.clients().is_empty()).await;
    let read = client.until(|p| p.starts_with("41")).await;
    let close = read
        .iter()
        .find_map(|p| p.strip_prefix(r#"42["sealwire:close","#))
        .unwrap_or_else(|| panic!("no sealwire:close before the disconnect: {read:?}"));
    assert!(close.starts_with(r#"{"code":4005"#), "{close}");
    server.stop().await;
}

/// A browser on another origin can poll the endpoint (socket.io-client starts with polling):
/// without `allowed_origins` any origin, without credentials (as IGNIS's `cors.origin: '*'`
/// works in a browser); with a list, those origins only, credentials included. Preflights
/// are answered.
#[tokio::test]
async fn cross_origin_polling_gets_cors_headers() {
    let http = reqwest::Client::new();
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    let open = |addr: std::net::SocketAddr, origin: &'static str| {
        http.get(format!("http://{addr}/io/?EIO=4&transport=polling"))
            .header("origin", origin)
            .send()
    };
    let server = start_sio(builder(base_config()), SocketIoConfig::default()).await;
    let r = open(server.addr, "https://app.example")
        .await
        .expect("handshake");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), None);
    assert!(r.text().await.expect("body").starts_with("0{"));
    let preflight = http
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/io/?EIO=4&transport=polling", server.addr),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        header(&preflight, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert!(
        header(&preflight, "access-control-allow-methods").is_some_and(|m| m.contains("POST")),
        "{:?}",
        preflight.headers()
    );
    assert!(
        header(&preflight, "access-control-allow-headers")
            .is_some_and(|h| h.contains("content-type")),
        "{:?}",
        preflight.headers()
    );
    server.stop().await;

    let listed = SocketIoConfig::default().allowed_origins(["https://app.example"]);
    let server = start_sio(builder(base_config()), listed).await;
    let r = open(server.addr, "https://app.example")
        .await
        .expect("handshake");
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        header(&r, "access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let r = open(server.addr, "https://evil.example")
        .await
        .expect("handshake");
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_eq!(header(&r, "access-control-allow-credentials"), None);
    server.stop().await;
}

/// A raw engine.io WebSocket session on `/io` (no socket.io client), past its open packet.
async fn raw_session(
    addr: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use futures_util::StreamExt;
    let url = format!("ws://{addr}/io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("session");
    let _open = ws.next().await; // engine.io's open packet
    ws
}

/// The first packet a raw session gets after its `CONNECT` (engine.io's pings answered):
/// the acknowledgement, or the refusal.
async fn connect_ack(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match ws.next().await {
            // engine.io may ping first.
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.expect("pong");
            }
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(_)) => {}
            other => panic!("session ended: {other:?}"),
        }
    }
}

/// Whether the server ends a raw session within [`RECV_TIMEOUT`] (its pings answered
/// meanwhile).
async fn session_ends(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Result<bool, tokio::time::error::Elapsed> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(RECV_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                    let _ = ws.send(Message::text("3")).await;
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
}

/// `max_message_bytes` bounds what a Socket.IO client sends over WebSocket as over polling
/// (and as on `/ws`): a bigger message ends the session and is not handled; one within the
/// bound is.
#[tokio::test]
async fn inbound_websocket_messages_are_bounded_by_max_message_bytes() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut config = base_config();
    config.max_message_bytes = 4096;
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let mut ws = raw_session(server.addr).await;
    ws.send(Message::text(r#"40{"token":"big"}"#))
        .await
        .expect("connect");
    // Events only once the socket is connected (before, the session is closed: §13).
    connect_ack(&mut ws).await;
    // Just within the bound: handled (an event nobody listens to, then the authentication).
    let fits = format!(r#"42["note","{}"]"#, "x".repeat(4000));
    assert!(fits.len() <= 4096);
    ws.send(Message::text(fits))
        .await
        .expect("within the bound");
    ws.send(Message::text(r#"42["authenticate"]"#))
        .await
        .expect("authenticate");
    let authenticated = tokio::time::timeout(RECV_TIMEOUT, async {
        while let Some(Ok(m)) = ws.next().await {
            match &m {
                Message::Text(t) if t.as_str() == "2" => {
                    let _ = ws.send(Message::text("3")).await;
                }
                Message::Text(t) if t.as_str().starts_with(r#"42["authenticated""#) => {
                    return true;
                }
                _ => {}
            }
        }
        false
    })
    .await;
    assert_eq!(authenticated, Ok(true));
    // Over it: the session ends.
    let over = format!(r#"42["note","{}"]"#, "x".repeat(100_000));
    let _ = ws.send(Message::text(over)).await;
    let ended = session_ends(&mut ws).await;
    assert_eq!(ended, Ok(true), "an oversized message ends the session");
    wait_for(|| server.server.clients().is_empty()).await;
    server.stop().await;
}

/// A packet announcing binary attachments is bounded like any message, before any namespace
/// or authentication: announcing more than a few attachments, or sending more attachment
/// bytes than a message may hold, ends the session instead of making the server keep them.
#[tokio::test]
async fn binary_attachments_are_bounded_before_authentication() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut config = base_config();
    config.max_message_bytes = 4096;
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let placeholder = r#"["x",{"_placeholder":true,"num":0}]"#;
    let frame_of = |n: u64| format!("45{n}-{placeholder}");
    // Too many announced, or more bytes than a message: the session ends.
    let cases: [(String, usize); 2] = [(frame_of(1_000_000_000), 0), (frame_of(2), 2)];
    for (header, chunks) in cases {
        let mut ws = raw_session(server.addr).await;
        ws.send(Message::text(header.clone()))
            .await
            .expect("header");
        for _ in 0..chunks {
            let _ = ws.send(Message::binary(vec![0u8; 3000])).await;
        }
        let ended = session_ends(&mut ws).await;
        assert_eq!(ended, Ok(true), "{header} with {chunks} attachments");
    }
    // Within the bounds, the session goes on: a connected socket's event with one small
    // attachment, then its authentication.
    let mut ws = raw_session(server.addr).await;
    ws.send(Message::text(r#"40{"token":"bin"}"#))
        .await
        .expect("connect");
    let acked = connect_ack(&mut ws).await;
    assert!(acked.starts_with("40"), "connected: {acked}");
    ws.send(Message::text(frame_of(1))).await.expect("header");
    ws.send(Message::binary(vec![1u8; 16]))
        .await
        .expect("attachment");
    ws.send(Message::text(r#"42["authenticate"]"#))
        .await
        .expect("authenticate");
    let authenticated = tokio::time::timeout(RECV_TIMEOUT, async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(&m, Message::Text(t) if t.as_str().starts_with(r#"42["authenticated""#)) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(authenticated, Ok(true), "the session is still there");
    server.stop().await;
}

/// A Socket.IO client asking for positions at authentication is answered for the rooms it is
/// in: the Socket.IO default rooms it was moved to, never the server's default rooms it left.
#[tokio::test]
async fn recovery_at_authentication_reads_the_rooms_the_socket_is_in() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut config = base_config();
    config.history.rooms = vec!["ws-default".to_owned(), "io-default".to_owned()];
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", server.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("session");
    ws.send(Message::text(r#"40{"token":"rec","recover":{}}"#))
        .await
        .expect("connect");
    let recovered = tokio::time::timeout(RECV_TIMEOUT, async {
        loop {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                continue;
            };
            let t = t.to_string();
            if t.starts_with("40") {
                ws.send(Message::text(r#"42["authenticate"]"#))
                    .await
                    .expect("authenticate");
            } else if let Some(rest) = t.strip_prefix("42") {
                let packet: Value = serde_json::from_str(rest).expect("event");
                if packet[0] == "recovered" {
                    return packet[1].clone();
                }
            }
        }
    })
    .await
    .expect("recovered");
    let streams: Vec<&str> = recovered["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["stream"].as_str())
        .collect();
    assert!(streams.contains(&"room:io-default"), "{recovered}");
    assert!(!streams.contains(&"room:ws-default"), "{recovered}");
    server.stop().await;
}

/// A plaintext Socket.IO socket that asked for positions gets each positioned message as two
/// arguments, the data and its position `{stream, offset, epoch}`, so it can recover later;
/// a socket that did not ask gets the one argument, exactly as before.
#[tokio::test]
async fn a_plaintext_socket_that_asked_for_positions_gets_them_as_a_second_argument() {
    use futures_util::{SinkExt, StreamExt};
    use sealwire::publish::Publish;
    use tokio_tungstenite::tungstenite::Message;
    let mut config = base_config();
    config.history.rooms = vec!["io-default".to_owned()];
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let url = format!("ws://{}/io/?EIO=4&transport=websocket", server.addr);
    // Opens a socket with `auth`, authenticates it, and returns it with the packets it got
    // until `until` (an event name).
    let open = async |auth: &str, until: &str| {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("session");
        ws.send(Message::text(format!("40{auth}")))
            .await
            .expect("connect");
        let mut seen = Vec::new();
        tokio::time::timeout(RECV_TIMEOUT, async {
            loop {
                let Some(Ok(Message::Text(t))) = ws.next().await else {
                    continue;
                };
                let t = t.to_string();
                if t.starts_with("40") {
                    ws.send(Message::text(r#"42["authenticate"]"#))
                        .await
                        .expect("authenticate");
                } else if let Some(rest) = t.strip_prefix("42") {
                    let packet: Value = serde_json::from_str(rest).expect("event");
                    let done = packet[0] == until;
                    seen.push(packet);
                    if done {
                        return;
                    }
                }
            }
        })
        .await
        .expect("authenticated");
        (ws, seen)
    };
    let (mut tracked, seen) = open(r#"{"token":"tracked","recover":{}}"#, "recovered").await;
    let recovered = &seen.last().expect("recovered")[1];
    let epoch = recovered["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .find(|s| s["stream"] == "room:io-default")
        .map(|s| s["epoch"].clone())
        .expect("io-default answered");
    let (mut ignis, _) = open(r#"{"token":"ignis"}"#, "authenticated").await;
    server
        .server
        .to_room("io-default")
        .emit("order", &json!({"n": 1}))
        .await
        .expect("publish");
    let next_order = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| {
        tokio::time::timeout(RECV_TIMEOUT, async {
            loop {
                let Some(Ok(Message::Text(t))) = ws.next().await else {
                    continue;
                };
                if let Some(rest) = t.to_string().strip_prefix("42") {
                    let packet: Value = serde_json::from_str(rest).expect("event");
                    if packet[0] == "order" {
                        return packet;
                    }
                }
            }
        })
        .await
        .expect("order")
    };
    assert_eq!(
        next_order(&mut tracked).await,
        json!(["order", {"n": 1}, {"stream": "room:io-default", "offset": 1, "epoch": epoch}])
    );
    assert_eq!(next_order(&mut ignis).await, json!(["order", {"n": 1}]));
    server.stop().await;
}

/// A Socket.IO session over WebSocket whose socket left (here the client's `41`) is closed
/// from the server's side a grace later, although its client keeps answering pings: both a
/// session opened over WebSocket and a polling session that moved to WebSocket. A session
/// whose socket left cannot move to WebSocket afterwards either.
#[tokio::test]
async fn a_websocket_session_whose_socket_left_is_closed_after_a_grace() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut sio = SocketIoConfig::default();
    sio.eio_ping_interval = Duration::from_millis(500);
    sio.eio_ping_timeout = Duration::from_millis(2_000);
    let server = start_sio(builder(base_config()), sio).await;
    let base = format!("{}/io/?EIO=4", server.addr);
    type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;
    // Answers pings until the server ends the connection; false if it is still open at 15 s.
    let closed_by_server = async |ws: &mut Ws| {
        tokio::time::timeout(Duration::from_secs(15), async {
            while let Some(Ok(message)) = ws.next().await {
                if message.to_text().is_ok_and(|t| t == "2")
                    && ws.send(Message::text("3")).await.is_err()
                {
                    break;
                }
            }
        })
        .await
        .is_ok()
    };
    let next_text = async |ws: &mut Ws| loop {
        let message = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("a message")
            .expect("open")
            .expect("frame");
        match message.to_text() {
            Ok("2") => ws.send(Message::text("3")).await.expect("pong"),
            Ok(text) => return text.to_owned(),
            Err(_) => {}
        }
    };

    // Opened over WebSocket.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{base}&transport=websocket"))
        .await
        .expect("session");
    assert!(next_text(&mut ws).await.starts_with('0'), "open packet");
    ws.send(Message::text("40")).await.expect("connect");
    assert!(next_text(&mut ws).await.starts_with("40"), "connected");
    ws.send(Message::text("41")).await.expect("leave");
    assert!(
        closed_by_server(&mut ws).await,
        "still open 15 s after its socket left"
    );

    // Polling first, then moved to WebSocket (probe and upgrade), then the socket leaves.
    let http = reqwest::Client::new();
    let session = Polling::open(server.addr).await;
    let (sid, polling) = (session.sid().to_owned(), session.session.clone());
    assert!(
        http.post(&polling)
            .body("40")
            .send()
            .await
            .expect("connect")
            .status()
            .is_success()
    );
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{base}&transport=websocket&sid={sid}"))
            .await
            .expect("upgrade");
    ws.send(Message::text("2probe")).await.expect("probe");
    assert_eq!(next_text(&mut ws).await, "3probe");
    ws.send(Message::text("5")).await.expect("upgrade");
    ws.send(Message::text("41")).await.expect("leave");
    assert!(
        closed_by_server(&mut ws).await,
        "still open 15 s after its socket left"
    );

    // A session whose socket left cannot move to WebSocket.
    let session = Polling::open(server.addr).await;
    let (sid, polling) = (session.sid().to_owned(), session.session.clone());
    for packet in ["40", "41"] {
        assert!(
            http.post(&polling)
                .body(packet)
                .send()
                .await
                .expect("post")
                .status()
                .is_success()
        );
    }
    // Refused as soon as the leave went through.
    let upgrade = format!("ws://{base}&transport=websocket&sid={sid}");
    let mut tries = 0;
    while tokio_tungstenite::connect_async(upgrade.as_str())
        .await
        .is_ok()
    {
        tries += 1;
        assert!(tries < 20, "the upgrade is still accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

/// A session whose socket left keeps the socket's place under the connection limits until the
/// session is over: a flood of sessions that connect and leave cannot exceed
/// `max_connections_per_ip`. Over WebSocket the place comes back when the server closes the
/// connection; a client whose transport ends frees it at once.
#[tokio::test]
async fn a_departed_session_keeps_its_place_until_it_is_over() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut config = base_config();
    config.max_connections_per_ip = Some(1);
    let server = start_sio(builder(config), SocketIoConfig::default()).await;
    let base = format!("{}/io/?EIO=4", server.addr);
    let handshake = async || {
        reqwest::get(format!("http://{base}&transport=polling"))
            .await
            .expect("handshake")
            .status()
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{base}&transport=websocket"))
        .await
        .expect("session");
    let mut acked = false;
    while !acked {
        let message = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("a message")
            .expect("open")
            .expect("frame");
        match message.to_text().unwrap_or_default() {
            t if t.starts_with('0') => ws.send(Message::text("40")).await.expect("connect"),
            t if t.starts_with("40") => acked = true,
            _ => {}
        }
    }
    ws.send(Message::text("41")).await.expect("leave");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        handshake().await,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "the departed session still holds the address's one place"
    );
    // The server closes the session's connection a grace after the leave; the place is free.
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(closed.is_ok(), "closed by the server");
    let mut status = handshake().await;
    for _ in 0..20 {
        if status.is_success() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = handshake().await;
    }
    assert!(status.is_success(), "{status}");
    server.stop().await;
}
