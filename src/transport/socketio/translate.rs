//! What the core writes to a Socket.IO client's connection, turned into what its socket
//! emits: `{"event":E,"data":D}` becomes event `E` with the one argument `D`; `connected`
//! becomes `authenticated`; an authentication failure becomes `unauthenticated` before the
//! disconnect. Pure: the socket's outlet ([`super::outlet`]) does the emitting.
//!
//! A delivery is read without building a JSON tree: the event name is borrowed from the
//! frame, the data is its raw JSON text, emitted as is.

use std::borrow::Cow;

use crate::server::Outgoing;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::raw_json::{Args, RawJson, sealed_record};
use crate::protocol::{CloseCode, event};

/// What to do with one message from the core; borrows from that message.
#[derive(Debug, Clone)]
pub(super) enum Action<'a> {
    /// Emit `event` with one argument, the raw JSON of the frame's `data` (`null` without),
    /// and its position as a second argument for a plaintext socket that asked for positions.
    Emit(Cow<'a, str>, Args<'a>),
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
    /// The server shuts down (1001), or the client fell behind (4005): end the socket's
    /// transport rather than disconnect it from the namespace, which a plain socket.io-client
    /// would take as final.
    GoAway,
    /// Nothing to emit.
    Skip,
}

/// A core frame, borrowed: `data` stays JSON text.
#[derive(Deserialize)]
struct CoreFrame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    /// `None` when missing or `null`.
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    /// The position of a positioned message (`docs/PROTOCOL.md` §12), for a client that
    /// asked for positions.
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    /// The message's offset in `stream`.
    #[serde(borrow, default)]
    offset: Option<&'a RawValue>,
    /// The epoch of `stream` the offset is in.
    #[serde(borrow, default)]
    epoch: Option<&'a RawValue>,
}

impl CoreFrame<'_> {
    /// The position object `{"stream","offset","epoch"}`, when the frame has one.
    fn position(&self) -> Option<String> {
        let (stream, offset, epoch) = (self.stream?, self.offset?, self.epoch?);
        Some(format!(
            r#"{{"stream":{},"offset":{},"epoch":{}}}"#,
            stream.get(),
            offset.get(),
            epoch.get()
        ))
    }
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
    pub(super) fn translate<'a>(&mut self, msg: &'a Outgoing) -> Action<'a> {
        match msg {
            Outgoing::Text(text) => self.text(text.as_str()),
            // The client is to come back: a shutdown, or a client that fell behind.
            Outgoing::Close(CloseCode::GoingAway | CloseCode::SlowConsumer) => Action::GoAway,
            // A plaintext socket whose session ran out learns why (as IGNIS words a refusal);
            // an encrypted one gets no plaintext event, ever.
            Outgoing::Close(CloseCode::SessionExpired) if self.authenticated => {
                Action::Disconnect {
                    unauthenticated: (!self.encrypted)
                        .then(|| CloseCode::SessionExpired.reason().to_owned()),
                }
            }
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

    /// The action for one text message the core wrote.
    pub(super) fn text<'a>(&mut self, text: &'a str) -> Action<'a> {
        if self.encrypted
            && let Some(sealed) = sealed_record(text)
        {
            // A sealed record, found without a parse: most of what an encrypted socket gets.
            return Action::Emit(Cow::Borrowed(event::ENCRYPTED), Args::One(sealed.data));
        }
        // An object only (serde would read an array as the struct too).
        let object = text.trim_start().starts_with('{');
        let Some(frame) = object
            .then(|| serde_json::from_str::<CoreFrame<'a>>(text).ok())
            .flatten()
        else {
            tracing::debug!(len = text.len(), "unreadable frame from the core dropped");
            return Action::Skip;
        };
        let data = frame.data.unwrap_or(RawValue::NULL);
        if !self.authenticated {
            return match frame.event.as_ref() {
                event::CONNECTED => {
                    // Once per connection: a tree is fine here.
                    let Ok(payload) = serde_json::from_str::<Value>(data.get()) else {
                        return Action::Skip;
                    };
                    self.authenticated = true;
                    self.encrypted = payload.get("serverPublicKey").is_some();
                    Action::Authenticated {
                        payload,
                        encrypted: self.encrypted,
                    }
                }
                event::ERROR => {
                    self.refusal = serde_json::from_str::<Value>(data.get())
                        .ok()
                        .as_ref()
                        .and_then(|d| d.get("message"))
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
        if RESERVED_EVENTS.contains(&frame.event.as_ref()) {
            // socket.io-client would take it for its own (a `disconnect` that is not one).
            tracing::debug!(event = %frame.event, "event with a reserved Socket.IO name dropped");
            return Action::Skip;
        }
        let data = RawJson::from_raw(data);
        let args = match frame.position() {
            Some(position) => Args::Positioned(data, Cow::Owned(position)),
            None => Args::One(data),
        };
        Action::Emit(frame.event, args)
    }
}

/// Event names a Socket.IO client keeps for itself: a server never emits them (the Node
/// server refuses to), so a topic of that name is not delivered to Socket.IO clients.
const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(v: &Value) -> Outgoing {
        Outgoing::Text(v.to_string().into())
    }

    /// What an action emits, as (event, raw data); `None` when it emits nothing.
    fn emitted(action: Action<'_>) -> Option<(String, String)> {
        match action {
            Action::Emit(name, Args::One(data)) => Some((name.into_owned(), data.get().to_owned())),
            Action::Emit(name, Args::Positioned(data, position)) => {
                Some((name.into_owned(), format!("[{},{position}]", data.get())))
            }
            _ => None,
        }
    }

    fn authenticated(t: &mut Translator) {
        let connected = json!({"id": "c", "userId": "u", "time": "t"});
        let frame = text(&json!({"event": "connected", "data": connected}));
        match t.translate(&frame) {
            Action::Authenticated { payload, encrypted } => {
                assert_eq!(payload, connected);
                assert!(!encrypted);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plaintext_session() {
        let mut t = Translator::default();
        let early = text(&json!({"event": "x", "data": 1}));
        assert!(matches!(t.translate(&early), Action::Skip));
        authenticated(&mut t);
        for data in [
            json!(0),
            json!(false),
            json!(""),
            json!([1, 2]),
            json!({"a": {"b": [null, "\u{e9}"]}}),
        ] {
            let frame = text(&json!({"event": "topic", "data": data}));
            let (name, raw) = emitted(t.translate(&frame)).expect("emitted");
            assert_eq!(name, "topic");
            let back: Value = serde_json::from_str(&raw).expect("raw data is JSON");
            assert_eq!(back, data);
        }
        for frame in [
            json!({"event": "bare"}),
            json!({"event": "bare", "data": null}),
        ] {
            assert_eq!(
                emitted(t.translate(&text(&frame))),
                Some(("bare".into(), "null".into()))
            );
        }
        assert!(matches!(
            t.translate(&Outgoing::Text("not json".into())),
            Action::Skip
        ));
        for odd in [r#"{"data":1}"#, r#"["topic",1]"#, r#"{"event":1}"#] {
            assert!(
                matches!(t.translate(&Outgoing::Text(odd.into())), Action::Skip),
                "{odd}"
            );
        }
        assert!(matches!(t.translate(&Outgoing::Ping), Action::Skip));
        assert!(matches!(
            t.translate(&Outgoing::Close(crate::protocol::CloseCode::Normal)),
            Action::Disconnect {
                unauthenticated: None
            }
        ));
        assert!(matches!(
            t.translate(&Outgoing::Close(CloseCode::GoingAway)),
            Action::GoAway
        ));
    }

    #[test]
    fn the_data_is_emitted_verbatim_and_the_name_unescaped() {
        let mut t = Translator::default();
        authenticated(&mut t);
        let frame = Outgoing::Text(r#"{"data": {"k" : 1.50, "s":"\u00e9"},"event":"a\"b"}"#.into());
        assert_eq!(
            emitted(t.translate(&frame)),
            Some(("a\"b".into(), r#"{"k" : 1.50, "s":"\u00e9"}"#.into()))
        );
    }

    #[test]
    fn an_expired_plaintext_session_is_told_why() {
        let mut t = Translator::default();
        authenticated(&mut t);
        match t.translate(&Outgoing::Close(CloseCode::SessionExpired)) {
            Action::Disconnect { unauthenticated } => {
                assert_eq!(unauthenticated.as_deref(), Some("Session expired"));
            }
            other => panic!("{other:?}"),
        }
        // Other closes of an authenticated socket: no event.
        assert!(matches!(
            t.translate(&Outgoing::Close(CloseCode::HeartbeatTimeout)),
            Action::Disconnect {
                unauthenticated: None
            }
        ));
        // A slow consumer is to come back, as after a shutdown: its transport ends.
        assert!(matches!(
            t.translate(&Outgoing::Close(CloseCode::SlowConsumer)),
            Action::GoAway
        ));
        // An encrypted socket gets no plaintext event.
        let mut sealed = Translator::default();
        let connected =
            json!({"id": "c", "userId": "u", "time": "t", "serverPublicKey": "k", "salt": "s"});
        sealed.translate(&text(&json!({"event": "connected", "data": connected})));
        assert!(matches!(
            sealed.translate(&Outgoing::Close(CloseCode::SessionExpired)),
            Action::Disconnect {
                unauthenticated: None
            }
        ));
    }

    #[test]
    fn refusal_becomes_unauthenticated() {
        let mut t = Translator::default();
        let err = json!({"event": "error", "data": {"message": "Authentication failed"}});
        assert!(matches!(t.translate(&text(&err)), Action::Skip));
        match t.translate(&Outgoing::Close(crate::protocol::CloseCode::Normal)) {
            Action::Disconnect { unauthenticated } => {
                assert_eq!(unauthenticated.as_deref(), Some("Authentication failed"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encrypted_session_emits_only_sealed_frames() {
        let mut t = Translator::default();
        let connected =
            json!({"id": "c", "userId": "u", "time": "t", "serverPublicKey": "k", "salt": "s"});
        assert!(matches!(
            t.translate(&text(&json!({"event": "connected", "data": connected}))),
            Action::Authenticated {
                encrypted: true,
                ..
            }
        ));
        for plain in [
            json!({"event": "topic", "data": "secret"}),
            json!({"event": "ping", "data": {"time": "t"}}),
            json!({"event": "encrypted2", "data": {}}),
        ] {
            assert!(
                matches!(t.translate(&text(&plain)), Action::Skip),
                "{plain}"
            );
        }
        let sealed = json!({"iv": "i", "ct": "c"});
        let frame = text(&json!({"event": "encrypted", "data": sealed}));
        assert_eq!(
            emitted(t.translate(&frame)),
            Some(("encrypted".into(), sealed.to_string()))
        );
    }

    #[test]
    fn reserved_socketio_event_names_are_not_emitted() {
        let mut t = Translator::default();
        authenticated(&mut t);
        for name in RESERVED_EVENTS {
            let frame = text(&json!({"event": name, "data": {"spoof": true}}));
            assert!(emitted(t.translate(&frame)).is_none(), "{name}");
        }
        let frame = text(&json!({"event": "disconnected", "data": 1}));
        assert_eq!(
            emitted(t.translate(&frame)),
            Some(("disconnected".to_owned(), "1".to_owned()))
        );
    }
}
