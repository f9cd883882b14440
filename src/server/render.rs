//! What one client gets of a shared frame: the shared plaintext bytes, the shared room record
//! (a member holding the room's current epoch key, [`super::room_keys`]), or its own sealed
//! copy. Fail closed: an encrypted client never gets plaintext, and a record it cannot open is
//! never sent to it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::Text;

use super::connection::Connection;
use super::outbox::Frame;
use super::room_keys::RoomGrant;
use super::socket::{FrameSocket, Outgoing};
use crate::crypto::Profile;
use crate::protocol::frame_json;

/// One client's wire message for a shared frame: the frame's own bytes, or a copy of its own.
#[derive(Debug)]
pub(super) enum Rendered<'f> {
    /// Bytes every such recipient shares (the plaintext frame, a room record).
    Shared(&'f Text),
    /// This client's own message (sealed for it, or transformed for it).
    Own(Text),
    /// A binary room record every member that agreed to binary records shares.
    Binary(&'f Bytes),
}

/// What a client gets of a shared frame before sealing ([`Connection::prepare`]).
#[derive(Debug)]
pub(super) enum Prepared<'f> {
    /// The wire message as it is (a plaintext client, or a room record it holds the key of).
    Ready(Rendered<'f>),
    /// The plaintext to seal for this encrypted client.
    Seal(Cow<'f, str>),
}

impl Rendered<'_> {
    /// The message's length in bytes.
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Shared(t) => t.len(),
            Self::Own(t) => t.len(),
            Self::Binary(b) => b.len(),
        }
    }

    /// The message, owned (a clone of the shared bytes, which copies nothing).
    pub(super) fn into_outgoing(self) -> Outgoing {
        match self {
            Self::Shared(t) => Outgoing::Text(t.clone()),
            Self::Own(t) => Outgoing::Text(t),
            Self::Binary(b) => Outgoing::Binary(b.clone()),
        }
    }
}

impl<S> Connection<S>
where
    S: FrameSocket,
{
    /// Turns a shared frame into this client's wire message: the shared bytes for a plaintext
    /// client, a fresh ciphertext for an encrypted one. `None` means "do not send" (fail
    /// closed when sealing fails).
    pub(super) fn render<'f>(&mut self, frame: &'f Frame) -> Option<Rendered<'f>> {
        match self.prepare(frame)? {
            Prepared::Ready(rendered) => Some(rendered),
            Prepared::Seal(plaintext) => self.seal(&plaintext).map(Rendered::Own),
        }
    }

    /// What this client gets of a shared frame, short of sealing it: the wire message, or
    /// the plaintext to seal for it (only for a client with a session). `None` means "do
    /// not send".
    pub(super) fn prepare<'f>(&self, frame: &'f Frame) -> Option<Prepared<'f>> {
        if frame.positions_only && self.positions().is_none() {
            return None;
        }
        let json = match (self.positions(), &frame.position) {
            (Some(floors), Some(p)) => {
                if floors
                    .get(&p.stream)
                    .is_some_and(|(epoch, floor)| *epoch == p.epoch && p.offset <= *floor)
                {
                    return None; // replayed already
                }
                &p.json
            }
            _ => &frame.json,
        };
        let transformed = match (&self.server.0.hooks.transformer, &self.info) {
            // A server notice is not the application's to change.
            (Some(t), Some(info)) if !frame.positions_only => t
                .transform(info, &frame.event, &frame.data)
                .map(|(event, data)| frame_json(&event, data.get())),
            _ => None,
        };
        if transformed.is_none() && self.takes_room_record(frame) {
            return frame.room.as_ref().map(|r| {
                Prepared::Ready(if self.binary_room_records() {
                    Rendered::Binary(&r.binary)
                } else {
                    Rendered::Shared(&r.json)
                })
            });
        }
        Some(match (self.session.is_some(), transformed) {
            (true, Some(t)) => Prepared::Seal(Cow::Owned(t)),
            (true, None) => Prepared::Seal(Cow::Borrowed(json.as_str())),
            (false, Some(t)) => Prepared::Ready(Rendered::Own(Text::from(t))),
            (false, None) => Prepared::Ready(Rendered::Shared(json)),
        })
    }

    /// `plaintext` sealed for this client, in a message of its own; `None` (logged) when
    /// sealing fails or there is no session: the message is dropped, never sent in the clear.
    pub(super) fn seal(&mut self, plaintext: &str) -> Option<Text> {
        let session = self.session.as_mut()?;
        match session.seal_frame(plaintext.as_bytes()) {
            Ok(sealed) => Some(Text::from(sealed)),
            Err(e) => {
                tracing::debug!(client = %self.handle.id, error = %e, len = plaintext.len(), "seal failed; message dropped");
                None
            }
        }
    }

    /// Whether `frame`'s room record is this client's to receive as it is: the client holds
    /// the record's epoch key. In a room with history the record holds the positioned JSON,
    /// and every member gets it, whether it asked for positions or not (room keys are for
    /// SDK clients, which read a position when there is one; `docs/PROTOCOL.md` §14.2).
    fn takes_room_record(&self, frame: &Frame) -> bool {
        let (Some(record), Some(held)) = (&frame.room, self.room_epochs()) else {
            return false;
        };
        held.get(&record.room) == Some(&record.epoch)
    }

    /// The `room-key` grant, sealed under this client's session; `None` (nothing sent) for a
    /// client that does not take room keys. From now on this client receives the room's
    /// records of that epoch as they are.
    pub(super) fn render_grant(&mut self, grant: &RoomGrant) -> Option<Text> {
        if !self.handle.holds_room_keys() {
            return None;
        }
        let session = self
            .session
            .as_mut()
            .filter(|s| s.profile() == Profile::Hardened)?;
        let json = grant.json();
        match session.seal_frame(json.as_bytes()) {
            Ok(sealed) => {
                let max = self.server.0.config.max_rooms_per_client;
                let rooms = || self.server.0.registry().rooms_of(&self.handle.id);
                let rooms = (self.room_epochs().map_or(0, HashMap::len) >= max)
                    .then(rooms)
                    .flatten();
                let held = self.room_epochs_mut();
                held.insert(Arc::clone(&grant.room), grant.epoch);
                // Rooms the client left stay until it holds more than it may join.
                if let Some(rooms) = rooms {
                    held.retain(|room, _| rooms.iter().any(|r| **r == **room));
                }
                Some(Text::from(sealed))
            }
            Err(e) => {
                tracing::debug!(client = %self.handle.id, error = %e, "room key not sealed; the client gets its own records");
                None
            }
        }
    }
}
