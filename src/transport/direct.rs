//! WebSocket upgrades read straight off the TCP socket.
//!
//! Nearly every HTTP connection the accept loop sees is a WebSocket upgrade. This module reads
//! the request head itself and, when it is a complete, well-formed upgrade to the WebSocket
//! path that the server accepts, answers 101 and hands the bare TCP stream to the WebSocket:
//! no HTTP connection state, request and response objects, upgrade hand-over between tasks or
//! boxed I/O layer. Anything else (another path or method, a malformed or unusual request, a
//! refused upgrade) is handed to hyper and the router together with the bytes already read,
//! so every answer other than a successful upgrade comes from the same code as before.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::upgrade::{websocket, ws_config};
use crate::server::Server;

/// Longest request head read here; a longer one is left to hyper.
const MAX_HEAD: usize = 16 * 1024;
/// Most request headers parsed here; a request with more is left to hyper.
const MAX_HEADERS: usize = 64;

/// What the first bytes of a connection turned out to be.
pub(super) enum Head {
    /// A WebSocket upgrade, answered with 101: run it with [`run`].
    Upgraded(Socket),
    /// Anything else: serve it over HTTP, starting with the bytes already read.
    Http(Prefixed),
    /// Nothing to serve: the peer closed or failed, or was too slow to send its head.
    Gone,
}

/// An upgraded connection, ready to run as a WebSocket.
pub(super) struct Socket {
    stream: TcpStream,
    /// Bytes the client sent after its request head.
    rest: Vec<u8>,
    slot: crate::server::ConnectionSlot,
}

/// Reads the request head (within `timeout`, as hyper's header-read timeout) and answers an
/// acceptable WebSocket upgrade from `peer` with 101.
pub(super) async fn read(
    stream: TcpStream,
    peer: SocketAddr,
    server: &Server,
    ws_path: &str,
    timeout: std::time::Duration,
) -> Head {
    let (mut stream, rest, upgrade) =
        match tokio::time::timeout(timeout, read_head(stream, peer, server, ws_path)).await {
            Err(_) => return Head::Gone,
            Ok(Err((stream, buf))) if !buf.is_empty() => {
                return Head::Http(Prefixed::new(buf, stream));
            }
            Ok(Err(_)) => return Head::Gone,
            Ok(Ok(read)) => read,
        };
    let Some(Upgrade { accept, slot }) = upgrade else {
        return Head::Http(Prefixed::new(rest, stream));
    };
    let mut response = String::with_capacity(160);
    response.push_str("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n");
    response.push_str("upgrade: websocket\r\nsec-websocket-accept: ");
    response.push_str(&accept);
    response.push_str("\r\n\r\n");
    if stream.write_all(response.as_bytes()).await.is_err() {
        return Head::Gone;
    }
    Head::Upgraded(Socket { stream, rest, slot })
}

/// Runs an upgraded connection to its end. The caller spawns it with
/// [`Server::spawn_tracked`], like every WebSocket task, so that [`Server::shutdown`] waits
/// for it.
pub(super) async fn run(socket: Socket, server: Server, remote: SocketAddr) {
    let Socket { stream, rest, slot } = socket;
    // Held until the connection ends.
    let _slot = slot;
    // Built without an `.await` and boxed, as in `upgrade`: this task then does not reserve
    // room for the connection twice for its whole life.
    let conn = match websocket(
        stream,
        rest,
        ws_config(&server),
        server.config().write_buffer_bytes,
    ) {
        Some(ws) => Box::pin(server.serve_socket(ws, Some(remote))),
        None => {
            tracing::error!("WebSocket setup did not complete synchronously");
            return;
        }
    };
    conn.await;
}

/// Reads until the request head is complete; for an acceptable upgrade also returns the
/// bytes after the head. `Err` carries what was read before the peer closed or failed.
async fn read_head(
    mut stream: TcpStream,
    peer: SocketAddr,
    server: &Server,
    ws_path: &str,
) -> Result<(TcpStream, Vec<u8>, Option<Upgrade>), (TcpStream, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(1024);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Err((stream, buf)),
            Ok(_) => {}
        }
        match parse(&buf, peer, server, ws_path) {
            Parsed::Partial if buf.len() < MAX_HEAD => {}
            Parsed::Upgrade(up, head_len) => {
                let rest = buf.split_off(head_len);
                return Ok((stream, rest, Some(up)));
            }
            _ => return Ok((stream, buf, None)),
        }
    }
}

/// An accepted upgrade: the `Sec-WebSocket-Accept` value and the reserved connection slot.
struct Upgrade {
    accept: String,
    slot: crate::server::ConnectionSlot,
}

enum Parsed {
    Partial,
    Upgrade(Upgrade, usize),
    Other,
}

/// Checks a request head. Only a complete, unambiguous `GET` upgrade to the WebSocket path
/// that passes every check of [`super::upgrade::upgrade`] is taken here; everything else,
/// refusals included, goes to hyper so that the refusal is the router's.
fn parse(buf: &[u8], peer: SocketAddr, server: &Server, ws_path: &str) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let path = req.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if req.method != Some("GET") || req.version != Some(1) || path != ws_path {
        return Parsed::Other;
    }
    let headers = req.headers;
    let has_body = headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-length")
            || h.name.eq_ignore_ascii_case("transfer-encoding")
    });
    if has_body
        || !has_token(headers, "connection", "upgrade")
        || !has_token(headers, "upgrade", "websocket")
        || single(headers, "sec-websocket-version") != Some(b"13")
    {
        return Parsed::Other;
    }
    let Some(key) = single(headers, "sec-websocket-key") else {
        return Parsed::Other;
    };
    if !server.is_ready() {
        return Parsed::Other;
    }
    // A refusal is left to hyper, whose answer (503 or 429) comes from the same check.
    let Ok(slot) = server.try_reserve_slot(Some(peer.ip())) else {
        return Parsed::Other;
    };
    let accept = derive_accept_key(key);
    Parsed::Upgrade(Upgrade { accept, slot }, head_len)
}

fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    super::upgrade::lists_token(
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok()),
        token,
    )
}

/// The value of a header that must appear exactly once.
fn single<'h>(headers: &[httparse::Header<'h>], name: &str) -> Option<&'h [u8]> {
    let mut matching = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    let first = matching.next()?;
    matching.next().is_none().then_some(first.value)
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
