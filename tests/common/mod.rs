//! Shared helpers for the integration tests: a server on 127.0.0.1:0, raw WebSocket clients
//! with receive timeouts, and the client half of the handshake.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod browser;
pub mod hardened;
pub mod proxy;
#[cfg(feature = "redis")]
pub mod redis;
pub mod relay;
pub mod slow_pubsub;

use sealwire::publish::Publish;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sealwire::crypto::{ClientHandshake, HandshakeConfig, Session};
use sealwire::protocol::EncryptedPayload;
use sealwire::server::{Identity, Server, ServerBuilder, ServerConfig};
use sealwire::transport::{HttpConfig, serve_with_shutdown};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Default time any single receive may take before the test fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct TestServer {
    pub server: Server,
    pub addr: SocketAddr,
    /// The WebSocket path.
    pub path: String,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}", self.addr, self.path)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn client(&self) -> WsClient {
        WsClient::connect(&self.ws_url()).await
    }

    /// A plaintext client authenticated as `user`.
    pub async fn plain(&self, user: &str) -> (WsClient, Value) {
        let mut c = self.client().await;
        let connected = c.authenticate(user).await;
        (c, connected)
    }

    /// An encrypted client authenticated as `user`.
    pub async fn encrypted(&self, user: &str) -> (WsClient, Value) {
        let mut c = self.client().await;
        let connected = c.authenticate_encrypted(user).await;
        (c, connected)
    }

    /// Waits until the server has `n` authenticated clients.
    pub async fn wait_authenticated(&self, n: usize) {
        wait_for(|| self.server.counts().authenticated == n).await;
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// Accepts any non-empty token as the user id; `reject*` tokens are refused, `error*` tokens
/// make the hook fail, `slow:<ms>` sleeps first.
pub fn test_auth() -> impl Fn(
    sealwire::server::AuthRequest,
) -> futures_util::future::BoxFuture<
    'static,
    Result<Option<Identity>, sealwire::server::HookError>,
> + Send
+ Sync
+ 'static {
    |req| {
        Box::pin(async move {
            let token = req.token.unwrap_or_default();
            if let Some(ms) = token.strip_prefix("slow:") {
                let ms: u64 = ms.parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return Ok(Some(Identity::new(token)));
            }
            if token.is_empty() || token.starts_with("reject") {
                return Ok(None);
            }
            if token.starts_with("error") {
                return Err(sealwire::server::HookError::new("boom"));
            }
            // `ttl:<ms>:<user>`: a session of `<user>` that expires `<ms>` ms from now.
            if let Some(rest) = token.strip_prefix("ttl:")
                && let Some((ms, user)) = rest.split_once(':')
                && let Ok(ms) = ms.parse::<u64>()
            {
                let at = std::time::SystemTime::now() + Duration::from_millis(ms);
                return Ok(Some(Identity::new(user).expiring_at(at)));
            }
            Ok(Some(Identity::new(token)))
        })
    }
}

pub fn base_config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.shutdown_timeout = Duration::from_millis(300);
    c
}

/// A builder with `config`, the test authenticator and the echo message handler.
pub fn builder(config: ServerConfig) -> ServerBuilder {
    Server::builder()
        .config(config)
        .authenticate(test_auth())
        .on_message(echo_handler())
}

/// Message handler that answers every custom event to its sender with
/// `echo {event, data, wasEncrypted}`. Because a connection handles its frames in order,
/// an echo also proves every earlier frame of that client has been processed.
pub fn echo_handler()
-> impl Fn(Server, sealwire::server::InboundMessage) -> futures_util::future::BoxFuture<'static, ()>
+ Send
+ Sync
+ 'static {
    |server, msg| {
        Box::pin(async move {
            let reply =
                json!({"event": msg.event, "data": msg.data, "wasEncrypted": msg.was_encrypted});
            let _ = server.to_client(&msg.client.id).emit("echo", &reply).await;
        })
    }
}

/// The door every test server gets unless a test asks otherwise: defaults, and the admin API
/// behind [`ADMIN_TOKEN`].
pub fn test_http() -> HttpConfig {
    HttpConfig::with_admin_token(ADMIN_TOKEN)
}

/// Starts a server built from `builder` (which must have an authenticate hook) behind
/// [`test_http`].
pub async fn start_with(builder: ServerBuilder) -> TestServer {
    start_with_http(builder, test_http()).await
}

/// Starts a server built from `builder` behind the door `http`.
pub async fn start_with_http(builder: ServerBuilder, http: HttpConfig) -> TestServer {
    let server = builder.build().expect("valid server config");
    let path = http.path.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
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

/// Starts a server with the test authenticator and `config`.
pub async fn start(config: ServerConfig) -> TestServer {
    start_with(Server::builder().config(config).authenticate(test_auth())).await
}

pub async fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// As [`wait_for`], for a condition that has to be awaited.
pub async fn wait_until<F: std::future::Future<Output = bool>>(mut cond: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub session: Option<Session>,
    pub id: Option<String>,
}

/// What a receive produced.
#[derive(Debug)]
pub enum Received {
    Text(String),
    Close(Option<u16>),
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Self {
            ws,
            session: None,
            id: None,
        }
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, t: &str) {
        self.ws
            .send(Message::text(t.to_owned()))
            .await
            .expect("send");
    }

    /// Next text frame or close, skipping pings/pongs; panics after `RECV_TIMEOUT`.
    pub async fn recv(&mut self) -> Received {
        self.recv_within(RECV_TIMEOUT)
            .await
            .expect("timed out waiting for a frame")
    }

    /// As `recv`, `None` on timeout.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Received> {
        let fut = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Text(t))) => return Received::Text(t.to_string()),
                    Some(Ok(Message::Close(f))) => {
                        return Received::Close(f.map(|f| u16::from(f.code)));
                    }
                    // Only a client that agreed to binary room records gets any (recv_data).
                    Some(Ok(Message::Binary(b))) => {
                        panic!("unexpected binary message ({} bytes)", b.len())
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Received::Close(None),
                }
            }
        };
        tokio::time::timeout(limit, fut).await.ok()
    }

    /// Next text or binary message, skipping pings/pongs (panics on close, on the end of
    /// the connection and after `RECV_TIMEOUT`). [`Self::recv`] fails on a binary message:
    /// only a client that agreed to binary room records gets any, and reads them with this.
    pub async fn recv_data(&mut self) -> Message {
        let fut = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return m,
                    Some(Ok(Message::Close(f))) => panic!("expected a message, got close {f:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => panic!("expected a message, got {e}"),
                    None => panic!("expected a message, the connection ended"),
                }
            }
        };
        tokio::time::timeout(RECV_TIMEOUT, fut)
            .await
            .expect("timed out waiting for a message")
    }

    /// Next text frame as JSON (panics on close).
    pub async fn recv_json(&mut self) -> Value {
        match self.recv().await {
            Received::Text(t) => serde_json::from_str(&t).expect("server sent JSON"),
            Received::Close(c) => panic!("expected a frame, got close {c:?}"),
        }
    }

    /// Asserts that no text frame or close arrives within `limit` (a failure guard, not a
    /// timing assertion: the caller has already synchronised with the server).
    pub async fn expect_silence(&mut self, limit: Duration) {
        if let Some(r) = self.recv_within(limit).await {
            panic!("expected nothing, got {r:?}");
        }
    }

    /// Sends a custom `sync` event and waits for its echo (needs [`echo_handler`]): every
    /// frame sent before it has then been handled. Returns the application messages that
    /// arrived in between, decrypted.
    pub async fn sync(&mut self) -> Vec<Value> {
        let tag = uuid::Uuid::new_v4().to_string();
        self.emit("sync", json!(tag)).await;
        let mut before = Vec::new();
        loop {
            let m = self.recv_msg().await;
            if m["event"] == "echo" && m["data"]["event"] == "sync" && m["data"]["data"] == tag {
                return before;
            }
            before.push(m);
        }
    }

    /// Next frame must be a close; returns its code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.recv().await {
                Received::Close(c) => return c,
                Received::Text(_) => continue,
            }
        }
    }

    /// Next application message. For an encrypted client the raw frame MUST be an
    /// `encrypted` envelope (a plaintext frame fails the test); it is decrypted.
    pub async fn recv_msg(&mut self) -> Value {
        let frame = self.recv_json().await;
        self.open(frame)
    }

    pub fn open(&mut self, frame: Value) -> Value {
        match &mut self.session {
            None => frame,
            Some(session) => {
                assert_eq!(
                    frame["event"], "encrypted",
                    "plaintext frame reached an encrypted client: {frame}"
                );
                let payload: EncryptedPayload =
                    serde_json::from_value(frame["data"].clone()).expect("payload");
                let pt = session.open(&payload).expect("decrypts");
                serde_json::from_slice(&pt).expect("inner JSON")
            }
        }
    }

    /// Sends an application event, encrypted when the session is.
    pub async fn emit(&mut self, event: &str, data: Value) {
        let inner = json!({ "event": event, "data": data });
        let frame = match &mut self.session {
            None => inner,
            Some(s) => {
                let p = s.seal(inner.to_string().as_bytes()).expect("seal");
                json!({ "event": "encrypted", "data": p })
            }
        };
        self.send_json(&frame).await;
    }

    pub async fn authenticate(&mut self, token: &str) -> Value {
        self.send_json(
            &json!({"event": "authenticate", "data": {"type": "Bearer", "token": token}}),
        )
        .await;
        let connected = self.recv_json().await;
        assert_eq!(connected["event"], "connected", "{connected}");
        self.id = connected["data"]["id"].as_str().map(str::to_owned);
        connected
    }

    pub async fn authenticate_encrypted(&mut self, token: &str) -> Value {
        let hs = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
        self.send_json(&json!({"event": "authenticate", "data": {"token": token, "publicKey": hs.public_key_base64()}})).await;
        let connected = self.recv_json().await;
        assert_eq!(connected["event"], "connected", "{connected}");
        let d = &connected["data"];
        let session = hs
            .finish(
                d["serverPublicKey"].as_str().expect("serverPublicKey"),
                d["salt"].as_str().expect("salt"),
            )
            .expect("derive session");
        self.session = Some(session);
        self.id = d["id"].as_str().map(str::to_owned);
        connected
    }

    pub fn id(&self) -> String {
        self.id.clone().expect("authenticated")
    }
}
pub mod sdk;

/// The value of `series` (its name and labels, as rendered) on a metrics page; panics, with
/// the page, when it is not there.
pub fn metric_value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{page}"))
}
