//! Validated names: [`EventName`] and [`RoomName`], checked once where a name enters the
//! system (a client frame, the admin API, the SDK, the emitter, the bus), and the reserved and
//! default names of the protocol.
//!
//! The rules:
//!
//! - an **event name** is 1..=256 characters and not one of
//!   [`event::RESERVED_OUTBOUND`](super::event::RESERVED_OUTBOUND): an application may not
//!   impersonate the protocol;
//! - a **room name** is 1..=256 characters and does not start with [`RESERVED_PREFIX`]
//!   (`ws:`, the prefix of the bus channels);
//! - a room name shaped like a client id (anything [`uuid::Uuid::try_parse`] accepts) is a
//!   valid room, but it is not *joinable*: every client is in the room named after its own
//!   id, and nobody else may join it ([`RoomName::joinable`]).

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize, Serializer};

use super::event;

/// Longest event or room name, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 256;

/// Prefix no room name may start with: the bus channels (`ws:room:…`, `ws:broadcast`) live
/// under it.
pub const RESERVED_PREFIX: &str = "ws:";

/// The room every authenticated client joins by default (IGNIS `WebSocketDefaults.ROOM`).
pub const DEFAULT_ROOM: &str = "ws-default";

/// The notification room every authenticated client joins by default.
pub const NOTIFICATION_ROOM: &str = "ws-notification";

/// The rooms every authenticated client joins unless configured otherwise.
pub const DEFAULT_ROOMS: [&str; 2] = [DEFAULT_ROOM, NOTIFICATION_ROOM];

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_CHARS`] characters.
    #[error("name is longer than 256 characters")]
    TooLong,
    /// A room name starting with [`RESERVED_PREFIX`].
    #[error("room name {0:?} starts with the reserved prefix \"ws:\"")]
    ReservedPrefix(String),
    /// An event name reserved by the protocol ([`event::RESERVED_OUTBOUND`]), or one the
    /// client SDK sends only through its own methods.
    #[error("event name {0:?} is reserved by the protocol")]
    ReservedEvent(String),
    /// A room name shaped like a client id: valid, but nobody may join it.
    #[error("room name {0:?} is shaped like a client id and cannot be joined")]
    ClientIdShaped(String),
}

fn check_length(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    // At most 4 bytes a character: only a long name needs counting.
    if name.len() > MAX_NAME_CHARS && name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    Ok(())
}

macro_rules! name_type {
    ($name:ident) => {
        impl $name {
            /// The name as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name as an owned string.
            #[must_use]
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;

            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::check(s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::try_from(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

/// An application event name: 1..=256 characters, not reserved by the protocol.
///
/// Deserializing one validates it, so a payload holding an `EventName` cannot carry an invalid
/// one.
///
/// ```
/// use sealwire::protocol::{EventName, NameError};
///
/// let name = EventName::new("order:paid")?;
/// assert_eq!(name, "order:paid");
/// assert!(matches!(EventName::new("connected"), Err(NameError::ReservedEvent(_))));
/// # Ok::<(), NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct EventName(String);

impl EventName {
    /// Validates `name` as an event name an application may send.
    ///
    /// # Errors
    /// [`NameError::Empty`], [`NameError::TooLong`] or [`NameError::ReservedEvent`].
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        Self::check(&name)?;
        Ok(Self(name))
    }

    /// Checks `name` against the rules of [`EventName::new`] without allocating.
    ///
    /// # Errors
    /// As [`EventName::new`].
    pub fn check(name: &str) -> Result<(), NameError> {
        check_length(name)?;
        if event::RESERVED_OUTBOUND.contains(&name) {
            return Err(NameError::ReservedEvent(name.to_owned()));
        }
        Ok(())
    }

    /// Checks `name` as an event a client sends as an application event: the rules of
    /// [`EventName::check`], and none of [`event::CLIENT_COMMANDS`] either (the server would
    /// read those as commands; clients send them through dedicated calls).
    ///
    /// # Errors
    /// As [`EventName::new`].
    pub fn check_client_outbound(name: &str) -> Result<(), NameError> {
        Self::check(name)?;
        if event::CLIENT_COMMANDS.contains(&name) {
            return Err(NameError::ReservedEvent(name.to_owned()));
        }
        Ok(())
    }
}

name_type!(EventName);

/// A room name: 1..=256 characters, not starting with `ws:`.
///
/// [`RoomName::new`] accepts every valid room, the rooms named after client ids included;
/// [`RoomName::joinable`] also refuses names shaped like a client id, which only the server
/// itself may put a client in. Deserializing validates with [`RoomName::new`].
///
/// ```
/// use sealwire::protocol::{NameError, RoomName};
///
/// let room = RoomName::joinable("orders:42")?;
/// assert_eq!(room.as_str(), "orders:42");
/// assert!(RoomName::new("ws:broadcast").is_err());
/// let id = "3f0c6a52-8d8e-4c1b-9a59-0c9b8c7e2f10";
/// assert!(RoomName::new(id).is_ok());
/// assert!(matches!(RoomName::joinable(id), Err(NameError::ClientIdShaped(_))));
/// # Ok::<(), NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct RoomName(String);

impl RoomName {
    /// Validates `name` as a room name.
    ///
    /// # Errors
    /// [`NameError::Empty`], [`NameError::TooLong`] or [`NameError::ReservedPrefix`].
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        Self::check(&name)?;
        Ok(Self(name))
    }

    /// Validates `name` as a room a client, the application or the admin API may join: a
    /// valid room name that is not shaped like a client id.
    ///
    /// # Errors
    /// As [`RoomName::new`], or [`NameError::ClientIdShaped`].
    pub fn joinable(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        Self::check_joinable(&name)?;
        Ok(Self(name))
    }

    /// Checks `name` against the rules of [`RoomName::new`] without allocating.
    ///
    /// # Errors
    /// As [`RoomName::new`].
    pub fn check(name: &str) -> Result<(), NameError> {
        check_length(name)?;
        if name.starts_with(RESERVED_PREFIX) {
            return Err(NameError::ReservedPrefix(name.to_owned()));
        }
        Ok(())
    }

    /// Checks `name` against the rules of [`RoomName::joinable`] without allocating.
    ///
    /// # Errors
    /// As [`RoomName::joinable`].
    pub fn check_joinable(name: &str) -> Result<(), NameError> {
        Self::check(name)?;
        if is_client_id_shaped(name) {
            return Err(NameError::ClientIdShaped(name.to_owned()));
        }
        Ok(())
    }

    /// Whether this room may be joined (it is not shaped like a client id).
    #[must_use]
    pub fn is_joinable(&self) -> bool {
        !is_client_id_shaped(&self.0)
    }
}

name_type!(RoomName);

/// Whether `name` has the shape of a client id: anything [`uuid::Uuid::try_parse`] accepts
/// (client ids are lowercase hyphenated v4 UUIDs; the other spellings are reserved as well).
#[must_use]
pub fn is_client_id_shaped(name: &str) -> bool {
    uuid::Uuid::try_parse(name).is_ok()
}

/// Whether `name` has the shape of a Socket.IO `socket.id`: 16 characters of the URL-safe
/// base64 alphabet (`A-Z a-z 0-9 - _`). A socket's `socket.id` is another name of its
/// client, and the room of that name is the client's alone on every instance (see
/// `Bus::names_in_use`); only names of this shape can be one.
#[must_use]
pub fn is_socket_id_shaped(name: &str) -> bool {
    name.len() == 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_id_shapes() {
        for sid in [
            "SPwsz1QaUyyzBleE",
            "tcyqDdYxuHZo7Pvr",
            "pc6wEl-yYTOgzwWW",
            "a_b-c_d-e_f-g_h-",
        ] {
            assert!(is_socket_id_shaped(sid), "{sid}");
        }
        for other in [
            "SPwsz1QaUyyzBle",
            "SPwsz1QaUyyzBleEx",
            "SPwsz1QaUyyzBle.",
            "room:lobby",
            "",
        ] {
            assert!(!is_socket_id_shaped(other), "{other}");
        }
        assert!(
            !is_socket_id_shaped("éééééééé"),
            "16 bytes, not 16 characters of the alphabet"
        );
    }

    #[test]
    fn event_names() {
        assert_eq!(EventName::new("a").map(String::from), Ok("a".to_owned()));
        assert!(EventName::new("é".repeat(256)).is_ok());
        assert_eq!(EventName::new("a".repeat(257)), Err(NameError::TooLong));
        assert_eq!(EventName::new("é".repeat(257)), Err(NameError::TooLong));
        assert_eq!(EventName::new(""), Err(NameError::Empty));
        for reserved in event::RESERVED_OUTBOUND {
            assert_eq!(
                EventName::new(reserved),
                Err(NameError::ReservedEvent(reserved.to_owned()))
            );
        }
        // Protocol names an application may still use, and the `ws:` prefix (rooms only).
        for ok in ["join", "ws:x", "Connected", "errors"] {
            assert!(EventName::check(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn client_outbound_event_names() {
        for cmd in event::CLIENT_COMMANDS {
            assert!(EventName::check(cmd).is_ok());
            assert_eq!(
                EventName::check_client_outbound(cmd),
                Err(NameError::ReservedEvent(cmd.to_owned()))
            );
        }
        assert!(EventName::check_client_outbound("chat").is_ok());
        assert!(EventName::check_client_outbound("encrypted").is_err());
        assert!(EventName::check_client_outbound("").is_err());
    }

    #[test]
    fn room_names() {
        assert!(RoomName::new("a").is_ok());
        assert!(RoomName::new("é".repeat(256)).is_ok());
        assert_eq!(RoomName::new("a".repeat(257)), Err(NameError::TooLong));
        assert_eq!(RoomName::new(""), Err(NameError::Empty));
        assert_eq!(
            RoomName::new("ws:internal"),
            Err(NameError::ReservedPrefix("ws:internal".into()))
        );
        assert!(RoomName::new("ws-default").is_ok());
        for room in DEFAULT_ROOMS {
            assert!(RoomName::joinable(room).is_ok(), "{room}");
        }
    }

    #[test]
    fn client_id_shaped_rooms_are_valid_but_not_joinable() {
        let id = uuid::Uuid::new_v4();
        let hyphenated = id.hyphenated().to_string();
        for name in [
            hyphenated.clone(),
            hyphenated.to_uppercase(),
            id.simple().to_string(),
            id.braced().to_string(),
            id.urn().to_string(),
        ] {
            assert!(is_client_id_shaped(&name), "{name}");
            let room = RoomName::new(name.clone()).expect("valid");
            assert!(!room.is_joinable(), "{name}");
            assert_eq!(
                RoomName::joinable(name.clone()),
                Err(NameError::ClientIdShaped(name))
            );
        }
        let room = RoomName::joinable(format!("{hyphenated}x")).expect("joinable");
        assert!(room.is_joinable());
        assert_eq!(
            RoomName::joinable("ws:x"),
            Err(NameError::ReservedPrefix("ws:x".into()))
        );
    }

    #[test]
    fn serde_round_trip() {
        let room = RoomName::new("orders:42").expect("valid");
        let json = serde_json::to_string(&room).expect("serialize");
        assert_eq!(json, r#""orders:42""#);
        assert_eq!(
            serde_json::from_str::<RoomName>(&json).expect("deserialize"),
            room
        );
        let event = EventName::new("order:paid").expect("valid");
        let json = serde_json::to_string(&event).expect("serialize");
        assert_eq!(json, r#""order:paid""#);
        assert_eq!(
            serde_json::from_str::<EventName>(&json).expect("deserialize"),
            event
        );
        let rooms: Vec<RoomName> = serde_json::from_str(r#"["a","b"]"#).expect("list");
        assert_eq!(rooms, ["a", "b"]);
    }

    #[test]
    fn serde_rejects_invalid_names() {
        for bad in [r#""""#, r#""ws:room:x""#, "1", "null"] {
            assert!(serde_json::from_str::<RoomName>(bad).is_err(), "{bad}");
        }
        let long = format!("\"{}\"", "a".repeat(257));
        assert!(serde_json::from_str::<RoomName>(&long).is_err());
        assert!(serde_json::from_str::<EventName>(&long).is_err());
        for bad in [r#""""#, r#""authenticate""#, r#""encrypted""#, "[]"] {
            assert!(serde_json::from_str::<EventName>(bad).is_err(), "{bad}");
        }
        let err = serde_json::from_str::<EventName>(r#""connected""#).expect_err("reserved");
        assert!(err.to_string().contains("reserved"), "{err}");
    }

    #[test]
    fn conversions() {
        let room: RoomName = "chat".parse().expect("valid");
        assert_eq!(&*room, "chat");
        assert_eq!(room.as_ref(), "chat");
        assert_eq!(room.to_string(), "chat");
        assert_eq!(room.len(), 4);
        let set: std::collections::HashSet<RoomName> = [room.clone()].into();
        assert!(set.contains("chat"));
        assert_eq!(room.into_string(), "chat");
        assert!(RoomName::try_from("").is_err());
        assert!(EventName::try_from("x".to_owned()).is_ok());
        assert!("authenticate".parse::<EventName>().is_err());
    }
}
