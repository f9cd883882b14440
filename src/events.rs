//! Domain event services: the base that order, payment, identity... notifications build on.
//!
//! [`Publisher`] is anything that can put a message on the wire: the in-process [`Server`]
//! handle (local delivery, then the bus) or the Redis-only [`Emitter`](crate::emitter::Emitter).
//! [`EventService`] wraps one with the small API domain code needs (`is_ready`, `broadcast`,
//! `send_to_room`) and can be created before its publisher exists (bind it later), so a service
//! constructed at start-up simply skips notifications until the socket layer is up.
//!
//! ```
//! use sealwire::events::EventService;
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct Order { id: u64, merchant_id: u64, status: &'static str }
//!
//! struct SaleEvents(EventService);
//!
//! impl SaleEvents {
//!     async fn order_updated(&self, order: &Order) {
//!         if !self.0.is_ready() {
//!             tracing::warn!("socket events not ready; skipping order notification");
//!             return;
//!         }
//!         let rooms = [format!("sale-order:{}", order.id), format!("merchant:{}", order.merchant_id)];
//!         self.0.send_to_rooms(&rooms, "sale:order", order).await;
//!     }
//! }
//! # let _ = SaleEvents(EventService::new("sale"));
//! ```

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::protocol::BusTarget;
use crate::server::{BoxFuture, SendError, Server};

/// The room [`EventService::broadcast`] sends to: every authenticated client joins it by
/// default (IGNIS `WebSocketDefaults.ROOM`).
pub const DEFAULT_ROOM: &str = crate::protocol::DEFAULT_ROOM;

/// Why a domain event could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// No publisher is bound yet.
    #[error("socket event service is not ready")]
    NotReady,
    /// The event name or payload is invalid.
    #[error(transparent)]
    Message(#[from] SendError),
    /// The publisher could not deliver (e.g. Redis unreachable for an emitter).
    #[error("publish failed: {0}")]
    Failed(String),
}

/// Something that can publish a message to clients (on every instance).
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `data` (already JSON) as `event` to `target`, skipping `exclude`d clients.
    ///
    /// # Errors
    /// [`PublishError`] when the message could not be published.
    fn publish<'a>(
        &'a self,
        target: BusTarget,
        event: &'a str,
        data: Box<RawValue>,
        exclude: &'a [String],
    ) -> BoxFuture<'a, Result<(), PublishError>>;

    /// Whether publishing can currently work.
    fn is_ready(&self) -> bool;
}

impl Publisher for Server {
    fn publish<'a>(
        &'a self,
        target: BusTarget,
        event: &'a str,
        data: Box<RawValue>,
        exclude: &'a [String],
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        let result = crate::server::check_event(event)
            .and_then(|()| self.frame(event, data))
            .map(|frame| {
                self.route_frame(target, &frame, exclude, true);
            })
            .map_err(PublishError::from);
        Box::pin(std::future::ready(result))
    }

    fn is_ready(&self) -> bool {
        Server::is_ready(self)
    }
}

#[cfg(feature = "redis")]
impl Publisher for crate::emitter::Emitter {
    fn publish<'a>(
        &'a self,
        target: BusTarget,
        event: &'a str,
        data: Box<RawValue>,
        exclude: &'a [String],
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            match self.emit_raw(target, event, data, exclude).await {
                Ok(_) => Ok(()),
                Err(crate::emitter::EmitError::Message(e)) => Err(PublishError::Message(e)),
                Err(e) => Err(PublishError::Failed(e.to_string())),
            }
        })
    }

    fn is_ready(&self) -> bool {
        self.is_open()
    }
}

/// The base of a domain event service (the IGNIS `BaseSocketEventService`): a scope for logs
/// and a publisher that may be bound after construction. Cheap to clone.
#[derive(Clone)]
pub struct EventService {
    scope: Arc<str>,
    publisher: Arc<OnceLock<Arc<dyn Publisher>>>,
}

impl std::fmt::Debug for EventService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventService")
            .field("scope", &self.scope)
            .field("bound", &self.publisher.get().is_some())
            .finish()
    }
}

impl EventService {
    /// A service with no publisher yet; `scope` names it in logs.
    #[must_use]
    pub fn new(scope: &str) -> Self {
        Self {
            scope: scope.into(),
            publisher: Arc::new(OnceLock::new()),
        }
    }

    /// A service bound to `publisher` from the start.
    #[must_use]
    pub fn with_publisher(scope: &str, publisher: impl Publisher) -> Self {
        let s = Self::new(scope);
        s.bind(Arc::new(publisher));
        s
    }

    /// Binds the publisher (first bind wins; returns whether this one was taken). Clones of
    /// the service share the binding.
    pub fn bind(&self, publisher: Arc<dyn Publisher>) -> bool {
        self.publisher.set(publisher).is_ok()
    }

    /// Whether a publisher is bound and ready.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.publisher.get().is_some_and(|p| p.is_ready())
    }

    /// Sends `data` as `topic` to the default room [`DEFAULT_ROOM`], which every authenticated
    /// client joins (as the IGNIS base service does).
    ///
    /// # Errors
    /// [`PublishError`]: not bound, invalid message, or the publisher failed.
    pub async fn broadcast(&self, topic: &str, data: &impl Serialize) -> Result<(), PublishError> {
        self.send_to_room(DEFAULT_ROOM, topic, data).await
    }

    /// Sends `data` as `topic` to every member of `room`, on every instance.
    ///
    /// # Errors
    /// As [`EventService::broadcast`].
    pub async fn send_to_room(
        &self,
        room: &str,
        topic: &str,
        data: &impl Serialize,
    ) -> Result<(), PublishError> {
        let publisher = self.publisher.get().ok_or(PublishError::NotReady)?;
        let raw = serde_json::value::to_raw_value(data).map_err(SendError::from)?;
        publisher
            .publish(BusTarget::Room(room.to_owned()), topic, raw, &[])
            .await
    }

    /// Sends to several rooms concurrently and logs (rather than returns) failures, like the
    /// IGNIS services' `Promise.allSettled`. Returns how many rooms were published to.
    pub async fn send_to_rooms(
        &self,
        rooms: &[String],
        topic: &str,
        data: &impl Serialize,
    ) -> usize {
        let results =
            futures_util::future::join_all(rooms.iter().map(|r| self.send_to_room(r, topic, data)))
                .await;
        let mut ok = 0;
        for (room, r) in rooms.iter().zip(results) {
            match r {
                Ok(()) => ok += 1,
                Err(e) => {
                    tracing::warn!(scope = %self.scope, room = %room, topic, error = %e, "socket event not published");
                }
            }
        }
        ok
    }
}
