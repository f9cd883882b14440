//! Why a message could not be sent: shared by every publisher (the server handle, the
//! emitter, the admin API).

use super::NameError;

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The event name is empty or longer than 256 characters.
    #[error("invalid event name")]
    InvalidEvent,
    /// The event name is a protocol event (`authenticate`, `connected`, `encrypted`).
    #[error("event name {0:?} is reserved by the protocol")]
    ReservedEvent(String),
    /// The target reaches nobody by construction: an empty user or client id, or a room name
    /// [`RoomName::check`](super::RoomName::check) refuses (empty, too long, or under the
    /// reserved `ws:` prefix).
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// The payload does not serialize to JSON.
    #[error("payload is not serializable: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The serialized message is larger than `ServerConfig::outbox_bytes`: no client could
    /// ever queue it, so it is refused instead of closing every recipient as a slow consumer.
    #[error("message of {size} bytes exceeds the per-client outbox limit of {limit} bytes")]
    TooLarge {
        /// Size of the serialized `{event, data}` frame.
        size: usize,
        /// The configured `outbox_bytes`.
        limit: usize,
    },
}

/// An event name refused by [`EventName::check`](super::EventName::check): a reserved name
/// becomes [`SendError::ReservedEvent`], anything else [`SendError::InvalidEvent`].
impl From<NameError> for SendError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::ReservedEvent(name) => Self::ReservedEvent(name),
            _ => Self::InvalidEvent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EventName;

    fn check(name: &str) -> Result<(), SendError> {
        EventName::check(name).map_err(SendError::from)
    }

    #[test]
    fn event_name_errors_keep_their_send_errors() {
        assert!(check("order:paid").is_ok());
        assert!(matches!(check(""), Err(SendError::InvalidEvent)));
        assert!(matches!(
            check(&"é".repeat(257)),
            Err(SendError::InvalidEvent)
        ));
        assert!(matches!(
            check("connected"),
            Err(SendError::ReservedEvent(n)) if n == "connected"
        ));
        let Err(e) = check("encrypted") else {
            panic!("reserved")
        };
        assert_eq!(
            e.to_string(),
            "event name \"encrypted\" is reserved by the protocol"
        );
    }
}
