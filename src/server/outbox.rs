//! The per-connection outbox: a bounded queue of shared frames plus the close signal.
//!
//! Fan-out hands every recipient the same `Arc<Frame>`; the connection task decides per client
//! whether to send the shared bytes (plaintext) or seal its own copy (encrypted). The queue is
//! bounded in messages and bytes; a client over either bound is a slow consumer and is closed
//! with 4005 rather than allowed to grow memory.
//!
//! The queue is a `VecDeque` behind a mutex with one stored waker, not a channel: an idle
//! connection holds no queue storage at all (a bounded tokio channel pre-allocates a block and
//! cache-padded state, about 800 bytes per connection), and the close signal shares the same
//! waker instead of needing a cancellation token of its own. Every critical section is a few
//! pointer moves, and the lock is never held across an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use super::room_keys::RoomGrant;
use crate::protocol::CloseCode;

mod frame;
pub(crate) use frame::{Frame, RoomRecord};

/// Queue storage kept after a burst drains; anything larger is released.
const RETAINED_SLOTS: usize = 16;

/// What a connection task is asked to do next.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Deliver a message.
    Message(Arc<Frame>),
    /// Hand the client a room epoch's key, sealed under its own session
    /// ([`super::room_keys`]).
    RoomKey(Arc<RoomGrant>),
    /// Send a transport-level ping.
    Ping,
}

/// Why the connection task was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The connection must close with this code.
    Close(CloseCode),
    /// There is something to send: take it with [`ClientHandle::pop`].
    Ready,
}

/// What the queue holds, in order.
#[derive(Debug)]
enum Queued {
    Frame(Arc<Frame>),
    RoomKey(Arc<RoomGrant>),
}

impl Queued {
    /// Bytes counted against the outbox budget.
    fn size(&self) -> usize {
        match self {
            Self::Frame(f) => f.json.len(),
            Self::RoomKey(_) => GRANT_BYTES,
        }
    }
}

/// What a room-key grant counts against the outbox's byte budget (about its sealed size).
const GRANT_BYTES: usize = 160;

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Queued>,
    /// The most frames queued at once since the queue last drained, kept when the queue
    /// releases its storage: the storage it starts with when it fills again (a burst refills
    /// it turn after turn, and growing it from nothing each time costs a reallocation and
    /// copy per doubling).
    peak: usize,
    bytes: usize,
    ping: bool,
    /// The connection task, while it waits.
    waker: Option<Waker>,
    /// The connection task has finished: nothing more is accepted.
    detached: bool,
}

/// The shared half of a connection: what the registry holds and fan-out talks to.
#[derive(Debug)]
pub(crate) struct ClientHandle {
    pub(crate) id: Arc<str>,
    queue: Mutex<Queue>,
    max_messages: usize,
    max_bytes: usize,
    /// Non-zero once a close was asked for (the first code asked for wins).
    close_code: AtomicU16,
    /// Non-zero once a close after the queued messages was asked for (a drain): nothing more
    /// is queued, what is queued is still written, then the connection closes with it.
    close_when_flushed: AtomicU16,
    /// The client takes room keys (hardened profile, opted in); set before it joins any room.
    room_keys: AtomicBool,
    /// Milliseconds since `epoch` of the last inbound message.
    last_activity_ms: AtomicU64,
    /// Milliseconds since `epoch` at which the connection must close (the authentication
    /// deadline, then the session's expiry); 0 for none. Shared so that the connection loop
    /// sees a deadline moved while an inbound frame is still being handled.
    deadline_ms: AtomicU64,
    epoch: Instant,
}

impl ClientHandle {
    pub(crate) fn new(
        id: Arc<str>,
        capacity: usize,
        max_bytes: usize,
        epoch: Instant,
    ) -> Arc<Self> {
        let handle = Arc::new(Self {
            id,
            queue: Mutex::new(Queue::default()),
            max_messages: capacity.max(1),
            max_bytes,
            close_code: AtomicU16::new(0),
            close_when_flushed: AtomicU16::new(0),
            room_keys: AtomicBool::new(false),
            last_activity_ms: AtomicU64::new(0),
            deadline_ms: AtomicU64::new(0),
            epoch,
        });
        handle.touch();
        handle
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // No code panics while holding this lock; recover the data if that ever changes.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a message; a full queue closes the client as a slow consumer.
    /// Returns whether the message was queued.
    pub(crate) fn push(&self, frame: &Arc<Frame>) -> bool {
        self.enqueue(Queued::Frame(Arc::clone(frame)))
    }

    /// Queues a room epoch's key, in order with the messages; as [`Self::push`].
    pub(crate) fn push_grant(&self, grant: &Arc<RoomGrant>) -> bool {
        self.enqueue(Queued::RoomKey(Arc::clone(grant)))
    }

    /// Marks the client as taking room keys (before it joins any room).
    pub(crate) fn take_room_keys(&self) {
        self.room_keys.store(true, Ordering::Release);
    }

    /// Whether the client takes room keys.
    pub(crate) fn holds_room_keys(&self) -> bool {
        self.room_keys.load(Ordering::Acquire)
    }

    fn enqueue(&self, item: Queued) -> bool {
        let size = item.size();
        let waker = {
            let mut q = self.lock();
            if q.detached || self.is_closing() || self.flush_close().is_some() {
                return false;
            }
            if q.frames.len() >= self.max_messages || q.bytes + size > self.max_bytes {
                drop(q);
                self.close(CloseCode::SlowConsumer);
                return false;
            }
            if q.frames.capacity() == 0 && q.peak > RETAINED_SLOTS {
                let start = std::mem::take(&mut q.peak);
                q.frames.reserve_exact(start);
            }
            q.frames.push_back(item);
            q.peak = q.peak.max(q.frames.len());
            q.bytes += size;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Messages and bytes waiting in the queue (metrics).
    pub(crate) fn queued(&self) -> (usize, usize) {
        let q = self.lock();
        (q.frames.len(), q.bytes)
    }

    /// Asks for a ping; coalesced with one already pending.
    pub(crate) fn ping(&self) {
        let waker = {
            let mut q = self.lock();
            if q.detached {
                return;
            }
            q.ping = true;
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes the next thing to send: a pending ping first, then messages in order.
    #[cfg(test)]
    pub(crate) fn pop(&self) -> Option<Outbound> {
        let mut one = [None];
        self.take(&mut one);
        one[0].take()
    }

    /// Takes up to `out.len()` things to send under one lock, in order (a pending ping
    /// first), into the first slots of `out`; returns how many.
    pub(crate) fn take(&self, out: &mut [Option<Outbound>]) -> usize {
        let mut q = self.lock();
        let mut n = 0;
        if !out.is_empty() && std::mem::take(&mut q.ping) {
            out[0] = Some(Outbound::Ping);
            n = 1;
        }
        while n < out.len() {
            let Some(item) = q.frames.pop_front() else {
                break;
            };
            q.bytes -= item.size();
            out[n] = Some(match item {
                Queued::Frame(frame) => Outbound::Message(frame),
                Queued::RoomKey(grant) => Outbound::RoomKey(grant),
            });
            n += 1;
        }
        if q.frames.is_empty() {
            match q.frames.capacity() {
                // Released already (or never filled): `peak` is the size to start with.
                0 => {}
                // Released, so that an idle connection holds no queue storage; `peak` stays:
                // the next fill starts at the size this one reached.
                c if c > RETAINED_SLOTS => q.frames = VecDeque::new(),
                // A quiet fill: nothing to remember.
                _ => q.peak = 0,
            }
        }
        n
    }

    /// Puts back what [`Self::take`] took and was not sent, in front of the queue and in its
    /// order (the slots left `None` are skipped). Nothing is put back once detached.
    pub(crate) fn put_back(&self, items: &mut [Option<Outbound>]) {
        let mut q = self.lock();
        if q.detached {
            return;
        }
        for item in items.iter_mut().rev().filter_map(Option::take) {
            let item = match item {
                Outbound::Ping => {
                    q.ping = true;
                    continue;
                }
                Outbound::Message(frame) => Queued::Frame(frame),
                Outbound::RoomKey(grant) => Queued::RoomKey(grant),
            };
            q.bytes += item.size();
            q.frames.push_front(item);
        }
    }

    /// Waits until the connection must close or has something to send; a close wins.
    pub(crate) fn poll_wake(&self, cx: &mut Context<'_>) -> Poll<Wake> {
        let mut q = self.lock();
        // Read under the lock: `close` stores the code before it takes the lock to wake us.
        if let Some(code) = self.requested_close() {
            return Poll::Ready(Wake::Close(code));
        }
        if q.ping || !q.frames.is_empty() {
            return Poll::Ready(Wake::Ready);
        }
        if let Some(code) = self.flush_close() {
            return Poll::Ready(Wake::Close(code));
        }
        register(&mut q.waker, cx);
        Poll::Pending
    }

    /// Waits until the connection must close (used while a write is in progress).
    pub(crate) fn poll_close(&self, cx: &mut Context<'_>) -> Poll<CloseCode> {
        let mut q = self.lock();
        if let Some(code) = self.requested_close() {
            return Poll::Ready(code);
        }
        register(&mut q.waker, cx);
        Poll::Pending
    }

    /// Called once the connection task is done: later pushes are refused and queued messages
    /// are released.
    pub(crate) fn detach(&self) {
        let mut q = self.lock();
        q.detached = true;
        q.frames = VecDeque::new();
        q.bytes = 0;
        q.ping = false;
        q.waker = None;
    }

    /// Asks the connection task to close with `code` (the first code asked for wins).
    pub(crate) fn close(&self, code: CloseCode) {
        let _ =
            self.close_code
                .compare_exchange(0, code.code(), Ordering::AcqRel, Ordering::Acquire);
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Asks the connection task to write what is queued and then close with `code`;
    /// nothing more is queued meanwhile. A plain [`ClientHandle::close`] still wins.
    pub(crate) fn close_after_flush(&self, code: CloseCode) {
        let _ = self.close_when_flushed.compare_exchange(
            0,
            code.code(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let waker = self.lock().waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn flush_close(&self) -> Option<CloseCode> {
        match self.close_when_flushed.load(Ordering::Acquire) {
            0 => None,
            code => Some(CloseCode::from_code(code).unwrap_or(CloseCode::Normal)),
        }
    }

    fn requested_close(&self) -> Option<CloseCode> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            code => Some(CloseCode::from_code(code).unwrap_or(CloseCode::Normal)),
        }
    }

    /// Whether a close has been asked for.
    pub(crate) fn is_closing(&self) -> bool {
        self.close_code.load(Ordering::Acquire) != 0
    }

    /// The close code asked for (`Normal` when none was).
    #[cfg(test)]
    pub(crate) fn close_code(&self) -> CloseCode {
        self.requested_close().unwrap_or(CloseCode::Normal)
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// Sets (or, with `None`, clears) the instant at which the connection must close.
    pub(crate) fn set_deadline(&self, at: Option<Instant>) {
        let ms = at.map_or(0, |at| {
            let ms = at.saturating_duration_since(self.epoch).as_millis();
            // 0 means "none": a deadline at the epoch itself is 1 ms later.
            u64::try_from(ms).unwrap_or(u64::MAX).max(1)
        });
        self.deadline_ms.store(ms, Ordering::Release);
    }

    /// The instant at which the connection must close, if any.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.deadline_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.epoch + std::time::Duration::from_millis(ms)),
        }
    }

    /// Milliseconds since the last inbound message.
    pub(crate) fn idle_ms(&self) -> u64 {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(self.last_activity_ms.load(Ordering::Relaxed))
    }
}

/// Stores the task's waker unless the stored one already wakes the same task.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests;
