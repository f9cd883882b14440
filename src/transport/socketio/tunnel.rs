//! The hardened profile (`sealwire-v2`) over Socket.IO: the frames of the `/ws` hardened
//! flow ride unchanged as the one argument of event `sealwire`, in both directions, so the
//! core's connection actor runs the very same handshake, key confirmation, sealed
//! `authenticate` and record layer as on `/ws`. Pure: the socket's outlet ([`super::outlet`]) does
//! the emitting.
//!
//! ```text
//! CONNECT auth {profile: "sealwire-v2"}          (no token, no publicKey)
//! -> sealwire {"event":"hello","data":{profile, publicKey}}      starts the core connection
//! <- sealwire {"event":"hello","data":{id, ..., signature}}      plaintext, as on /ws
//! -> sealwire {"event":"encrypted","data":{iv, ct, seq: 0}}      confirm
//! -> sealwire {"event":"encrypted","data":{iv, ct, seq: 1}}      authenticate {token}
//! <- sealwire {"event":"encrypted","data":{iv, ct, seq: 0}}      connected (or the error)
//! <- sealwire:close {code, reason}                               what a close frame says on /ws
//! ```
//!
//! Fail closed: before the server `hello` only that `hello` or the refusal `error` is
//! emitted; after it only `encrypted` records (and room records, §14). Anything else the core wrote is dropped.

use std::borrow::Cow;

use crate::server::Outgoing;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::raw_json::{RawJson, sealed_record};
use crate::crypto::hardened::PROFILE_ID;
use crate::protocol::event;

/// The event that carries a `/ws` frame of the hardened flow, both directions.
pub(super) const FRAME_EVENT: &str = "sealwire";
/// The event that tells a hardened socket the close code the core closed it with, just
/// before the disconnect.
pub(super) const CLOSE_EVENT: &str = "sealwire:close";

/// Whether a handshake `auth` asks for the hardened tunnel: `profile` is `"sealwire-v2"` and
/// it holds neither `token` nor `publicKey` (credentials travel sealed, keys in `hello`). An
/// `auth` with a profile and either of those stays on the IGNIS path, where the core refuses
/// it (a profile in a plaintext `authenticate` is a 4004).
pub(super) fn selects_hardened(auth: Option<&Value>) -> bool {
    let Some(Value::Object(auth)) = auth else {
        return false;
    };
    auth.get("profile").and_then(Value::as_str) == Some(PROFILE_ID)
        && !auth.contains_key("token")
        && !auth.contains_key("publicKey")
}

/// Whether a client's first frame may start the core connection: it must be the `hello`
/// (never a plaintext `authenticate`, which would make a plaintext or compatibility client).
pub(super) fn is_hello(frame: &Value) -> bool {
    frame.get("event").and_then(Value::as_str) == Some(event::HELLO)
}

/// The frames a hardened socket gets when its first frame is not a `hello`: the refusal
/// `error` and the 4004 close, as the core answers a bad `hello` on `/ws`.
pub(super) fn refusal() -> (Value, Value) {
    let code = crate::protocol::CloseCode::EncryptionRequired;
    (
        json!({
            "event": event::ERROR,
            "data": { "message": crate::protocol::error_message::HANDSHAKE_FAILED },
        }),
        json!({ "code": code.code(), "reason": code.reason() }),
    )
}

/// What to do with one message the core wrote to a hardened socket; borrows from it (a frame
/// is emitted as the raw JSON the core wrote).
#[derive(Debug, Clone)]
pub(super) enum TunnelAction<'a> {
    /// Emit `sealwire` with this frame.
    Emit(RawJson<'a>),
    /// The server `hello` (emit it): it names the client id.
    Hello {
        /// The core's client id.
        id: String,
        /// The frame to emit.
        frame: RawJson<'a>,
    },
    /// Emit `sealwire:close {code, reason}`, then disconnect.
    Close {
        /// The close code the core sent.
        code: u16,
        /// Its reason.
        reason: &'static str,
    },
    /// Nothing to emit.
    Skip,
}

/// The part of a frame the tunnel reads: its event name (`data` only for the `hello`).
#[derive(Deserialize)]
struct FrameHead<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// Turns a hardened connection's outbound messages into [`TunnelAction`]s; one per socket.
#[derive(Debug, Default)]
pub(super) struct Tunnel {
    hello_sent: bool,
}

impl Tunnel {
    /// The action for one message the core wrote.
    pub(super) fn translate<'a>(&mut self, msg: &'a Outgoing) -> TunnelAction<'a> {
        match msg {
            Outgoing::Text(text) => self.text(text.as_str()),
            Outgoing::Close(code) => TunnelAction::Close {
                code: code.code(),
                reason: code.reason(),
            },
            // engine.io's own heartbeat probes the socket.
            _ => TunnelAction::Skip,
        }
    }

    /// The action for one text message the core wrote.
    pub(super) fn text<'a>(&mut self, text: &'a str) -> TunnelAction<'a> {
        if self.hello_sent
            && let Some(sealed) = sealed_record(text)
        {
            // A sealed record, found without a parse: nearly everything after the hello.
            return TunnelAction::Emit(sealed.frame);
        }
        let Ok(raw) = serde_json::from_str::<&'a RawValue>(text) else {
            tracing::debug!(len = text.len(), "unreadable frame from the core dropped");
            return TunnelAction::Skip;
        };
        let frame = RawJson::from_raw(raw);
        // Not an object (serde would read an array as the struct too), or an event that is
        // not a string: no event, dropped below.
        let head = raw
            .get()
            .starts_with('{')
            .then(|| serde_json::from_str::<FrameHead<'a>>(raw.get()).ok())
            .flatten();
        let name = head.as_ref().and_then(|h| h.event.as_deref()).unwrap_or("");
        if !self.hello_sent {
            return match name {
                event::HELLO => {
                    // Once per connection: a tree is fine here.
                    let id = head
                        .as_ref()
                        .and_then(|h| h.data)
                        .and_then(|d| serde_json::from_str::<Value>(d.get()).ok())
                        .and_then(|d| d.get("id").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_default();
                    self.hello_sent = true;
                    TunnelAction::Hello { id, frame }
                }
                // The plaintext refusal of a bad `hello` (before its 4004).
                event::ERROR => TunnelAction::Emit(frame),
                _ => TunnelAction::Skip,
            };
        }
        if name == event::ROOM_ENCRYPTED {
            // A room record (§14): sealed, sent only after the room's key was granted in a
            // record of the socket's own.
            return TunnelAction::Emit(frame);
        }
        if name != event::ENCRYPTED {
            // Fail closed: after the hello exchange a hardened socket gets sealed records only.
            tracing::debug!(event = %name, "plaintext frame for a hardened socket dropped");
            return TunnelAction::Skip;
        }
        TunnelAction::Emit(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CloseCode;

    fn text(v: &Value) -> Outgoing {
        Outgoing::Text(v.to_string().into())
    }

    #[test]
    fn selection_needs_the_profile_and_no_credential() {
        assert!(selects_hardened(Some(&json!({"profile": "sealwire-v2"}))));
        assert!(selects_hardened(Some(
            &json!({"profile": "sealwire-v2", "x": 1})
        )));
        for auth in [
            json!({"profile": "sealwire-v2", "token": "t"}),
            json!({"profile": "sealwire-v2", "publicKey": "k"}),
            json!({"profile": "sealwire-v1"}),
            json!({"profile": 2}),
            json!({"token": "t"}),
            json!("sealwire-v2"),
        ] {
            assert!(!selects_hardened(Some(&auth)), "{auth}");
        }
        assert!(!selects_hardened(None));
        assert!(is_hello(&json!({"event": "hello", "data": {}})));
        assert!(!is_hello(
            &json!({"event": "authenticate", "data": {"token": "t"}})
        ));
        assert!(!is_hello(&json!("hello")));
    }

    /// The frame an action emits, parsed back; `None` for a `Skip` or a close.
    fn frame_of(action: &TunnelAction<'_>) -> Option<Value> {
        let raw = match action {
            TunnelAction::Emit(f) => f,
            TunnelAction::Hello { frame, .. } => frame,
            TunnelAction::Close { .. } | TunnelAction::Skip => return None,
        };
        Some(serde_json::from_str(raw.get()).expect("emitted frame is JSON"))
    }

    #[test]
    fn hello_then_sealed_records_only() {
        let mut t = Tunnel::default();
        let early = json!({"event": "encrypted", "data": {"iv": "i", "ct": "c", "seq": 0}});
        assert!(matches!(t.translate(&text(&early)), TunnelAction::Skip));
        let connected = json!({"event": "connected", "data": {"userId": "u"}});
        assert!(matches!(t.translate(&text(&connected)), TunnelAction::Skip));
        let hello = json!({"event": "hello", "data": {"id": "c1", "profile": "sealwire-v2"}});
        let hello_msg = text(&hello);
        let action = t.translate(&hello_msg);
        assert!(matches!(&action, TunnelAction::Hello { id, .. } if id == "c1"));
        assert_eq!(frame_of(&action), Some(hello));
        let early_msg = text(&early);
        let first = t.translate(&early_msg);
        assert!(matches!(first, TunnelAction::Emit(_)));
        assert_eq!(frame_of(&first), Some(early.clone()));
        let next = t.translate(&early_msg);
        assert!(matches!(next, TunnelAction::Emit(_)));
        assert_eq!(frame_of(&next), Some(early.clone()));
        let room = json!({"event": "room-encrypted", "data": {"room": "r"}});
        let room_msg = text(&room);
        assert_eq!(frame_of(&t.translate(&room_msg)), Some(room));
        for plain in [
            json!({"event": "topic", "data": "secret"}),
            json!({"event": "error", "data": {"message": "x"}}),
            json!({"event": "hello", "data": {}}),
            json!({"event": 1, "data": {}}),
            json!(["encrypted"]),
        ] {
            assert!(
                matches!(t.translate(&text(&plain)), TunnelAction::Skip),
                "{plain}"
            );
        }
        assert!(matches!(
            t.translate(&Outgoing::Text("nope".into())),
            TunnelAction::Skip
        ));
        let close = Outgoing::Close(CloseCode::EncryptionRequired);
        assert!(matches!(
            t.translate(&close),
            TunnelAction::Close {
                code: 4004,
                reason: "Encryption required"
            }
        ));
    }

    #[test]
    fn frames_are_emitted_as_the_core_wrote_them() {
        let mut t = Tunnel::default();
        let hello = Outgoing::Text(r#"{"event":"hello","data":{"id":"c\u0031","n":1.0}}"#.into());
        match t.translate(&hello) {
            TunnelAction::Hello { id, frame } => {
                assert_eq!(id, "c1");
                assert_eq!(
                    frame.get(),
                    r#"{"event":"hello","data":{"id":"c\u0031","n":1.0}}"#
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_hello_gets_the_plaintext_error() {
        let mut t = Tunnel::default();
        let err = json!({"event": "error", "data": {"message": "Encryption handshake failed"}});
        let msg = text(&err);
        let action = t.translate(&msg);
        assert!(matches!(action, TunnelAction::Emit(_)));
        assert_eq!(frame_of(&action), Some(err.clone()));
        let (frame, close) = refusal();
        assert_eq!(frame, err);
        assert_eq!(
            close,
            json!({"code": 4004, "reason": "Encryption required"})
        );
    }
}
