//! Wire protocol: the JSON envelope, system events, close codes, validated event and room
//! names, and the Redis bus envelope.
//!
//! Everything here is pure data: no I/O, no crypto, no async. Both the server and the client
//! SDK build on these types, so a change here is a change to the wire.

mod bus;
mod close;
mod history;
mod message;
mod names;
mod send;
mod text;

pub use bus::{BusEnvelope, BusEnvelopeError, BusTarget, channel};
pub use close::CloseCode;
pub use history::{
    BROADCAST_STREAM, HistoryConfig, KeepRules, Position, ROOM_STREAM_PREFIX, RecoverRequest,
    RecoveredPayload, StreamState, USER_STREAM_PREFIX, is_room_stream, recover_request_of,
    stream_of, target_of,
};
pub use message::{
    AuthenticatePayload, ConnectedPayload, EncryptedPayload, ErrorPayload, HelloPayload, Inbound,
    RefreshPayload, RefreshedPayload, RoomsPayload, error_message, event, frame_json, iso8601,
    now_iso8601, parse_iso8601,
};
pub use names::{
    DEFAULT_ROOM, DEFAULT_ROOMS, EventName, MAX_NAME_CHARS, NOTIFICATION_ROOM, NameError,
    RESERVED_PREFIX, RoomName, is_client_id_shaped, is_socket_id_shaped,
};
pub use send::SendError;
pub use text::Text;
