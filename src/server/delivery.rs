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

impl Publish for Server {
    /// Delivers to this instance's recipients first, then hands the message to the bus for
    /// the others. Never waits: the returned future is already complete.
    fn publish(&self, p: Publication) -> BoxFuture<'_, Result<Receipt, PublishError>> {
        let result = self
            .frame(&p.event, p.data)
            .map(|frame| self.route_frame(p.target, &frame, &p.exclude))
            .map_err(PublishError::from);
        Box::pin(std::future::ready(result))
    }

    fn is_ready(&self) -> bool {
        Server::is_ready(self)
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
            let recipients = self.0.registry().recipients(target, exclude);
            let queued = recipients.iter().filter(|r| r.push(frame)).count();
            (queued, frame.position.as_ref().map(|p| p.offset))
        };
        match self
            .0
            .history
            .as_ref()
            .and_then(|h| Some((h, h.stream_for(target)?)))
        {
            Some((history, stream)) => history.deliver(stream, frame, push),
            None => push(frame),
        }
    }

    /// Delivers an envelope that arrived from the bus (ignores this server's own).
    pub(crate) fn deliver_remote(&self, env: BusEnvelope) {
        if env.server_id == self.0.server_id {
            return;
        }
        if EventName::check(&env.event).is_err() {
            tracing::debug!(event = %env.event, "dropping bus message with an invalid event name");
            return;
        }
        match self.frame(&env.event, env.data) {
            Ok(frame) => {
                self.deliver_local(&env.target, &frame, &env.exclude);
            }
            Err(e) => tracing::debug!(event = %env.event, error = %e, "dropping bus message"),
        }
    }

    /// Joins a client to rooms on behalf of the application (no validation hook; name rules
    /// and the per-client room limit still apply). Names that are not
    /// [joinable](super::joinable_room_name), client-id-shaped ones included, are skipped.
    /// Returns the rooms newly joined, or `None` for an unknown client.
    #[must_use]
    pub fn join(&self, client_id: &str, rooms: &[String]) -> Option<Vec<String>> {
        let valid: Vec<String> = rooms
            .iter()
            .filter(|r| super::joinable_room_name(r))
            .cloned()
            .collect();
        let max = self.0.config.max_rooms_per_client;
        self.0.update_registry(|reg, changes| {
            reg.has_client(client_id)
                .then(|| reg.join(client_id, valid, max, changes))
        })
    }

    /// Removes a client from rooms. Returns the rooms left, or `None` for an unknown client.
    #[must_use]
    pub fn leave(&self, client_id: &str, rooms: &[String]) -> Option<Vec<String>> {
        let rooms = rooms.iter().filter(|r| r.as_str() != client_id).cloned();
        self.0.update_registry(|reg, changes| {
            reg.has_client(client_id)
                .then(|| reg.leave(client_id, rooms, changes))
        })
    }

    /// Up to `limit` kept publications of `stream` (`room:..`, `user:..`, `broadcast`) after
    /// offset `since`, oldest first (for support and debugging; the admin API serves it).
    /// `None` when this server keeps no history for that stream.
    #[must_use]
    pub fn history(&self, stream: &str, since: u64, limit: usize) -> Option<HistoryPage> {
        let (position, entries) = self.0.history.as_ref()?.read(stream, since, limit)?;
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
