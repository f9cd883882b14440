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

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a buffer filled by [`Coalesce::push_text`] holds beyond `limit` before it must grow:
/// the last frame of a batch crosses `limit`, and one of up to this size (a typical
/// notification) does so without a reallocation.
const CROSSING_SLACK: usize = 1024;

/// The WebSocket opcode of a text frame.
const OPCODE_TEXT: u8 = 0x1;
/// The WebSocket opcode of a binary frame.
const OPCODE_BINARY: u8 = 0x2;

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
    /// The writer above (tungstenite) holds bytes it could not hand over: the last write was
    /// refused or taken in part. tungstenite hands over its whole buffer on every write, so a
    /// write taken whole leaves it with nothing. While it is behind, frames must not be
    /// pushed past it ([`Self::push_text`]).
    behind: bool,
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
            behind: false,
        }
    }

    /// Whether a text frame with `len` payload bytes may be pushed with [`Self::push_text`]:
    /// the writer above holds nothing unwritten (the frame would overtake it), and the frame
    /// is smaller than the buffer (a larger one is written straight through, uncopied, by the
    /// ordinary path).
    pub(crate) fn takes_text(&self, len: usize) -> bool {
        !self.behind && len < self.limit
    }

    /// Appends one whole unmasked (server) text frame carrying `payload`, formatted here
    /// rather than by tungstenite: one copy of the payload instead of two. Only when
    /// [`Self::takes_text`] allows it; while discarding, the frame is dropped like any other
    /// data frame. The buffer may pass `limit` by this one frame: [`Self::poll_room`] drains
    /// it before the next.
    pub(crate) fn push_text(&mut self, payload: &[u8]) {
        debug_assert!(self.takes_text(payload.len()));
        if self.discarding {
            return;
        }
        self.push_header(OPCODE_TEXT, payload.len());
        self.buf.extend_from_slice(payload);
    }

    /// [`Self::push_text`] for a binary frame (a binary room record), on the same terms.
    pub(crate) fn push_binary(&mut self, payload: &[u8]) {
        debug_assert!(self.takes_text(payload.len()));
        if self.discarding {
            return;
        }
        self.push_header(OPCODE_BINARY, payload.len());
        self.buf.extend_from_slice(payload);
    }

    /// [`Self::push_text`] for a payload of `len` bytes that `fill` appends to the buffer
    /// (made in place: no copy at all). Returns whether it did; what it appended is removed
    /// unless it is exactly `len` bytes of UTF-8, so the stream only ever holds whole, valid
    /// frames. While discarding, `fill` is not called (the frame would be dropped).
    pub(crate) fn push_text_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    ) -> bool {
        debug_assert!(self.takes_text(len));
        if self.discarding {
            return true;
        }
        let start = self.buf.len();
        self.push_header(OPCODE_TEXT, len);
        let body = self.buf.len();
        let made = fill(&mut self.buf)
            && self.buf.len().checked_sub(body) == Some(len)
            && std::str::from_utf8(&self.buf[body..]).is_ok();
        if !made {
            self.buf.truncate(start);
            if self.buf.is_empty() {
                // As after a drain: an idle connection holds no write buffer.
                self.buf = Vec::new();
            }
        }
        made
    }

    /// Appends the header of an unmasked (server) frame of `opcode` with `len` payload bytes,
    /// allocating the buffer for the batch if it has none.
    fn push_header(&mut self, opcode: u8, len: usize) {
        let mut header = [0u8; 10];
        header[0] = 0x80 | opcode; // FIN
        let header = match len {
            n @ 0..=125 => {
                // In range: `n` < 126.
                header[1] = n as u8;
                &header[..2]
            }
            n @ 126..=0xffff => {
                header[1] = 126;
                header[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                &header[..4]
            }
            n => {
                header[1] = 127;
                header[2..10].copy_from_slice(&(n as u64).to_be_bytes());
                &header[..10]
            }
        };
        if self.buf.capacity() == 0 {
            // Room for the frame that crosses `limit` too: growing the buffer then would copy
            // the whole batch once more.
            self.buf.reserve(self.limit.saturating_add(CROSSING_SLACK));
        }
        self.buf.extend_from_slice(header);
    }

    /// Whether the buffer is below `limit` (another frame may be appended).
    pub(crate) fn has_room(&self) -> bool {
        self.buf.len() < self.limit
    }

    /// Ready once the buffer is below `limit`, writing it out first when it is not.
    pub(crate) fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        S: AsyncWrite + Unpin,
    {
        if self.has_room() {
            return Poll::Ready(Ok(()));
        }
        self.poll_drain(cx)
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
        let written = this.take(cx, data);
        this.behind = !matches!(written, Poll::Ready(Ok(n)) if n == data.len());
        written
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

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// [`AsyncWrite::poll_write`]'s work: buffers `data` (or what of it may be taken).
    fn take(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self;
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
            // One allocation for the whole batch, rather than growing it frame by frame (with
            // room for a frame that `push_text` may add past `limit` next).
            this.buf
                .reserve(this.limit.saturating_add(CROSSING_SLACK).max(data.len()));
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
}

#[cfg(test)]
mod tests;
