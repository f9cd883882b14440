//! A TCP proxy in front of Redis that delays what Redis sends on pub/sub connections (those
//! that sent a `SUBSCRIBE` or `PSUBSCRIBE`), by a fixed time, in order: an instance behind it
//! has its subscriptions confirmed, and its bus messages delivered, late, while its commands
//! (publications, history reads) go through at once. [`SlowPubSub::slow_requests`] delays
//! the other way instead: what the instance sends on its pub/sub connection (its
//! `SUBSCRIBE`s reach Redis late).
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
        Self::proxy(upstream, delay, false).await
    }

    /// As [`SlowPubSub::start`], delaying what is sent to Redis on pub/sub connections
    /// (from the first `SUBSCRIBE` on) instead of what Redis sends back.
    pub async fn slow_requests(upstream: SocketAddr, delay: Duration) -> Self {
        Self::proxy(upstream, delay, true).await
    }

    async fn proxy(upstream: SocketAddr, delay: Duration, requests: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accept = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                if let Ok(up) = TcpStream::connect(upstream).await {
                    tokio::spawn(link(down, up, delay, requests));
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

async fn link(down: TcpStream, up: TcpStream, delay: Duration, requests: bool) {
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    let pubsub = Arc::new(AtomicBool::new(false));
    let (to_redis, from_redis) = if requests {
        (delay, Duration::ZERO)
    } else {
        (Duration::ZERO, delay)
    };
    let upward = tokio::spawn(pipe(down_r, up_w, to_redis, Arc::clone(&pubsub), true));
    pipe(up_r, down_w, from_redis, pubsub, false).await;
    upward.abort();
}

/// Copies `from` to `to`, each chunk `delay` after it was read once the connection is a
/// pub/sub one; the side that carries requests (`marks`) is the one that finds that out.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    pubsub: Arc<AtomicBool>,
    marks: bool,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let marking = Arc::clone(&pubsub);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if marks
                && buf[..n]
                    .windows(b"SUBSCRIBE".len())
                    .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                marking.store(true, Ordering::SeqCst);
            }
            if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    while let Some((at, bytes)) = rx.recv().await {
        if !delay.is_zero() && pubsub.load(Ordering::SeqCst) {
            tokio::time::sleep_until(at + delay).await;
        }
        if to.write_all(&bytes).await.is_err() {
            break;
        }
    }
    reader.abort();
}
