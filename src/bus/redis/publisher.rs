//! The publisher task: drains the bounded publish queue and sends `PUBLISH`es in pipelined
//! batches (sealing each envelope when the bus is encrypted), reconnects with backoff, and drops
//! messages that waited too long rather than delivering them late.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, watch};

use super::Inner;
use super::connect::{connect_publisher, timed};
use crate::bus::config::Backoff;
use crate::crypto::backplane::Sealer;
use crate::protocol::BusEnvelope;

/// Messages per PUBLISH pipeline.
const PUBLISH_BATCH: usize = 256;

/// After this long without a round trip, the connection is checked (`PING`) before a batch is
/// written on it: Redis's idle `timeout`, a `CLIENT KILL` or a middlebox may have closed it
/// meanwhile, and a batch written on a dead connection is lost (it is never retried, since it
/// may have reached Redis). A failed check reconnects with the batch still queued.
pub(super) const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

pub(super) struct Queued {
    pub(super) env: BusEnvelope,
    pub(super) at: Instant,
}

/// How far the publisher has got through the queue, so that a publication sent to Redis on
/// another connection (a kept one, appended and published by a script) can wait for the live
/// ones published before it: Redis then delivers them in that order.
///
/// `entered` counts envelopes before they are queued; `finished` counts them as the publisher
/// is done with them (published, failed or dropped), in queue order. An envelope whose
/// `publish` returned before [`Handoff::wait`] was called is thus within its target.
///
/// A wait that timed out is remembered: until the publisher finishes another envelope (it is
/// stuck on a hung Redis, say), the next waits return at once rather than each waiting out
/// its time, since a kept publication behind them fails the same way.
pub(super) struct Handoff {
    entered: AtomicU64,
    finished: watch::Sender<u64>,
    /// `finished` + 1 when a wait last timed out (0: none did since the last progress).
    stalled_at: AtomicU64,
}

impl Default for Handoff {
    fn default() -> Self {
        Self {
            entered: AtomicU64::new(0),
            finished: watch::Sender::new(0),
            stalled_at: AtomicU64::new(0),
        }
    }
}

impl Handoff {
    /// An envelope is about to be queued.
    pub(super) fn enter(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
    }

    /// The publisher is done with `n` more envelopes (or the queue refused one).
    pub(super) fn finish(&self, n: usize) {
        if n > 0 {
            self.finished
                .send_modify(|f| *f += u64::try_from(n).unwrap_or(u64::MAX));
        }
    }

    /// Resolves once the publisher is done with every envelope queued before the call, or
    /// after `within`.
    pub(super) async fn wait(&self, within: Duration) {
        let target = self.entered.load(Ordering::SeqCst);
        let now = *self.finished.borrow();
        if now >= target || self.stalled_at.load(Ordering::SeqCst) == now + 1 {
            return;
        }
        let mut finished = self.finished.subscribe();
        let waited = tokio::time::timeout(within, finished.wait_for(|f| *f >= target)).await;
        if waited.is_err() {
            let stuck = *self.finished.borrow();
            self.stalled_at.store(stuck + 1, Ordering::SeqCst);
        }
    }
}

impl Inner {
    pub(super) async fn publisher(
        self: Arc<Self>,
        first: MultiplexedConnection,
        mut rx: mpsc::Receiver<Queued>,
        mut sealer: Option<Sealer>,
    ) {
        let mut conn = Some(first);
        // The subscriber's failures: a new connection has seen those before it.
        let mut reset = self.publisher_reset.subscribe();
        reset.borrow_and_update();
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        let mut pending: VecDeque<Queued> = VecDeque::new();
        let mut closing = false;
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        // The last round trip that proved the connection alive.
        let mut alive_at = Instant::now();
        loop {
            let Some(c) = conn.as_mut() else {
                if closing {
                    while let Ok(q) = rx.try_recv() {
                        pending.push_back(q);
                    }
                    if !pending.is_empty() {
                        self.count_failed(pending.len());
                        self.handoff.finish(pending.len());
                    }
                    return;
                }
                // Reconnect, keeping what is queued until it gets too old.
                if !self.sleep_or_cancel(backoff.next_delay()).await {
                    closing = true;
                    continue;
                }
                match connect_publisher(&self.client, self.connect_timeout, self.response_timeout)
                    .await
                {
                    Ok(c) => {
                        // Reconnections, not attempts: an outage counts once.
                        self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        backoff.reset();
                        // A failure of the subscriber's before now is not this connection's.
                        reset.borrow_and_update();
                        conn = Some(c);
                        alive_at = Instant::now();
                        self.set_up(&self.pub_up, "publisher");
                    }
                    Err(e) => self.set_down(&self.pub_up, format!("publisher: {e}")),
                }
                while let Ok(q) = rx.try_recv() {
                    pending.push_back(q);
                }
                self.drop_stale(&mut pending);
                continue;
            };
            if pending.is_empty() && !closing {
                tokio::select! {
                    () = self.cancel.cancelled() => closing = true,
                    q = rx.recv() => match q {
                        Some(q) => pending.push_back(q),
                        None => closing = true,
                    },
                    Ok(()) = reset.changed() => {
                        self.set_down(&self.pub_up, "publisher: connection lost".to_owned());
                        conn = None;
                        continue;
                    }
                    _ = ping.tick() => {
                        match self.ping(c).await {
                            Ok(_) => alive_at = Instant::now(),
                            Err(e) => {
                                self.set_down(&self.pub_up, format!("publisher: ping failed: {e}"));
                                conn = None;
                            }
                        }
                        continue;
                    }
                }
            }
            while pending.len() < PUBLISH_BATCH {
                match rx.try_recv() {
                    Ok(q) => pending.push_back(q),
                    Err(_) => break,
                }
            }
            self.drop_stale(&mut pending);
            if pending.is_empty() {
                if closing {
                    return;
                }
                continue;
            }
            if alive_at.elapsed() >= CHECK_AFTER_IDLE
                && let Err(e) = self.ping(c).await
            {
                // Nothing was written: the batch waits for the next connection.
                self.set_down(&self.pub_up, format!("publisher: connection lost: {e}"));
                conn = None;
                continue;
            }
            let mut pipe = redis::pipe();
            let mut n = 0u64;
            let take = pending.len().min(PUBLISH_BATCH);
            // Done with these once the pipeline returns (or fails), whichever way it goes.
            let handed = Finished(&self.handoff, take);
            for mut q in pending.drain(..take) {
                if let Some(s) = sealer.as_mut()
                    && s.seal(&mut q.env).is_err()
                {
                    self.count_failed(1);
                    continue;
                }
                pipe.cmd("PUBLISH")
                    .arg(q.env.target.channel())
                    .arg(q.env.to_json())
                    .ignore();
                n += 1;
            }
            if n == 0 {
                continue;
            }
            let sent = timed(self.response_timeout, pipe.query_async::<()>(c)).await;
            drop(handed);
            match sent {
                Ok(()) => {
                    alive_at = Instant::now();
                    self.stats.published.fetch_add(n, Ordering::Relaxed);
                    self.stats.answered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    // The batch may or may not have reached Redis: it is not retried
                    // (at-most-once, never duplicated).
                    self.count_failed(usize::try_from(n).unwrap_or(usize::MAX));
                    self.set_down(&self.pub_up, format!("publisher: {e}"));
                    conn = None;
                }
            }
        }
    }

    fn drop_stale(&self, pending: &mut VecDeque<Queued>) {
        let mut stale = 0;
        while pending.len() > self.publish_queue
            || pending
                .front()
                .is_some_and(|q| q.at.elapsed() > self.publish_max_age)
        {
            pending.pop_front();
            stale += 1;
        }
        if stale > 0 {
            self.count_failed(stale);
            self.handoff.finish(stale);
        }
    }

    /// One `PING` round trip on the publisher's connection.
    async fn ping(&self, c: &mut MultiplexedConnection) -> Result<String, String> {
        let pong = timed(
            self.response_timeout,
            redis::cmd("PING").query_async::<String>(c),
        )
        .await;
        if pong.is_ok() {
            self.stats.answered.fetch_add(1, Ordering::Relaxed);
        }
        pong
    }

    fn count_failed(&self, n: usize) {
        let total = self
            .stats
            .dropped_failed
            .fetch_add(n as u64, Ordering::Relaxed)
            + n as u64;
        tracing::warn!(
            dropped = n,
            total,
            "bus messages not published (Redis unavailable)"
        );
    }
}

/// Marks a batch finished when dropped, on every path out of the batch.
struct Finished<'a>(&'a Handoff, usize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.finish(self.1);
    }
}
