//! The accept loop. Unlike `axum::serve` it bounds how long a client may take to send its
//! request headers (slowloris), caps concurrent HTTP connections, and shuts down in order:
//! stop accepting, close every WebSocket with 1001, then wait for HTTP connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::server::Server;

/// HTTP-level limits of the accept loop.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Time a client has to send complete request headers. Defaults to 10 s.
    pub header_read_timeout: Duration,
    /// Most concurrent HTTP connections still speaking HTTP (upgraded WebSockets are limited by
    /// `ServerConfig::max_connections` instead). Defaults to 200,000.
    pub max_tcp_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_tcp_connections: 200_000,
        }
    }
}

/// Accept-queue length requested by [`bind`] (the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 8192;

/// Binds a listener with a deep accept queue. `TcpListener::bind` asks for a backlog of 128,
/// which a connect storm overflows; every dropped SYN then costs the client a 1 s retransmit.
///
/// # Errors
/// The I/O error of creating, binding or listening on the socket.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_inner(addr, false)
}

/// Like [`bind`], with `SO_REUSEPORT`: several server processes on one host can listen on the
/// same address and the kernel spreads new connections across them. Each process holds its
/// own clients, so they must share a bus (Redis) for messages to reach every client.
///
/// # Errors
/// As [`bind`].
pub fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_inner(addr, true)
}

fn bind_inner(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves until [`Server::shutdown`] is called.
///
/// # Errors
/// An I/O error if the bus cannot start.
pub async fn serve(listener: TcpListener, server: Server) -> std::io::Result<()> {
    serve_with_shutdown(
        listener,
        server,
        HttpConfig::default(),
        std::future::pending(),
    )
    .await
}

/// Serves until `signal` resolves or [`Server::shutdown`] is called, then shuts down
/// gracefully (every WebSocket gets close 1001).
///
/// # Errors
/// An I/O error if the bus cannot start.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    server: Server,
    http: HttpConfig,
    signal: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    server.start().await.map_err(std::io::Error::other)?;
    let app = super::router(server.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout);
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(http.max_tcp_connections));
    let connections = TaskTracker::new();
    let stopping = server.shutdown_started();
    tokio::pin!(signal);
    tokio::pin!(stopping);
    loop {
        let permit = tokio::select! {
            () = &mut signal => break,
            () = &mut stopping => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, addr) = tokio::select! {
            () = &mut signal => break,
            () = &mut stopping => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = tower::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let builder = Arc::clone(&builder);
        let stop = server.shutdown_started();
        connections.spawn(async move {
            let _permit = permit;
            let conn = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "http connection error");
                    }
                }
                () = stop => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
    drop(listener);
    server.shutdown().await;
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), connections.wait()).await;
    Ok(())
}
