//! [`Closable`]: the stream of an HTTP connection, which the server can end from outside with
//! its [`CloseHandle`], also after the connection was upgraded and handed to another owner.
//!
//! The accept loop keeps no place for an upgraded connection (its WebSocket is counted by the
//! server's own limits). A Socket.IO session over WebSocket belongs to engine.io, which keeps
//! it open while its client answers pings, with or without a Socket.IO socket; the handle,
//! which travels in the request's extensions, lets the Socket.IO door end such a session
//! ([`super::socketio`]'s departed sessions). Once closed, reads see the end of the stream
//! and writes fail, so its owner ends the connection as if the peer had gone.
//!
//! It also bounds how long a write may wait for a client that does not read
//! ([`Closable::send_timeout`]): hyper bounds the time to read a request's head, not the time
//! to write an answer, so a client that pipelines requests and never reads their answers
//! would otherwise hold its connection, and its place, for as long as it likes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What a stream and its handles share.
#[derive(Debug, Default)]
struct Shared {
    closed: AtomicBool,
    /// The stream was dropped (its connection ended), and who waits for that.
    dropped: AtomicBool,
    ended: tokio::sync::Notify,
    /// The tasks waiting to read and to write, woken by [`CloseHandle::close`].
    reader: AtomicWaker,
    writer: AtomicWaker,
    /// Write-side polls that completed (for [`CloseHandle::close_when_written`]).
    writes: AtomicU64,
    /// A write is waiting for the client to read.
    write_waiting: AtomicBool,
}

/// Ends a [`Closable`] stream from outside. Cheap to clone. Every HTTP connection carries
/// one; only the Socket.IO door (feature `socketio`) uses it.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "socketio"), allow(dead_code))]
pub(crate) struct CloseHandle {
    shared: Arc<Shared>,
    /// Dead once the stream is dropped.
    stream: Weak<()>,
}

#[cfg_attr(not(feature = "socketio"), allow(dead_code))]
impl CloseHandle {
    /// Ends the stream: its pending and later reads see the end, its writes fail.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.reader.wake();
        self.shared.writer.wake();
    }

    /// Ends the stream once what its owner was writing has been written: when no write has
    /// completed or waited for `quiet`, or after `limit` at the latest (a client that does
    /// not read). For an owner that writes from a queue of its own (engine.io's writer
    /// task), which a close from outside would otherwise cut short.
    pub(crate) async fn close_when_written(&self, quiet: Duration, limit: Duration) {
        let closing = async {
            let mut seen = self.shared.writes.load(Ordering::Acquire);
            loop {
                tokio::time::sleep(quiet).await;
                let now = self.shared.writes.load(Ordering::Acquire);
                if now == seen && !self.shared.write_waiting.load(Ordering::Acquire) {
                    return;
                }
                seen = now;
            }
        };
        tokio::select! {
            () = closing => {}
            () = tokio::time::sleep(limit) => {}
            () = self.gone() => return,
        }
        self.close();
    }

    /// Whether the stream itself is gone: nothing to close.
    pub(crate) fn is_gone(&self) -> bool {
        self.shared.dropped.load(Ordering::Acquire) || self.stream.strong_count() == 0
    }

    /// Resolves once the stream is gone (its connection ended).
    pub(crate) async fn gone(&self) {
        loop {
            let ended = self.shared.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.is_gone() {
                return;
            }
            ended.await;
        }
    }
}

/// A stream that a [`CloseHandle`] can end.
#[derive(Debug)]
pub(crate) struct Closable<I> {
    io: I,
    /// How long a write may make no progress before it fails.
    send_timeout: Option<Duration>,
    /// The send timeout's timer, made on the first stall and re-armed on each later one.
    timer: Option<Pin<Box<Sleep>>>,
    /// A write is waiting without progress (the timer runs for it).
    stalled: bool,
    shared: Arc<Shared>,
    /// What tells the handles that the stream is gone.
    _alive: Arc<()>,
}

impl<I> Closable<I> {
    /// `io`, and the handle that ends it.
    pub(crate) fn new(io: I) -> (Self, CloseHandle) {
        let shared = Arc::new(Shared::default());
        let alive = Arc::new(());
        let handle = CloseHandle {
            shared: Arc::clone(&shared),
            stream: Arc::downgrade(&alive),
        };
        (
            Self {
                io,
                send_timeout: None,
                timer: None,
                stalled: false,
                shared,
                _alive: alive,
            },
            handle,
        )
    }

    /// Writes that make no progress for `timeout` (the client does not read) fail, with
    /// [`io::ErrorKind::TimedOut`].
    pub(crate) fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }

    fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether a handle closed the stream (for tests elsewhere in the crate).
    #[cfg(test)]
    pub(crate) fn is_closed_for_tests(&self) -> bool {
        self.closed()
    }
}

impl<I> Drop for Closable<I> {
    fn drop(&mut self) {
        self.shared.dropped.store(true, Ordering::Release);
        self.shared.ended.notify_waiters();
    }
}

fn closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "connection closed by the server")
}

impl<I: AsyncRead + Unpin> AsyncRead for Closable<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.closed() {
            return Poll::Ready(Ok(()));
        }
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => {
                // Registered before the second look, so a close in between still wakes it.
                this.shared.reader.register(cx.waker());
                if this.closed() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                }
            }
            ready => ready,
        }
    }
}

impl<I: AsyncWrite + Unpin> Closable<I> {
    /// Runs one write-side poll unless the stream is closed, registering for the close while
    /// it is pending, and failing it once it has made no progress for the send timeout.
    fn poll_writing<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut I>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.closed() {
            return Poll::Ready(Err(closed_error()));
        }
        match op(Pin::new(&mut self.io), cx) {
            Poll::Pending => {
                self.shared.writer.register(cx.waker());
                if self.closed() {
                    return Poll::Ready(Err(closed_error()));
                }
                if let Some(timeout) = self.send_timeout {
                    if !self.stalled {
                        // A new stall: the timer starts again (made once, then re-armed).
                        let now = tokio::time::Instant::now();
                        let deadline = now
                            .checked_add(timeout)
                            .unwrap_or_else(|| now + Duration::from_secs(86_400));
                        match self.timer.as_mut() {
                            Some(timer) => timer.as_mut().reset(deadline),
                            None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                        }
                        self.stalled = true;
                    }
                    if let Some(timer) = self.timer.as_mut()
                        && timer.as_mut().poll(cx).is_ready()
                    {
                        self.stalled = false;
                        self.shared.write_waiting.store(false, Ordering::Release);
                        // The connection is over, its reading half too: an owner that only
                        // ends its writer on the error (engine.io's) would otherwise keep the
                        // connection open, reading from a client that sends nothing.
                        self.shared.closed.store(true, Ordering::Release);
                        self.shared.reader.wake();
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client did not read in time",
                        )));
                    }
                }
                self.shared.write_waiting.store(true, Ordering::Release);
                Poll::Pending
            }
            ready => {
                self.stalled = false;
                self.shared.write_waiting.store(false, Ordering::Release);
                self.shared.writes.fetch_add(1, Ordering::Release);
                ready
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Closable<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_writing(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_writing(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_writing(cx, AsyncWrite::poll_flush)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Shutting down a closed stream is done already.
        if self.closed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_pending_read_ends_and_writes_fail_once_closed() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (mut stream, handle) = Closable::new(ours);
        theirs.write_all(b"hi").await.expect("write");
        let mut buf = [0u8; 8];
        assert_eq!(stream.read(&mut buf).await.expect("read"), 2);
        // Nothing more to read: the read waits until the handle closes the stream.
        let closer = handle.clone();
        let reading = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let n = stream.read(&mut buf).await.expect("read");
            (n, stream)
        });
        tokio::task::yield_now().await;
        assert!(!reading.is_finished(), "still waiting for data");
        closer.close();
        let (n, mut stream) = reading.await.expect("task");
        assert_eq!(n, 0, "the end of the stream");
        let err = stream.write_all(b"x").await.expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(!handle.is_gone());
        let waiting = tokio::spawn({
            let handle = handle.clone();
            async move { handle.gone().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(stream);
        assert!(handle.is_gone());
        waiting
            .await
            .expect("gone() resolves once the stream is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_does_not_read_fails_after_the_send_timeout() {
        let (ours, mut theirs) = tokio::io::duplex(16);
        let (stream, _handle) = Closable::new(ours);
        let mut stream = stream.send_timeout(Duration::from_secs(30));
        // Slow progress is progress: each write goes through before the timeout.
        for _ in 0..3 {
            stream.write_all(&[7u8; 16]).await.expect("room");
            tokio::time::sleep(Duration::from_secs(20)).await;
            let mut buf = [0u8; 16];
            theirs.read_exact(&mut buf).await.expect("read");
        }
        // Nobody reads: the buffer fills and the write waits, then fails.
        let started = tokio::time::Instant::now();
        let err = stream.write_all(&[1u8; 64]).await.expect_err("stalled");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed().as_secs(), 30);
        // And the connection is over: its reads see the end (the client sent nothing).
        let mut buf = [0u8; 8];
        assert_eq!(stream.read(&mut buf).await.expect("end"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn close_when_written_waits_for_the_writes_to_stop() {
        const QUIET: Duration = Duration::from_millis(100);
        let (ours, mut theirs) = tokio::io::duplex(16);
        let (mut stream, handle) = Closable::new(ours);
        let closer = tokio::spawn({
            let handle = handle.clone();
            async move {
                handle
                    .close_when_written(QUIET, Duration::from_secs(2))
                    .await
            }
        });
        // A write every 60 ms keeps the stream open, and so does one that waits for the
        // client to read.
        for _ in 0..5 {
            stream
                .write_all(&[1u8; 8])
                .await
                .expect("open while writing");
            tokio::time::sleep(Duration::from_millis(60)).await;
            let mut buf = [0u8; 8];
            theirs.read_exact(&mut buf).await.expect("read");
        }
        let writing = tokio::spawn(async move {
            let result = stream.write_all(&[2u8; 32]).await;
            (result, stream)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!closer.is_finished(), "a write still waits for the client");
        let mut buf = [0u8; 32];
        theirs
            .read_exact(&mut buf)
            .await
            .expect("the whole write arrives");
        let (result, mut stream) = writing.await.expect("task");
        result.expect("written before the close");
        closer.await.expect("closed once quiet");
        let err = stream.write_all(b"x").await.expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[tokio::test(start_paused = true)]
    async fn close_when_written_closes_after_the_limit_for_a_client_that_never_reads() {
        let (ours, _theirs) = tokio::io::duplex(16);
        let (mut stream, handle) = Closable::new(ours);
        let started = tokio::time::Instant::now();
        let writing = tokio::spawn(async move { stream.write_all(&[3u8; 64]).await });
        handle
            .close_when_written(Duration::from_millis(100), Duration::from_secs(2))
            .await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let err = writing.await.expect("task").expect_err("cut off");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
