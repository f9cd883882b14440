//! A write buffer between tungstenite and the socket that gives its memory back.
//!
//! tungstenite formats outgoing frames into one `Vec` and writes it out once it holds more
//! than `write_buffer_size` bytes (or on flush). That `Vec` never shrinks, so after a single
//! burst every connection kept its largest backlog, 8 KiB and more, for the rest of its life:
//! an idle encrypted connection measured ~15 KiB after one broadcast burst against ~4 KiB
//! before it. The server therefore runs tungstenite with `write_buffer_size = 0` (each frame
//! goes straight through to this type, so tungstenite's own buffer only ever holds one frame)
//! and coalesces here instead: frames are appended to `buf` and written to the socket when
//! `buf` reaches `limit` bytes or on flush, exactly the batching tungstenite did, and `buf` is
//! freed every time it has been written out completely.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// `S` with coalesced writes whose buffer is freed whenever it drains (see the module docs).
#[derive(Debug)]
pub(crate) struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    written: usize,
    limit: usize,
}

impl<S> Coalesce<S> {
    /// Wraps `inner`, writing to it once `limit` bytes are buffered (at least one frame is
    /// always accepted).
    pub(crate) fn new(inner: S, limit: usize) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            written: 0,
            limit,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes everything buffered to `inner`, then frees the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        // Dropping the allocation (rather than `clear`) is the point of this type: an idle
        // connection holds no write buffer. Re-allocating costs far less than the `write`.
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.buf.is_empty() && this.buf.len() + data.len() > this.limit {
            // Full: write out what is buffered first. Pending here is backpressure; the
            // frame stays with tungstenite, which counts it against its own maximum.
            ready!(this.poll_drain(cx))?;
        }
        if this.buf.is_empty() && data.len() >= this.limit {
            // A frame at least as large as the buffer: no point in copying it.
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A server WebSocket over [`Coalesce`] whose `close` also writes out what `Coalesce` still
/// holds. tungstenite answers a peer's close frame by writing the reply and then reporting the
/// connection closed without flushing the stream (it expects writes to reach the socket); the
/// reply would stay in the buffer and the peer see the connection drop without a closing
/// handshake (Autobahn|Testsuite: "UNCLEAN" on every case).
pub(crate) struct ServerWebSocket<S>(WebSocketStream<Coalesce<S>>);

impl<S> ServerWebSocket<S> {
    pub(crate) fn new(ws: WebSocketStream<Coalesce<S>>) -> Self {
        Self(ws)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for ServerWebSocket<S> {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().0).poll_next(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for ServerWebSocket<S> {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().0).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        Pin::new(&mut self.get_mut().0).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let ws = &mut self.get_mut().0;
        // Idempotent: polled again after a pending drain, tungstenite queues nothing twice.
        let closed = ready!(Pin::new(&mut *ws).poll_close(cx));
        ready!(Pin::new(ws.get_mut()).poll_flush(cx)).map_err(WsError::Io)?;
        Poll::Ready(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn coalesces_until_the_limit_or_a_flush_and_frees_the_buffer() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalesce::new(a, 16);
        w.write_all(b"hello ").await.expect("write");
        w.write_all(b"world").await.expect("write");
        // Below the limit and not flushed: nothing reached the peer yet.
        assert_eq!(w.buf.len(), 11);
        w.write_all(b", and more than sixteen")
            .await
            .expect("write");
        // The first two went out together when the third would have crossed the limit.
        let mut got = [0u8; 11];
        b.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello world");
        let mut rest = [0u8; 23];
        b.read_exact(&mut rest).await.expect("read");
        assert_eq!(&rest, b", and more than sixteen");
        w.write_all(b"tail").await.expect("write");
        assert!(w.buf.capacity() >= 4);
        w.flush().await.expect("flush");
        assert_eq!(w.buf.capacity(), 0, "a drained buffer is freed");
        let mut tail = [0u8; 4];
        b.read_exact(&mut tail).await.expect("read");
        assert_eq!(&tail, b"tail");
    }

    #[tokio::test]
    async fn backpressure_keeps_every_byte_in_order() {
        // A pipe that holds 64 bytes: most writes meet a full peer.
        let (a, mut b) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.expect("read");
            all
        });
        let mut w = Coalesce::new(a, 100);
        let mut sent = Vec::new();
        for i in 0..500u32 {
            let chunk = format!("<{i}>").repeat((i % 7 + 1) as usize);
            w.write_all(chunk.as_bytes()).await.expect("write");
            sent.extend_from_slice(chunk.as_bytes());
            if i % 50 == 0 {
                w.flush().await.expect("flush");
            }
        }
        w.shutdown().await.expect("shutdown");
        drop(w);
        assert_eq!(reader.await.expect("reader"), sent);
    }
}
