//! Built-in TLS: `wss://` and `https://` on one listener with a certificate from a private CA,
//! clients that do not trust that CA or do not speak TLS are refused, and a reload (file
//! change, SIGHUP) serves a new certificate to new connections while established ones go on.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use sealwire::transport::{HttpConfig, TlsConfig, serve_with_shutdown};

/// A private CA: its certificate (to trust) and what it needs to issue server certificates.
struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `localhost` and `127.0.0.1`: (certificate PEM, key PEM).
    fn server_pair(&self) -> (String, String) {
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }

    /// A client configuration that trusts this CA only.
    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(pem_der(
                &self.cert_pem,
            )))
            .expect("trust CA");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }
}

/// The DER of the first PEM certificate in `pem`.
fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM certificate")
        .to_vec()
}

/// Certificate and key files in a temporary directory.
struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(pair: &(String, String)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = Self {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        };
        files.write(pair);
        files
    }

    /// Replaces both files, each by a rename so that no reader sees half a file.
    fn write(&self, (cert, key): &(String, String)) {
        replace(&self.key, key);
        replace(&self.cert, cert);
    }
}

fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A TLS handshake with `addr` as `localhost`.
async fn tls(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    tokio::time::timeout(RECV_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// A WebSocket over TLS to `url`'s path.
async fn wss(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<Wss> {
    let stream = tls(addr, connector).await?;
    let url = format!("wss://localhost:{}/ws", addr.port());
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(std::io::Error::other)?;
    Ok(ws)
}

async fn recv_json(ws: &mut Wss) -> Value {
    loop {
        let msg = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).expect("JSON");
        }
    }
}

/// Authenticates as `user` and returns the `connected` event.
async fn authenticate(ws: &mut Wss, user: &str) -> Value {
    let frame = json!({"event": "authenticate", "data": {"token": user}});
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send");
    let connected = recv_json(ws).await;
    assert_eq!(connected["event"], "connected", "{connected}");
    connected
}

/// A ping answered with a pong: the connection still works.
async fn still_open(ws: &mut Wss) {
    ws.send(Message::Ping(b"alive".to_vec().into()))
        .await
        .expect("send ping");
    loop {
        let msg = tokio::time::timeout(RECV_TIMEOUT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        if let Message::Pong(p) = msg {
            assert_eq!(&p[..], b"alive");
            return;
        }
    }
}

/// `GET path` over https; the whole response as text.
async fn https_get(addr: SocketAddr, connector: &TlsConnector, path: &str) -> String {
    let mut stream = tls(addr, connector).await.expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    // A TLS peer may close without close_notify after `connection: close`; what was read counts.
    let _ = tokio::time::timeout(RECV_TIMEOUT, stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// Starts a server with built-in TLS through the library API.
async fn start_tls(tls: TlsConfig) -> (sealwire::server::Server, SocketAddr) {
    start_tls_with(tls, HttpConfig::default()).await
}

/// As [`start_tls`], with the accept loop's limits from `http`.
async fn start_tls_with(
    tls: TlsConfig,
    mut http: HttpConfig,
) -> (sealwire::server::Server, SocketAddr) {
    let server = builder(base_config()).build().expect("server");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    http.tls = Some(tls);
    let s = server.clone();
    tokio::spawn(
        async move { serve_with_shutdown(listener, s, http, std::future::pending()).await },
    );
    wait_for(|| server.is_ready()).await;
    (server, addr)
}

/// Retries `connect` until it succeeds (a reload is picked up asynchronously).
async fn eventually(addr: SocketAddr, connector: &TlsConnector) -> Wss {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match wss(addr, connector).await {
            Ok(ws) => return ws,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "new certificate not served: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn wss_and_https_share_the_listener_and_refuse_untrusting_and_plaintext_clients() {
    let ca = Ca::new("sealwire test CA");
    let files = Files::new(&ca.server_pair());
    let tls = TlsConfig::load(&files.cert, &files.key).expect("load TLS");
    let (server, addr) = start_tls(tls).await;

    let mut ws = wss(addr, &ca.connector()).await.expect("wss connect");
    let connected = authenticate(&mut ws, "alice").await;
    assert!(connected["data"]["id"].is_string(), "{connected}");

    let health = https_get(addr, &ca.connector(), "/socket/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // A client that trusts another CA refuses the server's certificate.
    let other = Ca::new("another CA");
    assert!(wss(addr, &other.connector()).await.is_err());

    // Plaintext WebSocket and HTTP clients get no answer from the TLS port.
    let plain = format!("ws://{addr}/ws");
    assert!(tokio_tungstenite::connect_async(plain).await.is_err());
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /socket/health HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(RECV_TIMEOUT, tcp.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "plaintext request was served"
    );

    // The first connection is unaffected by the failed ones.
    still_open(&mut ws).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_changed_certificate_is_served_to_new_connections_and_a_bad_one_is_ignored() {
    let first = Ca::new("first CA");
    let files = Files::new(&first.server_pair());
    let tls = TlsConfig::load(&files.cert, &files.key)
        .expect("load TLS")
        .reload_interval(Some(Duration::from_millis(100)));
    let (server, addr) = start_tls(tls.clone()).await;
    let mut established = wss(addr, &first.connector()).await.expect("wss connect");
    authenticate(&mut established, "alice").await;

    // A broken certificate file: the reload fails and the old certificate stays.
    replace(&files.cert, "not a certificate");
    let err = tls.reload().expect_err("a bad certificate is refused");
    assert!(err.to_string().contains("cert.pem"), "{err}");
    let mut again = wss(addr, &first.connector())
        .await
        .expect("old certificate still served");
    authenticate(&mut again, "bob").await;

    // A certificate from a second CA, picked up by the file watch.
    let second = Ca::new("second CA");
    files.write(&second.server_pair());
    let mut renewed = eventually(addr, &second.connector()).await;
    authenticate(&mut renewed, "carol").await;
    assert!(wss(addr, &first.connector()).await.is_err());

    still_open(&mut established).await;
    still_open(&mut again).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_handshake_holds_a_connection_place_only_until_the_header_timeout() {
    let ca = Ca::new("CA");
    let files = Files::new(&ca.server_pair());
    let tls = TlsConfig::load(&files.cert, &files.key).expect("load TLS");
    let mut http = HttpConfig::default();
    http.header_read_timeout = Duration::from_millis(300);
    http.max_tcp_connections = 1;
    let (server, addr) = start_tls_with(tls, http).await;

    // Takes the only HTTP connection place and never sends a ClientHello.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    // Accepted once the stalled handshake has been given up.
    let mut ws = wss(addr, &ca.connector()).await.expect("wss connect");
    authenticate(&mut ws, "alice").await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(RECV_TIMEOUT, stalled.read(&mut buf))
        .await
        .expect("stalled connection closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the server answered a client that sent nothing");
    server.shutdown().await;
}

#[test]
fn loading_fails_on_missing_files_and_keys_of_other_certificates() {
    let ca = Ca::new("CA");
    let files = Files::new(&ca.server_pair());
    let missing = files.cert.with_file_name("missing.pem");
    let err = TlsConfig::load(&missing, &files.key).expect_err("missing certificate");
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let (cert, key) = ca.server_pair();
    let (_, other_key) = ca.server_pair();
    replace(&files.key, &other_key);
    let err = TlsConfig::load(&files.cert, &files.key).expect_err("mismatched key");
    assert!(err.to_string().contains("does not fit"), "{err}");

    // Files that are not what they should be are described, not dumped as bytes.
    replace(&files.key, &key);
    replace(&files.cert, &cert[..cert.len() / 2]);
    let err = TlsConfig::load(&files.cert, &files.key).expect_err("truncated certificate");
    assert!(err.to_string().contains("truncated"), "{err}");
    replace(&files.cert, &cert);
    replace(
        &files.key,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let err = TlsConfig::load(&files.cert, &files.key).expect_err("encrypted key");
    assert!(
        err.to_string().contains("encrypted key is not supported"),
        "{err}"
    );
}

fn sealwire() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sealwire"));
    for var in [
        "SEALWIRE_LISTEN",
        "SEALWIRE_PATH",
        "SEALWIRE_ADMIN_TOKEN",
        "SEALWIRE_JWT_SECRET",
        "SEALWIRE_TLS_CERT",
        "SEALWIRE_TLS_KEY",
        "REDIS_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_LOG", "warn").kill_on_drop(true);
    cmd
}

fn signal(pid: u32, sig: &str) {
    // The shell's built-in `kill`: no extra package needed.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -{sig} {pid}")])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[cfg(unix)]
#[tokio::test]
async fn the_binary_serves_wss_and_reloads_on_sighup() {
    let first = Ca::new("first CA");
    let files = Files::new(&first.server_pair());
    let cert = files.cert.to_str().expect("utf-8 path");
    let key = files.key.to_str().expect("utf-8 path");
    let mut child = sealwire()
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(["--tls-cert", cert, "--tls-key", key])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sealwire");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("sealwire printed its address in time")
            .expect("read stdout")
            .expect("sealwire exited before listening");
        if let Some(url) = line.strip_prefix("sealwire listening on ") {
            break url.trim().to_owned();
        }
    };
    let rest = url.strip_prefix("wss://").expect("a wss:// URL");
    let addr: SocketAddr = rest
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("address in the URL");

    let mut established = wss(addr, &first.connector()).await.expect("wss connect");
    authenticate(&mut established, "alice").await;

    let second = Ca::new("second CA");
    files.write(&second.server_pair());
    let pid = child.id().expect("running");
    signal(pid, "HUP");
    let mut renewed = eventually(addr, &second.connector()).await;
    authenticate(&mut renewed, "bob").await;
    still_open(&mut established).await;

    signal(pid, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited in time")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_binary_refuses_bad_tls_files_and_a_lone_flag() {
    let ca = Ca::new("CA");
    let files = Files::new(&ca.server_pair());
    let dir = files.cert.parent().expect("dir").to_path_buf();
    let missing = dir.join("missing.pem");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM").expect("write");
    let cert = files.cert.to_str().expect("utf-8");
    let key = files.key.to_str().expect("utf-8");
    for (args, expected) in [
        (
            vec![
                "--tls-cert",
                missing.to_str().expect("utf-8"),
                "--tls-key",
                key,
            ],
            "missing.pem",
        ),
        (
            vec![
                "--tls-cert",
                garbage.to_str().expect("utf-8"),
                "--tls-key",
                key,
            ],
            "garbage.pem",
        ),
        (vec!["--tls-cert", cert], "--tls-key"),
    ] {
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            sealwire()
                .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
                .args(&args)
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .expect("exited in time")
        .expect("run sealwire");
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
