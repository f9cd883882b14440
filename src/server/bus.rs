//! The bus that carries messages between server instances, and its in-process implementation.
//!
//! The core owns the trait and never names a concrete backend; the Redis bus plugs in from
//! `crate::bus`. A bus is fire-and-forget: `publish` never blocks the caller, and delivery is
//! at-most-once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::hooks::BoxFuture;
use super::registry::Interest;
use crate::protocol::{BusEnvelope, BusTarget};

/// Receives envelopes from other instances. Handed to the bus by [`Bus::start`].
#[derive(Clone)]
pub struct BusInbox {
    /// Delivers; true when the server's publishing turn is over ([`BusInbox::deliver_paced`]).
    deliver: Arc<dyn Fn(BusEnvelope) -> bool + Send + Sync>,
    interests: Arc<dyn Fn() -> Vec<crate::protocol::BusTarget> + Send + Sync>,
    resubscribed: Option<Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>>,
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
        Self::paced(
            move |envelope| {
                deliver(envelope);
                false
            },
            interests,
        )
    }

    /// An inbox whose delivery function says when the burst it delivers should give the
    /// connections a turn.
    pub(crate) fn paced(
        deliver: impl Fn(BusEnvelope) -> bool + Send + Sync + 'static,
        interests: impl Fn() -> Vec<crate::protocol::BusTarget> + Send + Sync + 'static,
    ) -> Self {
        Self {
            deliver: Arc::new(deliver),
            interests: Arc::new(interests),
            resubscribed: None,
        }
    }

    /// Runs `catch_up` when the bus reports its subscription back ([`BusInbox::resubscribed`]).
    pub(crate) fn on_resubscribed(
        mut self,
        catch_up: impl Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        self.resubscribed = Some(Arc::new(catch_up));
        self
    }

    /// For a bus whose subscription was down (a lost connection, a restarted Redis) and is
    /// back: call this before delivering anything that arrives on the new subscription. The
    /// server then delivers the kept publications (history in a shared store) it missed
    /// meanwhile, so they reach its clients in order, before what is newer. Resolves once
    /// that is done.
    pub async fn resubscribed(&self) {
        if let Some(catch_up) = &self.resubscribed {
            catch_up().await;
        }
    }

    /// Delivers an envelope to this server's local clients. Never blocks; envelopes from the
    /// server itself are ignored.
    pub fn deliver(&self, envelope: BusEnvelope) {
        let _ = (self.deliver)(envelope);
    }

    /// Delivers like [`BusInbox::deliver`], then yields to the runtime when the server's
    /// publishing turn is over, so that a burst arriving from the bus is written to every
    /// recipient a little at a time instead of filling every outbox first (the same turns as
    /// local publishing: BENCHMARKS.md, "Fair bursts"). For a bus's receive loop.
    pub async fn deliver_paced(&self, envelope: BusEnvelope) {
        if (self.deliver)(envelope) {
            tokio::task::yield_now().await;
        }
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

/// Counters kept by a bus since it was created, exposed at `GET /metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Envelopes published.
    pub published: u64,
    /// Envelopes received from other instances.
    pub received: u64,
    /// Envelopes received and rejected (a bad seal or shape).
    pub rejected: u64,
    /// Envelopes dropped before publishing (queue full or publish failed).
    pub dropped: u64,
    /// Reconnections to the backend.
    pub reconnects: u64,
}

impl BusStats {
    /// Counters with these values.
    #[must_use]
    pub fn new(
        published: u64,
        received: u64,
        rejected: u64,
        dropped: u64,
        reconnects: u64,
    ) -> Self {
        Self {
            published,
            received,
            rejected,
            dropped,
            reconnects,
        }
    }
}

/// A bus failure at start. Addresses in it never carry a password (it is masked as `***`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The configuration cannot work (an unparsable URL, a bus handle already in use).
    /// Retrying does not help.
    #[error("invalid bus configuration: {0}")]
    Config(String),
    /// The backend could not be reached (connection refused, timeout, TLS failure).
    #[error("cannot reach {backend} at {url}: {reason}")]
    Unreachable {
        /// Backend name (`Redis`).
        backend: &'static str,
        /// The address tried, password masked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The backend refused the credentials. Retrying does not help.
    #[error(
        "cannot reach {backend} at {url}: {reason} ({backend} refused the credentials in the URL; retrying cannot help)"
    )]
    AuthRefused {
        /// Backend name (`Redis`).
        backend: &'static str,
        /// The address tried, password masked.
        url: String,
        /// The backend's refusal.
        reason: String,
    },
    /// The server shut down before the bus finished starting.
    #[error("shut down while waiting for {backend}")]
    Closed {
        /// Backend name (`Redis`).
        backend: &'static str,
    },
    /// Any other failure, for custom [`Bus`] implementations.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// Carries envelopes between server instances.
pub trait Bus: Send + Sync + 'static {
    /// Connects and starts delivering remote envelopes to `inbox`.
    ///
    /// # Errors
    /// [`BusError`] when the backend cannot be reached and is configured to fail fast.
    fn start(&self, inbox: BusInbox) -> BoxFuture<'_, Result<(), BusError>>;

    /// Publishes an envelope to the other instances. Must not block.
    fn publish(&self, envelope: BusEnvelope);

    /// Resolves once every envelope [`publish`](Bus::publish)ed before the call has left this
    /// instance (or been given up on), or after `within`. A publication that reaches the other
    /// instances another way (a kept one, which the history store publishes) waits for it, so
    /// that it cannot overtake what the same publisher sent before it. The default (a bus
    /// whose `publish` hands envelopes over at once) resolves at once.
    fn flushed(&self, _within: Duration) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// The server gained or lost local members for a target (interest-based subscriptions).
    fn interest(&self, _change: &Interest) {}

    /// Whether [`Bus::subscribed`] may ever have to wait (the backend confirms subscriptions
    /// one by one). The default (an in-process bus, a pattern subscription) does not, and the
    /// server then skips the waits on its connection path.
    fn confirms_subscriptions(&self) -> bool {
        false
    }

    /// Resolves once publications to `target` reach this instance (the subscription that
    /// carries them is confirmed by the backend), or after `within`; says which. A recovering
    /// client's history is read only then, so that nothing published meanwhile falls between
    /// the replay and live delivery. The default (an in-process bus) is always subscribed.
    fn subscribed(&self, _target: &BusTarget, _within: Duration) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(true))
    }

    /// Which of `names` a client of any instance on the bus holds as a name of its own: a
    /// Socket.IO `socket.id`
    /// ([`is_socket_id_shaped`](crate::protocol::is_socket_id_shaped)), whose room is that
    /// client's alone.
    /// Before a client joins rooms of that shape the server asks, and leaves out what this
    /// returns (all of them on an error), so that no client anywhere can join the room that
    /// `to(socket.id)` and `send(socket.id)` address.
    ///
    /// The names are those instances reserved ([`Bus::reserve_name`]). The default knows no
    /// other instance and answers none.
    ///
    /// # Errors
    /// [`BusError`] when the backend cannot answer.
    fn names_in_use(
        &self,
        _names: Vec<String>,
    ) -> BoxFuture<'_, Result<HashSet<String>, BusError>> {
        Box::pin(std::future::ready(Ok(HashSet::new())))
    }

    /// Reserves `name`, the `socket.id` of a Socket.IO socket of this instance, for every
    /// instance: once this resolves, [`Bus::names_in_use`] answers it on each, until
    /// [`Bus::release_name`] and for a while after (see there). The Socket.IO door waits for it before it acknowledges the
    /// socket's connect, so the name is reserved before anyone but the server knows it. The
    /// default (a single instance) has nothing to do.
    ///
    /// # Errors
    /// [`BusError`] when the backend cannot take it now (it is then written when it can).
    fn reserve_name(&self, _name: &str) -> BoxFuture<'_, Result<(), BusError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Gives up a name [`Bus::reserve_name`] reserved (its socket is gone). The built-in buses
    /// keep answering it in use for [`RETIRED_NAMES_KEPT_FOR`] more, so that a send that still
    /// names the departed socket reaches nobody rather than whoever joins the room next.
    fn release_name(&self, _name: &str) {}

    /// Current health.
    fn status(&self) -> BusStatus;

    /// The counters the bus keeps, for the metrics page; `None` (the default) when it keeps
    /// none.
    fn stats(&self) -> Option<BusStats> {
        None
    }

    /// Stops delivering and releases connections.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// In-process bus: servers in one process exchange envelopes directly through a shared hub.
/// A server built without a bus gets a fresh one of its own (single instance).
///
/// Give each server its own handle on the hub: a clone (or [`LocalBus::attach`]) is a new
/// member with an identity of its own, so a message a server publishes reaches every other
/// member but not itself, and one server's shutdown leaves the others registered. Starting
/// one handle for a second server while the first still uses it is refused.
///
/// ```
/// use sealwire::server::{LocalBus, Server};
/// # fn auth(_: sealwire::server::AuthRequest) -> std::future::Ready<Result<Option<sealwire::server::Identity>, sealwire::server::HookError>> { std::future::ready(Ok(None)) }
/// let hub = LocalBus::new();
/// let one = Server::builder().authenticate(auth).bus(hub.clone()).build()?;
/// let two = Server::builder().authenticate(auth).bus(hub.clone()).build()?;
/// # let _ = (one, two);
/// # Ok::<(), sealwire::server::ConfigError>(())
/// ```
#[derive(Default)]
pub struct LocalBus {
    hub: Arc<Hub>,
    me: Arc<Mutex<Option<Weak<BusInbox>>>>,
}

#[derive(Default)]
struct Hub {
    members: Mutex<Vec<Arc<BusInbox>>>,
    /// The socket ids the members' clients hold, and held lately ([`Bus::names_in_use`]).
    names: Mutex<names::HeldNames>,
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

    /// Another handle on the same hub, for a second server in this process (the same as
    /// [`Clone::clone`]).
    #[must_use]
    pub fn attach(&self) -> Self {
        Self {
            hub: Arc::clone(&self.hub),
            me: Arc::new(Mutex::new(None)),
        }
    }
}

/// A clone is a new member of the same hub, with its own identity (see [`LocalBus`]).
impl Clone for LocalBus {
    fn clone(&self) -> Self {
        self.attach()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Bus for LocalBus {
    fn start(&self, inbox: BusInbox) -> BoxFuture<'_, Result<(), BusError>> {
        let inbox = Arc::new(inbox);
        {
            let mut me = lock(&self.me);
            if me.as_ref().is_some_and(|w| w.strong_count() > 0) {
                return Box::pin(std::future::ready(Err(BusError::Config(
                    "this LocalBus handle already serves a running server; give each server its own clone".to_owned(),
                ))));
            }
            *me = Some(Arc::downgrade(&inbox));
        }
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

    fn reserve_name(&self, name: &str) -> BoxFuture<'_, Result<(), BusError>> {
        lock(&self.hub.names).hold(name);
        Box::pin(std::future::ready(Ok(())))
    }

    fn release_name(&self, name: &str) {
        lock(&self.hub.names).retire(name, std::time::Instant::now());
    }

    fn names_in_use(&self, names: Vec<String>) -> BoxFuture<'_, Result<HashSet<String>, BusError>> {
        let in_use = lock(&self.hub.names).in_use(names, std::time::Instant::now());
        Box::pin(std::future::ready(Ok(in_use)))
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

mod names;
pub use names::{RETIRED_NAMES_KEPT_FOR, RETIRED_NAMES_MAX};

#[cfg(test)]
mod tests;
