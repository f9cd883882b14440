//! The Socket.IO Redis adapter protocol as `@socket.io/redis-emitter` (and Socket.IO servers
//! with `@socket.io/redis-adapter`) speak it, decoded into deliveries and room requests.
//! Pure: [`super::redis_emitter`] does the Redis I/O.
//!
//! ```text
//! {key}#{nsp}#  or  {key}#{nsp}#{room}#   MessagePack [uid, {type: 2, data: [event, ...args], nsp}, {rooms, except, flags}]
//! {key}-request#{nsp}#                    JSON {type: 2 (join) | 3 (leave), opts: {rooms, except}, rooms}
//! ```

use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// socket.io-parser's EVENT packet type.
const EVENT: u64 = 2;
/// socket.io-parser's BINARY_EVENT packet type.
const BINARY_EVENT: u64 = 5;

/// One broadcast of the adapter protocol.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Broadcast {
    /// Publisher id (`emitter` for `@socket.io/redis-emitter`).
    pub(super) uid: String,
    /// Event name.
    pub(super) event: String,
    /// The one argument (`null` for none; several are delivered as an array).
    pub(super) data: Value,
    /// Rooms (client ids included) to deliver to; empty means everyone.
    pub(super) rooms: Vec<String>,
    /// Rooms whose members are skipped.
    pub(super) except: Vec<String>,
}

/// Decodes a broadcast of namespace `/`; `None` for anything else (another namespace, not an
/// event, malformed).
pub(super) fn decode_broadcast(bytes: &[u8]) -> Option<Broadcast> {
    let value = rmpv::decode::read_value(&mut &bytes[..]).ok()?;
    let Value::Array(mut parts) = to_json(value) else {
        return None;
    };
    if parts.len() < 2 {
        return None;
    }
    let opts = if parts.len() > 2 {
        parts.swap_remove(2)
    } else {
        Value::Null
    };
    let packet = parts.swap_remove(1);
    let uid = parts.swap_remove(0).as_str().unwrap_or_default().to_owned();
    let kind = packet.get("type").and_then(Value::as_u64)?;
    let nsp = packet.get("nsp").and_then(Value::as_str).unwrap_or("/");
    if (kind != EVENT && kind != BINARY_EVENT) || nsp != "/" {
        return None;
    }
    let Some(Value::Array(mut data)) = packet.get("data").cloned() else {
        return None;
    };
    if data.is_empty() {
        return None;
    }
    let Value::String(event) = data.remove(0) else {
        return None;
    };
    let data = match data.len() {
        0 => Value::Null,
        1 => data.swap_remove(0),
        _ => Value::Array(data),
    };
    // Rooms that name no room (`to(undefined)`, a stale `socket.id`, a number) reach nobody,
    // as on a Socket.IO server: never everyone, which is what an empty list means.
    let rooms = match opts.get("rooms") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(raw)) => {
            let rooms = strings(opts.get("rooms"));
            if rooms.is_empty() && !raw.is_empty() {
                return None;
            }
            rooms
        }
        Some(_) => return None,
    };
    Some(Broadcast {
        uid,
        event,
        data,
        rooms,
        except: strings(opts.get("except")),
    })
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A room request of the adapter protocol (`socketsJoin`, `socketsLeave`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RoomRequest {
    /// Join (`true`) or leave.
    pub(super) join: bool,
    /// Which sockets: members of these rooms (all when empty)...
    pub(super) in_rooms: Vec<String>,
    /// ...that are in none of these.
    pub(super) except: Vec<String>,
    /// The rooms to join or leave.
    pub(super) rooms: Vec<String>,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(rename = "type")]
    kind: u64,
    #[serde(default)]
    opts: RawOpts,
    #[serde(default)]
    rooms: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawOpts {
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
}

/// Decodes a join or leave request; `None` for other requests and malformed ones.
pub(super) fn decode_request(bytes: &[u8]) -> Option<RoomRequest> {
    let raw: RawRequest = serde_json::from_slice(bytes).ok()?;
    let join = match raw.kind {
        2 => true,
        3 => false,
        _ => return None,
    };
    Some(RoomRequest {
        join,
        in_rooms: raw.opts.rooms,
        except: raw.opts.except,
        rooms: raw.rooms,
    })
}

/// MessagePack to JSON: binary becomes an array of byte values, map keys become strings,
/// extension values (notepack's `undefined`) and non-finite floats become `null`.
fn to_json(v: rmpv::Value) -> Value {
    match v {
        rmpv::Value::Nil | rmpv::Value::Ext(..) => Value::Null,
        rmpv::Value::Boolean(b) => Value::Bool(b),
        rmpv::Value::Integer(i) => i
            .as_i64()
            .map(Number::from)
            .or_else(|| i.as_u64().map(Number::from))
            .map_or(Value::Null, Value::Number),
        rmpv::Value::F32(f) => float(f64::from(f)),
        rmpv::Value::F64(f) => float(f),
        // Invalid UTF-8 becomes the empty string.
        rmpv::Value::String(s) => Value::String(s.into_str().unwrap_or_default()),
        rmpv::Value::Binary(b) => Value::Array(b.into_iter().map(Value::from).collect()),
        rmpv::Value::Array(a) => Value::Array(a.into_iter().map(to_json).collect()),
        rmpv::Value::Map(m) => {
            let mut map = Map::with_capacity(m.len());
            for (k, v) in m {
                let key = match to_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                map.insert(key, to_json(v));
            }
            Value::Object(map)
        }
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value as M;
    use serde_json::json;

    fn encode(v: &M) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).expect("encode");
        buf
    }

    fn map(pairs: Vec<(&str, M)>) -> M {
        M::Map(pairs.into_iter().map(|(k, v)| (M::from(k), v)).collect())
    }

    fn message(data: Vec<M>, rooms: Vec<&str>, nsp: &str) -> Vec<u8> {
        encode(&M::Array(vec![
            M::from("emitter"),
            map(vec![
                ("type", M::from(2)),
                ("data", M::Array(data)),
                ("nsp", M::from(nsp)),
            ]),
            map(vec![
                ("rooms", M::Array(rooms.into_iter().map(M::from).collect())),
                ("flags", M::Ext(0, vec![0])),
                ("except", M::Array(vec![M::from("x")])),
            ]),
        ]))
    }

    #[test]
    fn emitter_messages_decode() {
        let b = decode_broadcast(&message(
            vec![
                M::from("topic"),
                map(vec![("n", M::from(1)), ("f", M::F64(0.5))]),
            ],
            vec!["r"],
            "/",
        ))
        .expect("decoded");
        assert_eq!(b.uid, "emitter");
        assert_eq!(b.event, "topic");
        assert_eq!(b.data, json!({"n": 1, "f": 0.5}));
        assert_eq!(b.rooms, vec!["r".to_owned()]);
        assert_eq!(b.except, vec!["x".to_owned()]);
        let none = decode_broadcast(&message(vec![M::from("t")], vec![], "/")).expect("decoded");
        assert_eq!(none.data, Value::Null);
        let many = decode_broadcast(&message(
            vec![M::from("t"), M::from(0), M::Boolean(false)],
            vec![],
            "/",
        ))
        .expect("decoded");
        assert_eq!(many.data, json!([0, false]));
        let bin = decode_broadcast(&message(
            vec![M::from("t"), M::Binary(vec![1, 2])],
            vec![],
            "/",
        ))
        .expect("decoded");
        assert_eq!(bin.data, json!([1, 2]));
    }

    /// A message with its rooms as given (any MessagePack value).
    fn to_rooms(rooms: M) -> Vec<u8> {
        encode(&M::Array(vec![
            M::from("emitter"),
            map(vec![
                ("type", M::from(2)),
                ("data", M::Array(vec![M::from("t"), M::from(1)])),
                ("nsp", M::from("/")),
            ]),
            map(vec![("rooms", rooms), ("except", M::Array(vec![]))]),
        ]))
    }

    #[test]
    fn rooms_that_name_no_room_reach_nobody_not_everyone() {
        // `to(undefined)` (a stale socket.id), `to(null)`, `to(123)`, `{}`, `true`, a string.
        for rooms in [
            M::Array(vec![M::Nil]),
            M::Array(vec![M::from(123)]),
            M::Array(vec![map(vec![])]),
            M::Array(vec![M::Boolean(true)]),
            M::from("public"),
            M::from(7),
        ] {
            assert!(
                decode_broadcast(&to_rooms(rooms.clone())).is_none(),
                "{rooms}"
            );
        }
        // The rooms that are named still count; no rooms at all is a broadcast.
        let some = decode_broadcast(&to_rooms(M::Array(vec![M::Nil, M::from("r")]))).expect("r");
        assert_eq!(some.rooms, vec!["r".to_owned()]);
        for everyone in [M::Array(vec![]), M::Nil] {
            let b = decode_broadcast(&to_rooms(everyone)).expect("broadcast");
            assert!(b.rooms.is_empty());
        }
    }

    #[test]
    fn other_namespaces_and_garbage_are_ignored() {
        assert!(decode_broadcast(&message(vec![M::from("t")], vec![], "/admin")).is_none());
        assert!(decode_broadcast(&message(vec![M::from(5)], vec![], "/")).is_none());
        assert!(decode_broadcast(&message(vec![], vec![], "/")).is_none());
        assert!(decode_broadcast(b"\xc1garbage").is_none());
        assert!(decode_broadcast(&encode(&M::from("str"))).is_none());
    }

    #[test]
    fn room_requests_decode() {
        let join = br#"{"type":2,"opts":{"rooms":["a"],"except":["b"]},"rooms":["c"]}"#;
        assert_eq!(
            decode_request(join),
            Some(RoomRequest {
                join: true,
                in_rooms: vec!["a".into()],
                except: vec!["b".into()],
                rooms: vec!["c".into()],
            })
        );
        let leave = br#"{"type":3,"rooms":["c"]}"#;
        assert!(decode_request(leave).is_some_and(|r| !r.join && r.in_rooms.is_empty()));
        assert!(decode_request(br#"{"type":4,"opts":{},"close":true}"#).is_none());
        assert!(decode_request(b"nope").is_none());
    }
}
