//! The accept loop. Unlike `axum::serve` it bounds how long a client may take to send its
//! request headers (slowloris), caps concurrent HTTP connections, and shuts down in order:
//! refuse everything new with 503 while the drain closes every WebSocket with 1001, then stop
//! accepting and wait for HTTP connections.
//! WebSocket upgrades are answered straight off the socket ([`super::direct`]); everything
//! else goes through hyper and the router.
//!
//! With [`HttpConfig::tls`], each accepted socket first completes a TLS handshake (bounded by
//! the header-read timeout and holding its place under `max_tcp_connections` like any HTTP
//! connection), then goes straight to hyper, whose upgrade path serves WebSockets over any
//! stream. The direct path stays on bare `TcpStream`s, so plaintext connections run exactly
//! the code they did without TLS; over TLS the encryption costs far more than the HTTP layer
//! the direct path saves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use futures_util::future::Either;
use http::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::body_deadline::Deadline;
use super::closable::Closable;
use super::config::{HttpConfig, WsSettings};
use super::direct;
use super::front_door::Refusal;
use super::places::{self, PerAddress, Place};
use super::tls::TlsConfig;
use crate::server::Server;

/// Accept-queue length requested by [`bind`] (the kernel caps it at `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 8192;

/// Binds a listener with a deep accept queue. `TcpListener::bind` asks for a backlog of 128,
/// which a connect storm overflows; every dropped SYN then costs the client a 1 s retransmit.
/// The listener also has `TCP_NODELAY` set, which accepted sockets inherit (Linux, the BSDs),
/// so the accept loop need not set it on each.
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
    // Only an optimisation: the accept loop sets it per socket when it is not inherited.
    let _ = socket.set_nodelay(true);
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
/// With [`HttpConfig::tls`], the certificate files are also watched for changes while
/// serving ([`TlsConfig::reload_interval`]).
///
/// # Errors
/// An I/O error if the bus cannot start; [`std::io::ErrorKind::InvalidInput`] with the
/// [`HttpConfigError`](super::HttpConfigError) if `http` does not validate.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    server: Server,
    http: HttpConfig,
    signal: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    http.validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tls = http.tls.as_ref().map(TlsConfig::acceptor).transpose()?;
    server.start().await.map_err(std::io::Error::other)?;
    let connections = TaskTracker::new();
    let stop_accepting = CancellationToken::new();
    if let Some(config) = http.tls.clone() {
        tokio::spawn(config.watch(stop_accepting.clone()));
    }
    // The accept loop is a task of its own so that it runs on a runtime worker: the connection
    // tasks it spawns then start from that worker's local queue. Run inline on the caller's
    // thread (the main thread under `#[tokio::main]`), every accepted connection would be
    // handed over to a worker through the shared queue, and that worker woken up.
    let mut accepting = tokio::spawn(accept_loop(
        listener,
        server.clone(),
        http,
        tls,
        connections.clone(),
        stop_accepting.clone(),
    ));
    let stopping = server.shutdown_started();
    tokio::select! {
        () = signal => {}
        () = stopping => {}
        _ = &mut accepting => {}
    }
    // The listener stays open until the shutdown is over (the drain, then the last writes):
    // the clients not yet closed keep being served, also those that open a connection per
    // request (Socket.IO polling collecting its last packets), while everything new is
    // refused with 503 (the server no longer reports ready).
    server.shutdown().await;
    stop_accepting.cancel();
    // The listener is closed once the loop has returned.
    let _ = accepting.await;
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), connections.wait()).await;
    Ok(())
}

/// Accepts connections until `stop` is cancelled, one tracked task per HTTP connection.
async fn accept_loop(
    listener: TcpListener,
    server: Server,
    http: HttpConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    connections: TaskTracker,
    stop: CancellationToken,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout);
    // Validated and started by `serve_with_shutdown` already.
    let ws = http.websocket();
    let app = super::routes(server.clone(), &http, Arc::clone(&ws));
    let shared = Arc::new(Shared {
        app: match &http.routes {
            Some(routes) => app.merge(routes.clone()),
            None => app,
        }
        .layer(axum::middleware::from_fn(super::admin::api_root_not_found)),
        ws,
        builder,
        header_read_timeout: http.header_read_timeout,
        closing: stop.clone(),
        body_read_timeout: http.body_read_timeout,
        send_timeout: http.send_timeout,
    });
    let permits = Arc::new(Semaphore::new(http.max_tcp_connections));
    let per_ip = http.max_tcp_connections_per_ip.map(PerAddress::new);
    // Whether accepted sockets come with TCP_NODELAY already set (inherited from a listener
    // that has it, as `bind` sets it), learned from the first one; until then, and if they
    // do not, it is set on each, which costs a system call per connection.
    let mut nodelay_inherited = None;
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, addr) = tokio::select! {
            () = stop.cancelled() => break,
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
        let Some(place) = Place::take(permit, per_ip.as_ref(), addr.ip()) else {
            // Its address holds all of its places: a best-effort 429 (one non-blocking
            // write, without reading the request; not over TLS), then closed.
            tracing::debug!(remote = %addr, "over max_tcp_connections_per_ip; closed");
            if tls.is_none() {
                let _ = stream.try_write(places::OVER_CAP_RESPONSE);
            }
            continue;
        };
        let inherited = *nodelay_inherited.get_or_insert_with(|| stream.nodelay().unwrap_or(false));
        if !inherited {
            let _ = stream.set_nodelay(true);
        }
        match &tls {
            None => connections.spawn(connection(
                stream,
                addr,
                place,
                server.clone(),
                Arc::clone(&shared),
            )),
            Some(acceptor) => connections.spawn(tls_connection(
                stream,
                addr,
                place,
                server.clone(),
                Arc::clone(&shared),
                acceptor.clone(),
            )),
        };
    }
}

/// What every connection task of one accept loop shares.
struct Shared {
    app: axum::Router,
    /// The WebSocket endpoint's settings.
    ws: Arc<WsSettings>,
    builder: hyper::server::conn::http1::Builder,
    header_read_timeout: Duration,
    /// Cancelled when the listener closes, once the server's shutdown is over: HTTP
    /// connections are served until then (a shutdown's 503s to everything new, and the last
    /// polls of Socket.IO polling sessions, which open a connection per request), then
    /// ended gracefully.
    closing: CancellationToken,
    /// Every request body must arrive within this ([`super::body_deadline`]).
    body_read_timeout: Duration,
    /// A write may wait this long for the client to read ([`super::closable`]).
    send_timeout: Duration,
}

/// One accepted connection: a WebSocket upgrade is answered here and handed to a task of its
/// own; anything else is served over HTTP.
async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    place: Place,
    server: Server,
    shared: Arc<Shared>,
) {
    let head = {
        let read = direct::read(
            stream,
            addr,
            &server,
            &shared.ws,
            shared.header_read_timeout,
        );
        tokio::select! {
            head = read => head,
            () = shared.closing.cancelled() => return,
        }
    };
    match head {
        direct::Head::Upgraded(socket) => {
            // No longer an HTTP connection: `max_connections` bounds it from now on.
            // A task of its own, so that this one, with what only HTTP needs, ends here.
            drop(place);
            server.spawn_tracked(direct::run(
                socket,
                server.clone(),
                addr,
                Arc::clone(&shared.ws),
            ));
        }
        // Boxed: rare, and inline it would make the task of every WebSocket larger.
        direct::Head::Http(io) => {
            Box::pin(serve_http(io, None, addr, place, server, shared)).await;
        }
        direct::Head::Refused(io, refusal) => {
            Box::pin(serve_http(io, Some(refusal), addr, place, server, shared)).await;
        }
        direct::Head::Gone => {}
    }
}

/// One accepted connection with built-in TLS: the handshake, within the header-read timeout,
/// then HTTP (WebSocket upgrades included) through hyper.
async fn tls_connection(
    stream: TcpStream,
    addr: SocketAddr,
    place: Place,
    server: Server,
    shared: Arc<Shared>,
    acceptor: tokio_rustls::TlsAcceptor,
) {
    let handshake = tokio::time::timeout(shared.header_read_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, remote = %addr, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(remote = %addr, "TLS handshake timed out");
                return;
            }
        },
        () = shared.closing.cancelled() => return,
    };
    Box::pin(serve_http(stream, None, addr, place, server, shared)).await;
}

/// Serves one HTTP/1.1 connection (admin API, refused or unusual upgrades) until it ends or
/// the listener closes (after the server's shutdown). With `refused`, the first request (the upgrade the accept loop
/// refused) gets that refusal and the connection closes after it.
async fn serve_http<I>(
    io: I,
    refused: Option<Refusal>,
    addr: SocketAddr,
    place: Place,
    server: Server,
    shared: Arc<Shared>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _place = place;
    // The connection can be ended from outside, also once upgraded (`super::closable`).
    let (io, close) = Closable::new(io);
    let io = io.send_timeout(shared.send_timeout);
    let app = shared.app.clone();
    let ws = Arc::clone(&shared.ws);
    let ws_server = server.clone();
    let body_read_timeout = shared.body_read_timeout;
    // Shared by the clones hyper makes of the service; taken by the first request.
    let refused = Arc::new(std::sync::Mutex::new(refused));
    let service = tower::service_fn(move |mut req: hyper::Request<Incoming>| {
        let first = refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(refusal) = first {
            let mut response = super::upgrade::refusal_response(refusal);
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return Either::Left(std::future::ready(Ok(response)));
        }
        // A request to the WebSocket path that `direct` left to HTTP still skips the router
        // (routing, extensions, body boxing); it would reach the same handler.
        if req.uri().path() == &*ws.path {
            let response = super::upgrade::upgrade(&ws_server, &ws, &mut req, Some(addr));
            return Either::Left(std::future::ready(Ok(response)));
        }
        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
        req.extensions_mut().insert(close.clone());
        let deadline = body_read_timeout;
        Either::Right(
            app.clone()
                .oneshot(req.map(|body| axum::body::Body::new(Deadline::new(body, deadline)))),
        )
    });
    let conn = shared
        .builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "http connection error");
            }
        }
        () = shared.closing.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_bind() {
        let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        assert!(accepted.nodelay().expect("getsockopt"));
    }
}
