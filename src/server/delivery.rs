//! Delivery: the server's [`Publish`] implementation (local fan-out first, then the bus), and
//! delivery of what arrives from the bus.
//!
//! A message is serialized once. Plaintext recipients all get the same bytes
//! (refcounted); each encrypted recipient's connection task seals its own copy, so a large room
//! costs the sender O(recipients) queue pushes and no crypto.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::value::RawValue;

use super::Server;
use super::outbox::Frame;
use crate::protocol::{BusEnvelope, BusTarget, EventName};
use crate::publish::{Publication, Publish, PublishError, Receipt};

pub use crate::protocol::SendError;

/// How long a publish to a shared history store waits for its publication to come back to
/// this instance's recipients.
const ECHO_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A publication's stream in the shared store.
struct Kept<'a> {
    history: &'a super::history::Keeper,
    store: &'a Arc<dyn super::HistoryStore>,
    stream: String,
}

/// How long a recovery waits for the bus to confirm a subscription before reading history.
const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Publish for Server {
    /// Delivers to this instance's recipients first, then hands the message to the bus for
    /// the others; never waits. A publication to a stream kept in a shared history store
    /// waits for the store instead, which allocates its offset and publishes it to every
    /// instance, this one included ([`super::HistoryStore::append`]).
    fn publish(&self, p: Publication) -> BoxFuture<'_, Result<Receipt, PublishError>> {
        let frame = match self.frame(&p.event, p.data) {
            Ok(frame) => frame,
            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
        };
        if let Some(history) = &self.0.history
            && let Some(store) = history.shared()
            && let Some(stream) = history.stream_for(&p.target)
        {
            let kept = Kept {
                history,
                store,
                stream,
            };
            return Box::pin(self.publish_kept(kept, p.target, frame, p.exclude));
        }
        let receipt = self.route_frame(p.target, &frame, &p.exclude);
        if !self.0.turns.queued(receipt.local_recipients) {
            return Box::pin(std::future::ready(Ok(receipt)));
        }
        // The turn is over: let the connections write before publishing on
        // ([`super::turns`]).
        Box::pin(async move {
            tokio::task::yield_now().await;
            Ok(receipt)
        })
    }

    fn is_ready(&self) -> bool {
        Server::is_ready(self)
    }
}

impl Server {
    /// Appends a publication to its stream in the shared store, which publishes it to every
    /// instance. If the append fails, the publication is delivered live only and its receipt
    /// has no offset: over the bus too when the store refused it, here alone when the store
    /// may still run it (it then reaches the others late, once). The store starts a new epoch
    /// for the stream, so no client is told it recovered across it.
    ///
    /// It returns once the publication has reached this instance's recipients (they receive
    /// it from the bus, at most [`ECHO_WAIT`] later, or from here if it has not come back by
    /// then), so that what the caller publishes next cannot overtake it.
    async fn publish_kept(
        &self,
        Kept {
            history,
            store,
            stream,
        }: Kept<'_>,
        target: BusTarget,
        frame: Arc<Frame>,
        exclude: Vec<String>,
    ) -> Result<Receipt, PublishError> {
        let envelope = BusEnvelope {
            server_id: self.0.server_id.clone(),
            target: target.clone(),
            event: frame.event.to_string(),
            data: frame.data.clone(),
            exclude: exclude.clone(),
            kept: None,
        };
        // What this instance published live before this must reach Redis first.
        self.0.bus.flushed(ECHO_WAIT).await;
        let in_flight = history.echoes().watch(&stream);
        match store.append(&stream, envelope).await {
            Ok(position) => {
                let _ = self.0.metrics.appended(true);
                // They receive it from the bus, with its position.
                let local = self.0.registry().recipients(&target, &exclude).len();
                if local > 0 && !in_flight.delivered(&position, ECHO_WAIT).await {
                    // It did not come back in time: this instance's subscription is down (Redis
                    // restarting, say) or far behind. Its recipients get it from here, with its
                    // position, and the echo, if it still comes, is not delivered again.
                    history.echoes().delivered_ahead(&stream, &position);
                    self.fan_out(&target, &frame.at(&stream, &position, &exclude), &exclude);
                }
                let mut receipt = Receipt::local(local);
                receipt.offset = Some(position.offset);
                Ok(receipt)
            }
            Err(e) => {
                // One line per outage, not per publication: the 1st, 2nd, 4th, 8th, ...
                let failed = self.0.metrics.appended(false);
                if failed.is_power_of_two() {
                    tracing::warn!(stream, error = %e, failed, "publication not kept in history; delivered live only");
                }
                match e {
                    // Redis may still run the append, and publish it to every instance: here
                    // it goes to local recipients now, and its late copy is not delivered
                    // again; the bus carries nothing else, so other instances get it at most
                    // once.
                    super::HistoryError::Unconfirmed(_) => {
                        history
                            .echoes()
                            .unconfirmed(&stream, &frame.event, frame.data.get());
                        let (local, _) = self.deliver_local(&target, &frame, &exclude);
                        Ok(Receipt::local(local))
                    }
                    // Nothing was kept or published: deliver it as a publication without
                    // history.
                    _ => Ok(self.route_frame(target, &frame, &exclude)),
                }
            }
        }
    }
}

impl Server {
    /// Where an IGNIS `send(destination, ..)` routes `destination` from this instance: no
    /// destination broadcasts; a local client id sends to that client; anything else is a
    /// room (on the other instances too). See [`crate::compat::IgnisSend`].
    ///
    /// A client id that is not local thus travels as the room of that name, which on the
    /// client's own instance holds that client alone: client-id-shaped rooms cannot be joined
    /// ([`super::joinable_room_name`]).
    #[must_use]
    pub fn resolve_destination(&self, destination: Option<&str>) -> BusTarget {
        match destination {
            None => BusTarget::Broadcast,
            Some(d) => {
                let reg = self.0.registry();
                if reg.has_client(d) {
                    BusTarget::Client(d.to_owned())
                } else {
                    BusTarget::Room(d.to_owned())
                }
            }
        }
    }

    /// Serializes a message once, refusing one that no client's outbox could hold.
    pub(crate) fn frame(&self, event: &str, data: Box<RawValue>) -> Result<Arc<Frame>, SendError> {
        let frame = Frame::new(event, data);
        let limit = self.0.config.outbox_bytes;
        if frame.json.len() > limit {
            return Err(SendError::TooLarge {
                size: frame.json.len(),
                limit,
            });
        }
        Ok(frame)
    }

    /// Delivers a frame from [`Server::frame`] to this instance's recipients of `target`,
    /// then publishes it on the bus for the others.
    pub(crate) fn route_frame(
        &self,
        target: BusTarget,
        frame: &Arc<Frame>,
        exclude: &[String],
    ) -> Receipt {
        let (local, offset) = self.deliver_local(&target, frame, exclude);
        self.0.bus.publish(BusEnvelope {
            server_id: self.0.server_id.clone(),
            target,
            event: frame.event.to_string(),
            data: frame.data.clone(),
            exclude: exclude.to_vec(),
            kept: None,
        });
        let mut receipt = Receipt::local(local);
        receipt.offset = offset;
        receipt
    }

    /// Queues `frame` for every local recipient of `target`; returns how many were queued,
    /// and the offset the frame got when the target keeps history (it is appended to the
    /// stream first, and queued positioned).
    fn deliver_local(
        &self,
        target: &BusTarget,
        frame: &Arc<Frame>,
        exclude: &[String],
    ) -> (usize, Option<u64>) {
        let push = |frame: &Arc<Frame>| {
            let queued = self.fan_out(target, frame, exclude);
            (queued, frame.position.as_ref().map(|p| p.offset))
        };
        match self
            .0
            .history
            .as_ref()
            .and_then(|h| Some((h.memory()?, h.stream_for(target)?)))
        {
            Some((memory, stream)) => memory.deliver(stream, frame, exclude, push),
            None => push(frame),
        }
    }

    /// Queues `frame` for every local recipient of `target`; returns how many it was queued
    /// for. A room with room keys seals it once for the members holding its key
    /// ([`super::room_keys`]).
    pub(super) fn fan_out(
        &self,
        target: &BusTarget,
        frame: &Arc<Frame>,
        exclude: &[String],
    ) -> usize {
        if let (Some(keys), BusTarget::Room(room)) = (&self.0.room_keys, target)
            && keys.covers(room)
        {
            return keys.deliver(
                room,
                frame,
                |holders| self.0.registry().room_snapshot(room, exclude, holders),
                |grants| self.0.metrics.room_key_epoch(grants),
            );
        }
        self.fan_out_sessions(target, frame, exclude)
    }

    /// Queues `frame` for every recipient of `target` but `exclude`, each in its own session,
    /// never as a room record: for the protocol's own events to a room's clients (a room
    /// record carries only application envelopes). Returns how many took it.
    pub(super) fn fan_out_sessions(
        &self,
        target: &BusTarget,
        frame: &Arc<Frame>,
        exclude: &[String],
    ) -> usize {
        // The shared list (see `registry::recipients`), the lock released before queueing;
        // with exclusions a list of its own, which also takes a client excluded by an alias
        // (a Socket.IO `socket.id`, as a worker or another instance may name it).
        let recipients = if exclude.is_empty() {
            self.0.registry().recipients_of(target)
        } else {
            self.0.registry().recipients(target, exclude).into()
        };
        recipients.iter().filter(|r| r.push(frame)).count()
    }

    /// Delivers an envelope that arrived from the bus (ignores this server's own). Returns
    /// whether the publishing turn is over ([`super::turns`]): a bus delivering a burst
    /// should then yield to the connections before it delivers more.
    pub(crate) fn deliver_remote(&self, env: BusEnvelope) -> bool {
        // Kept in the shared store: it comes back to every instance, this one included.
        let kept = env.kept.is_some()
            && self
                .0
                .history
                .as_ref()
                .is_some_and(|h| h.shared().is_some());
        if env.server_id == self.0.server_id && !kept {
            return false;
        }
        if EventName::check(&env.event).is_err() {
            tracing::debug!(event = %env.event, "dropping bus message with an invalid event name");
            return false;
        }
        let queued = if kept {
            self.deliver_kept(env)
        } else {
            match self.frame(&env.event, env.data) {
                Ok(frame) => self.deliver_local(&env.target, &frame, &env.exclude).0,
                Err(e) => {
                    // Another instance refuses such a message before it is published: this
                    // one came from a worker (an emitter) that does not know the limit.
                    tracing::warn!(event = %env.event, error = %e, "dropping bus message");
                    0
                }
            }
        };
        self.0.turns.queued(queued)
    }

    /// Delivers a publication the shared store kept, positioned, in the order the bus hands
    /// them over (the store's offset order). One to a stream without history here (the
    /// instances disagree on what is kept) is delivered without a position. Returns how
    /// many local clients it was queued for.
    fn deliver_kept(&self, env: BusEnvelope) -> usize {
        let frame = match self.frame(&env.event, env.data) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(event = %env.event, error = %e, "dropping bus message");
                return 0;
            }
        };
        let stream = self
            .0
            .history
            .as_ref()
            .and_then(|h| h.stream_for(&env.target));
        // The late copy of this instance's own failed append was delivered live already, and
        // so was one whose echo came too late.
        if env.server_id == self.0.server_id
            && let (Some(history), Some(stream)) = (&self.0.history, &stream)
            && (history
                .echoes()
                .is_late_copy(stream, &frame.event, frame.data.get())
                || env
                    .kept
                    .as_ref()
                    .is_some_and(|at| history.echoes().was_delivered_ahead(stream, at)))
        {
            return 0;
        }
        let (frame, delivered) = match (stream, env.kept) {
            (Some(stream), Some(at)) => (frame.at(&stream, &at, &env.exclude), Some((stream, at))),
            _ => (frame, None),
        };
        // The live copy of what a catch-up delivered already ([`Server::catch_up`]).
        if let (Some(history), Some((stream, at))) = (&self.0.history, &delivered)
            && !history.tails().arrived(stream, at)
        {
            return 0;
        }
        let queued = self.fan_out(&env.target, &frame, &env.exclude);
        if let (Some(history), Some((stream, at))) = (&self.0.history, delivered) {
            history.echoes().delivered(&stream, &at);
        }
        queued
    }

    /// Waits (at most [`SUBSCRIBE_WAIT`] in all) until this instance receives live
    /// publications to each of `targets` ([`super::Bus::subscribed`]): what another instance
    /// sends to a client, its user or a room right after it was told it is connected, or
    /// joined, must not be published before the subscription that carries it exists. At once
    /// on a bus that needs no subscription (the in-process one, Redis's pattern mode).
    pub(crate) async fn await_targets(&self, targets: &[BusTarget]) {
        let bus = &self.0.bus;
        if !bus.confirms_subscriptions() {
            return;
        }
        let waits = targets.iter().map(|t| bus.subscribed(t, SUBSCRIBE_WAIT));
        let confirmed = futures_util::future::join_all(waits).await;
        if confirmed.contains(&false) {
            tracing::debug!("bus subscription not confirmed in time; going on");
        }
    }

    /// [`Self::await_targets`] for a client being admitted: its user, its id and its rooms.
    /// Nothing is built on a bus that confirms no subscriptions (the connection path).
    pub(crate) async fn await_client_targets(&self, user: &str, id: &str, rooms: &[String]) {
        if !self.0.bus.confirms_subscriptions() {
            return;
        }
        let mut targets = Vec::with_capacity(2 + rooms.len());
        targets.push(BusTarget::User(user.to_owned()));
        targets.push(BusTarget::Client(id.to_owned()));
        targets.extend(rooms.iter().cloned().map(BusTarget::Room));
        self.await_targets(&targets).await;
    }

    /// Waits (at most [`SUBSCRIBE_WAIT`]) until this instance receives live publications of
    /// `stream` ([`super::Bus::subscribed`]).
    pub(crate) async fn await_subscription(&self, stream: &str) {
        if let Some(target) = crate::protocol::target_of(stream)
            && !self.0.bus.subscribed(&target, SUBSCRIBE_WAIT).await
        {
            tracing::warn!(
                stream,
                "bus subscription not confirmed in time; recovering anyway"
            );
        }
    }

    /// Joins a client (named by its id, or a Socket.IO socket by its `socket.id`) to rooms on
    /// behalf of the application (no validation hook; name rules and the per-client room
    /// limit still apply). Names that are not [joinable](super::joinable_room_name),
    /// client-id-shaped ones included, are skipped. Returns the rooms newly joined, or `None`
    /// for an unknown client.
    #[must_use]
    pub fn join(&self, client_id: &str, rooms: &[String]) -> Option<Vec<String>> {
        let valid: Vec<String> = rooms
            .iter()
            .filter(|r| super::joinable_room_name(r))
            .cloned()
            .collect();
        let max = self.0.config.max_rooms_per_client;
        self.0.update_registry(|reg, changes| {
            let id = reg.canonical(client_id)?;
            Some(reg.join(&id, valid, max, changes))
        })
    }

    /// The id of the client `name` names (its id, or a Socket.IO socket's `socket.id`) on
    /// this instance, if any.
    #[must_use]
    pub fn client_named(&self, name: &str) -> Option<String> {
        self.0.registry().canonical(name).map(|id| id.to_string())
    }

    /// Removes a client (named as for [`Server::join`]) from rooms, except the rooms of its
    /// own id and alias. Returns the rooms left, or `None` for an unknown client.
    #[must_use]
    pub fn leave(&self, client_id: &str, rooms: &[String]) -> Option<Vec<String>> {
        self.0.update_registry(|reg, changes| {
            let id = reg.canonical(client_id)?;
            let rooms = rooms.iter().filter(|r| **r != *id).cloned();
            Some(reg.leave(&id, rooms, changes))
        })
    }

    /// Gives a client the other name `alias` (a Socket.IO socket's `socket.id`): it then
    /// reaches the client wherever its id does, and names a room only that client is in.
    /// `false` (nothing changes) for an unknown client or a name in use.
    #[cfg_attr(not(feature = "socketio"), allow(dead_code))] // only the Socket.IO door names one
    pub(crate) fn alias_client(&self, client_id: &str, alias: &str) -> bool {
        self.0
            .update_registry(|reg, changes| reg.add_alias(client_id, alias, changes))
    }

    /// Up to `limit` kept publications of `stream` (`room:..`, `user:..`, `broadcast`) after
    /// offset `since`, oldest first (for support and debugging; the admin API serves it).
    /// `None` when this server keeps no history for that stream (or its shared store cannot be
    /// read).
    pub async fn history(&self, stream: &str, since: u64, limit: usize) -> Option<HistoryPage> {
        let (position, entries) = self.0.history.as_ref()?.read(stream, since, limit).await?;
        Some(HistoryPage {
            epoch: position.epoch,
            offset: position.offset,
            messages: entries
                .into_iter()
                .map(|(offset, frame)| HistoryEntry {
                    offset,
                    event: frame.event.to_string(),
                    data: frame.data.clone(),
                })
                .collect(),
        })
    }
}

/// A page of a stream's history ([`Server::history`]).
#[derive(Debug, serde::Serialize)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The stream's epoch.
    pub epoch: String,
    /// The stream's last offset.
    pub offset: u64,
    /// Kept publications, oldest first.
    pub messages: Vec<HistoryEntry>,
}

/// One kept publication.
#[derive(Debug, serde::Serialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// Its offset in the stream.
    pub offset: u64,
    /// The event name.
    pub event: String,
    /// The payload.
    pub data: Box<RawValue>,
}
