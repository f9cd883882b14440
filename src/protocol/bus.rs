//! The cross-instance envelope published on the bus (IGNIS `IRedisSocketMessage`) and the
//! Redis channel names.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Position;

/// Redis channel names (IGNIS-compatible).
pub mod channel {
    /// Broadcast channel.
    pub const BROADCAST: &str = "ws:broadcast";
    /// Prefix of room channels.
    pub const ROOM_PREFIX: &str = "ws:room:";
    /// Prefix of client channels.
    pub const CLIENT_PREFIX: &str = "ws:client:";
    /// Prefix of user channels.
    pub const USER_PREFIX: &str = "ws:user:";
    /// Pattern matching every room channel.
    pub const ROOM_PATTERN: &str = "ws:room:*";
    /// Pattern matching every client channel.
    pub const CLIENT_PATTERN: &str = "ws:client:*";
    /// Pattern matching every user channel.
    pub const USER_PATTERN: &str = "ws:user:*";
    /// The serverId the emitter publishes with.
    pub const EMITTER_SERVER_ID: &str = "emitter";
}

/// Who a bus message is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BusTarget {
    /// Every authenticated client.
    Broadcast,
    /// Members of a room.
    Room(String),
    /// One client by id.
    Client(String),
    /// Every session of a user.
    User(String),
}

impl BusTarget {
    /// The Redis channel this target publishes to.
    #[must_use]
    pub fn channel(&self) -> String {
        match self {
            Self::Broadcast => channel::BROADCAST.to_owned(),
            Self::Room(r) => format!("{}{r}", channel::ROOM_PREFIX),
            Self::Client(c) => format!("{}{c}", channel::CLIENT_PREFIX),
            Self::User(u) => format!("{}{u}", channel::USER_PREFIX),
        }
    }

    /// Parses a channel name back into a target.
    #[must_use]
    pub fn from_channel(name: &str) -> Option<Self> {
        if name == channel::BROADCAST {
            return Some(Self::Broadcast);
        }
        if let Some(r) = name.strip_prefix(channel::ROOM_PREFIX) {
            return Some(Self::Room(r.to_owned()));
        }
        if let Some(c) = name.strip_prefix(channel::CLIENT_PREFIX) {
            return Some(Self::Client(c.to_owned()));
        }
        name.strip_prefix(channel::USER_PREFIX)
            .map(|u| Self::User(u.to_owned()))
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Room(_) => "room",
            Self::Client(_) => "client",
            Self::User(_) => "user",
        }
    }

    fn name(&self) -> Option<&str> {
        match self {
            Self::Broadcast => None,
            Self::Room(s) | Self::Client(s) | Self::User(s) => Some(s),
        }
    }
}

/// The JSON envelope on the bus: `{serverId, type, target?, event, data, exclude?}`.
#[derive(Debug, Clone)]
pub struct BusEnvelope {
    /// Id of the publishing server (`emitter` for the emitter).
    pub server_id: String,
    /// Destination.
    pub target: BusTarget,
    /// Event name delivered to clients.
    pub event: String,
    /// Payload, kept as raw JSON so it is never re-parsed on the hot path.
    pub data: Box<RawValue>,
    /// Client ids to skip.
    pub exclude: Vec<String>,
    /// Where a publication kept in a shared history store landed (`offset`, `epoch` beside
    /// the envelope's other fields; the store adds them when it appends, see
    /// `docs/PROTOCOL.md` §12). `None` for a publication that is not kept, or kept by each
    /// instance on its own.
    pub kept: Option<Position>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    server_id: std::borrow::Cow<'a, str>,
    #[serde(rename = "type")]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<std::borrow::Cow<'a, str>>,
    event: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch: Option<std::borrow::Cow<'a, str>>,
}

/// Why a bus payload could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusEnvelopeError {
    /// Not JSON of the envelope's shape.
    #[error("malformed bus envelope: {0}")]
    Json(#[from] serde_json::Error),
    /// Unknown `type`, or a `type` that needs a `target` without one.
    #[error("bus envelope has an invalid type/target")]
    Target,
}

impl BusEnvelope {
    /// Serializes the envelope to its JSON wire form.
    #[must_use]
    pub fn to_json(&self) -> String {
        let wire = Wire {
            server_id: self.server_id.as_str().into(),
            kind: self.target.kind().into(),
            target: self.target.name().map(Into::into),
            event: self.event.as_str().into(),
            data: Some(&self.data),
            exclude: self.exclude.clone(),
            offset: self.kept.as_ref().map(|k| k.offset),
            epoch: self.kept.as_ref().map(|k| k.epoch.as_str().into()),
        };
        // A struct of strings and raw JSON always serializes.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Parses the JSON wire form.
    ///
    /// # Errors
    /// [`BusEnvelopeError`] when the JSON is malformed or the type/target pair is invalid.
    pub fn from_json(text: &str) -> Result<Self, BusEnvelopeError> {
        let wire: Wire<'_> = serde_json::from_str(text)?;
        let target = match (&*wire.kind, wire.target) {
            ("broadcast", _) => BusTarget::Broadcast,
            ("room", Some(t)) => BusTarget::Room(t.into_owned()),
            ("client", Some(t)) => BusTarget::Client(t.into_owned()),
            ("user", Some(t)) => BusTarget::User(t.into_owned()),
            _ => return Err(BusEnvelopeError::Target),
        };
        let data = match wire.data {
            Some(raw) => raw.to_owned(),
            None => RawValue::from_string("null".to_owned())?,
        };
        Ok(Self {
            server_id: wire.server_id.into_owned(),
            target,
            event: wire.event.into_owned(),
            data,
            exclude: wire.exclude,
            kept: match (wire.offset, wire.epoch) {
                (Some(offset), Some(epoch)) => Some(Position {
                    offset,
                    epoch: epoch.into_owned(),
                }),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_ignis_shape() {
        let env = BusEnvelope {
            server_id: "s1".into(),
            target: BusTarget::Room("chat".into()),
            event: "msg".into(),
            data: RawValue::from_string(r#"{"a":1}"#.into()).expect("raw"),
            exclude: vec!["c9".into()],
            kept: None,
        };
        let json = env.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["serverId"], "s1");
        assert_eq!(v["type"], "room");
        assert_eq!(v["target"], "chat");
        assert_eq!(v["data"]["a"], 1);
        assert_eq!(v["exclude"][0], "c9");
        let back = BusEnvelope::from_json(&json).expect("parse");
        assert_eq!(back.target, BusTarget::Room("chat".into()));
        assert_eq!(back.data.get(), r#"{"a":1}"#);
        assert!(v.get("offset").is_none() && back.kept.is_none());
        // A kept publication carries its position beside the IGNIS fields.
        let kept = r#"{"serverId":"s1","type":"room","target":"chat","event":"msg","data":1,"offset":7,"epoch":"e1"}"#;
        let back = BusEnvelope::from_json(kept).expect("parse");
        assert_eq!(
            back.kept,
            Some(Position {
                offset: 7,
                epoch: "e1".into()
            })
        );
        assert_eq!(
            BusEnvelope::from_json(&back.to_json()).expect("again").kept,
            back.kept
        );
    }

    #[test]
    fn rejects_bad_type() {
        assert!(
            BusEnvelope::from_json(r#"{"serverId":"x","type":"room","event":"e","data":1}"#)
                .is_err()
        );
        assert!(
            BusEnvelope::from_json(r#"{"serverId":"x","type":"nope","target":"a","event":"e"}"#)
                .is_err()
        );
        let b = BusEnvelope::from_json(r#"{"serverId":"x","type":"broadcast","event":"e"}"#)
            .expect("ok");
        assert_eq!(b.data.get(), "null");
    }

    #[test]
    fn channels() {
        for t in [
            BusTarget::Broadcast,
            BusTarget::Room("r:1".into()),
            BusTarget::Client("c".into()),
            BusTarget::User("u".into()),
        ] {
            assert_eq!(BusTarget::from_channel(&t.channel()), Some(t));
        }
    }
}
