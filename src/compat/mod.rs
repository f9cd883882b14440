//! IGNIS-shaped publishing, for applications that move from IGNIS: the helper's
//! `send(destination, ..)` routing ([`IgnisSend`]) and `BaseSocketEventService`-style domain
//! services ([`EventService`]). Both are thin layers over [`crate::publish`], the one way to
//! publish.

mod send;
mod service;

pub use send::IgnisSend;
pub use service::{DEFAULT_ROOM, EventService};
