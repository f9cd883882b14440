//! A TCP proxy in front of Redis that delays what Redis sends on pub/sub connections (those
//! that sent a `SUBSCRIBE` or `PSUBSCRIBE`), by a fixed time, in order: an instance behind it
//! has its subscriptions confirmed, and its bus messages delivered, late, while its commands
//! (publications, history reads) go through at once.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub struct SlowPubSub {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl SlowPubSub {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                if let Ok(up) = TcpStream::connect(upstream).await {
                    tokio::spawn(link(down, up, delay));
                }
            }
        });
        Self { addr, accept }
    }

    /// The Redis URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }
}

impl Drop for SlowPubSub {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn link(down: TcpStream, up: TcpStream, delay: Duration) {
    let (mut down_r, mut down_w) = down.into_split();
    let (mut up_r, mut up_w) = up.into_split();
    let pubsub = Arc::new(AtomicBool::new(false));
    let marks = Arc::clone(&pubsub);
    let requests = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = down_r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if buf[..n]
                .windows(b"SUBSCRIBE".len())
                .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                marks.store(true, Ordering::SeqCst);
            }
            if up_w.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let replies = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = up_r.read(&mut buf).await {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    while let Some((at, bytes)) = rx.recv().await {
        if pubsub.load(Ordering::SeqCst) {
            tokio::time::sleep_until(at + delay).await;
        }
        if down_w.write_all(&bytes).await.is_err() {
            break;
        }
    }
    requests.abort();
    replies.abort();
}
