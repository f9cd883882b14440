//! The delivery API: local fan-out first, then publish to the bus.
//!
//! Every method serializes the payload once. Plaintext recipients all get the same bytes
//! (refcounted); each encrypted recipient's connection task seals its own copy, so a large room
//! costs the sender O(recipients) queue pushes and no crypto.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use super::Server;
use super::outbox::Frame;
use crate::protocol::{BusEnvelope, BusTarget, EventName};

pub use crate::protocol::SendError;

/// Checks an outbound event name: 1..=256 characters and not a protocol event
/// ([`EventName::check`]).
///
/// # Errors
/// [`SendError::InvalidEvent`] or [`SendError::ReservedEvent`].
pub fn check_event(name: &str) -> Result<(), SendError> {
    EventName::check(name).map_err(SendError::from)
}

impl Server {
    /// Sends to one client (on whichever instance it is). Returns local recipients queued.
    ///
    /// # Errors
    /// [`SendError`] for an invalid event name, a payload that does not serialize, or a
    /// message larger than `outbox_bytes`.
    pub fn send_to_client(
        &self,
        client_id: &str,
        event: &str,
        data: &impl Serialize,
    ) -> Result<usize, SendError> {
        self.route(
            BusTarget::Client(client_id.to_owned()),
            event,
            data,
            &[],
            true,
        )
    }

    /// Sends to every session of a user, on every instance.
    ///
    /// # Errors
    /// As [`Server::send_to_client`].
    pub fn send_to_user(
        &self,
        user_id: &str,
        event: &str,
        data: &impl Serialize,
    ) -> Result<usize, SendError> {
        self.route(BusTarget::User(user_id.to_owned()), event, data, &[], true)
    }

    /// Sends to every member of a room, on every instance, except `exclude` (client ids).
    ///
    /// # Errors
    /// As [`Server::send_to_client`].
    pub fn send_to_room(
        &self,
        room: &str,
        event: &str,
        data: &impl Serialize,
        exclude: &[String],
    ) -> Result<usize, SendError> {
        self.route(BusTarget::Room(room.to_owned()), event, data, exclude, true)
    }

    /// Sends to every authenticated client, on every instance, except `exclude`.
    ///
    /// # Errors
    /// As [`Server::send_to_client`].
    pub fn broadcast(
        &self,
        event: &str,
        data: &impl Serialize,
        exclude: &[String],
    ) -> Result<usize, SendError> {
        self.route(BusTarget::Broadcast, event, data, exclude, true)
    }

    /// IGNIS `send()` routing: no destination broadcasts; a local client id sends to that
    /// client; a local room sends to the room; anything else is published as a room for the
    /// other instances. Always publishes to the bus as well.
    ///
    /// A client id that is not local thus travels as the room of that name, which on the
    /// client's own instance holds that client alone: client-id-shaped rooms cannot be joined
    /// ([`super::joinable_room_name`]).
    ///
    /// # Errors
    /// As [`Server::send_to_client`].
    pub fn send(
        &self,
        destination: Option<&str>,
        event: &str,
        data: &impl Serialize,
    ) -> Result<usize, SendError> {
        let target = self.resolve_destination(destination);
        self.route(target, event, data, &[], true)
    }

    /// Where `send()` would route `destination` from this instance.
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

    /// Sends to `target` (local delivery, then publish unless `publish` is false).
    ///
    /// # Errors
    /// As [`Server::send_to_client`].
    pub fn route(
        &self,
        target: BusTarget,
        event: &str,
        data: &impl Serialize,
        exclude: &[String],
        publish: bool,
    ) -> Result<usize, SendError> {
        check_event(event)?;
        let raw = serde_json::value::to_raw_value(data)?;
        let frame = self.frame(event, raw)?;
        Ok(self.route_frame(target, &frame, exclude, publish))
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

    /// As [`Server::route`] with a frame from [`Server::frame`].
    pub(crate) fn route_frame(
        &self,
        target: BusTarget,
        frame: &Arc<Frame>,
        exclude: &[String],
        publish: bool,
    ) -> usize {
        let n = self.deliver_local(&target, frame, exclude);
        if publish {
            self.0.bus.publish(BusEnvelope {
                server_id: self.0.server_id.clone(),
                target,
                event: frame.event.to_string(),
                data: frame.data.clone(),
                exclude: exclude.to_vec(),
            });
        }
        n
    }

    /// Queues `frame` for every local recipient of `target`; returns how many were queued.
    fn deliver_local(&self, target: &BusTarget, frame: &Arc<Frame>, exclude: &[String]) -> usize {
        let recipients = self.0.registry().recipients(target, exclude);
        recipients.iter().filter(|r| r.push(frame)).count()
    }

    /// Delivers an envelope that arrived from the bus (ignores this server's own).
    pub(crate) fn deliver_remote(&self, env: BusEnvelope) {
        if env.server_id == self.0.server_id {
            return;
        }
        if check_event(&env.event).is_err() {
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
}
