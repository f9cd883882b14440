//! What the core writes to a Socket.IO client's connection, turned into what its socket
//! emits: `{"event":E,"data":D}` becomes event `E` with the one argument `D`; `connected`
//! becomes `authenticated`; an authentication failure becomes `unauthenticated` before the
//! disconnect. Pure: the bridge ([`super::bridge`]) does the emitting.

use crate::server::Outgoing;
use serde::Deserialize;
use serde_json::Value;

use crate::protocol::event;

/// What to do with one message from the core.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    /// Emit `event` with one argument.
    Emit(String, Value),
    /// The core authenticated the client (its `connected` payload, emitted as
    /// `authenticated`).
    Authenticated {
        /// The `connected` payload: `id`, `userId`, `time`, and the handshake reply
        /// (`serverPublicKey`, `salt`) of an encrypted client.
        payload: Value,
        /// The client's frames are sealed from now on.
        encrypted: bool,
    },
    /// The core closed the connection: disconnect the socket, after emitting
    /// `unauthenticated {message}` if there is a message.
    Disconnect {
        /// Why a client that never authenticated was refused.
        unauthenticated: Option<String>,
    },
    /// Nothing to emit.
    Skip,
}

#[derive(Deserialize)]
struct CoreFrame {
    event: String,
    #[serde(default)]
    data: Option<Value>,
}

/// Turns a connection's outbound messages into [`Action`]s; one per Socket.IO socket.
#[derive(Debug, Default)]
pub(super) struct Translator {
    authenticated: bool,
    encrypted: bool,
    /// The last `error` message before authentication: the reason of a refusal.
    refusal: Option<String>,
}

impl Translator {
    /// The action for one message the core wrote.
    pub(super) fn translate(&mut self, msg: &Outgoing) -> Action {
        match msg {
            Outgoing::Text(text) => self.text(text.as_str()),
            Outgoing::Close(_) => Action::Disconnect {
                unauthenticated: if self.authenticated {
                    None
                } else {
                    self.refusal.take()
                },
            },
            // engine.io's own heartbeat probes the socket.
            _ => Action::Skip,
        }
    }

    fn text(&mut self, text: &str) -> Action {
        let Ok(frame) = serde_json::from_str::<CoreFrame>(text) else {
            tracing::debug!(len = text.len(), "unreadable frame from the core dropped");
            return Action::Skip;
        };
        let data = frame.data.unwrap_or(Value::Null);
        if !self.authenticated {
            return match frame.event.as_str() {
                event::CONNECTED => {
                    self.authenticated = true;
                    self.encrypted = data.get("serverPublicKey").is_some();
                    Action::Authenticated {
                        payload: data,
                        encrypted: self.encrypted,
                    }
                }
                event::ERROR => {
                    self.refusal = data
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    Action::Skip
                }
                // Nothing else reaches a client before `connected`; a hardened socket's
                // `hello` goes through the tunnel (`super::tunnel`), never through here.
                _ => Action::Skip,
            };
        }
        if self.encrypted && frame.event != event::ENCRYPTED {
            // Fail closed: an encrypted socket never gets a plaintext event.
            tracing::debug!(event = %frame.event, "plaintext frame for an encrypted socket dropped");
            return Action::Skip;
        }
        Action::Emit(frame.event, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(v: Value) -> Outgoing {
        Outgoing::Text(v.to_string().into())
    }

    #[test]
    fn plaintext_session() {
        let mut t = Translator::default();
        assert_eq!(
            t.translate(&text(json!({"event": "x", "data": 1}))),
            Action::Skip
        );
        let connected = json!({"id": "c", "userId": "u", "time": "t"});
        assert_eq!(
            t.translate(&text(json!({"event": "connected", "data": connected}))),
            Action::Authenticated {
                payload: connected,
                encrypted: false
            }
        );
        for data in [
            json!(0),
            json!(false),
            json!(""),
            json!(null),
            json!([1, 2]),
        ] {
            assert_eq!(
                t.translate(&text(json!({"event": "topic", "data": data}))),
                Action::Emit("topic".into(), data)
            );
        }
        assert_eq!(
            t.translate(&text(json!({"event": "bare"}))),
            Action::Emit("bare".into(), Value::Null)
        );
        assert_eq!(
            t.translate(&Outgoing::Text("not json".into())),
            Action::Skip
        );
        assert_eq!(
            t.translate(&Outgoing::Close(crate::protocol::CloseCode::Normal)),
            Action::Disconnect {
                unauthenticated: None
            }
        );
    }

    #[test]
    fn refusal_becomes_unauthenticated() {
        let mut t = Translator::default();
        let err = json!({"event": "error", "data": {"message": "Authentication failed"}});
        assert_eq!(t.translate(&text(err)), Action::Skip);
        assert_eq!(
            t.translate(&Outgoing::Close(crate::protocol::CloseCode::Normal)),
            Action::Disconnect {
                unauthenticated: Some("Authentication failed".into())
            }
        );
    }

    #[test]
    fn encrypted_session_emits_only_sealed_frames() {
        let mut t = Translator::default();
        let connected =
            json!({"id": "c", "userId": "u", "time": "t", "serverPublicKey": "k", "salt": "s"});
        assert!(matches!(
            t.translate(&text(json!({"event": "connected", "data": connected}))),
            Action::Authenticated {
                encrypted: true,
                ..
            }
        ));
        assert_eq!(
            t.translate(&text(json!({"event": "topic", "data": "secret"}))),
            Action::Skip
        );
        let sealed = json!({"iv": "i", "ct": "c"});
        assert_eq!(
            t.translate(&text(json!({"event": "encrypted", "data": sealed}))),
            Action::Emit("encrypted".into(), sealed)
        );
    }
}
