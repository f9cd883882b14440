//! A private `redis-server` per test on a free loopback port (never 6379), which a test can
//! kill and restart on the same port, plus raw Redis helpers.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::RECV_TIMEOUT;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Extra `redis-server` arguments (TLS, ACL users).
    args: Vec<String>,
    /// PEM of the CA that signed the TLS certificate, when TLS is on.
    pub tls_ca: Option<Vec<u8>>,
    /// `user:password@` for the URL, when an ACL user is configured.
    creds: Option<String>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A port with nothing listening on it.
pub fn dead_port() -> u16 {
    free_port()
}

impl RedisServer {
    /// Spawns `redis-server` (no persistence) and waits until it answers PING.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self {
            port: free_port(),
            child: None,
            dir,
            args: Vec::new(),
            tls_ca: None,
            creds: None,
        };
        s.spawn().await;
        s
    }

    /// TLS only (a fresh CA and a certificate for 127.0.0.1 made with `openssl`) and an ACL
    /// user `user` with `password`; the default user is disabled.
    pub async fn start_tls_acl(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
        std::fs::write(p("ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let steps: Vec<Vec<String>> = vec![
            [
                &["req", "-x509"][..],
                &ec[..],
                &[
                    "-keyout",
                    &p("ca.key"),
                    "-out",
                    &p("ca.crt"),
                    "-days",
                    "2",
                    "-subj",
                    "/CN=sealwire-test-ca",
                ][..],
            ]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect(),
            [
                &["req"][..],
                &ec[..],
                &[
                    "-keyout",
                    &p("server.key"),
                    "-out",
                    &p("server.csr"),
                    "-subj",
                    "/CN=127.0.0.1",
                ][..],
            ]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .collect(),
            [
                "x509",
                "-req",
                "-in",
                &p("server.csr"),
                "-CA",
                &p("ca.crt"),
                "-CAkey",
                &p("ca.key"),
                "-CAcreateserial",
                "-out",
                &p("server.crt"),
                "-days",
                "2",
                "-extfile",
                &p("ext"),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ];
        for args in steps {
            let ok = Command::new("openssl")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl must be installed for the TLS test");
            assert!(ok.success(), "openssl {args:?} failed");
        }
        let port = free_port();
        let args = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            p("server.crt"),
            "--tls-key-file".into(),
            p("server.key"),
            "--tls-ca-cert-file".into(),
            p("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--user".into(),
            "default".into(),
            "off".into(),
            "--user".into(),
            user.into(),
            "on".into(),
            format!(">{password}"),
            "~*".into(),
            "&*".into(),
            "+@all".into(),
        ];
        let mut s = Self {
            port,
            child: None,
            tls_ca: Some(std::fs::read(p("ca.crt")).expect("ca")),
            creds: Some(format!("{user}:{password}@")),
            dir,
            args,
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let base: Vec<&str> = if self.args.is_empty() {
            vec!["--port", &port]
        } else {
            self.args.iter().map(String::as_str).collect()
        };
        let child = Command::new("redis-server")
            .args(&base)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            if let Ok(mut c) = self.client().get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let creds = self.creds.as_deref().unwrap_or("");
        format!("{scheme}://{creds}127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        match &self.tls_ca {
            None => redis::Client::open(self.url()).expect("client"),
            Some(ca) => {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                redis::Client::build_with_tls(
                    self.url(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.clone()),
                    },
                )
                .expect("tls client")
            }
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered, nothing is
    /// lost. [`RedisServer::resume`] thaws it.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -{name} {pid}")])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// `PUBLISH channel payload`; returns the receiver count.
    pub async fn publish(&self, channel: &str, payload: &str) -> usize {
        let mut c = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut c)
            .await
            .expect("publish")
    }

    /// `PUBSUB NUMSUB channel`.
    pub async fn numsub(&self, channel: &str) -> usize {
        let mut c = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let v: (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut c)
            .await
            .expect("numsub");
        v.1
    }

    /// `PUBSUB NUMPAT`.
    pub async fn numpat(&self) -> usize {
        let mut c = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        redis::cmd("PUBSUB")
            .arg("NUMPAT")
            .query_async(&mut c)
            .await
            .expect("numpat")
    }

    /// Waits until `channel` has exactly `n` subscribers.
    pub async fn wait_numsub(&self, channel: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + RECV_TIMEOUT;
        loop {
            let got = self.numsub(channel).await;
            if got == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel}: {got} subscribers, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A raw pub/sub connection subscribed to `channels`.
    pub async fn subscribe(&self, channels: &[&str]) -> redis::aio::PubSub {
        let mut ps = self.client().get_async_pubsub().await.expect("pubsub");
        for ch in channels {
            ps.subscribe(*ch).await.expect("subscribe");
        }
        ps
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Next message on a raw pub/sub connection as (channel, payload), failing after the timeout.
pub async fn next_message(ps: &mut redis::aio::PubSub) -> (String, String) {
    use futures_util::StreamExt;
    let msg = tokio::time::timeout(RECV_TIMEOUT, ps.on_message().next())
        .await
        .expect("timed out waiting for a Redis message")
        .expect("pubsub stream ended");
    (
        msg.get_channel_name().to_owned(),
        String::from_utf8(msg.get_payload_bytes().to_vec()).expect("utf-8"),
    )
}
