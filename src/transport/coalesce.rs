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
//!
//! It also keeps track of frame boundaries, so that a connection closed as a slow consumer
//! can drop what it has not sent yet ([`Coalesce::discard_unsent`]) and get its close frame
//! through: whole frames are dropped, never part of one. tungstenite hands over whole frames
//! (with `write_buffer_size = 0` and a `Sink` that flushes before it takes the next message),
//! except after a partial write straight to the socket, whose remainder comes next; so the
//! boundaries in `buf` are found by reading the frame headers from its start, or from the end
//! of such a remainder, and nothing is stored per frame.

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
    /// Bytes finishing a frame whose first bytes were written to `inner` already (a partial
    /// write that bypassed `buf`): the first `started` bytes of `buf` when it holds any,
    /// otherwise the first `started` bytes tungstenite hands over next. They are never dropped.
    started: usize,
    /// Set by [`Self::discard_unsent`]: whole frames are dropped until a close frame comes.
    discarding: bool,
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
            started: 0,
            discarding: false,
        }
    }

    /// Drops every whole frame not written to the socket yet, here and in what tungstenite
    /// hands over until the next close frame, so that the close frame follows the frame in
    /// progress. The bytes of a frame already partly written are kept: the stream stays a
    /// sequence of complete frames. (The socket's kernel buffer is out of reach: what it
    /// holds is still delivered first.)
    pub(crate) fn discard_unsent(&mut self) {
        if !self.buf.is_empty() {
            // Boundaries from the start of `buf` (after the end of a started frame): keep up
            // to the first one at or past `written`.
            let mut keep = self.started.min(self.buf.len());
            while keep < self.written {
                match frame_len(&self.buf[keep..]) {
                    Some(n) => keep += n,
                    // Not a whole frame (never expected): keep everything.
                    None => keep = self.buf.len(),
                }
            }
            self.buf.truncate(keep);
            if self.buf.is_empty() {
                self.buf = Vec::new();
                self.written = 0;
                self.started = 0;
            }
        }
        self.discarding = true;
    }
}

/// The length of the WebSocket frame at the start of `data` and whether it is a close frame;
/// `None` when the frame is not all in `data`.
fn frame(data: &[u8]) -> Option<(usize, bool)> {
    let first = *data.first()?;
    let second = *data.get(1)?;
    let (len, header) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*data.get(2)?, *data.get(3)?])),
            4,
        ),
        127 => (u64::from_be_bytes(data.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    // A masked frame (clients send those) carries a 4-byte key.
    let header = if second & 0x80 != 0 {
        header + 4
    } else {
        header
    };
    let total = usize::try_from(len).ok()?.checked_add(header)?;
    (total <= data.len()).then_some((total, first & 0x0f == 0x8))
}

/// The length of the whole frame at the start of `data`.
fn frame_len(data: &[u8]) -> Option<usize> {
    frame(data).map(|(n, _)| n)
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes everything buffered to `inner`, then frees the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.is_empty() {
            // `started` may count bytes still to come: keep it.
            return Poll::Ready(Ok(()));
        }
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
        self.started = 0;
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
        let mut data = data;
        if this.discarding {
            if this.buf.is_empty() && this.started > 0 {
                // The rest of a started frame goes out; what follows it is looked at next.
                data = &data[..this.started.min(data.len())];
            } else {
                match frame(data) {
                    // Accepted and dropped.
                    Some((n, false)) => return Poll::Ready(Ok(n)),
                    // The close frame, or (never expected) not a whole frame: write from here.
                    _ => this.discarding = false,
                }
            }
        }
        if !this.buf.is_empty() && this.buf.len() + data.len() > this.limit {
            // Full: write out what is buffered first. Pending here is backpressure; the
            // frame stays with tungstenite, which counts it against its own maximum.
            ready!(this.poll_drain(cx))?;
        }
        if this.buf.is_empty() && data.len() >= this.limit {
            // A frame at least as large as the buffer: no point in copying it. What is not
            // written now comes next and must follow (counted conservatively).
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
            this.started = data.len() - n.min(data.len());
            return Poll::Ready(Ok(n));
        }
        // Into `buf`: when it is empty, the bytes finishing a started frame (`data` begins
        // with them) become its first `started` bytes.
        if this.buf.is_empty() {
            this.started = this.started.min(data.len());
        }
        if this.buf.capacity() == 0 {
            // One allocation for the whole batch, rather than growing it frame by frame.
            this.buf.reserve(this.limit.max(data.len()));
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

impl<S: AsyncRead + AsyncWrite + Unpin> ServerWebSocket<S> {
    /// Drops the whole messages not written yet ([`Coalesce::discard_unsent`]).
    pub(crate) fn discard_unsent(&mut self) {
        self.0.get_mut().discard_unsent();
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

    /// An unmasked server frame with `len` payload bytes.
    fn wire(opcode: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        match u8::try_from(len) {
            Ok(n) if n < 126 => f.push(n),
            _ => {
                f.push(126);
                f.extend_from_slice(&u16::try_from(len).expect("short frame").to_be_bytes());
            }
        }
        f.extend(std::iter::repeat_n(b'a', len));
        f
    }

    fn close_frame() -> Vec<u8> {
        let mut f = vec![0x88, 2];
        f.extend_from_slice(&4005u16.to_be_bytes());
        f
    }

    #[tokio::test]
    async fn discarding_keeps_the_frame_in_progress_and_drops_the_rest_of_the_buffer() {
        use futures_util::FutureExt as _;
        // The peer takes 10 bytes and then stops reading.
        let (a, mut b) = tokio::io::duplex(10);
        let mut w = Coalesce::new(a, 1000);
        let frames: Vec<_> = (0..3).map(|_| wire(1, 200)).collect();
        for f in &frames {
            w.write_all(f).await.expect("write");
        }
        assert!(w.flush().now_or_never().is_none(), "the peer is full");
        assert_eq!(w.written, 10);
        w.discard_unsent();
        // The first frame is in progress and stays; the two behind it are gone.
        assert_eq!(w.buf.len(), frames[0].len());
        // tungstenite then hands over what it still held (dropped), and the close frame.
        w.write_all(&wire(1, 300)).await.expect("write");
        w.write_all(&close_frame()).await.expect("write");
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.expect("read");
            all
        });
        // After the close frame everything goes through again.
        w.write_all(&wire(10, 3)).await.expect("write");
        w.shutdown().await.expect("shutdown");
        drop(w);
        let mut expected = frames[0].clone();
        expected.extend(close_frame());
        expected.extend(wire(10, 3));
        assert_eq!(reader.await.expect("reader"), expected);
    }

    #[tokio::test]
    async fn discarding_completes_a_frame_written_in_part_past_the_buffer() {
        let (a, mut b) = tokio::io::duplex(10);
        let mut w = Coalesce::new(a, 16);
        // At least `limit` bytes: written straight to the peer, which takes 10 of them.
        let big = wire(2, 300);
        let n = w.write(&big).await.expect("write");
        assert_eq!(n, 10);
        w.discard_unsent();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.expect("read");
            all
        });
        // tungstenite hands over the rest of the frame, then frames it queued, then the close.
        w.write_all(&big[n..]).await.expect("write");
        w.write_all(&wire(1, 5)).await.expect("write");
        w.write_all(&wire(1, 500)).await.expect("write");
        w.write_all(&close_frame()).await.expect("write");
        w.shutdown().await.expect("shutdown");
        drop(w);
        let mut expected = big;
        expected.extend(close_frame());
        assert_eq!(reader.await.expect("reader"), expected);
    }

    #[tokio::test]
    async fn discarding_anywhere_leaves_whole_frames_then_the_close_frame() {
        use futures_util::FutureExt as _;
        let mut seed = 0x9e37_79b9_u32;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            usize::try_from(seed).expect("u32 fits") % below
        };
        for round in 0..200 {
            let (a, mut b) = tokio::io::duplex(1 + next(3000));
            let mut w = Coalesce::new(a, 1 + next(2000));
            let frames: Vec<_> = (0..40).map(|_| wire(1, next(1500))).collect();
            // As tungstenite: one frame at a time, its unwritten rest kept and handed over
            // again; a flush now and then. Stop where the peer (not reading) is full.
            let mut out = Vec::new();
            let mut queued = frames.iter();
            'feed: loop {
                if out.is_empty() {
                    match queued.next() {
                        Some(f) => out.extend_from_slice(f),
                        None => break,
                    }
                }
                while !out.is_empty() {
                    match Pin::new(&mut w).write(&out).now_or_never() {
                        Some(n) => drop(out.drain(..n.expect("write"))),
                        None => break 'feed,
                    }
                }
                if next(4) == 0 && w.flush().now_or_never().is_none() {
                    break;
                }
            }
            w.discard_unsent();
            let reader = tokio::spawn(async move {
                let mut all = Vec::new();
                b.read_to_end(&mut all).await.expect("read");
                all
            });
            w.write_all(&out).await.expect("write");
            for f in queued.take(3) {
                w.write_all(f).await.expect("write");
            }
            w.write_all(&close_frame()).await.expect("write");
            w.shutdown().await.expect("shutdown");
            drop(w);
            let got = reader.await.expect("reader");
            let mut rest = &got[..];
            for f in &frames {
                match rest.strip_prefix(&f[..]) {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            assert_eq!(
                rest,
                close_frame(),
                "round {round}: whole frames, then the close"
            );
        }
    }

    #[tokio::test]
    async fn discarding_an_unstarted_buffer_drops_it_whole() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut w = Coalesce::new(a, 1000);
        w.write_all(&wire(1, 100)).await.expect("write");
        w.discard_unsent();
        assert_eq!(w.buf.capacity(), 0, "nothing of it was written: freed");
        w.write_all(&close_frame()).await.expect("write");
        w.shutdown().await.expect("shutdown");
        drop(w);
        let mut all = Vec::new();
        b.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, close_frame());
    }
}
