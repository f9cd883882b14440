//! The `sealwire` binary: `serve` in dev and JWT modes, auth-mode errors, SIGTERM shutdown,
//! and several processes sharing one port.

mod common;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn sealwire() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sealwire"));
    for var in [
        "SEALWIRE_LISTEN",
        "SEALWIRE_PATH",
        "SEALWIRE_ADMIN_TOKEN",
        "SEALWIRE_JWT_SECRET",
        "SEALWIRE_REQUIRE_ENCRYPTION",
        "SEALWIRE_REQUIRE_ENCRYPTED_INBOUND",
        "SEALWIRE_DEFAULT_ROOMS",
        "SEALWIRE_ALLOW_ROOMS",
        "SEALWIRE_REUSE_PORT",
        "SEALWIRE_MAX_CONNECTIONS",
        "SEALWIRE_MAX_CONNECTIONS_PER_IP",
        "SEALWIRE_ALLOWED_ORIGINS",
        "REDIS_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "warn").kill_on_drop(true);
    cmd
}

struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    url: String,
    admin_token: Option<String>,
}

/// Spawns `sealwire serve <args>` and reads stdout up to the "listening" line.
async fn serve(args: &[&str]) -> Running {
    let mut child = sealwire()
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sealwire");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut admin_token = None;
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("sealwire printed its address in time")
            .expect("read stdout")
            .expect("sealwire exited before listening");
        if let Some(t) = line.strip_prefix("dev admin token: ") {
            admin_token = Some(t.trim().to_owned());
        }
        if let Some(url) = line.strip_prefix("sealwire listening on ") {
            break url.trim().to_owned();
        }
    };
    Running {
        child,
        lines,
        url,
        admin_token,
    }
}

impl Running {
    /// The `host:port` it listens on.
    fn addr(&self) -> String {
        self.url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("address")
            .to_owned()
    }

    fn terminate(&self) {
        self.signal("TERM");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running");
        // The shell's built-in `kill`: no extra package needed.
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -{name} {pid}")])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    async fn wait(mut self) -> std::process::ExitStatus {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exited in time")
            .expect("wait");
        drop(self.lines);
        status
    }
}

/// Runs `sealwire serve <args>` expecting a quick failure; returns stderr.
async fn serve_fails(args: &[&str]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        sealwire()
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("exited in time")
    .expect("run sealwire");
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `sealwire serve --listen 127.0.0.1:0 <base> <flags>` for each case, expecting a
/// startup error that mentions `expected` (never a panic).
async fn refused_with(base: &[&str], cases: &[(&[&str], &str)]) {
    for (flags, expected) in cases {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(base);
        args.extend_from_slice(flags);
        let err = serve_fails(&args).await;
        assert!(err.contains(expected), "{flags:?}: {err}");
        assert!(!err.contains("panicked"), "{flags:?}: {err}");
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn jwt(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("encode JWT")
}

#[tokio::test]
async fn dev_mode_serves_and_sigterm_closes_clients_with_1001() {
    let run = serve(&["--dev", "--listen", "127.0.0.1:0"]).await;
    assert!(run.url.starts_with("ws://127.0.0.1:"), "{}", run.url);
    assert!(run.url.ends_with("/ws"), "{}", run.url);
    let token = run.admin_token.clone().expect("dev admin token printed");
    assert!(token.len() >= 24);

    let mut plain = WsClient::connect(&run.url).await;
    let connected = plain.authenticate("any-user").await;
    assert_eq!(connected["data"]["userId"], "any-user");
    let mut enc = WsClient::connect(&run.url).await;
    enc.authenticate_encrypted("other-user").await;

    // The printed admin token works against the same listener.
    let http = run.url.replacen("ws://", "http://", 1).replace("/ws", "");
    let info: serde_json::Value = reqwest::Client::new()
        .get(format!("{http}/socket/info"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["authenticated"], 2);
    assert_eq!(info["encrypted"], 1);
    let r = reqwest::Client::new()
        .post(format!("{http}/socket/broadcast"))
        .bearer_auth(&token)
        .json(&json!({"topic": "hi", "data": 1}))
        .send()
        .await
        .expect("broadcast");
    assert_eq!(r.status(), 200);
    assert_eq!(plain.recv_msg().await, json!({"event": "hi", "data": 1}));
    assert_eq!(enc.recv_msg().await, json!({"event": "hi", "data": 1}));

    // An empty token is refused even in dev mode.
    let mut empty = WsClient::connect(&run.url).await;
    empty
        .send_json(&json!({"event": "authenticate", "data": {"token": ""}}))
        .await;
    assert_eq!(empty.expect_close().await, Some(4003));

    run.terminate();
    assert_eq!(plain.expect_close().await, Some(1001));
    assert_eq!(enc.expect_close().await, Some(1001));
    let status = run.wait().await;
    assert!(status.success(), "{status:?}");
}

/// `sealwire serve --dev | head -1`: a stdout whose reader went away before the server said
/// anything must not end the server (its announcements are best effort).
#[tokio::test]
async fn a_closed_stdout_does_not_end_the_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let listen = format!("127.0.0.1:{port}");
    let mut child = sealwire()
        .args(["serve", "--dev", "--listen", &listen])
        .stdout(writer)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sealwire");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&listen).await.is_err() {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "sealwire exited"
        );
        assert!(tokio::time::Instant::now() < deadline, "never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = WsClient::connect(&format!("ws://{listen}/ws")).await;
    let connected = client.authenticate("reader-gone").await;
    assert_eq!(connected["data"]["userId"], "reader-gone");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "sealwire exited"
    );

    let pid = child.id().expect("running");
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .expect("kill");
    assert_eq!(client.expect_close().await, Some(1001));
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited in time")
        .expect("wait");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn require_encrypted_inbound_refuses_plaintext_joins_of_compat_clients() {
    let run = serve(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--require-encryption",
        "--require-encrypted-inbound",
        "--allow-rooms",
        "*",
    ])
    .await;
    let mut enc = WsClient::connect(&run.url).await;
    enc.authenticate_encrypted("ignis-user").await;
    enc.send_json(&json!({"event": "join", "data": {"rooms": ["lobby"]}}))
        .await;
    assert_eq!(
        enc.recv_msg().await,
        json!({"event": "error", "data": {"message": "Encrypted message required"}})
    );
    run.terminate();
    let status = run.wait().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn an_auth_mode_is_required_and_exclusive() {
    let none = serve_fails(&["--listen", "127.0.0.1:0"]).await;
    assert!(none.contains("exactly one auth mode"), "{none}");
    let both = serve_fails(&["--dev", "--jwt-secret", SECRET, "--listen", "127.0.0.1:0"]).await;
    assert!(both.contains("exactly one auth mode"), "{both}");
    let short = serve_fails(&["--jwt-secret", "short", "--listen", "127.0.0.1:0"]).await;
    assert!(short.contains("at least 32 bytes"), "{short}");
    let two = serve_fails(&[
        "--jwt-secret",
        SECRET,
        "--jwks-url",
        "https://idp.example/jwks.json",
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert!(two.contains("exactly one auth mode"), "{two}");
    // No key set, no start: the error says why.
    let jwks = serve_fails(&[
        "--jwks-url",
        "http://127.0.0.1:1/jwks.json",
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert!(
        jwks.contains("--jwks-url") && jwks.contains("JWKS"),
        "{jwks}"
    );
}

#[tokio::test]
async fn an_empty_admin_token_is_refused() {
    for token in ["", "  "] {
        let err = serve_fails(&[
            "--jwt-secret",
            SECRET,
            "--admin-token",
            token,
            "--listen",
            "127.0.0.1:0",
        ])
        .await;
        assert!(err.contains("must not be empty"), "{token:?}: {err}");
    }
}

/// A path that is not a literal path, or that would take another route, is a startup error
/// (before anything is announced as listening), never a crash once running; a Socket.IO path
/// with a trailing '/' is the same path.
#[tokio::test]
async fn paths_that_cannot_route_as_themselves_are_refused_at_startup() {
    let cases: &[(&[&str], &str)] = &[
        (&["--path", "/io/"], "invalid path"),
        (&["--path", "/ws/:id"], "invalid path"),
        (&["--path", "/{x}"], "invalid path"),
        (&["--path", "/socket/health"], "admin API"),
        (&["--path", "/metrics"], "metrics"),
        (&["--path", "/"], "demo page"),
        (&["--socketio-path", "/ws/"], "--path"),
        (&["--socketio-path", "/metrics"], "metrics"),
        (&["--socketio-path", "/:x"], "invalid --socketio-path"),
        (&["--socketio-path", "/"], "every path"),
        (
            &["--path", "/v1/rt", "--socketio-path", "/v1/rt/"],
            "--path",
        ),
        (&["--socketio-path", "/socket/io"], "admin API"),
    ];
    refused_with(&["--dev"], cases).await;
    // Apart from each other and the server's routes: both serve.
    let run = serve(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--path",
        "/v1/rt",
        "--socketio-path",
        "/v1/",
    ])
    .await;
    assert!(run.url.ends_with("/v1/rt"), "{}", run.url);
    let mut c = WsClient::connect(&run.url).await;
    c.authenticate("u").await;
    run.terminate();
    assert_eq!(c.expect_close().await, Some(1001));
    assert!(run.wait().await.success());
}

/// `--max-tcp-connections` caps the connections still speaking HTTP: past it, a new
/// connection waits to be accepted until one of them ends. Zero is refused.
#[tokio::test]
async fn max_tcp_connections_holds_new_connections_until_a_place_frees() {
    let err = serve_fails(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--max-tcp-connections",
        "0",
    ])
    .await;
    assert!(err.contains("max_tcp_connections"), "{err}");
    let run = serve(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--max-tcp-connections",
        "1",
    ])
    .await;
    let addr = run.addr();
    // An idle connection holds the one place (until the header-read timeout, 10 s).
    let idle = tokio::net::TcpStream::connect(&addr).await.expect("idle");
    let url = run.url.clone();
    let waiting = tokio::spawn(async move {
        let mut client = WsClient::connect(&url).await;
        client.authenticate("late").await;
        client
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection was served past the cap"
    );
    drop(idle);
    let mut client = tokio::time::timeout(Duration::from_secs(8), waiting)
        .await
        .expect("served once the place freed")
        .expect("client task");
    run.terminate();
    assert_eq!(client.expect_close().await, Some(1001));
    let status = run.wait().await;
    assert!(status.success(), "{status:?}");
}

/// `--max-tcp-connections-per-ip` caps the HTTP-stage connections of one address: one past
/// it is answered 429 and closed at once, and a place frees when a connection ends. Zero is
/// refused.
#[tokio::test]
async fn max_tcp_connections_per_ip_answers_429_past_the_cap() {
    use tokio::io::AsyncReadExt;
    let err = serve_fails(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--max-tcp-connections-per-ip",
        "0",
    ])
    .await;
    assert!(err.contains("max_tcp_connections_per_ip"), "{err}");
    let run = serve(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--max-tcp-connections-per-ip",
        "2",
    ])
    .await;
    let addr = run.addr();
    // Two idle connections hold the address's two places (until the header-read timeout).
    let idle = [
        tokio::net::TcpStream::connect(&addr).await.expect("idle"),
        tokio::net::TcpStream::connect(&addr).await.expect("idle"),
    ];
    // The third gets a 429 and the end of the connection, without sending anything.
    let mut third = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_string(&mut answer))
        .await
        .expect("closed at once")
        .expect("read");
    assert!(answer.starts_with("HTTP/1.1 429 "), "{answer:?}");
    // A WebSocket upgrade past the cap is refused too.
    assert!(
        tokio_tungstenite::connect_async(run.url.as_str())
            .await
            .is_err()
    );
    // Once an idle connection ends, its place serves a client.
    drop(idle);
    let mut client = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(run.url.as_str()).await {
            client = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(client.is_some(), "a freed place serves a client");
    run.terminate();
    let status = run.wait().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn max_connections_per_ip_refuses_upgrades_with_429() {
    let run = serve(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let mut first = WsClient::connect(&run.url).await;
    first.authenticate("alice").await;
    match tokio_tungstenite::connect_async(run.url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("second connection from 127.0.0.1 accepted"),
    }
    run.terminate();
    assert_eq!(first.expect_close().await, Some(1001));
    let status = run.wait().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn dev_mode_refuses_non_loopback_addresses() {
    let err = serve_fails(&["--dev", "--listen", "0.0.0.0:0"]).await;
    assert!(err.contains("loopback"), "{err}");
}

#[tokio::test]
async fn jwt_mode_accepts_valid_tokens_and_rejects_expired_ones() {
    let run = serve(&["--jwt-secret", SECRET, "--listen", "127.0.0.1:0"]).await;
    assert!(run.admin_token.is_none());

    let mut good = WsClient::connect(&run.url).await;
    let token = jwt(&json!({"sub": "user-42", "exp": now() + 600}));
    let connected = good.authenticate_encrypted(&token).await;
    assert_eq!(connected["data"]["userId"], "user-42");

    let mut expired = WsClient::connect(&run.url).await;
    let token = jwt(&json!({"sub": "user-42", "exp": now() - 3600}));
    expired
        .send_json(&json!({"event": "authenticate", "data": {"type": "Bearer", "token": token}}))
        .await;
    assert_eq!(
        expired.recv_json().await,
        json!({"event": "error", "data": {"message": "Authentication failed"}})
    );
    assert_eq!(expired.expect_close().await, Some(4003));

    let mut forged = WsClient::connect(&run.url).await;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "admin", "exp": now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(b"some-other-secret-that-is-long-enough"),
    )
    .expect("encode");
    forged
        .send_json(&json!({"event": "authenticate", "data": {"token": token}}))
        .await;
    assert_eq!(forged.expect_close().await, Some(4003));

    run.terminate();
    assert_eq!(good.expect_close().await, Some(1001));
    assert!(run.wait().await.success());
}

/// Two processes share one port with `--reuse-port` and one Redis bus: the kernel spreads
/// clients across them, and a broadcast asked of either (the admin API is on the same port)
/// reaches every client. A third process without the flag cannot bind the port.
#[cfg(feature = "redis")]
#[tokio::test]
async fn processes_share_a_port_with_reuse_port_and_a_redis_bus() {
    let redis = common::redis::RedisServer::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let token = "shared-admin-token-of-some-length";
    let args = [
        "--dev",
        "--reuse-port",
        "--listen",
        &listen,
        "--redis-url",
        &redis.url(),
        "--admin-token",
        token,
    ];
    let a = serve(&args).await;
    let b = serve(&args).await;
    assert_eq!(a.url, b.url);
    let err = serve_fails(&["--dev", "--listen", &listen]).await;
    assert!(err.contains("cannot listen"), "{err}");

    let http = a.url.replacen("ws://", "http://", 1).replace("/ws", "");
    // A new TCP connection per request, so requests reach both processes.
    let api = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    let mut clients = Vec::new();
    for i in 0..24 {
        let mut c = WsClient::connect(&a.url).await;
        if i % 2 == 0 {
            c.authenticate(&format!("user-{i}")).await;
        } else {
            c.authenticate_encrypted(&format!("user-{i}")).await;
        }
        clients.push(c);
    }
    // Each process reports only its own clients; together they hold all of them, and the
    // kernel gave each some (24 clients all on one process would be a 1 in 8 million event).
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let info: serde_json::Value = api
            .get(format!("{http}/socket/info"))
            .bearer_auth(token)
            .send()
            .await
            .expect("info")
            .json()
            .await
            .expect("json");
        if let (Some(id), Some(n)) = (info["serverId"].as_str(), info["authenticated"].as_u64()) {
            seen.insert(id.to_owned(), n);
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "both processes answered: {seen:?}");
    assert_eq!(seen.values().sum::<u64>(), 24, "{seen:?}");
    assert!(seen.values().all(|&n| n > 0), "{seen:?}");

    let r = api
        .post(format!("{http}/socket/broadcast"))
        .bearer_auth(token)
        .json(&json!({"topic": "everyone", "data": 7}))
        .send()
        .await
        .expect("broadcast");
    assert_eq!(r.status(), 200);
    for c in &mut clients {
        assert_eq!(c.recv_msg().await, json!({"event": "everyone", "data": 7}));
    }
    a.terminate();
    b.terminate();
    assert!(a.wait().await.success());
    assert!(b.wait().await.success());
}

#[tokio::test]
async fn allowed_origins_refuse_other_origins_with_403() {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let run = serve(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--allowed-origins",
        "https://a.example, https://b.example",
    ])
    .await;
    let connect = |origin: Option<&'static str>| {
        let mut request = run.url.as_str().into_client_request().expect("request");
        if let Some(o) = origin {
            request
                .headers_mut()
                .insert("origin", o.parse().expect("header value"));
        }
        tokio_tungstenite::connect_async(request)
    };
    let (ws, _) = connect(Some("https://b.example"))
        .await
        .expect("listed origin");
    drop(ws);
    for origin in [None, Some("https://c.example")] {
        match connect(origin).await {
            Err(Error::Http(response)) => assert_eq!(response.status(), 403, "{origin:?}"),
            other => panic!("{origin:?}: expected 403, got {other:?}"),
        }
    }
    let bad = serve_fails(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--allowed-origins",
        "a.example",
    ])
    .await;
    assert!(bad.contains("invalid allowed origin"), "{bad}");
    run.terminate();
    run.wait().await;
}

#[tokio::test]
async fn encryption_hardened_only_admits_only_sealed_logins() {
    let run = serve(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--encryption",
        "hardened-only",
    ])
    .await;
    // Plaintext and compatibility-profile clients are refused with 4004.
    let mut plain = WsClient::connect(&run.url).await;
    plain
        .send_json(&json!({"event": "authenticate", "data": {"token": "p"}}))
        .await;
    assert_eq!(
        plain.recv_json().await["data"]["message"],
        "Encryption handshake failed"
    );
    assert_eq!(plain.expect_close().await, Some(4004));
    let mut compat = WsClient::connect(&run.url).await;
    compat
        .send_json(&json!({"event": "authenticate", "data": {
            "token": "c", "publicKey": WsClient::any_public_key()}}))
        .await;
    assert_eq!(compat.expect_close().await, Some(4004));
    // The hardened SDK logs in, with its credentials sealed.
    let (client, mut events) = sealwire::client::Client::builder(run.url.as_str())
        .token("hana")
        .connect()
        .await
        .expect("hardened login");
    let ev = common::sdk::next_event(&mut events).await;
    assert!(
        matches!(&ev, sealwire::client::Event::Connected { info, .. } if info.encrypted && info.user_id == "hana"),
        "{ev:?}"
    );
    client.close();
    // An unknown policy is a start error.
    let bad = serve_fails(&["--dev", "--listen", "127.0.0.1:0", "--encryption", "maybe"]).await;
    assert!(bad.contains("unknown encryption policy"), "{bad}");
    run.terminate();
    let status = run.wait().await;
    assert!(status.success(), "{status:?}");
}

/// Spawns `sealwire <args>` with `RUST_LOG=<level>` and its stderr kept; returns it and the
/// URL it printed once listening.
async fn logging(level: &str, args: &[&str]) -> (Child, String) {
    let mut child = sealwire()
        .env("RUST_LOG", level)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sealwire");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("listening in time")
            .expect("read")
            .expect("sealwire exited early");
        if let Some(url) = line.strip_prefix("sealwire listening on ") {
            break url.trim().to_owned();
        }
    };
    // What it prints next must find a reader: a closed stdout would end it.
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    (child, url)
}

/// Stops a [`logging`] process with SIGTERM; returns what it logged.
async fn logs_after_sigterm(child: Child) -> String {
    let pid = child.id().expect("running");
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .expect("kill");
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("exited in time")
        .expect("wait");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `--log-format json`: every log line is one JSON object, and debug logging of a full
/// session (authentication, refusal, messages) never writes a token.
#[tokio::test]
async fn json_logs_are_one_object_per_line_and_carry_no_tokens() {
    let (child, url) = logging(
        "sealwire=debug",
        &[
            "--log-format",
            "json",
            "serve",
            "--jwt-secret",
            SECRET,
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let good = jwt(&json!({"sub": "user-7", "exp": now() + 600}));
    let expired = jwt(&json!({"sub": "user-8", "exp": now() - 3600}));
    let (client, _events) = sealwire::client::Client::builder(url.as_str())
        .token(good.as_str())
        .connect()
        .await
        .expect("hardened login");
    client.close();
    let mut refused = WsClient::connect(&url).await;
    refused
        .send_json(&json!({"event": "authenticate", "data": {"token": expired}}))
        .await;
    assert_eq!(refused.expect_close().await, Some(4003));
    let logs = logs_after_sigterm(child).await;
    let mut lines = 0;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        lines += 1;
    }
    assert!(lines >= 3, "debug logs were written: {logs}");
    assert!(logs.contains("authenticated"), "{logs}");
    // The refusal says why, not what the token held.
    assert!(
        logs.lines()
            .any(|l| l.contains("JWT not accepted") && l.contains(r#""reason":"expired""#)),
        "{logs}"
    );
    for token in [&good, &expired] {
        assert!(!logs.contains(token.as_str()), "a token was logged");
        // Not even its signature part.
        let sig = token.rsplit('.').next().expect("signature");
        assert!(!logs.contains(sig));
    }
}

/// `serve --history-rooms`: the admin API reports each publication's offset and serves the
/// stream's history, and a client that reconnects with its position gets what it missed.
/// `RUST_LOG=trace` does not make the WebSocket or Socket.IO libraries log what crossed the
/// wire: a compatibility client's plaintext token, a plaintext message and a Socket.IO `auth`
/// payload stay out of the logs, while sealwire's own debug logging still runs.
#[tokio::test]
async fn trace_logging_keeps_tokens_and_payloads_out_of_the_logs() {
    let (child, url) = logging(
        "trace",
        &["serve", "--jwt-secret", SECRET, "--listen", "127.0.0.1:0"],
    )
    .await;
    let ws_token = jwt(&json!({"sub": "user-ws", "exp": now() + 600}));
    let mut plain = WsClient::connect(&url).await;
    plain
        .send_json(&json!({"event": "authenticate", "data": {"token": ws_token}}))
        .await;
    assert_eq!(plain.recv_json().await["event"], "connected");
    plain
        .send_json(&json!({"event": "note", "data": "a-plaintext-payload-4711"}))
        .await;
    let sio_token = jwt(&json!({"sub": "user-io", "exp": now() + 600}));
    let base = url.replace("ws://", "http://").replace("/ws", "");
    let http = reqwest::Client::new();
    let open = http
        .get(format!("{base}/io/?EIO=4&transport=polling"))
        .send()
        .await
        .expect("handshake")
        .text()
        .await
        .expect("body");
    let open: serde_json::Value =
        serde_json::from_str(open.trim_start_matches('0')).expect("engine.io open");
    let sid = open["sid"].as_str().expect("sid");
    let connect = http
        .post(format!("{base}/io/?EIO=4&transport=polling&sid={sid}"))
        .body(format!("40{}", json!({"token": sio_token})))
        .send()
        .await
        .expect("connect");
    assert!(connect.status().is_success(), "{}", connect.status());
    let mut answer = String::new();
    for _ in 0..4 {
        if answer.contains("42[\"authenticated\"") {
            break;
        }
        if answer.contains("40{") && !answer.contains("42[\"ping\"") {
            // Acknowledged: `authenticate` runs with the `auth` payload as IGNIS clients send it.
            let sent = http
                .post(format!("{base}/io/?EIO=4&transport=polling&sid={sid}"))
                .body(r#"42["authenticate"]"#)
                .send()
                .await
                .expect("authenticate");
            assert!(sent.status().is_success(), "{}", sent.status());
        }
        let poll = http
            .get(format!("{base}/io/?EIO=4&transport=polling&sid={sid}"))
            .send()
            .await
            .expect("poll");
        answer.push_str(&poll.text().await.expect("body"));
    }
    assert!(answer.contains("42[\"authenticated\""), "{answer}");
    drop(plain);
    let logs = logs_after_sigterm(child).await;
    assert!(
        logs.contains("DEBUG sealwire"),
        "sealwire's own debug logs run: {logs}"
    );
    for secret in [
        ws_token.as_str(),
        sio_token.as_str(),
        "a-plaintext-payload-4711",
    ] {
        let signature = secret.rsplit('.').next().unwrap_or(secret);
        assert!(!logs.contains(signature), "{secret} was logged: {logs}");
    }
}

#[tokio::test]
async fn history_flags_serve_recovery_and_the_history_endpoint() {
    let run = serve(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--allow-rooms",
        "orders:*",
        "--history-rooms",
        "orders:*",
        "--history-size",
        "50",
    ])
    .await;
    let token = run.admin_token.clone().expect("dev admin token");
    let base = run
        .url
        .trim_end_matches("/ws")
        .replacen("ws://", "http://", 1);
    let http = reqwest::Client::new();
    let send = |n: u64| {
        http.post(format!("{base}/socket/room/orders:7/send"))
            .bearer_auth(&token)
            .json(&json!({"topic": "order", "data": {"n": n}}))
            .send()
    };
    let mut c = WsClient::connect(&run.url).await;
    c.send_json(&json!({"event": "authenticate", "data": {"token": "ola", "recover": {}}}))
        .await;
    assert_eq!(c.recv_json().await["event"], "connected");
    recovered(&mut c).await;
    c.send_json(&json!({"event": "join", "data": {"rooms": ["orders:7"], "recover": {}}}))
        .await;
    let streams = recovered(&mut c).await;
    let epoch = streams[0]["epoch"].clone();
    let reply: serde_json::Value = send(1).await.expect("send").json().await.expect("json");
    assert_eq!(reply["offset"], 1, "{reply}");
    assert_eq!(c.recv_json().await["offset"], 1);
    drop(c);
    for n in 2..=4 {
        assert!(send(n).await.expect("send").status().is_success());
    }
    let page: serde_json::Value = http
        .get(format!("{base}/socket/history/room:orders:7?since=1"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("json");
    assert_eq!(page["offset"], 4, "{page}");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(3), "{page}");

    let mut c = WsClient::connect(&run.url).await;
    c.send_json(&json!({"event": "authenticate", "data": {"token": "ola", "recover": {}}}))
        .await;
    assert_eq!(c.recv_json().await["event"], "connected");
    recovered(&mut c).await;
    c.send_json(&json!({"event": "join", "data": {"rooms": ["orders:7"],
        "recover": {"room:orders:7": {"offset": 1, "epoch": epoch}}}}))
        .await;
    for n in 2..=4 {
        let m = c.recv_json().await;
        assert_eq!(
            (m["data"]["n"].clone(), m["offset"].clone()),
            (json!(n), json!(n))
        );
    }
    let streams = recovered(&mut c).await;
    assert_eq!(streams[0]["recovered"], true, "{streams}");
    run.terminate();
    assert!(run.wait().await.success());
}

/// Reads frames until `recovered`; returns its streams.
async fn recovered(c: &mut WsClient) -> serde_json::Value {
    loop {
        let m = c.recv_json().await;
        if m["event"] == "recovered" {
            return m["data"]["streams"].clone();
        }
    }
}

/// With `--redis-url`, history lives in Redis Streams: a client that reconnects to *another*
/// `sealwire serve` process recovers what both processes and `sealwire emit` published
/// meanwhile, and every publisher reports the offset it got.
#[tokio::test]
async fn history_in_redis_recovers_on_another_process_and_emit_reports_its_offset() {
    let redis = common::redis::RedisServer::start().await;
    let token = "history-admin-token-of-some-length";
    let url = redis.url();
    let args = [
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--redis-url",
        &url,
        "--admin-token",
        token,
        "--allow-rooms",
        "orders:*",
        "--history-rooms",
        "orders:*",
    ];
    let a = serve(&args).await;
    let b = serve(&args).await;
    let http = reqwest::Client::new();
    let send = |run: &Running, n: u64| {
        let base = run
            .url
            .trim_end_matches("/ws")
            .replacen("ws://", "http://", 1);
        http.post(format!("{base}/socket/room/orders:9/send"))
            .bearer_auth(token)
            .json(&json!({"topic": "order", "data": {"n": n}}))
            .send()
    };
    let offset = |reply: reqwest::Response| async move {
        let v: serde_json::Value = reply.json().await.expect("json");
        v["offset"].as_u64()
    };
    let join = |url: String, recover: serde_json::Value| async move {
        let mut c = WsClient::connect(&url).await;
        c.send_json(&json!({"event": "authenticate", "data": {"token": "uma", "recover": {}}}))
            .await;
        assert_eq!(c.recv_json().await["event"], "connected");
        recovered(&mut c).await;
        c.send_json(&json!({"event": "join", "data": {"rooms": ["orders:9"], "recover": recover}}))
            .await;
        c
    };
    let mut c = join(a.url.clone(), json!({})).await;
    let streams = recovered(&mut c).await;
    let epoch = streams[0]["epoch"].clone();
    assert_eq!(offset(send(&a, 1).await.expect("send")).await, Some(1));
    assert_eq!(c.recv_json().await["offset"], 1);
    drop(c);

    assert_eq!(offset(send(&b, 2).await.expect("send")).await, Some(2));
    let out = sealwire()
        .args(["emit", "--redis-url", &url, "--history-rooms", "orders:*"])
        .args([
            "--room",
            "orders:9",
            "--event",
            "order",
            "--data",
            r#"{"n":3}"#,
        ])
        .output()
        .await
        .expect("emit");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("kept at offset 3"), "{stdout}");
    assert_eq!(offset(send(&a, 4).await.expect("send")).await, Some(4));

    let position = json!({"room:orders:9": {"offset": 1, "epoch": epoch}});
    let mut c = join(b.url.clone(), position).await;
    for n in 2..=4 {
        let m = c.recv_json().await;
        assert_eq!(
            (m["data"]["n"].clone(), m["offset"].clone()),
            (json!(n), json!(n)),
            "{m}"
        );
    }
    let streams = recovered(&mut c).await;
    assert_eq!(streams[0]["recovered"], true, "{streams}");
    assert_eq!(streams[0]["epoch"], epoch, "{streams}");
    a.terminate();
    b.terminate();
    assert!(a.wait().await.success());
    assert!(b.wait().await.success());
}

/// A second SIGTERM ends a long drain at once: an operator need not wait for it (nor reach
/// for SIGKILL).
#[tokio::test]
async fn a_second_sigterm_ends_a_long_drain() {
    let run = serve(&["--dev", "--listen", "127.0.0.1:0", "--drain-secs", "600"]).await;
    let mut c = WsClient::connect(&run.url).await;
    c.authenticate("drained").await;
    run.terminate();
    // The drain has begun (the one client is closed within its 600 s, not now).
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.terminate();
    let status = run.wait().await;
    assert_eq!(status.code(), Some(130), "{status:?}");
}

/// Values no deployment means are refused at start: a drain over an hour, a JWT leeway over a
/// day, a heartbeat timeout shorter than the sweep that applies it.
#[tokio::test]
async fn out_of_range_settings_are_refused() {
    for (args, says) in [
        (&["--drain-secs", "3601"][..], "drain-secs"),
        (&["--jwt-leeway-secs", "4000000000"][..], "jwt-leeway-secs"),
        (
            &[
                "--heartbeat-interval-ms",
                "8000",
                "--heartbeat-timeout-ms",
                "1000",
            ][..],
            "heartbeat_timeout",
        ),
        (&["--room-key-messages", "0"][..], "room-key-messages"),
    ] {
        let mut all = vec!["--dev", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let err = serve_fails(&all).await;
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A SIGHUP (`systemctl reload`, a closed terminal) has nothing to reload without TLS: the
/// server goes on serving, and still stops cleanly on SIGTERM.
#[tokio::test]
async fn sighup_without_tls_does_not_stop_the_server() {
    let running = serve(&["--dev", "--listen", "127.0.0.1:0"]).await;
    let health = format!("http://{}/socket/health", running.addr());
    running.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = reqwest::get(&health)
        .await
        .expect("still serving after SIGHUP");
    assert!(r.status().is_success(), "{}", r.status());
    running.terminate();
    assert!(running.wait().await.success());
}

/// An empty bus key (an unset variable in a template) is refused, not taken for "no
/// encryption".
#[tokio::test]
async fn an_empty_bus_key_is_refused() {
    let err = serve_fails(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--bus-key",
        "",
    ])
    .await;
    assert!(err.contains("--bus-key is empty"), "{err}");
}

/// Values that would silently switch a check off or break a door are refused at startup.
#[tokio::test]
async fn values_that_would_switch_a_check_off_are_refused() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--jwt-secret", SECRET, "--jwt-issuer", ""],
            "--jwt-issuer",
        ),
        (
            &["--jwt-secret", SECRET, "--jwt-audience", ""],
            "--jwt-audience",
        ),
        (&["--dev", "--jwt-issuer", "idp"], "cannot be used with"),
        (
            &["--dev", "--socketio-auth-timeout-ms", "0"],
            "0 is not in 1..",
        ),
        (
            &["--dev", "--history-ttl", "0"],
            "0 is not in 1..=315360000",
        ),
        (
            &["--dev", "--history-ttl", "18446744073709551615"],
            "--history-ttl",
        ),
    ];
    refused_with(&[], cases).await;
}

/// Comma-separated lists read `a, b` as `a` and `b`.
#[tokio::test]
async fn comma_separated_lists_are_trimmed() {
    let running = serve(&[
        "--dev",
        "--listen",
        "127.0.0.1:0",
        "--default-rooms",
        "ws-default, ws-notification",
    ])
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", running.addr()))
        .await
        .expect("connect");
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"event":"authenticate","data":{"token":"tim"}}"#,
    ))
    .await
    .expect("send");
    let connected = ws.next().await.expect("frame").expect("frame");
    assert!(connected.to_text().expect("text").contains("connected"));
    let api = reqwest::Client::new();
    let token = running.admin_token.clone().expect("dev admin token");
    let clients: serde_json::Value = api
        .get(format!("http://{}/socket/clients", running.addr()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("clients")
        .json()
        .await
        .expect("json");
    let rooms = &clients["clients"][0]["rooms"];
    assert!(
        rooms
            .as_array()
            .is_some_and(|r| r.contains(&serde_json::json!("ws-notification"))),
        "{clients}"
    );
    running.terminate();
    assert!(running.wait().await.success());
}

/// The demo page connects to the server's `--path`.
#[tokio::test]
async fn the_demo_page_connects_to_the_servers_path() {
    let running = serve(&["--dev", "--listen", "127.0.0.1:0", "--path", "/rt"]).await;
    let page = reqwest::get(format!("http://{}/", running.addr()))
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(page.contains(r#"const WS_PATH = "/rt";"#), "{page}");
    running.terminate();
    assert!(running.wait().await.success());
}

/// `--redis-ca-file` is checked at startup: it needs a `rediss://` URL and a PEM certificate.
#[tokio::test]
async fn a_redis_ca_file_that_cannot_apply_is_refused() {
    let dir = std::env::temp_dir().join(format!("sealwire-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "not a certificate").expect("write");
    let file = not_pem.to_str().expect("utf-8");
    let cases: &[(&[&str], &str)] = &[
        (&["--redis-ca-file", file], "--redis-url"),
        (
            &[
                "--redis-url",
                "redis://127.0.0.1:1",
                "--redis-ca-file",
                file,
            ],
            "rediss://",
        ),
        (
            &[
                "--redis-url",
                "rediss://127.0.0.1:1",
                "--redis-ca-file",
                file,
            ],
            "no PEM certificate",
        ),
    ];
    refused_with(&["--dev"], cases).await;
    let _ = std::fs::remove_dir_all(&dir);
}
