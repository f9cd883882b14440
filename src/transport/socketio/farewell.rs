//! How a socket is let go: its last words (why), then socketioxide's disconnect (`41`).
//! Neither fits in a full engine.io buffer (a client that stopped reading), so both are then
//! retried, in that order, backing off, until they go through or the session ends: a slow
//! client is never left connected without its core connection, and still learns why it was
//! let go (a hardened slow consumer's `sealwire:close` 4005).
//!
//! Every disconnect asked for while one is retried shares its state ([`Pending`]): the words
//! owed are said before any `41`, whoever gets the room first (the retry task, or a later
//! disconnect such as the one the core connection's end asks for), and one retry task runs
//! per socket however often a disconnect is asked for (a client that keeps sending events
//! into a full queue asks once per event).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

use crate::protocol::now_iso8601;

/// How long a disconnect that does not fit in a full engine.io buffer is retried: past
/// engine.io's own heartbeat deadline, which ends a session that never drains.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// An event emitted just before a disconnect: why.
pub(super) type LastWords = (&'static str, Value);

/// A socket's disconnect that is being retried, kept in the socket's extensions: the last
/// words still owed. The lock also orders the tries, so words are never overtaken by a `41`.
#[derive(Clone, Default)]
struct Pending(Arc<Mutex<Option<LastWords>>>);

impl Pending {
    /// Adds `last` to what is owed, unless something is owed already (the first reason
    /// given is the one the client hears).
    fn owe(&self, last: Option<LastWords>) {
        let mut owed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if owed.is_none() {
            *owed = last;
        }
    }

    /// One try: the words owed, then the disconnect. Whether it is done (or there is
    /// nothing left to do: the socket is not connected).
    fn attempt(&self, socket: &SocketRef) -> bool {
        let mut owed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !socket.connected() {
            return true;
        }
        if let Some((event, data)) = owed.as_ref() {
            if let Err(SendError::Socket(SocketError::InternalChannelFull)) =
                socket.emit(*event, data)
            {
                return false;
            }
            // Emitted, or it cannot be: the disconnect decides.
            *owed = None;
        }
        socket.clone().disconnect().is_ok()
    }
}

/// Emits `unauthenticated {message, time}` on `socket`, then disconnects it.
pub(super) fn refuse(socket: &SocketRef, message: &str) {
    let last = json!({ "message": message, "time": now_iso8601() });
    disconnect_after(socket.clone(), Some(("unauthenticated", last)));
}

/// Disconnects `socket` ([`disconnect_after`], with nothing to say first).
pub(super) fn disconnect(socket: SocketRef) {
    disconnect_after(socket, None);
}

/// Emits `last`, then disconnects `socket`; retried while the socket's buffer is full (see
/// the module's documentation).
pub(super) fn disconnect_after(socket: SocketRef, last: Option<LastWords>) {
    if let Some(pending) = socket.extensions.get::<Pending>() {
        // A retry is under way: what it still owes goes first, then ours.
        pending.owe(last);
        pending.attempt(&socket);
        return;
    }
    let pending = Pending::default();
    pending.owe(last);
    if pending.attempt(&socket) {
        return;
    }
    if let Some(earlier) = socket.extensions.insert(pending.clone()) {
        // Another disconnect started its retry meanwhile: it takes over what we owe.
        let ours = pending
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        earlier.owe(ours);
        socket.extensions.insert(earlier);
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        let mut wait = Duration::from_millis(20);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(wait).await;
            if pending.attempt(&socket) {
                return;
            }
            wait = (wait * 2).min(Duration::from_secs(1));
        }
        // Given up (the session outlived the retries): a later disconnect starts afresh.
        socket.extensions.remove::<Pending>();
    });
}
