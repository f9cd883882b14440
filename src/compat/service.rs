//! Domain event services: the base that order, payment, identity... notifications build on.
//!
//! [`EventService`] wraps any [`Publish`]er (the in-process [`Server`](crate::Server) handle or
//! the Redis-only emitter) with the small API domain code needs (`is_ready`, `broadcast`,
//! `send_to_room`) and can be created before its publisher exists (bind it later), so a service
//! constructed at start-up simply skips notifications until the socket layer is up.
//!
//! ```
//! use sealwire::compat::EventService;
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

use crate::protocol::{BusTarget, EventName, SendError};
use crate::publish::{Publication, Publish, PublishError, Receipt};

/// The room [`EventService::broadcast`] sends to: every authenticated client joins it by
/// default (IGNIS `WebSocketDefaults.ROOM`).
pub const DEFAULT_ROOM: &str = crate::protocol::DEFAULT_ROOM;

/// The base of a domain event service (the IGNIS `BaseSocketEventService`): a scope for logs
/// and a publisher that may be bound after construction. Cheap to clone.
#[derive(Clone)]
pub struct EventService {
    scope: Arc<str>,
    publisher: Arc<OnceLock<Arc<dyn Publish>>>,
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
    pub fn with_publisher(scope: &str, publisher: impl Publish + 'static) -> Self {
        let s = Self::new(scope);
        s.bind(Arc::new(publisher));
        s
    }

    /// Binds the publisher (first bind wins; returns whether this one was taken). Clones of
    /// the service share the binding.
    pub fn bind(&self, publisher: Arc<dyn Publish>) -> bool {
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
    pub async fn broadcast(
        &self,
        topic: &str,
        data: &impl Serialize,
    ) -> Result<Receipt, PublishError> {
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
    ) -> Result<Receipt, PublishError> {
        let publisher = self.publisher.get().ok_or(PublishError::NotReady)?;
        let event = EventName::new(topic).map_err(SendError::from)?;
        let raw = serde_json::value::to_raw_value(data).map_err(SendError::from)?;
        let publication = Publication::new(BusTarget::Room(room.to_owned()), event, raw);
        publisher.publish(publication).await
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
                Ok(_) => ok += 1,
                Err(e) => {
                    tracing::warn!(scope = %self.scope, room = %room, topic, error = %e, "socket event not published");
                }
            }
        }
        ok
    }
}
