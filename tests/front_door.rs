//! One front door: the accept loop's own upgrade path and the hyper/axum path (the router
//! mounted in an application's own `axum::serve`) give the same answer to the same raw request,
//! and the authenticate hook sees the upgrade request on both.

mod common;

use std::net::SocketAddr;

use common::*;
use sealwire::server::{AuthRequest, HookError, Identity, Server, ServerBuilder};
use sealwire::transport::HttpConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ORIGIN: &str = "https://app.example";

/// The same server served by its application's own `axum::serve`: every upgrade there goes
/// through hyper and the router.
struct Embedded {
    server: Server,
    addr: SocketAddr,
}

impl Embedded {
    async fn start(builder: ServerBuilder, http: HttpConfig) -> Self {
        let server = builder.build().expect("valid server config");
        server.start().await.expect("start");
        let app = sealwire::transport::router(server.clone(), &http);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = server.clone();
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { stop.shutdown_started().await })
            .await;
        });
        Self { server, addr }
    }

    async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// The test door with an origin allowlist.
fn with_origins() -> HttpConfig {
    let mut http = test_http();
    http.allowed_origins = vec![ORIGIN.to_owned(), "http://localhost:3000".to_owned()];
    http
}

/// An acceptable upgrade head (with `Origin` set to [`ORIGIN`]) edited by `lines`: a line
/// `~Name: value` replaces the header of that name, `~Name:` removes it, any other line is
/// appended.
fn head(request_line: &str, lines: &[&str]) -> String {
    let mut headers: Vec<String> = [
        "Host: 127.0.0.1".to_owned(),
        "Connection: Upgrade".to_owned(),
        "Upgrade: websocket".to_owned(),
        "Sec-WebSocket-Version: 13".to_owned(),
        format!("Sec-WebSocket-Key: {KEY}"),
        format!("Origin: {ORIGIN}"),
    ]
    .into();
    for line in lines {
        let replaced = line.strip_prefix('~');
        match replaced.and_then(|l| l.split_once(':')) {
            Some((name, value)) => {
                headers.retain(|h| {
                    !h.to_ascii_lowercase()
                        .starts_with(&format!("{}:", name.to_ascii_lowercase()))
                });
                if !value.trim().is_empty() {
                    headers.push(format!("{name}:{value}"));
                }
            }
            None => headers.push((*line).to_owned()),
        }
    }
    let mut out = format!("{request_line}\r\n");
    for h in headers {
        out.push_str(&h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out
}

fn get(lines: &[&str]) -> String {
    head("GET /ws HTTP/1.1", lines)
}

/// The corpus: a name, the raw bytes and the status both paths must answer.
fn corpus() -> Vec<(&'static str, String, u16)> {
    let bare_lf_everywhere = get(&[]).replace("\r\n", "\n");
    let mut many = Vec::new();
    for i in 0..80 {
        many.push(format!("X-Filler-{i}: {i}"));
    }
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    vec![
        ("plain upgrade", get(&[]), 101),
        (
            "query string",
            head("GET /ws?room=a&x=1 HTTP/1.1", &[]),
            101,
        ),
        (
            "connection list",
            get(&["~Connection: keep-alive, Upgrade"]),
            101,
        ),
        (
            "upper-case tokens",
            get(&["~Connection: UPGRADE", "~Upgrade: WebSocket"]),
            101,
        ),
        ("upgrade list", get(&["~Upgrade: foo/1, websocket"]), 101),
        (
            "second listed origin",
            get(&["~Origin: http://localhost:3000"]),
            101,
        ),
        (
            "origin in another case",
            get(&["~Origin: HTTPS://App.Example"]),
            101,
        ),
        ("content-length 0", get(&["Content-Length: 0"]), 101),
        ("more headers than the accept loop parses", get(&many), 101),
        (
            "lower-case header names",
            get(&[])
                .to_ascii_lowercase()
                .replace("get /ws http/1.1", "GET /ws HTTP/1.1")
                .replace(&KEY.to_ascii_lowercase(), KEY)
                .replace("https://app.example", ORIGIN),
            101,
        ),
        ("HEAD", head("HEAD /ws HTTP/1.1", &[]), 405),
        (
            "POST",
            head("POST /ws HTTP/1.1", &["Content-Length: 0"]),
            405,
        ),
        ("PUT", head("PUT /ws HTTP/1.1", &["Content-Length: 0"]), 405),
        ("OPTIONS", head("OPTIONS /ws HTTP/1.1", &[]), 405),
        ("DELETE", head("DELETE /ws HTTP/1.1", &[]), 405),
        ("HTTP/1.0", head("GET /ws HTTP/1.0", &[]), 400),
        ("no Host", get(&["~Host:"]), 400),
        ("two Hosts", get(&["Host: other"]), 400),
        (
            "content-length 5",
            format!("{}hello", get(&["Content-Length: 5"])),
            400,
        ),
        (
            "two content-lengths of 0",
            get(&["Content-Length: 0", "Content-Length: 0"]),
            101,
        ),
        ("content-length list", get(&["Content-Length: 0, 0"]), 400),
        (
            "content-lengths 0 and 5",
            format!("{}hello", get(&["Content-Length: 0", "Content-Length: 5"])),
            400,
        ),
        (
            "chunked body",
            format!(
                "{}5\r\nhello\r\n0\r\n\r\n",
                get(&["Transfer-Encoding: chunked"])
            ),
            400,
        ),
        ("no Upgrade", get(&["~Upgrade:"]), 400),
        ("no Connection", get(&["~Connection:"]), 400),
        (
            "Connection without upgrade",
            get(&["~Connection: keep-alive"]),
            400,
        ),
        ("Upgrade to h2c", get(&["~Upgrade: h2c"]), 400),
        (
            "token as a substring only",
            get(&["~Connection: upgraded"]),
            400,
        ),
        ("version 8", get(&["~Sec-WebSocket-Version: 8"]), 426),
        ("no version", get(&["~Sec-WebSocket-Version:"]), 426),
        ("two versions", get(&["Sec-WebSocket-Version: 13"]), 426),
        ("version list", get(&["~Sec-WebSocket-Version: 13, 8"]), 426),
        ("no key", get(&["~Sec-WebSocket-Key:"]), 400),
        (
            "two keys",
            get(&["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="]),
            400,
        ),
        (
            "key of 5 bytes",
            get(&["~Sec-WebSocket-Key: aGVsbG8="]),
            400,
        ),
        (
            "key of 17 bytes",
            get(&["~Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="]),
            400,
        ),
        (
            "key not base64",
            get(&["~Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="]),
            400,
        ),
        (
            "key with non-canonical padding bits",
            get(&["~Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=="]),
            400,
        ),
        ("no Origin", get(&["~Origin:"]), 403),
        (
            "foreign Origin",
            get(&["~Origin: https://evil.example"]),
            403,
        ),
        (
            "Origin with a path",
            get(&["~Origin: https://app.example/"]),
            403,
        ),
        ("two Origins", get(&[&format!("Origin: {ORIGIN}")]), 403),
        ("null Origin", get(&["~Origin: null"]), 403),
        (
            "method refused before the rest",
            head("POST /ws HTTP/1.0", &["~Sec-WebSocket-Version: 7"]),
            405,
        ),
        (
            "version refused before the key",
            get(&["~Sec-WebSocket-Version: 7", "~Sec-WebSocket-Key:"]),
            426,
        ),
        ("another path", head("GET /elsewhere HTTP/1.1", &[]), 404),
        (
            "trailing slash is another path",
            head("GET /ws/ HTTP/1.1", &[]),
            404,
        ),
        ("no colon in a header", get(&["Broken header line"]), 400),
        ("not HTTP", "HELLO\r\n\r\n".to_owned(), 400),
        ("bare CR", get(&[]).replacen("\r\n", "\r", 1), 400),
        // Bare LF: the accept loop refuses it; hyper accepts it (see DIVERGENT).
        ("bare LF everywhere", bare_lf_everywhere, 400),
        (
            "one bare LF",
            get(&[]).replacen("Upgrade\r\n", "Upgrade\n", 1),
            400,
        ),
    ]
}

/// Requests only the accept loop can refuse: line endings are invisible past hyper's parser,
/// which accepts bare LF. The embedded router answers these with 101.
const DIVERGENT: &[&str] = &["bare LF everywhere", "one bare LF"];

/// Sends `request` on a fresh connection and returns the status code of the first response.
async fn status_of(addr: SocketAddr, request: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..end]).into_owned();
            let code = line.split(' ').nth(1).unwrap_or_default();
            return code
                .parse()
                .unwrap_or_else(|_| panic!("status line {line:?}"));
        }
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout(RECV_TIMEOUT, tcp.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed without a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn both_upgrade_paths_answer_every_request_alike() {
    let fast = start_with_http(builder(base_config()), with_origins()).await;
    let embedded = Embedded::start(builder(base_config()), with_origins()).await;
    let corpus = corpus();
    assert!(corpus.len() >= 50, "corpus of {}", corpus.len());
    let mut mismatches = Vec::new();
    for (name, request, want) in &corpus {
        let from_fast = status_of(fast.addr, request).await;
        let from_embedded = status_of(embedded.addr, request).await;
        let want_embedded = if DIVERGENT.contains(name) { 101 } else { *want };
        if from_fast != *want || from_embedded != want_embedded {
            mismatches.push(format!(
                "{name}: accept loop {from_fast}, embedded router {from_embedded}, expected {want}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    fast.stop().await;
    embedded.stop().await;
}

#[tokio::test]
async fn without_an_allowlist_any_origin_or_none_is_accepted() {
    let fast = start(base_config()).await;
    let embedded = Embedded::start(builder(base_config()), test_http()).await;
    for request in [
        get(&["~Origin:"]),
        get(&["~Origin: https://anything.example"]),
    ] {
        assert_eq!(status_of(fast.addr, &request).await, 101, "{request}");
        assert_eq!(status_of(embedded.addr, &request).await, 101, "{request}");
    }
    fast.stop().await;
    embedded.stop().await;
}

#[tokio::test]
async fn refusals_carry_the_headers_their_status_calls_for() {
    let fast = start_with_http(builder(base_config()), with_origins()).await;
    let embedded = Embedded::start(builder(base_config()), with_origins()).await;
    for addr in [fast.addr, embedded.addr] {
        let head = response_head(addr, &get(&["~Sec-WebSocket-Version: 8"])).await;
        assert!(head.contains("sec-websocket-version: 13"), "{head}");
        let head = response_head(addr, &head_of_method("PUT")).await;
        assert!(head.contains("allow: get"), "{head}");
    }
    fast.stop().await;
    embedded.stop().await;
}

fn head_of_method(method: &str) -> String {
    head(&format!("{method} /ws HTTP/1.1"), &["Content-Length: 0"])
}

/// The lower-cased response head of `request`.
async fn response_head(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        }
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout(RECV_TIMEOUT, tcp.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed without a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Accepts only connections whose upgrade request carried a `session` cookie; the user id is
/// the cookie's value, and the query string and peer address go into the metadata.
fn cookie_auth(
    req: AuthRequest,
) -> futures_util::future::Ready<Result<Option<Identity>, HookError>> {
    let identity = req.upgrade.as_ref().and_then(|up| {
        let user = up.cookie("session")?;
        Some(Identity {
            user_id: user.to_owned(),
            metadata: json!({
                "query": up.query(),
                "origin": up.headers.get("origin").and_then(|v| v.to_str().ok()),
                "loopback": req.remote_addr.is_some_and(|a| a.ip().is_loopback()),
                // The connection kept no reference: the hook's is the only one.
                "references": std::sync::Arc::strong_count(up),
            }),
            expires_at: None,
        })
    });
    futures_util::future::ready(Ok(identity))
}

async fn connect_with(addr: SocketAddr, cookie: Option<&str>) -> WsClient {
    let mut request = format!("ws://{addr}/ws?room=lobby")
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_static(ORIGIN));
    if let Some(c) = cookie {
        request
            .headers_mut()
            .insert("cookie", HeaderValue::from_str(c).expect("cookie"));
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    WsClient {
        ws,
        session: None,
        id: None,
    }
}

#[tokio::test]
async fn the_authenticate_hook_sees_the_upgrade_request_on_both_paths() {
    let hook_builder = || {
        Server::builder()
            .config(base_config())
            .authenticate(cookie_auth)
    };
    let mut http = test_http();
    http.allowed_origins = vec![ORIGIN.to_owned()];
    let fast = start_with_http(hook_builder(), http.clone()).await;
    let embedded = Embedded::start(hook_builder(), http).await;
    for (addr, server) in [(fast.addr, &fast.server), (embedded.addr, &embedded.server)] {
        let mut carol = connect_with(addr, Some("theme=dark; session=carol")).await;
        carol
            .send_json(&json!({"event": "authenticate", "data": {}}))
            .await;
        let connected = carol.recv_json().await;
        assert_eq!(connected["event"], "connected", "{connected}");
        assert_eq!(connected["data"]["userId"], "carol");
        let id = connected["data"]["id"].as_str().expect("client id");
        let info = server.client_info(id).expect("authenticated");
        assert_eq!(
            info.metadata,
            json!({"query": "room=lobby", "origin": ORIGIN, "loopback": true, "references": 1})
        );

        let mut anonymous = connect_with(addr, None).await;
        anonymous
            .send_json(&json!({"event": "authenticate", "data": {"token": "anything"}}))
            .await;
        let refused = anonymous.recv_json().await;
        assert_eq!(refused["event"], "error", "{refused}");
        assert_eq!(anonymous.expect_close().await, Some(4003));
    }
    fast.stop().await;
    embedded.stop().await;
}
