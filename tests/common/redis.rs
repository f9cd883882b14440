//! A private `redis-server` per test on a free loopback port (never 6379), which a test can
//! kill and restart on the same port, plus raw Redis helpers.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::RECV_TIMEOUT;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
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
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
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
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("client")
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
