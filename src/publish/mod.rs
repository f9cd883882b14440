//! One way to publish. A [`Publish`]er is anything that puts messages on the wire: the
//! in-process [`Server`](crate::Server) handle (local delivery, then the bus) or the
//! Redis-only emitter (`sealwire::emitter::Emitter`, for workers that run no server). Both
//! compose a delivery the same way, with [`To`]:
//!
//! ```no_run
//! use sealwire::publish::Publish;
//! # async fn run(server: sealwire::Server, sender: String) -> Result<(), sealwire::publish::PublishError> {
//! let order = serde_json::json!({"id": 42, "status": "paid"});
//! let receipt = server
//!     .to_room("merchant:7")
//!     .except(sender)
//!     .emit("order:paid", &order)
//!     .await?;
//! println!("queued for {} local client(s)", receipt.local_recipients);
//! # Ok(()) }
//! ```
//!
//! The event name is checked ([`EventName`]) and the payload serialized once, before the
//! publisher sees it; a [`Publication`] is what every publisher receives. Domain services and
//! the IGNIS-style `send(destination, ..)` build on this in [`crate::compat`].
//!
//! This module builds on [`crate::protocol`] alone, so both the server and the emitter can
//! implement it without knowing each other.

mod to;

pub use to::To;

use futures_util::future::BoxFuture;
use serde_json::value::RawValue;

use crate::protocol::{BusTarget, EventName, SendError};

/// A message on its way: the target, the checked event name, the serialized data and the
/// client ids to skip.
#[derive(Debug)]
#[non_exhaustive]
pub struct Publication {
    /// Who the message is for.
    pub target: BusTarget,
    /// The event (topic) name.
    pub event: EventName,
    /// The payload, already JSON.
    pub data: Box<RawValue>,
    /// Client ids that must not receive it.
    pub exclude: Vec<String>,
}

impl Publication {
    /// A publication for `target` with nobody excluded.
    #[must_use]
    pub fn new(target: BusTarget, event: EventName, data: Box<RawValue>) -> Self {
        Self {
            target,
            event,
            data,
            exclude: Vec::new(),
        }
    }
}

/// What a publish did, as far as the publisher can know.
///
/// Delivery across instances goes over pub/sub, which acknowledges nothing: the receipt
/// counts what this process queued and, for a publisher that waits for Redis, how many
/// instances were listening. It never claims a cluster-wide client count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Receipt {
    /// Clients of this process the message was queued for (always 0 for an emitter).
    pub local_recipients: usize,
    /// Instances that received the message from Redis, when the publisher waited for the
    /// answer (the emitter does). `None` for a server, which hands the message to its bus
    /// without waiting so that sending never blocks on Redis.
    pub instances: Option<usize>,
    /// The offset the publication got in its stream, when the target keeps history on this
    /// process (`docs/PROTOCOL.md` §12).
    pub offset: Option<u64>,
}

impl Receipt {
    /// A receipt for `local_recipients` queued here and an unknown spread elsewhere.
    #[must_use]
    pub fn local(local_recipients: usize) -> Self {
        Self {
            local_recipients,
            instances: None,
            offset: None,
        }
    }

    /// A receipt from a publisher with no local clients that `instances` received.
    #[must_use]
    pub fn remote(instances: usize) -> Self {
        Self {
            local_recipients: 0,
            instances: Some(instances),
            offset: None,
        }
    }
}

/// Why a message was not published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event name is invalid or reserved, the payload does not serialize, or the message
    /// is too large for any client.
    #[error(transparent)]
    Message(#[from] SendError),
    /// No publisher is bound yet ([`crate::compat::EventService`]).
    #[error("socket event service is not ready")]
    NotReady,
    /// The publisher has been shut down.
    #[error("publisher is shut down")]
    Closed,
    /// The bus could not take the message (for an emitter: Redis unreachable or the command
    /// failed); it was not published.
    #[error("{0}")]
    Unavailable(String),
    /// The message could not be sealed with the backplane key.
    #[error("backplane encryption failed")]
    Seal,
}

/// Something that can publish a message to clients, on every instance.
///
/// Implement [`Publish::publish`]; the rest is provided. The builder methods need a sized
/// publisher; through `dyn Publish`, call [`Publish::publish`] with a [`Publication`].
pub trait Publish: Send + Sync {
    /// Publishes a checked, serialized message.
    ///
    /// # Errors
    /// [`PublishError`] when the message could not be published.
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<Receipt, PublishError>>;

    /// Whether publishing can currently work (bound, started, not shut down).
    fn is_ready(&self) -> bool {
        true
    }

    /// Starts a delivery to `target`.
    fn to(&self, target: BusTarget) -> To<'_, Self>
    where
        Self: Sized,
    {
        To::new(self, target)
    }

    /// Starts a delivery to every member of `room`.
    fn to_room(&self, room: impl Into<String>) -> To<'_, Self>
    where
        Self: Sized,
    {
        self.to(BusTarget::Room(room.into()))
    }

    /// Starts a delivery to every session of `user`.
    fn to_user(&self, user: impl Into<String>) -> To<'_, Self>
    where
        Self: Sized,
    {
        self.to(BusTarget::User(user.into()))
    }

    /// Starts a delivery to one client, on whichever instance holds it.
    fn to_client(&self, client_id: impl Into<String>) -> To<'_, Self>
    where
        Self: Sized,
    {
        self.to(BusTarget::Client(client_id.into()))
    }

    /// Starts a delivery to every authenticated client.
    fn to_all(&self) -> To<'_, Self>
    where
        Self: Sized,
    {
        self.to(BusTarget::Broadcast)
    }
}
