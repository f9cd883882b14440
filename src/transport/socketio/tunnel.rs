//! The hardened profile (`sealwire-v2`) over Socket.IO: the frames of the `/ws` hardened
//! flow ride unchanged as the one argument of event `sealwire`, in both directions, so the
//! core's connection actor runs the very same handshake, key confirmation, sealed
//! `authenticate` and record layer as on `/ws`. Pure: the bridge ([`super::bridge`]) does the
//! emitting.
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

use crate::server::Outgoing;
use serde_json::{Value, json};

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

/// What to do with one message the core wrote to a hardened socket.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TunnelAction {
    /// Emit `sealwire` with this frame.
    Emit(Value),
    /// The server `hello` (emit it): it names the client id.
    Hello {
        /// The core's client id.
        id: String,
        /// The frame to emit.
        frame: Value,
    },
    /// The first sealed record (emit it): the sealed `connected`, or the error that precedes
    /// a 4003/4004. The bridge tells them apart by asking the core whether it admitted the
    /// client.
    FirstRecord(Value),
    /// Emit `sealwire:close {code, reason}`, then disconnect.
    Close {
        /// The close code the core sent.
        code: u16,
        /// Its reason.
        reason: String,
    },
    /// Nothing to emit.
    Skip,
}

/// Turns a hardened connection's outbound messages into [`TunnelAction`]s; one per socket.
#[derive(Debug, Default)]
pub(super) struct Tunnel {
    hello_sent: bool,
    records: u64,
}

impl Tunnel {
    /// The action for one message the core wrote.
    pub(super) fn translate(&mut self, msg: &Outgoing) -> TunnelAction {
        match msg {
            Outgoing::Text(text) => self.text(text.as_str()),
            Outgoing::Close(code) => TunnelAction::Close {
                code: code.code(),
                reason: code.reason().to_owned(),
            },
            // engine.io's own heartbeat probes the socket.
            _ => TunnelAction::Skip,
        }
    }

    fn text(&mut self, text: &str) -> TunnelAction {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            tracing::debug!(len = text.len(), "unreadable frame from the core dropped");
            return TunnelAction::Skip;
        };
        let name = frame.get("event").and_then(Value::as_str).unwrap_or("");
        if !self.hello_sent {
            return match name {
                event::HELLO => {
                    let id = frame
                        .get("data")
                        .and_then(|d| d.get("id"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned();
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
        self.records += 1;
        if self.records == 1 {
            TunnelAction::FirstRecord(frame)
        } else {
            TunnelAction::Emit(frame)
        }
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

    #[test]
    fn hello_then_sealed_records_only() {
        let mut t = Tunnel::default();
        let early = json!({"event": "encrypted", "data": {"iv": "i", "ct": "c", "seq": 0}});
        assert_eq!(t.translate(&text(&early)), TunnelAction::Skip);
        assert_eq!(
            t.translate(&text(
                &json!({"event": "connected", "data": {"userId": "u"}})
            )),
            TunnelAction::Skip
        );
        let hello = json!({"event": "hello", "data": {"id": "c1", "profile": "sealwire-v2"}});
        assert_eq!(
            t.translate(&text(&hello)),
            TunnelAction::Hello {
                id: "c1".into(),
                frame: hello.clone()
            }
        );
        assert_eq!(
            t.translate(&text(&early)),
            TunnelAction::FirstRecord(early.clone())
        );
        assert_eq!(
            t.translate(&text(&early)),
            TunnelAction::Emit(early.clone())
        );
        for plain in [
            json!({"event": "topic", "data": "secret"}),
            json!({"event": "error", "data": {"message": "x"}}),
            json!({"event": "hello", "data": {}}),
        ] {
            assert_eq!(t.translate(&text(&plain)), TunnelAction::Skip, "{plain}");
        }
        assert_eq!(
            t.translate(&Outgoing::Text("nope".into())),
            TunnelAction::Skip
        );
        let close = Outgoing::Close(CloseCode::EncryptionRequired);
        assert_eq!(
            t.translate(&close),
            TunnelAction::Close {
                code: 4004,
                reason: "Encryption required".into()
            }
        );
    }

    #[test]
    fn a_refused_hello_gets_the_plaintext_error() {
        let mut t = Tunnel::default();
        let err = json!({"event": "error", "data": {"message": "Encryption handshake failed"}});
        assert_eq!(t.translate(&text(&err)), TunnelAction::Emit(err.clone()));
        let (frame, close) = refusal();
        assert_eq!(frame, err);
        assert_eq!(
            close,
            json!({"code": 4004, "reason": "Encryption required"})
        );
    }
}
