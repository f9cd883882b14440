//! Wire protocol: the JSON envelope, system events, close codes and the Redis bus envelope.
//!
//! Everything here is pure data: no I/O, no crypto, no async. Both the server and the client
//! SDK build on these types, so a change here is a change to the wire.

mod bus;
mod close;
mod message;

pub use bus::{BusEnvelope, BusEnvelopeError, BusTarget, channel};
pub use close::CloseCode;
pub use message::{
    AuthenticatePayload, ConnectedPayload, EncryptedPayload, ErrorPayload, Inbound, RoomsPayload,
    error_message, event, frame_json, now_iso8601,
};
