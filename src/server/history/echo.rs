//! Waiting for kept publications to come back. With a shared store, an instance delivers its
//! own kept publications when they arrive from the bus, like everyone else's (that is what
//! keeps a stream in offset order). A publish therefore returns only once its publication has
//! reached this instance's recipients (or after a bound), so that what the same publisher
//! sends next, kept or not, cannot overtake it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::protocol::Position;

/// Per stream: publishes in flight, the last position delivered here while any was, and
/// who waits for which.
#[derive(Default)]
struct Watch {
    in_flight: usize,
    delivered: Option<Position>,
    waiters: Vec<(Position, oneshot::Sender<()>)>,
}

/// The streams with kept publications in flight from this instance, and the publications
/// whose append could not be confirmed.
#[derive(Default)]
pub(crate) struct Echoes {
    streams: Mutex<HashMap<String, Watch>>,
    /// Appends that failed (or timed out) and were delivered live instead: if Redis runs one
    /// late, its copy that comes back is not delivered a second time. By stream and a
    /// fingerprint of event and data.
    unconfirmed: DeliveredHere<u64>,
    /// Kept publications of this instance that did not come back in time and were delivered
    /// here without waiting for the bus: if they still come back, they are not delivered a
    /// second time. By stream and position.
    ahead: DeliveredHere<Position>,
}

/// How long a publication delivered here without its echo is recognised when the echo comes.
const UNCONFIRMED_FOR: Duration = Duration::from_secs(60);

/// This instance's own publications delivered here without waiting for the bus, by stream and
/// `K`, for [`UNCONFIRMED_FOR`]: the copy that comes back later is recognised once.
struct DeliveredHere<K>(Mutex<Vec<(String, K, Instant)>>);

impl<K> Default for DeliveredHere<K> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<K: PartialEq> DeliveredHere<K> {
    fn lock(&self) -> MutexGuard<'_, Vec<(String, K, Instant)>> {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|(_, _, when)| when.elapsed() < UNCONFIRMED_FOR);
        held
    }

    fn remember(&self, stream: &str, key: K) {
        self.lock().push((stream.to_owned(), key, Instant::now()));
    }

    /// Whether `stream`'s copy with the key `key()` was delivered here (then forgotten);
    /// `key` is computed only when anything is remembered at all.
    fn take(&self, stream: &str, key: impl FnOnce() -> K) -> bool {
        let mut held = self.lock();
        if held.is_empty() {
            return false;
        }
        let key = key();
        match held.iter().position(|(s, k, _)| s == stream && *k == key) {
            Some(i) => {
                held.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

/// A fingerprint of a publication's event and data (not a security measure: a collision only
/// drops a late copy of an identical publication).
fn fingerprint(event: &str, data: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    event.hash(&mut h);
    data.hash(&mut h);
    h.finish()
}

fn reached(delivered: Option<&Position>, at: &Position) -> bool {
    delivered.is_some_and(|d| d.epoch == at.epoch && d.offset >= at.offset)
}

impl Echoes {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Watch>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts watching `stream` for a publication about to be appended (before the append, so
    /// that an echo faster than the store's answer is not missed).
    pub(crate) fn watch<'a>(&'a self, stream: &'a str) -> InFlight<'a> {
        self.lock().entry(stream.to_owned()).or_default().in_flight += 1;
        InFlight {
            echoes: self,
            stream,
        }
    }

    /// An append to `stream` failed, and its publication (`event`, `data`) was delivered live.
    pub(crate) fn unconfirmed(&self, stream: &str, event: &str, data: &str) {
        self.unconfirmed.remember(stream, fingerprint(event, data));
    }

    /// Whether this instance's own kept publication (`event`, `data`) that just came back is
    /// the late copy of a failed append, already delivered live (then forgotten). Hashes
    /// nothing unless an append has failed lately.
    pub(crate) fn is_late_copy(&self, stream: &str, event: &str, data: &str) -> bool {
        self.unconfirmed.take(stream, || fingerprint(event, data))
    }

    /// This instance's own kept publication of `stream` at `at` was delivered here without
    /// its echo (which did not come back in time).
    pub(crate) fn delivered_ahead(&self, stream: &str, at: &Position) {
        self.ahead.remember(stream, at.clone());
        self.delivered(stream, at);
    }

    /// Whether this instance's own kept publication of `stream` at `at`, just come back, was
    /// delivered ahead of its echo already (then forgotten).
    pub(crate) fn was_delivered_ahead(&self, stream: &str, at: &Position) -> bool {
        self.ahead.take(stream, || at.clone())
    }

    /// A kept publication of `stream` at `at` reached this instance's recipients.
    pub(crate) fn delivered(&self, stream: &str, at: &Position) {
        let mut streams = self.lock();
        let Some(watch) = streams.get_mut(stream) else {
            return;
        };
        watch.delivered = Some(at.clone());
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut watch.waiters)
            .into_iter()
            .partition(|(p, _)| reached(Some(at), p));
        watch.waiters = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }
}

/// A publication in flight on one stream ([`Echoes::watch`]).
pub(crate) struct InFlight<'a> {
    echoes: &'a Echoes,
    stream: &'a str,
}

impl InFlight<'_> {
    /// Waits until the publication kept at `at` has been delivered here, at most `within`;
    /// `false` if it was not by then.
    pub(crate) async fn delivered(&self, at: &Position, within: Duration) -> bool {
        let rx = {
            let mut streams = self.echoes.lock();
            let Some(watch) = streams.get_mut(self.stream) else {
                return true;
            };
            if reached(watch.delivered.as_ref(), at) {
                return true;
            }
            let (tx, rx) = oneshot::channel();
            watch.waiters.push((at.clone(), tx));
            rx
        };
        let came = matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())));
        if !came {
            tracing::debug!(
                stream = self.stream,
                offset = at.offset,
                "kept publication not seen back in time"
            );
        }
        came
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut streams = self.echoes.lock();
        if let Some(watch) = streams.get_mut(self.stream) {
            watch.in_flight = watch.in_flight.saturating_sub(1);
            if watch.in_flight == 0 {
                streams.remove(self.stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> Position {
        Position {
            offset,
            epoch: "e".into(),
        }
    }

    #[tokio::test]
    async fn a_publish_waits_for_its_own_echo_even_when_it_came_first() {
        let echoes = Echoes::default();
        let first = echoes.watch("room:a");
        // The echo arrives before the store's answer.
        echoes.delivered("room:a", &at(5));
        assert!(first.delivered(&at(5), Duration::from_secs(5)).await);
        // Another one waits until its echo comes.
        let second = echoes.watch("room:a");
        let six = at(6);
        {
            let waiting = second.delivered(&six, Duration::from_secs(5));
            tokio::pin!(waiting);
            assert!(futures_util::poll!(&mut waiting).is_pending());
            echoes.delivered("room:a", &six);
            assert!(waiting.await);
        }
        // One whose echo never comes is reported, delivered ahead, and its late echo known.
        let seven = at(7);
        assert!(!second.delivered(&seven, Duration::from_millis(10)).await);
        echoes.delivered_ahead("room:a", &seven);
        assert!(echoes.was_delivered_ahead("room:a", &seven));
        assert!(
            !echoes.was_delivered_ahead("room:a", &seven),
            "forgotten once seen"
        );
        assert!(!echoes.was_delivered_ahead("room:b", &at(7)));
        drop((first, second));
        assert!(
            echoes.lock().is_empty(),
            "nothing kept once nothing is in flight"
        );
        // Unwatched streams keep nothing.
        echoes.delivered("room:b", &at(1));
        assert!(echoes.lock().is_empty());
    }
}
