//! WebSocket upgrades read straight off the TCP socket.
//!
//! Nearly every HTTP connection the accept loop sees is a WebSocket upgrade. This module reads
//! the request head itself ([`inspect_head`]: `httparse`, then [`super::front_door::decide`],
//! the same decision the hyper path makes) and, when it is an upgrade to the WebSocket path
//! that the server accepts, answers 101 and hands the bare TCP stream to the WebSocket: no HTTP
//! connection state, request and response objects, upgrade hand-over between tasks or boxed
//! I/O layer. A refused upgrade to the WebSocket path is answered over HTTP with this
//! module's refusal ([`Head::Refused`]); anything else (another path, a head `httparse`
//! cannot parse here, a server at its connection limit) is handed to hyper and the router
//! together with the bytes already read.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::config::{HttpConfig, WsSettings};
use super::front_door::{Head as Inspected, MAX_HEADERS, Refusal, inspect_head};
use super::upgrade::{websocket, ws_config};
use crate::server::{Server, UpgradeHead};

/// Longest request head read here; a longer one is left to hyper.
const MAX_HEAD: usize = 16 * 1024;

/// What the first bytes of a connection turned out to be.
pub(super) enum Head {
    /// A WebSocket upgrade, answered with 101: run it with [`run`].
    Upgraded(Socket),
    /// Anything else: serve it over HTTP, starting with the bytes already read.
    Http(Prefixed),
    /// A refused upgrade to the WebSocket path: serve it over HTTP, answering its first
    /// request with this refusal (hyper cannot see every reason, such as bare-LF line
    /// endings, by itself).
    Refused(Prefixed, Refusal),
    /// Nothing to serve: the peer closed or failed, or was too slow to send its head.
    Gone,
}

/// An upgraded connection, ready to run as a WebSocket.
pub(super) struct Socket {
    stream: TcpStream,
    /// Bytes the client sent after its request head.
    rest: Vec<u8>,
    slot: crate::server::ConnectionSlot,
    /// The upgrade request, for the authenticate hook.
    head: Arc<UpgradeHead>,
}

/// Reads the request head (within `timeout`, as hyper's header-read timeout) and answers an
/// acceptable WebSocket upgrade from `peer` with 101.
pub(super) async fn read(
    stream: TcpStream,
    peer: SocketAddr,
    server: &Server,
    ws: &WsSettings,
    timeout: std::time::Duration,
) -> Head {
    let (mut stream, rest, upgrade) =
        match tokio::time::timeout(timeout, read_head(stream, peer, server, ws)).await {
            Err(_) => return Head::Gone,
            Ok(Err((stream, buf))) if !buf.is_empty() => {
                return Head::Http(Prefixed::new(buf, stream));
            }
            Ok(Err(_)) => return Head::Gone,
            Ok(Ok(read)) => read,
        };
    let Upgrade { accept, slot, head } = match upgrade {
        Parsed::Upgrade(upgrade) => upgrade,
        Parsed::Refused(refusal) => return Head::Refused(Prefixed::new(rest, stream), refusal),
        Parsed::Partial | Parsed::Other => return Head::Http(Prefixed::new(rest, stream)),
    };
    let mut response = String::with_capacity(160);
    response.push_str("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n");
    response.push_str("upgrade: websocket\r\nsec-websocket-accept: ");
    response.push_str(&accept);
    response.push_str("\r\n\r\n");
    if stream.write_all(response.as_bytes()).await.is_err() {
        return Head::Gone;
    }
    Head::Upgraded(Socket {
        stream,
        rest,
        slot,
        head,
    })
}

/// Runs an upgraded connection to its end. The caller spawns it with
/// [`Server::spawn_tracked`], like every WebSocket task, so that [`Server::shutdown`] waits
/// for it.
pub(super) async fn run(socket: Socket, server: Server, remote: SocketAddr, ws: Arc<WsSettings>) {
    let Socket {
        stream,
        rest,
        slot,
        head,
    } = socket;
    // Held until the connection ends.
    let _slot = slot;
    // Built without an `.await` and boxed, as in `upgrade`: this task then does not reserve
    // room for the connection twice for its whole life.
    let conn = match websocket(stream, rest, ws_config(&server, &ws), ws.write_buffer_bytes) {
        Some(ws) => Box::pin(server.serve_upgraded(ws, Some(remote), head)),
        None => {
            tracing::error!("WebSocket setup did not complete synchronously");
            return;
        }
    };
    conn.await;
}

/// A WebSocket accepted by [`accept_websocket`]. It holds its place under
/// `ServerConfig::max_connections` until dropped.
#[non_exhaustive]
pub struct AcceptedWebSocket<W> {
    /// The WebSocket (a `Stream` and `Sink` of tungstenite messages), configured like every
    /// connection of the server. Close it with `SinkExt::close` so that the closing handshake
    /// is written out.
    pub socket: W,
    /// The upgrade request.
    pub request: Arc<UpgradeHead>,
    _slot: crate::server::ConnectionSlot,
}

/// Accepts one WebSocket on `stream` through the accept loop's own path: the same head
/// parsing and [`super::front_door::decide`], the same 101, the same tungstenite limits and
/// write coalescing as the connections [`super::serve`] hands to `server`, but the caller runs
/// the socket instead of the sealwire protocol (conformance testing: `examples/autobahn_echo.rs`).
/// `server` must be started; `http` gives the path, origins and buffers, as to the accept loop.
/// Anything but an accepted upgrade to that path, refusals included, is closed without an
/// answer and gives `None`; [`super::serve`] answers those.
pub async fn accept_websocket(
    stream: TcpStream,
    server: &Server,
    http: &HttpConfig,
) -> Option<
    AcceptedWebSocket<
        impl futures_util::Stream<Item = Result<Message, WsError>>
        + futures_util::Sink<Message, Error = WsError>
        + Unpin
        + Send
        + 'static,
    >,
> {
    let ws = http.websocket();
    let peer = stream.peer_addr().ok()?;
    let Head::Upgraded(Socket {
        stream,
        rest,
        slot,
        head,
    }) = read(stream, peer, server, &ws, http.header_read_timeout).await
    else {
        return None;
    };
    let socket =
        websocket(stream, rest, ws_config(server, &ws), ws.write_buffer_bytes)?.into_inner();
    Some(AcceptedWebSocket {
        socket,
        request: head,
        _slot: slot,
    })
}

/// Reads until the request head is complete; for an accepted upgrade the bytes returned are
/// those after the head, otherwise every byte read. `Err` carries what was read before the
/// peer closed or failed.
async fn read_head(
    mut stream: TcpStream,
    peer: SocketAddr,
    server: &Server,
    ws: &WsSettings,
) -> Result<(TcpStream, Vec<u8>, Parsed), (TcpStream, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Err((stream, buf)),
            Ok(_) => {}
        }
        match parse(&buf, peer, server, ws) {
            (Parsed::Partial, _) if buf.len() < MAX_HEAD => {}
            (Parsed::Upgrade(up), head_len) => {
                let rest = buf.split_off(head_len);
                return Ok((stream, rest, Parsed::Upgrade(up)));
            }
            (parsed, _) => return Ok((stream, buf, parsed)),
        }
    }
}

/// An accepted upgrade: the `Sec-WebSocket-Accept` value, the reserved connection slot and the
/// request head.
struct Upgrade {
    accept: String,
    slot: crate::server::ConnectionSlot,
    head: Arc<UpgradeHead>,
}

enum Parsed {
    Partial,
    Upgrade(Upgrade),
    Refused(Refusal),
    Other,
}

/// Checks a request head ([`inspect_head`]); returns the verdict and, for an upgrade, the
/// length of the head. Only an upgrade to the WebSocket path is decided here; other paths go to
/// hyper and the router, and so does an accepted upgrade that the server cannot take now (not
/// ready, at `max_connections` or `max_connections_per_ip`), for the router's 503 or 429 from
/// the same check.
fn parse(buf: &[u8], peer: SocketAddr, server: &Server, ws: &WsSettings) -> (Parsed, usize) {
    let (len, accept) = match inspect_head(buf, &ws.allowed_origins) {
        Inspected::Partial => return (Parsed::Partial, 0),
        Inspected::Complete { path, .. } if path != &*ws.path => return (Parsed::Other, 0),
        Inspected::Complete {
            decision: Err(refusal),
            ..
        } => return (Parsed::Refused(refusal), 0),
        Inspected::Complete {
            decision: Ok(accept),
            len,
            ..
        } => (len, accept),
        _ => return (Parsed::Other, 0),
    };
    if !server.is_ready() {
        return (Parsed::Other, 0);
    }
    let Ok(slot) = server.try_reserve_slot(Some(peer.ip())) else {
        return (Parsed::Other, 0);
    };
    let head = Arc::new(upgrade_head(&buf[..len]));
    (
        Parsed::Upgrade(Upgrade {
            accept: accept.accept_key,
            slot,
            head,
        }),
        len,
    )
}

/// The URI and headers of a request head already checked by [`inspect_head`] (parsed again:
/// cheaper than keeping every header of every request until the decision). A header value
/// that `http` refuses (control characters) is left out.
fn upgrade_head(head: &[u8]) -> UpgradeHead {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head).is_err() {
        return UpgradeHead::default();
    }
    let uri = req
        .path
        .and_then(|p| http::Uri::try_from(p).ok())
        .unwrap_or_default();
    let mut map = http::HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            map.append(name, value);
        }
    }
    UpgradeHead::new(uri, map)
}

/// A TCP stream whose first reads return bytes that were already read from it.
pub(super) struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Prefixed {
    fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
