//! Message history on the wire: stream names, positions, and the `recover` request and
//! `recovered` answer that let a reconnecting client get what it missed.
//!
//! A *stream* is the history of one delivery target: `room:<name>`, `user:<id>` or
//! `broadcast`. Every publication on a stream with history gets the next *offset* (1, 2, ..);
//! the stream's *epoch* changes whenever the store lost what it held (a restart, an expired
//! stream), so that an offset from another epoch is never trusted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BusTarget;

/// Prefix of room streams.
pub const ROOM_STREAM_PREFIX: &str = "room:";
/// Prefix of user streams.
pub const USER_STREAM_PREFIX: &str = "user:";
/// The broadcast stream.
pub const BROADCAST_STREAM: &str = "broadcast";

/// The stream a publication to `target` belongs to; `None` for a single client (a client's
/// own messages have no history: its id does not survive a reconnect).
#[must_use]
pub fn stream_of(target: &BusTarget) -> Option<String> {
    match target {
        BusTarget::Room(r) => Some(format!("{ROOM_STREAM_PREFIX}{r}")),
        BusTarget::User(u) => Some(format!("{USER_STREAM_PREFIX}{u}")),
        BusTarget::Broadcast => Some(BROADCAST_STREAM.to_owned()),
        BusTarget::Client(_) => None,
    }
}

/// Whether `stream` is a room's stream (its name chosen by whoever names the room; a user's
/// and the broadcast stream are one per authenticated user, and one).
#[must_use]
pub fn is_room_stream(stream: &str) -> bool {
    stream.starts_with(ROOM_STREAM_PREFIX)
}

/// The delivery target of a stream name (the inverse of [`stream_of`]).
#[must_use]
pub fn target_of(stream: &str) -> Option<BusTarget> {
    if stream == BROADCAST_STREAM {
        return Some(BusTarget::Broadcast);
    }
    if let Some(room) = stream.strip_prefix(ROOM_STREAM_PREFIX) {
        return Some(BusTarget::Room(room.to_owned()));
    }
    stream
        .strip_prefix(USER_STREAM_PREFIX)
        .map(|u| BusTarget::User(u.to_owned()))
}

/// What keeps history (the `--history-*` flags). Servers and emitters publishing to the same
/// shared store must agree on it. Defaults: nothing (history off), 1,000 publications per stream, 5
/// minutes, at most 100,000 streams made for lookups.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistoryConfig {
    /// Publications kept per stream. Defaults to 1,000.
    pub size: usize,
    /// How long a publication is kept. Defaults to 5 minutes.
    pub ttl: Duration,
    /// Rooms with history, as glob patterns (`orders:*`). Defaults to none.
    pub rooms: Vec<String>,
    /// Whether every user's stream keeps history. Defaults to `false`.
    pub users: bool,
    /// Whether the broadcast stream keeps history. Defaults to `false`.
    pub broadcast: bool,
    /// How many room streams a server makes for lookups (a client asking where a room it
    /// joined stands) before it answers them without a position (epoch `""`) instead. In
    /// memory: streams held by the instance, whatever made them. In a shared store: room
    /// streams this instance created by lookup per `ttl`. Publications, users' streams and the
    /// broadcast stream always get their stream. Defaults to 100,000. Only servers read it.
    pub max_streams: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            size: 1000,
            ttl: Duration::from_secs(300),
            rooms: Vec::new(),
            users: false,
            broadcast: false,
            max_streams: 100_000,
        }
    }
}

impl HistoryConfig {
    /// Whether any stream keeps history.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.size > 0 && (!self.rooms.is_empty() || self.users || self.broadcast)
    }
}

/// [`HistoryConfig`]'s rules, compiled: which publications are kept, and in which stream.
#[derive(Debug, Clone)]
pub struct KeepRules {
    rooms: Vec<glob::Pattern>,
    users: bool,
    broadcast: bool,
}

impl KeepRules {
    /// Compiles `config`'s room patterns.
    ///
    /// # Errors
    /// The first invalid pattern.
    pub fn new(config: &HistoryConfig) -> Result<Self, glob::PatternError> {
        let rooms = config
            .rooms
            .iter()
            .map(|p| glob::Pattern::new(p))
            .collect::<Result<_, _>>()?;
        let on = config.size > 0;
        Ok(Self {
            rooms: if on { rooms } else { Vec::new() },
            users: on && config.users,
            broadcast: on && config.broadcast,
        })
    }

    /// The stream a publication to `target` is kept in, if it is kept.
    #[must_use]
    pub fn stream_for(&self, target: &BusTarget) -> Option<String> {
        let keeps = match target {
            BusTarget::Room(r) => self.rooms.iter().any(|p| p.matches(r)),
            BusTarget::User(_) => self.users,
            BusTarget::Broadcast => self.broadcast,
            BusTarget::Client(_) => false,
        };
        if keeps { stream_of(target) } else { None }
    }
}

/// Where a client is in a stream: the offset of the last publication it has, in an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Offset of the last publication received (0: none yet).
    pub offset: u64,
    /// The stream's epoch that offset belongs to.
    pub epoch: String,
}

impl Position {
    /// The position a server gives for a stream it holds no position in (its store out of
    /// reach, or its stream budget spent): epoch `""`, offset 0. No recovery matches it.
    #[must_use]
    pub fn unheld() -> Self {
        Self {
            offset: 0,
            epoch: String::new(),
        }
    }

    /// Whether this is [`Self::unheld`]'s position (an empty epoch).
    #[must_use]
    pub fn is_unheld(&self) -> bool {
        self.epoch.is_empty()
    }
}

/// The `recover` field of `authenticate` and `join`: the client's last positions by stream.
/// Present (even empty) means the client wants positions on its messages.
pub type RecoverRequest = BTreeMap<String, Position>;

/// Reads a `recover` field: a value that is not an object counts as `{}`, and an entry that
/// is not a position (`{offset, epoch}`, a whole offset that fits 64 bits, a string epoch)
/// as the [unheld](Position::unheld) position, which matches no stream: the stream is
/// answered `recovered: false`, not taken for one the client gave no position for.
#[must_use]
pub fn recover_request_of(raw: &serde_json::Value) -> RecoverRequest {
    let serde_json::Value::Object(entries) = raw else {
        return RecoverRequest::new();
    };
    entries
        .iter()
        .map(|(stream, at)| {
            let at = Position::deserialize(at).unwrap_or_else(|_| Position::unheld());
            (stream.clone(), at)
        })
        .collect()
}

/// One stream in a `recovered` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamState {
    /// The stream (`room:..`, `user:..`, `broadcast`).
    pub stream: String,
    /// Its current epoch.
    pub epoch: String,
    /// Its current top offset: the client is now at this position.
    pub offset: u64,
    /// For a stream the client asked to recover: whether every missed publication was
    /// replayed (`false`: trimmed, expired, another epoch, or no history; fetch from the
    /// application's own store). Absent for a stream the client had no position in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// How many publications were replayed before this answer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replayed: u64,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `recovered` payload: `{streams: [..]}`, sent after `connected` (or after a `join`) to a
/// client that asked for positions, once the replay is done and before live messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveredPayload {
    /// Every stream with history the client now receives.
    pub streams: Vec<StreamState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_follow_targets() {
        assert_eq!(
            stream_of(&BusTarget::Room("a".into())).as_deref(),
            Some("room:a")
        );
        assert_eq!(
            stream_of(&BusTarget::User("u".into())).as_deref(),
            Some("user:u")
        );
        assert_eq!(
            stream_of(&BusTarget::Broadcast).as_deref(),
            Some("broadcast")
        );
        assert_eq!(stream_of(&BusTarget::Client("c".into())), None);
    }

    #[test]
    fn recovered_payload_wire_shape() {
        let p = RecoveredPayload {
            streams: vec![
                StreamState {
                    stream: "room:a".into(),
                    epoch: "e1".into(),
                    offset: 7,
                    recovered: Some(true),
                    replayed: 3,
                },
                StreamState {
                    stream: "user:u".into(),
                    epoch: "e2".into(),
                    offset: 0,
                    recovered: None,
                    replayed: 0,
                },
            ],
        };
        assert_eq!(
            serde_json::to_string(&p).expect("serializes"),
            r#"{"streams":[{"stream":"room:a","epoch":"e1","offset":7,"recovered":true,"replayed":3},{"stream":"user:u","epoch":"e2","offset":0}]}"#
        );
        let req: RecoverRequest =
            serde_json::from_str(r#"{"room:a":{"offset":7,"epoch":"e1"}}"#).expect("parses");
        assert_eq!(req["room:a"].offset, 7);
    }

    #[test]
    fn a_malformed_position_is_one_that_matches_nothing() {
        let raw = serde_json::json!({
            "room:a": {"offset": 7, "epoch": "e1"},
            "room:b": {"offset": -1, "epoch": "e1"},
            "room:c": {"offset": 1.5, "epoch": "e1"},
            "room:d": {"offset": "7", "epoch": "e1"},
            "room:e": null,
            "room:f": {"offset": 18_446_744_073_709_551_615_u64, "epoch": 3},
        });
        let req = recover_request_of(&raw);
        assert_eq!(req.len(), 6, "every stream named is answered");
        assert_eq!(
            req["room:a"],
            Position {
                offset: 7,
                epoch: "e1".into()
            }
        );
        for s in ["room:b", "room:c", "room:d", "room:e", "room:f"] {
            assert!(req[s].is_unheld(), "{s}");
        }
        assert!(recover_request_of(&serde_json::json!([1, 2])).is_empty());
        assert!(recover_request_of(&serde_json::json!("x")).is_empty());
    }
}
