//! The bus that carries messages between server instances, and its in-process implementation.
//!
//! The core owns the trait and never names a concrete backend; the Redis bus plugs in from
//! `crate::bus`. A bus is fire-and-forget: `publish` never blocks the caller, and delivery is
//! at-most-once.

use std::sync::{Arc, Mutex, Weak};

use super::hooks::BoxFuture;
use super::registry::Interest;
use crate::protocol::BusEnvelope;

/// Receives envelopes from other instances. Handed to the bus by [`Bus::start`].
#[derive(Clone)]
pub struct BusInbox {
    deliver: Arc<dyn Fn(BusEnvelope) + Send + Sync>,
    interests: Arc<dyn Fn() -> Vec<crate::protocol::BusTarget> + Send + Sync>,
}

impl std::fmt::Debug for BusInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusInbox")
    }
}

impl BusInbox {
    /// Builds an inbox from a delivery function and a function listing current interests.
    pub fn new(
        deliver: impl Fn(BusEnvelope) + Send + Sync + 'static,
        interests: impl Fn() -> Vec<crate::protocol::BusTarget> + Send + Sync + 'static,
    ) -> Self {
        Self {
            deliver: Arc::new(deliver),
            interests: Arc::new(interests),
        }
    }

    /// Delivers an envelope to this server's local clients. Never blocks; envelopes from the
    /// server itself are ignored.
    pub fn deliver(&self, envelope: BusEnvelope) {
        (self.deliver)(envelope);
    }

    /// Every room/user/client the server has a local member for, to resubscribe after a
    /// reconnect.
    #[must_use]
    pub fn interests(&self) -> Vec<crate::protocol::BusTarget> {
        (self.interests)()
    }
}

/// Health of a bus, shown by `/socket/health` and `/socket/info`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BusStatus {
    /// Backend name (`local`, `redis`).
    pub kind: &'static str,
    /// Whether publishing currently reaches other instances.
    pub connected: bool,
    /// Human-readable detail (last error, mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A bus failure at start.
#[derive(Debug, thiserror::Error)]
#[error("bus error: {0}")]
pub struct BusError(pub String);

/// Carries envelopes between server instances.
pub trait Bus: Send + Sync + 'static {
    /// Connects and starts delivering remote envelopes to `inbox`.
    ///
    /// # Errors
    /// [`BusError`] when the backend cannot be reached and is configured to fail fast.
    fn start(&self, inbox: BusInbox) -> BoxFuture<'_, Result<(), BusError>>;

    /// Publishes an envelope to the other instances. Must not block.
    fn publish(&self, envelope: BusEnvelope);

    /// The server gained or lost local members for a target (interest-based subscriptions).
    fn interest(&self, _change: &Interest) {}

    /// Current health.
    fn status(&self) -> BusStatus;

    /// Stops delivering and releases connections.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// In-process bus: servers sharing one `LocalBus` (clones) exchange envelopes directly.
/// A server built without a bus gets a fresh one of its own (single instance).
#[derive(Clone, Default)]
pub struct LocalBus {
    hub: Arc<Hub>,
    me: Arc<Mutex<Option<Weak<BusInbox>>>>,
}

#[derive(Default)]
struct Hub {
    members: Mutex<Vec<Arc<BusInbox>>>,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalBus")
    }
}

impl LocalBus {
    /// A new, empty hub.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Another handle on the same hub, for a second server in this process.
    #[must_use]
    pub fn attach(&self) -> Self {
        Self {
            hub: Arc::clone(&self.hub),
            me: Arc::new(Mutex::new(None)),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Bus for LocalBus {
    fn start(&self, inbox: BusInbox) -> BoxFuture<'_, Result<(), BusError>> {
        let inbox = Arc::new(inbox);
        *lock(&self.me) = Some(Arc::downgrade(&inbox));
        lock(&self.hub.members).push(inbox);
        Box::pin(std::future::ready(Ok(())))
    }

    fn publish(&self, envelope: BusEnvelope) {
        let me = lock(&self.me).clone();
        let others: Vec<Arc<BusInbox>> = lock(&self.hub.members)
            .iter()
            .filter(|m| {
                me.as_ref()
                    .and_then(Weak::upgrade)
                    .is_none_or(|me| !Arc::ptr_eq(&me, m))
            })
            .cloned()
            .collect();
        for other in others {
            other.deliver(envelope.clone());
        }
    }

    fn status(&self) -> BusStatus {
        BusStatus {
            kind: "local",
            connected: true,
            detail: None,
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        let me = lock(&self.me).take();
        if let Some(me) = me.and_then(|w| w.upgrade()) {
            lock(&self.hub.members).retain(|m| !Arc::ptr_eq(m, &me));
        }
        Box::pin(std::future::ready(()))
    }
}
