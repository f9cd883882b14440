//! Inbound frames on an established connection: per-client records, room records
//! (`docs/PROTOCOL.md` §14) and plaintext frames, turned into [`Event`]s.

use serde_json::Value;
use zeroize::Zeroizing;

use super::connection::Task;
use super::event::{Event, Message};
use super::lifetime::{Lifetime, session_left};
use super::login::error_message;
use crate::crypto::room::{BinaryRecord, RoomKeyring};
use crate::crypto::{AeadBackend, Session};
use crate::protocol::{
    EncryptedPayload, EventName, Inbound, ROOM_STREAM_PREFIX, error_message as err, event,
    parse_iso8601,
};

/// The [`Event::ServerError`] reported for a frame that is not JSON: the client's own words,
/// not the server's, so it never explains a close.
pub(super) const UNPARSEABLE: &str = "unparseable frame from the server";

impl Task {
    /// Turns an inbound text frame into an event; `None` for frames that carry nothing for the
    /// application (no event name).
    pub(super) fn on_text(
        &self,
        text: &str,
        session: &mut Option<Session>,
        room_keys: &mut Option<RoomKeyring>,
        lifetime: &mut Lifetime,
    ) -> Option<Event> {
        let raw = self.config.capture_raw_frames.then(|| text.to_owned());
        let Ok(msg) = Inbound::parse(text) else {
            return Some(Event::ServerError {
                message: UNPARSEABLE.into(),
            });
        };
        let name = msg.event.clone()?;
        match (name.as_str(), session) {
            (event::ENCRYPTED, Some(session)) => {
                // The plaintext (a room key grant's secret, say) is wiped once parsed.
                let Some(plaintext) = msg
                    .data
                    .and_then(|d| serde_json::from_value::<EncryptedPayload>(d).ok())
                    .and_then(|p| session.open(&p).ok().map(Zeroizing::new))
                else {
                    return Some(Event::DecryptFailed {
                        frame_len: text.len(),
                    });
                };
                // A record that opened is the server's own: what it holds may still be more
                // than this client can parse (JSON nested deeper than 128 levels, which a
                // worker can publish), and is then skipped like any unparseable frame; the
                // session is intact.
                let Ok(inner) = serde_json::from_slice::<Inbound>(&plaintext) else {
                    return Some(Event::ServerError {
                        message: UNPARSEABLE.into(),
                    });
                };
                match Some(inner).filter(|i| i.event.is_some()) {
                    Some(mut inner) if inner.event.as_deref() == Some(event::ROOM_KEY) => {
                        match grant(room_keys.as_mut(), inner.data.as_mut()) {
                            Some(()) => None,
                            None => Some(Event::DecryptFailed {
                                frame_len: text.len(),
                            }),
                        }
                    }
                    Some(inner) => self
                        .track(&inner)
                        .or_else(|| {
                            lifecycle_event(inner.event.as_deref()?, inner.data.as_ref(), lifetime)
                        })
                        .or_else(|| app_event(inner, true, raw)),
                    None => Some(Event::DecryptFailed {
                        frame_len: text.len(),
                    }),
                }
            }
            (event::ROOM_ENCRYPTED, Some(_)) => {
                match open_room(room_keys.as_mut(), msg.data.as_ref()) {
                    Some(inner) => self.track(&inner).or_else(|| app_event(inner, true, raw)),
                    None => Some(Event::DecryptFailed {
                        frame_len: text.len(),
                    }),
                }
            }
            (event::ENCRYPTED, None) => Some(Event::DecryptFailed {
                frame_len: text.len(),
            }),
            (_, Some(_)) => Some(Event::PlaintextRejected { event: name }),
            (_, None) => self
                .track(&msg)
                .or_else(|| lifecycle_event(&name, msg.data.as_ref(), lifetime))
                .or_else(|| app_event(msg, false, raw)),
        }
    }
}

impl Task {
    /// Turns an inbound binary message into an event. `keyring` is the connection's room
    /// keys when the client agreed to binary room records (§14.6); a binary message is then
    /// one such record, and anything that is not one, or does not open, is a failure (as a
    /// text record that does not open). `None` for a client without a session: the protocol
    /// sends it no binary message, and one is ignored.
    pub(super) fn on_binary(
        &self,
        bytes: &[u8],
        session: &Option<Session>,
        keyring: Option<&mut Option<RoomKeyring>>,
    ) -> Option<Event> {
        session.as_ref()?;
        let inner = open_binary_room(keyring.and_then(Option::as_mut), bytes);
        match inner {
            // The raw frame is text only: a binary record carries none.
            Some(inner) => self.track(&inner).or_else(|| app_event(inner, true, None)),
            None => Some(Event::DecryptFailed {
                frame_len: bytes.len(),
            }),
        }
    }
}

/// Takes a `room-key` grant (it arrived inside this client's own record layer); `None` when the
/// client did not ask for room keys or the grant is malformed or stale.
fn grant(keyring: Option<&mut RoomKeyring>, data: Option<&mut Value>) -> Option<()> {
    let data = data?;
    // The base64 secret is taken out of the envelope and wiped after use, whatever the outcome.
    let key = match data.get_mut("key") {
        Some(Value::String(key)) => Zeroizing::new(std::mem::take(key)),
        _ => return None,
    };
    let room = data.get("room")?.as_str()?;
    let epoch = data.get("epoch")?.as_u64()?;
    keyring?
        .grant(room, epoch, &key, AeadBackend::default())
        .ok()
}

/// Opens a `room-encrypted` record; `None` when the client holds no key for it, it does not
/// open, or its plaintext is not an application envelope (a room key opens no system event).
fn open_room(keyring: Option<&mut RoomKeyring>, data: Option<&Value>) -> Option<Inbound> {
    let keyring = keyring?;
    let data = data?;
    let room = data.get("room")?.as_str()?;
    let epoch = data.get("epoch")?.as_u64()?;
    let seq = data.get("seq")?.as_u64()?;
    let ct = data.get("ct")?.as_str()?;
    let plaintext = Zeroizing::new(keyring.open(room, epoch, seq, ct).ok()?);
    room_envelope(room, &plaintext)
}

/// Opens a binary room record (§14.6); `None` when the client did not agree to them (no
/// keyring), it is not one, it does not open, or its plaintext is not an application envelope.
fn open_binary_room(keyring: Option<&mut RoomKeyring>, bytes: &[u8]) -> Option<Inbound> {
    let record = BinaryRecord::parse(bytes).ok()?;
    let plaintext = Zeroizing::new(keyring?.open_binary(&record).ok()?);
    room_envelope(record.room, &plaintext)
}

/// The application envelope an opened record of `room` carries; `None` for anything else.
fn room_envelope(room: &str, plaintext: &[u8]) -> Option<Inbound> {
    let mut inner: Inbound = serde_json::from_slice(plaintext).ok()?;
    // A room record speaks for its own room's stream only: a position for any other stream
    // (which only a forger holding the epoch key could put there) is not taken.
    if inner
        .stream
        .as_deref()
        .is_some_and(|s| s.strip_prefix(ROOM_STREAM_PREFIX) != Some(room))
    {
        (inner.stream, inner.offset, inner.epoch) = (None, None, None);
    }
    let name = inner.event.as_deref()?;
    let application =
        EventName::check(name).is_ok() && ![event::ERROR, event::HELLO].contains(&name);
    application.then_some(inner)
}

/// `refreshed` and `Refresh failed` become their own events (and re-arm the refresh);
/// `None` for anything else.
fn lifecycle_event(name: &str, data: Option<&Value>, lifetime: &mut Lifetime) -> Option<Event> {
    match name {
        event::REFRESHED => {
            let field = |k: &str| data.and_then(|d| d.get(k)).and_then(Value::as_str);
            let expires_at = field("expiresAt");
            lifetime.renewed(field("time").and_then(|t| session_left(t, expires_at)));
            Some(Event::Refreshed {
                user_id: field("userId").unwrap_or_default().to_owned(),
                expires_at: expires_at.and_then(parse_iso8601),
            })
        }
        event::ERROR if error_message(data).as_deref() == Some(err::REFRESH_FAILED) => {
            lifetime.failed();
            Some(Event::RefreshFailed {
                message: err::REFRESH_FAILED.to_owned(),
            })
        }
        _ => None,
    }
}

/// The application's event for a frame the protocol did not take; `None` for one of the
/// protocol's own events out of place (a second `connected`, a `recovered` this client did
/// not ask for): a server never lets an application send those, so they are no message.
fn app_event(inbound: Inbound, encrypted: bool, raw: Option<String>) -> Option<Event> {
    let event = inbound.event.unwrap_or_default();
    if event == event::ERROR {
        let message = error_message(inbound.data.as_ref()).unwrap_or_default();
        return Some(Event::ServerError { message });
    }
    if event::RESERVED_OUTBOUND.contains(&event.as_str()) {
        tracing::debug!(event, "protocol event out of place; ignored");
        return None;
    }
    Some(Event::Message(Message {
        event,
        data: inbound.data.unwrap_or(Value::Null),
        encrypted,
        raw,
        position: inbound.stream.zip(inbound.offset),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::room::{RoomSealer, RoomSecret};
    use serde_json::json;

    #[test]
    fn a_room_record_positions_its_own_room_stream_only() {
        let secret = RoomSecret::from_bytes(&[7; 32]);
        let mut sealer =
            RoomSealer::new("orders", 3, &secret, AeadBackend::default()).expect("sealer");
        let mut ring = RoomKeyring::new();
        ring.grant("orders", 3, &secret.to_base64(), AeadBackend::default())
            .expect("grant");
        let mut open = |envelope: Value| {
            let frame = sealer
                .seal_frame(envelope.to_string().as_bytes())
                .expect("seal");
            let frame: Value = serde_json::from_str(&frame).expect("frame");
            open_room(Some(&mut ring), frame.get("data")).expect("opens")
        };
        let own = open(
            json!({"event": "o", "data": 1, "stream": "room:orders", "offset": 4, "epoch": "e"}),
        );
        assert_eq!(own.stream.as_deref(), Some("room:orders"));
        assert_eq!(own.offset, Some(4));
        for stream in ["broadcast", "room:other", "user:u", "room:orders2"] {
            let other =
                open(json!({"event": "o", "data": 2, "stream": stream, "offset": 9, "epoch": "f"}));
            assert_eq!(
                (other.stream, other.offset, other.epoch),
                (None, None, None),
                "{stream}"
            );
            assert_eq!(other.data, Some(json!(2)));
        }
    }

    #[test]
    fn a_binary_room_record_opens_once_and_nothing_else_does() {
        let secret = RoomSecret::from_bytes(&[9; 32]);
        let mut sealer =
            RoomSealer::new("orders", 1, &secret, AeadBackend::default()).expect("sealer");
        let ring = || {
            let mut ring = RoomKeyring::new();
            ring.grant("orders", 1, &secret.to_base64(), AeadBackend::default())
                .expect("grant");
            ring
        };
        let record = sealer
            .seal(br#"{"event":"o","data":1,"stream":"room:other","offset":2,"epoch":"e"}"#)
            .expect("seal")
            .binary;
        let mut keyring = ring();
        let opened = open_binary_room(Some(&mut keyring), &record).expect("opens");
        assert_eq!(
            (opened.event.as_deref(), opened.data),
            (Some("o"), Some(json!(1)))
        );
        // A position for another stream is not taken, as for a text record.
        assert_eq!(opened.stream, None);
        // Replayed; without a keyring (not agreed); any byte changed; a system event inside.
        assert!(open_binary_room(Some(&mut keyring), &record).is_none());
        assert!(open_binary_room(None, &record).is_none());
        for at in 0..record.len() {
            let mut bad = record.clone();
            bad[at] ^= 0x40;
            assert!(
                open_binary_room(Some(&mut ring()), &bad).is_none(),
                "byte {at}"
            );
        }
        let system = sealer
            .seal(br#"{"event":"connected","data":{}}"#)
            .expect("seal")
            .binary;
        assert!(open_binary_room(Some(&mut ring()), &system).is_none());
    }
}
