//! The per-connection outbox: a bounded queue of shared frames plus the kill switch.
//!
//! Fan-out hands every recipient the same `Arc<Frame>`; the connection task decides per client
//! whether to send the shared bytes (plaintext) or seal its own copy (encrypted). The queue is
//! bounded in messages and bytes; a client over either bound is a slow consumer and is closed
//! with 4005 rather than allowed to grow memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use crate::protocol::{CloseCode, frame_json};

/// One outbound message, serialized once and shared by every recipient.
#[derive(Debug)]
pub(crate) struct Frame {
    /// Event name (for transformers).
    pub(crate) event: Box<str>,
    /// Payload JSON (for transformers and the bus).
    pub(crate) data: Box<RawValue>,
    /// `{"event":..,"data":..}`: the plaintext frame and the AEAD plaintext.
    pub(crate) json: Utf8Bytes,
}

impl Frame {
    pub(crate) fn new(event: &str, data: Box<RawValue>) -> Arc<Self> {
        let json = frame_json(event, data.get());
        Arc::new(Self {
            event: event.into(),
            data,
            json: json.into(),
        })
    }
}

/// What a connection task can be asked to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Deliver a message.
    Message(Arc<Frame>),
    /// Send a transport-level ping.
    Ping,
}

/// The shared half of a connection: what the registry holds and fan-out talks to.
#[derive(Debug)]
pub(crate) struct ClientHandle {
    pub(crate) id: Arc<str>,
    tx: mpsc::Sender<Outbound>,
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    kill: CancellationToken,
    close_code: AtomicU16,
    /// Milliseconds since `epoch` of the last inbound message.
    last_activity_ms: AtomicU64,
    epoch: Instant,
}

impl ClientHandle {
    pub(crate) fn new(
        id: Arc<str>,
        capacity: usize,
        max_bytes: usize,
        epoch: Instant,
    ) -> (Arc<Self>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(capacity);
        let handle = Arc::new(Self {
            id,
            tx,
            queued_bytes: AtomicUsize::new(0),
            max_bytes,
            kill: CancellationToken::new(),
            close_code: AtomicU16::new(0),
            last_activity_ms: AtomicU64::new(0),
            epoch,
        });
        handle.touch();
        (handle, rx)
    }

    /// Queues a message; a full queue closes the client as a slow consumer.
    /// Returns whether the message was queued.
    pub(crate) fn push(&self, frame: &Arc<Frame>) -> bool {
        let size = frame.json.len();
        let before = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if before + size > self.max_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            self.close(CloseCode::SlowConsumer);
            return false;
        }
        match self.tx.try_send(Outbound::Message(Arc::clone(frame))) {
            Ok(()) => true,
            Err(err) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                if matches!(err, mpsc::error::TrySendError::Full(_)) {
                    self.close(CloseCode::SlowConsumer);
                }
                false
            }
        }
    }

    /// Asks for a ping; silently skipped when the queue is full (the client is behind anyway).
    pub(crate) fn ping(&self) {
        let _ = self.tx.try_send(Outbound::Ping);
    }

    /// Called by the connection task once a message has left the queue.
    pub(crate) fn dequeued(&self, frame: &Frame) {
        self.queued_bytes
            .fetch_sub(frame.json.len(), Ordering::Relaxed);
    }

    /// Asks the connection task to close with `code` (the first code asked for wins).
    pub(crate) fn close(&self, code: CloseCode) {
        let _ =
            self.close_code
                .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire);
        self.kill.cancel();
    }

    pub(crate) fn kill_token(&self) -> &CancellationToken {
        &self.kill
    }

    pub(crate) fn close_code(&self) -> CloseCode {
        CloseCode::from_code(self.close_code.load(Ordering::Acquire)).unwrap_or(CloseCode::Normal)
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// Milliseconds since the last inbound message.
    pub(crate) fn idle_ms(&self) -> u64 {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(self.last_activity_ms.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Arc<Frame> {
        Frame::new(
            "e",
            RawValue::from_string(format!("\"{}\"", "x".repeat(n))).expect("raw"),
        )
    }

    #[tokio::test]
    async fn full_queue_closes_as_slow_consumer() {
        let (h, mut rx) = ClientHandle::new("c".into(), 2, 1 << 20, Instant::now());
        let f = frame(1);
        assert!(h.push(&f));
        assert!(h.push(&f));
        assert!(!h.kill_token().is_cancelled());
        assert!(!h.push(&f));
        assert!(h.kill_token().is_cancelled());
        assert_eq!(h.close_code(), CloseCode::SlowConsumer);
        assert!(matches!(rx.recv().await, Some(Outbound::Message(_))));
    }

    #[test]
    fn byte_budget_closes_as_slow_consumer() {
        let (h, _rx) = ClientHandle::new("c".into(), 100, 100, Instant::now());
        let f = frame(60);
        assert!(h.push(&f));
        assert!(!h.push(&f));
        assert_eq!(h.close_code(), CloseCode::SlowConsumer);
    }

    #[test]
    fn first_close_code_wins() {
        let (h, _rx) = ClientHandle::new("c".into(), 1, 100, Instant::now());
        h.close(CloseCode::HeartbeatTimeout);
        h.close(CloseCode::SlowConsumer);
        assert_eq!(h.close_code(), CloseCode::HeartbeatTimeout);
    }
}
