//! [`To`]: a delivery being composed, `to(target).except(id).emit(event, data)`.

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::value::RawValue;

use super::{Publication, Publish, PublishError, Receipt};
use crate::protocol::{BusTarget, EventName, RoomName, SendError};

/// A delivery to one target, built by [`Publish::to`] and its shorthands and sent by
/// [`To::emit`]. Nothing is published until the future `emit` returns is awaited.
#[must_use = "a delivery does nothing until emitted"]
#[derive(Debug)]
pub struct To<'a, P: ?Sized> {
    publisher: &'a P,
    target: BusTarget,
    exclude: Vec<String>,
}

impl<'a, P: Publish + ?Sized> To<'a, P> {
    pub(super) fn new(publisher: &'a P, target: BusTarget) -> Self {
        Self {
            publisher,
            target,
            exclude: Vec::new(),
        }
    }

    /// Skips one client (typically the sender).
    pub fn except(mut self, client_id: impl Into<String>) -> Self {
        self.exclude.push(client_id.into());
        self
    }

    /// Skips every client in `client_ids`.
    pub fn except_all<I>(mut self, client_ids: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.exclude.extend(client_ids.into_iter().map(Into::into));
        self
    }

    /// Sends `data` as `event`. The name is checked and the payload serialized now; the
    /// returned future publishes.
    ///
    /// # Errors
    /// [`PublishError::Message`] for an invalid or reserved event name, a target no client
    /// can have ([`SendError::InvalidTarget`]) or a payload that does not serialize;
    /// otherwise what the publisher reports.
    pub fn emit(
        self,
        event: &str,
        data: &impl Serialize,
    ) -> BoxFuture<'a, Result<Receipt, PublishError>> {
        match serde_json::value::to_raw_value(data) {
            Ok(raw) => self.emit_raw(event, raw),
            Err(e) => Box::pin(std::future::ready(Err(SendError::from(e).into()))),
        }
    }

    /// Sends already-serialized `data` as `event`.
    ///
    /// # Errors
    /// As [`To::emit`].
    pub fn emit_raw(
        self,
        event: &str,
        data: Box<RawValue>,
    ) -> BoxFuture<'a, Result<Receipt, PublishError>> {
        if let Err(e) = check_target(&self.target) {
            return Box::pin(std::future::ready(Err(e.into())));
        }
        match EventName::new(event) {
            Ok(event) => self.publisher.publish(Publication {
                target: self.target,
                event,
                data,
                exclude: self.exclude,
            }),
            Err(e) => Box::pin(std::future::ready(Err(SendError::from(e).into()))),
        }
    }
}

/// Refuses a target no client can have: published, it would reach nobody without a word.
fn check_target(target: &BusTarget) -> Result<(), SendError> {
    match target {
        BusTarget::Room(room) => {
            RoomName::check(room).map_err(|e| SendError::InvalidTarget(e.to_string()))
        }
        BusTarget::User(id) | BusTarget::Client(id) if id.is_empty() => {
            Err(SendError::InvalidTarget("an empty id".into()))
        }
        _ => Ok(()),
    }
}
