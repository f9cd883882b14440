//! The shared frame: a publication serialized once, with what some recipients get instead
//! (its positioned JSON, its room record), handed to every recipient's outbox behind one `Arc`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::protocol::{Text, frame_json};

/// One outbound message, serialized once and shared by every recipient.
#[derive(Debug)]
pub(crate) struct Frame {
    /// Event name (for transformers).
    pub(crate) event: Box<str>,
    /// Payload JSON (for transformers and the bus).
    pub(crate) data: Box<RawValue>,
    /// `{"event":..,"data":..}`: the plaintext frame and the AEAD plaintext.
    pub(crate) json: Text,
    /// Where this publication sits in its stream, when the stream keeps history.
    pub(crate) position: Option<FramePosition>,
    /// The publication sealed once under its room's current epoch key, for the members
    /// holding that key ([`crate::server::room_keys`]).
    pub(crate) room: Option<RoomRecord>,
    /// Only for the clients that asked for positions (a server notice such as
    /// [`Frame::gap_notice`]); the others do not get it.
    pub(crate) positions_only: bool,
}

/// A room record: the publication (its positioned JSON when it has a position) sealed once
/// under `epoch` of `room`, in both of its wire forms.
#[derive(Debug)]
pub(crate) struct RoomRecord {
    pub(crate) room: Arc<str>,
    pub(crate) epoch: u64,
    /// The `room-encrypted` text frame.
    pub(crate) json: Text,
    /// The binary message, for members that agreed to binary records.
    pub(crate) binary: Bytes,
}

/// A publication's place in a stream with history ([`crate::server::history`]).
#[derive(Debug, Clone)]
pub(crate) struct FramePosition {
    /// The stream (`room:..`, `user:..`, `broadcast`).
    pub(crate) stream: Arc<str>,
    /// Its offset in the stream.
    pub(crate) offset: u64,
    /// The stream's epoch.
    pub(crate) epoch: Arc<str>,
    /// `{"event":..,"data":..,"stream":..,"offset":..,"epoch":..}`: what a client that asked
    /// for positions receives instead of `json`.
    pub(crate) json: Text,
    /// The client ids the publication skipped (`except`): a replay skips them too. (Boxed:
    /// the usual empty list costs no allocation.)
    pub(crate) exclude: Box<[String]>,
}

impl FramePosition {
    /// Whether the publication skipped client `id`.
    pub(crate) fn excludes(&self, id: &str) -> bool {
        self.exclude.iter().any(|e| e == id)
    }
}

impl Frame {
    pub(crate) fn new(event: &str, data: Box<RawValue>) -> Arc<Self> {
        let json = frame_json(event, data.get());
        Arc::new(Self {
            event: event.into(),
            data,
            json: json.into(),
            position: None,
            room: None,
            positions_only: false,
        })
    }

    /// `recovered` for `stream`, `recovered: false` at `here`: the clients that asked for
    /// positions learn that the server could not deliver some of the stream's publications
    /// (and where it stands now), as a recovery would have told them.
    pub(crate) fn gap_notice(stream: &str, here: &crate::protocol::Position) -> Arc<Self> {
        let streams = crate::protocol::RecoveredPayload {
            streams: vec![crate::protocol::StreamState {
                stream: stream.to_owned(),
                epoch: here.epoch.clone(),
                offset: here.offset,
                recovered: Some(false),
                replayed: 0,
            }],
        };
        let data =
            serde_json::value::to_raw_value(&streams).unwrap_or_else(|_| RawValue::NULL.to_owned());
        let event = crate::protocol::event::RECOVERED;
        Arc::new(Self {
            event: event.into(),
            json: frame_json(event, data.get()).into(),
            data,
            position: None,
            room: None,
            positions_only: true,
        })
    }

    /// This publication with its room record.
    pub(crate) fn with_room(&self, record: RoomRecord) -> Arc<Self> {
        Arc::new(Self {
            event: self.event.clone(),
            data: self.data.clone(),
            json: self.json.clone(),
            position: self.position.clone(),
            room: Some(record),
            positions_only: self.positions_only,
        })
    }

    /// This publication at position `at` of `stream`, sent to everyone but `exclude`.
    pub(crate) fn at(
        &self,
        stream: &str,
        at: &crate::protocol::Position,
        exclude: &[String],
    ) -> Arc<Self> {
        self.positioned(
            Arc::from(stream),
            at.offset,
            &Arc::from(at.epoch.as_str()),
            exclude,
        )
    }

    /// This publication at `offset` of `stream` in `epoch`, sent to everyone but `exclude`.
    pub(crate) fn positioned(
        &self,
        stream: Arc<str>,
        offset: u64,
        epoch: &Arc<str>,
        exclude: &[String],
    ) -> Arc<Self> {
        let mut json = String::with_capacity(self.json.len() + stream.len() + epoch.len() + 48);
        // `json` is an object: reopen it before its closing brace.
        json.push_str(self.json.as_str().strip_suffix('}').unwrap_or("{"));
        json.push_str(",\"stream\":");
        json.push_str(&serde_json::to_string(&*stream).unwrap_or_default());
        json.push_str(",\"offset\":");
        json.push_str(&offset.to_string());
        json.push_str(",\"epoch\":");
        json.push_str(&serde_json::to_string(&**epoch).unwrap_or_default());
        json.push('}');
        Arc::new(Self {
            event: self.event.clone(),
            data: self.data.clone(),
            json: self.json.clone(),
            position: Some(FramePosition {
                stream,
                offset,
                epoch: Arc::clone(epoch),
                json: json.into(),
                exclude: exclude.into(),
            }),
            room: None,
            positions_only: self.positions_only,
        })
    }
}
