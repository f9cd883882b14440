//! Recovery on reconnect: after `connected` (or a `join`), a client that asked for positions
//! gets what it missed on each stream with history, sealed under its new session like any
//! message, then one `recovered` answer with where it stands; live delivery follows.
//!
//! The client is in its rooms before the streams are read, so a publication made meanwhile is
//! both in the replay and in the outbox; the connection drops the queued copy
//! ([`Connection::render`] checks the floors set here). See `history.rs` for the ordering.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::SinkExt;
use serde_json::Value;

use super::connection::{Connection, Exit};
use super::history::Keeper;
use super::outbox::Frame;
use super::socket::FrameSocket;
use crate::protocol::{
    CloseCode, RecoverRequest, RecoveredPayload, StreamState, event, is_room_stream,
};

/// The `recover` field of an `authenticate`/`join` payload: `None` when absent; a malformed
/// one still asks for positions ([`crate::protocol::recover_request_of`]).
pub(super) fn recover_request(payload: &Value) -> Option<RecoverRequest> {
    payload
        .get("recover")
        .map(crate::protocol::recover_request_of)
}

impl<S: FrameSocket> Connection<S> {
    /// Where the streams of `rooms` (and with `user` of that user's stream and the broadcast
    /// stream) stand *before* the client enters them: read for a client that wants positions,
    /// from a shared store, for the streams it gives no position for. Its recovery then
    /// replays what is kept after these positions ([`Connection::recover`]), so a publication
    /// made after it became a member but not delivered to this instance yet (still on the
    /// bus, or published before the instance's subscription was confirmed) is neither skipped
    /// by the position the client is told nor lost if the connection drops first.
    pub(super) fn entry_positions(
        &self,
        user: Option<&str>,
        rooms: &[String],
        request: Option<&RecoverRequest>,
    ) -> impl Future<Output = Entered> + Send + use<S> {
        let wants = request.is_some() || self.positions().is_some();
        let server = self.server.clone();
        let streams: Vec<String> = match server.0.history.as_ref() {
            Some(history) if wants => history
                .streams_of(user, rooms)
                .into_iter()
                .filter(|s| !request.is_some_and(|r| r.contains_key(s)))
                .collect(),
            _ => Vec::new(),
        };
        async move { entry_positions(&server, streams).await }
    }

    /// Replays what the client missed on its streams and answers `recovered`. `rooms` are
    /// the rooms answered for (just entered, or among them `continuing`: rooms the client was
    /// in already, whose live delivery went on); `own` adds the client's user and broadcast
    /// streams (at authentication); `entered` holds where the streams the client just entered
    /// stood before it did ([`Connection::entry_positions`]). Does nothing for a client that
    /// never asked for positions.
    pub(super) async fn recover(
        &mut self,
        request: Option<RecoverRequest>,
        rooms: &[String],
        continuing: &[String],
        own: bool,
        entered: Entered,
    ) -> Option<Exit> {
        if request.is_none() && self.positions().is_none() {
            return None;
        }
        let user = self
            .info
            .as_ref()
            .map(|i| i.user_id.clone())
            .unwrap_or_default();
        let server = self.server.clone();
        let wanted = server.0.history.as_ref().map_or_else(Vec::new, |h| {
            h.streams_of(own.then_some(user.as_str()), rooms)
        });
        // A client is in at most `max_rooms_per_client` rooms plus its user and the broadcast
        // stream: positions beyond that many are ignored.
        let most = server.0.config.max_rooms_per_client.saturating_add(2);
        let request = bounded(request.unwrap_or_default(), &wanted, most);
        let (states, replay, floors) = match &server.0.history {
            Some(history) => {
                // Each stream asked for with a position is read: as many as the client's
                // recovery allowance holds; the others are answered without their replay.
                // Nothing is read while the shared store is out of reach: nothing is taken.
                let shared_down = history.shared().is_some() && !server.bus_status().connected;
                let entered: Entered = entered
                    .into_iter()
                    .filter(|(s, _)| wanted.contains(s) && !request.contains_key(s))
                    .collect();
                let asked = wanted.iter().filter(|s| request.contains_key(*s)).count();
                let reads = Reads {
                    left: if shared_down {
                        0
                    } else {
                        self.take_recoveries(
                            asked + entered.values().filter(|at| !at.is_unheld()).count(),
                        )
                    },
                    continuing: history.streams_of(None, continuing).into_iter().collect(),
                    entered,
                    shared_down,
                };
                let client = &self.handle.id;
                plan(&server, history, &request, client, wanted, own, reads).await
            }
            // No history here: every stream asked for is a gap.
            None => (
                request
                    .keys()
                    .filter(|stream| own != is_room_stream(stream))
                    .map(|stream| gap(stream))
                    .collect(),
                Vec::new(),
                Vec::new(),
            ),
        };
        // A stream recovered again (a repeated join) gets its replay from the position given:
        // the floor an earlier recovery left would drop it. The new floors are set before any
        // queued frame is written, so queued copies are still dropped.
        let held = self.positions_mut();
        for (stream, _) in &floors {
            held.remove(stream);
        }
        if !replay.is_empty() && self.write_replay(&replay).await.is_err() {
            return Some(Exit::Gone);
        }
        self.positions_mut().extend(floors);
        let replayed: usize = replay.len();
        server.0.metrics.recovered(
            states.iter().filter(|s| s.recovered.is_some()).count(),
            states.iter().filter(|s| s.recovered == Some(false)).count(),
            replayed,
        );
        let data = serde_json::to_string(&RecoveredPayload { streams: states }).unwrap_or_default();
        self.send_system(event::RECOVERED, &data).await;
        None
    }

    /// Writes the replay in one flush, bounded in time like any reply; a client that does not
    /// read it is closed as a slow consumer.
    async fn write_replay(&mut self, frames: &[Arc<Frame>]) -> Result<(), ()> {
        let limit = self.server.0.config.shutdown_timeout;
        let write = async {
            for frame in frames {
                if let Some(msg) = self.render(frame) {
                    self.server
                        .0
                        .metrics
                        .out_batch(1, msg.len().try_into().unwrap_or(u32::MAX));
                    self.socket.feed(msg.into_outgoing()).await.map_err(drop)?;
                }
            }
            self.socket.flush().await.map_err(drop)
        };
        match tokio::time::timeout(limit, write).await {
            Ok(r) => r,
            Err(_) => {
                self.handle.close(CloseCode::SlowConsumer);
                Err(())
            }
        }
    }
}

/// The positions of `request` a recovery considers: every one for a stream with history it
/// answers (`wanted`: the rooms just entered, and at authentication the user's stream, the
/// broadcast stream and the default rooms), then the others in stream-name order, up to
/// `most` in all (answered as gaps, or ignored). A client that holds positions for more rooms than it
/// is in (it left some) still has its user's and the broadcast stream's recovered.
fn bounded(request: RecoverRequest, wanted: &[String], most: usize) -> RecoverRequest {
    let wanted: HashSet<&str> = wanted.iter().map(String::as_str).collect();
    let (mut kept, others): (RecoverRequest, RecoverRequest) = request
        .into_iter()
        .partition(|(stream, _)| wanted.contains(stream.as_str()));
    let room = most.saturating_sub(kept.len());
    kept.extend(others.into_iter().take(room));
    kept
}

/// [`Connection::entry_positions`] of `streams`.
async fn entry_positions(server: &super::Server, streams: Vec<String>) -> Entered {
    let Some(history) = server.0.history.as_ref() else {
        return Entered::new();
    };
    // In memory a publication is kept and queued in one step: a position read after the
    // client entered is exact.
    if streams.is_empty() || history.shared().is_none() || !server.bus_status().connected {
        return Entered::new();
    }
    let positions =
        futures_util::future::join_all(streams.iter().map(|s| history.position(s))).await;
    streams.into_iter().zip(positions).collect()
}

/// Per stream, where it stood before the client entered it ([`Connection::entry_positions`]).
pub(super) type Entered = std::collections::HashMap<String, crate::protocol::Position>;

/// A stream that cannot be recovered here (not kept, or not one the client is in).
fn gap(stream: &str) -> StreamState {
    StreamState {
        stream: stream.to_owned(),
        epoch: String::new(),
        offset: 0,
        recovered: Some(false),
        replayed: 0,
    }
}

/// What a recovery does: the state of each stream, the frames to replay (in stream order),
/// and the floors that drop their queued copies.
type Plan = (
    Vec<StreamState>,
    Vec<Arc<Frame>>,
    Vec<(Arc<str>, (Arc<str>, u64))>,
);

/// How many streams a recovery may read (the client's recovery allowance;
/// [`super::allowance::recoveries`]), and the streams of rooms the client was in already.
struct Reads {
    left: usize,
    continuing: HashSet<String>,
    /// Where streams the client just entered stood before it did.
    entered: Entered,
    /// The shared store is out of reach: nothing is read.
    shared_down: bool,
}

/// Plans a recovery from `request`, reading at most `reads.left` streams' publications: past
/// that, a stream the client just entered is answered `recovered: false` with where it stands,
/// and one whose live delivery went on (`reads.continuing`) is left out of the answer (the
/// client keeps its own position, which its live messages move on). With a shared store, each
/// stream is read only once this instance receives its live publications (the bus confirmed
/// the subscription), so nothing published meanwhile falls between the replay and live
/// delivery.
async fn plan(
    server: &super::Server,
    history: &Keeper,
    request: &RecoverRequest,
    client: &str,
    mut streams: Vec<String>,
    own: bool,
    mut reads: Reads,
) -> Plan {
    // Streams the client asks about that it is not in (or that keep no history) are gaps.
    // At authentication, room streams are left to the joins that follow; a join answers for
    // rooms only.
    let mut states = Vec::with_capacity(streams.len());
    for stream in request.keys() {
        let room = is_room_stream(stream);
        if !streams.contains(stream) && own != room {
            states.push(gap(stream));
        }
    }
    let mut replay = Vec::new();
    let mut floors = Vec::new();
    // With the shared store out of reach, nothing can be read: every stream is answered at
    // once (a gap where a position was given) rather than after a wait per stream.
    for stream in streams.drain(..) {
        if reads.shared_down {
            let asked = request.contains_key(&stream);
            let mut state = gap(&stream);
            state.recovered = asked.then_some(false);
            states.push(state);
            continue;
        }
        if history.shared().is_some() {
            server.await_subscription(&stream).await;
        }
        let asked = request.get(&stream);
        if asked.is_some() && reads.left == 0 && reads.continuing.contains(&stream) {
            continue;
        }
        // A stream just entered without a position is read from where it stood on entry.
        let entry = asked
            .is_none()
            .then(|| reads.entered.get(&stream))
            .flatten();
        // An unheld entry position (no stream made, or no store) has nothing to read from.
        let from = asked.or(entry.filter(|at| !at.is_unheld()));
        let Some(since) = from.filter(|_| reads.left > 0) else {
            // Not asked for (the client learns where the stream stands: where it stood on
            // entry, when known, which never skips a publication made since), or over the
            // allowance (it learns that too, and that it missed what came before).
            let here = match entry {
                Some(at) => at.clone(),
                None => history.position(&stream).await,
            };
            states.push(StreamState {
                stream,
                epoch: here.epoch,
                offset: here.offset,
                recovered: asked.map(|_| false),
                replayed: 0,
            });
            continue;
        };
        reads.left -= 1;
        let (frames, here) = history.since(&stream, since).await;
        let (recovered, replayed) = match frames {
            Ok(mut frames) => {
                // What skipped this client live is not replayed to it either.
                frames.retain(|f| !f.position.as_ref().is_some_and(|p| p.excludes(client)));
                let n = frames.len() as u64;
                let epoch: Arc<str> = Arc::from(here.epoch.as_str());
                floors.push((Arc::from(stream.as_str()), (epoch, here.offset)));
                replay.extend(frames);
                (true, n)
            }
            // From an entry position: the stream started again since (the client learns
            // where it stands now), or the store could not be read.
            Err(_) => (false, 0),
        };
        states.push(StreamState {
            stream,
            epoch: here.epoch,
            offset: here.offset,
            recovered: asked.map(|_| recovered),
            replayed,
        });
    }
    (states, replay, floors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Position;

    fn at(offset: u64) -> Position {
        Position {
            offset,
            epoch: "e".to_owned(),
        }
    }

    #[test]
    fn positions_of_the_streams_answered_come_first() {
        // A client that left many rooms still sends their positions; they sort before its
        // user stream, which must not be the one dropped.
        let mut request: RecoverRequest =
            (0..300).map(|i| (format!("room:r{i:03}"), at(i))).collect();
        request.insert("user:ann".to_owned(), at(7));
        request.insert("broadcast".to_owned(), at(3));
        let wanted = vec!["broadcast".to_owned(), "user:ann".to_owned()];
        let kept = bounded(request, &wanted, 10);
        assert_eq!(kept.len(), 10);
        assert_eq!(kept["user:ann"], at(7));
        assert_eq!(kept["broadcast"], at(3));
        // The rest, in stream-name order.
        assert!(kept.contains_key("room:r000") && kept.contains_key("room:r007"));
        assert!(!kept.contains_key("room:r008"));
    }
}
