//! [`Deadline`]: a request body that must arrive whole within a time limit.
//!
//! hyper bounds the time a client takes to send a request's headers
//! ([`HttpConfig::header_read_timeout`](super::HttpConfig::header_read_timeout)), not its body.
//! A client that announces a body (`Content-Length: 100000`) and sends two bytes of it, or a
//! byte a second, would otherwise hold the connection, its place under `max_tcp_connections`
//! and the handler reading it, for as long as it likes, before any credential is checked
//! (a Socket.IO polling `POST` needs none). So every body the HTTP server reads is wrapped:
//! past [`HttpConfig::body_read_timeout`](super::HttpConfig::body_read_timeout) after its head
//! arrived, reading it fails, the handler answers with an error, and the connection, whose
//! request was not read to its end, is closed after that answer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// A body that fails once `timeout` has passed since it was made, if it has not ended.
#[derive(Debug)]
pub(super) struct Deadline<B> {
    inner: B,
    /// Created on the first poll that finds no data ready (a body read at once, as most are,
    /// costs no timer).
    expires: Option<Pin<Box<Sleep>>>,
    at: tokio::time::Instant,
}

impl<B> Deadline<B> {
    /// `inner`, which must be read whole within `timeout` from now.
    pub(super) fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            expires: None,
            // A timeout too large to add means no deadline worth keeping: a day.
            at: {
                let now = tokio::time::Instant::now();
                now.checked_add(timeout)
                    .unwrap_or_else(|| now + Duration::from_secs(86_400))
            },
        }
    }
}

/// The error a body past its deadline fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(super) struct BodyTimedOut;

impl<B> Body for Deadline<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let at = this.at;
        let expires = this
            .expires
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        match expires.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    type Chunks = futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>;

    fn body(chunks: Chunks) -> Deadline<StreamBody<Chunks>> {
        Deadline::new(StreamBody::new(chunks), Duration::from_secs(10))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        use futures_util::StreamExt;
        let chunks = futures_util::stream::iter([Bytes::from("ab"), Bytes::from("cd")])
            .then(|b| async move {
                tokio::time::sleep(Duration::from_secs(4)).await;
                Ok(Frame::data(b))
            })
            .boxed();
        let read = body(chunks).collect().await.expect("in time");
        assert_eq!(read.to_bytes(), "abcd");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_at_the_deadline_however_often_it_sends() {
        use futures_util::StreamExt;
        // One byte every second, forever: each frame alone is prompt.
        let chunks = futures_util::stream::repeat(Bytes::from("x"))
            .then(|b| async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(Frame::data(b))
            })
            .boxed();
        let started = tokio::time::Instant::now();
        let err = body(chunks).collect().await.expect_err("past the deadline");
        assert!(err.is::<BodyTimedOut>(), "{err}");
        assert_eq!(started.elapsed().as_secs(), 10);
    }
}
