//! Fan-out of one message to N in-process recipients, plaintext vs encrypted.
//!
//! Each recipient is a real connection actor (`Server::serve_socket`) over an in-memory
//! `FrameSocket` that counts the frames it is handed, so the figure covers the
//! registry lookup, the shared frame, the outbox, per-connection sealing and the write path,
//! but no kernel socket.
//!
//! ```text
//! cargo bench --bench fanout
//! ```

use sealwire::publish::Publish;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{Sink, Stream};
use sealwire::crypto::{ClientHandshake, HandshakeConfig};
use sealwire::protocol::Text;
use sealwire::server::{
    AuthRequest, FrameSocket, Identity, Incoming, Outgoing, Server, SocketError,
};
use serde_json::json;
use tokio::sync::{Notify, mpsc};

struct Counter {
    frames: AtomicU64,
    target: AtomicU64,
    done: Notify,
}

/// One end of an in-memory socket: inbound frames from a channel, outbound frames counted.
struct Duplex {
    inbound: mpsc::UnboundedReceiver<Incoming>,
    counter: Arc<Counter>,
}

impl Stream for Duplex {
    type Item = Result<Incoming, SocketError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inbound.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Outgoing> for Duplex {
    type Error = SocketError;
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        Poll::Ready(Ok(()))
    }
    fn start_send(self: Pin<&mut Self>, item: Outgoing) -> Result<(), SocketError> {
        if let Outgoing::Text(t) = item {
            std::hint::black_box(t);
            let n = self.counter.frames.fetch_add(1, Ordering::AcqRel) + 1;
            if n == self.counter.target.load(Ordering::Acquire) {
                self.counter.done.notify_one();
            }
        }
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        Poll::Ready(Ok(()))
    }
}

impl FrameSocket for Duplex {}

struct Setup {
    server: Server,
    counter: Arc<Counter>,
    _senders: Vec<mpsc::UnboundedSender<Incoming>>,
}

async fn setup(n: usize, encrypted: bool) -> Setup {
    let server = Server::builder()
        .authenticate(|r: AuthRequest| async move { Ok(r.token.map(Identity::new)) })
        .build()
        .expect("server");
    server.start().await.expect("start");
    let counter = Arc::new(Counter {
        frames: AtomicU64::new(0),
        target: AtomicU64::new(u64::MAX),
        done: Notify::new(),
    });
    let mut senders = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut auth = json!({"token": format!("u{i}")});
        if encrypted {
            let hs = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
            auth["publicKey"] = json!(hs.public_key_base64());
        }
        tx.send(Incoming::Text(Text::from(
            json!({"event": "authenticate", "data": auth}).to_string(),
        )))
        .expect("queue auth");
        let duplex = Duplex {
            inbound: rx,
            counter: Arc::clone(&counter),
        };
        let s = server.clone();
        tokio::spawn(async move { s.serve_socket(duplex, None).await });
        senders.push(tx);
    }
    while server.counts().authenticated < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Setup {
        server,
        counter,
        _senders: senders,
    }
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let payload = json!({"s": 1, "t": 0, "p": "x".repeat(160)});
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20);
    for n in [100usize, 1000] {
        for encrypted in [false, true] {
            let s = rt.block_on(setup(n, encrypted));
            let name = if encrypted { "encrypted" } else { "plaintext" };
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let before = s.counter.frames.load(Ordering::Acquire);
                            s.counter.target.store(before + n as u64, Ordering::Release);
                            let notified = s.counter.done.notified();
                            s.server
                                .to_all()
                                .emit("bench", &payload)
                                .await
                                .expect("send");
                            // Exactly one notification per message: the frame that hits the target.
                            notified.await;
                        }
                        start.elapsed()
                    })
                });
            });
            rt.block_on(s.server.shutdown());
        }
    }
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
