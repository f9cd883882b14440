//! Where a core connection's frames go: straight into its Socket.IO socket, from the
//! connection's own task (no task in between). A [`Route`] turns each frame into what the
//! socket emits ([`super::translate`] for IGNIS-path sockets, [`super::tunnel`] for hardened
//! ones); an [`Outlet`] emits it.
//!
//! ```text
//! core connection task --Outgoing--> Route (borrowed parse) --emit--> socketioxide
//!                                                                   -> engine.io writer task
//! ```

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

use super::bridge::Bridge;
use super::farewell::{disconnect, disconnect_after, refuse};
use super::raw_json::{Args, OwnedArgs};
use super::translate::{Action, Translator};
use super::tunnel::{self, Tunnel, TunnelAction};
use crate::server::Outgoing;

/// What a [`Route`] asks of the socket; [`Live`] is the real one.
pub(super) trait Outlet: Send + Unpin + 'static {
    /// Emits `event` with `args`. [`Emitted::Full`] when engine.io's buffer
    /// for the socket has no room now (nothing emitted: try again later);
    /// [`Emitted::Failed`] when the socket is gone, and then it is disconnected.
    fn emit(&self, event: &str, args: &Args<'_>) -> Emitted;
    /// The core admitted an IGNIS-path client with this `connected` payload: emits
    /// `authenticated` (and the first `ping`). `false` when that failed.
    fn authenticated(&self, payload: &serde_json::Value, encrypted: bool) -> bool;
    /// Emits `unauthenticated {message, time}`, then disconnects.
    fn refuse(&self, message: &str);
    /// A hardened socket's server `hello` named its client id.
    fn hello(&self, id: &str);
    /// The core admitted a hardened socket's client as `id` (its sealed `connected` is the
    /// next record): marks the socket admitted.
    fn admitted(&self, id: &str);
    /// Emits `sealwire:close {code, reason}`, then disconnects.
    fn close(&self, code: u16, reason: &str);
    /// Disconnects the socket, if still connected.
    fn disconnect(&self);
    /// The server shuts down: ends the socket's transport (its client reconnects).
    fn go_away(&self);
}

/// What one emit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Emitted {
    /// It is in engine.io's buffer.
    Sent,
    /// engine.io's buffer is full (the writer is behind): nothing was emitted.
    Full,
    /// The socket is gone: it was disconnected.
    Failed,
}

/// An emit engine.io had no room for, to be made again as it is ([`Held::emit`]): the
/// message was translated already (the translator moved on).
#[derive(Debug)]
pub(super) struct Held {
    event: String,
    args: OwnedArgs,
}

impl Held {
    fn new(event: &str, args: &Args<'_>) -> Self {
        Self {
            event: event.to_owned(),
            args: args.to_owned_args(),
        }
    }

    /// Emits it again.
    pub(super) fn emit(&self, outlet: &impl Outlet) -> Emitted {
        outlet.emit(&self.event, &self.args.as_args())
    }
}

/// What delivering one message did.
#[derive(Debug)]
pub(super) enum Delivered {
    /// Emitted, or there was nothing to emit.
    Sent,
    /// engine.io had no room for its one emit: the socket holds it and emits it later.
    Held(Held),
    /// The core closed the connection: the socket was disconnected after its last words.
    Closed,
    /// The socket could not take it: it was disconnected.
    Failed,
}

/// How one socket's frames become emits.
#[derive(Debug)]
pub(super) enum Route {
    /// An IGNIS-path socket: events as named by the core.
    Ignis(Translator),
    /// A hardened socket: `/ws` frames inside `sealwire` events.
    Hardened(Tunnel),
}

impl Route {
    /// The route for a socket that did (or did not) select the hardened profile.
    pub(super) fn new(hardened: bool) -> Self {
        if hardened {
            Self::Hardened(Tunnel::default())
        } else {
            Self::Ignis(Translator::default())
        }
    }

    /// Delivers one message the core wrote.
    pub(super) fn deliver(&mut self, outlet: &impl Outlet, msg: &Outgoing) -> Delivered {
        match self {
            Self::Ignis(translator) => ignis(outlet, translator.translate(msg)),
            Self::Hardened(tunnel) => hardened(outlet, tunnel.translate(msg)),
        }
    }

    /// Delivers one text message the core wrote (what [`Self::deliver`] does with an
    /// `Outgoing::Text`, without one).
    pub(super) fn deliver_text(&mut self, outlet: &impl Outlet, text: &str) -> Delivered {
        match self {
            Self::Ignis(translator) => ignis(outlet, translator.text(text)),
            Self::Hardened(tunnel) => hardened(outlet, tunnel.text(text)),
        }
    }
}

/// The delivery of one emit of `event` with `args`.
fn emit(outlet: &impl Outlet, event: &str, args: &Args<'_>) -> Delivered {
    match outlet.emit(event, args) {
        Emitted::Sent => Delivered::Sent,
        Emitted::Full => Delivered::Held(Held::new(event, args)),
        Emitted::Failed => Delivered::Failed,
    }
}

fn ignis(outlet: &impl Outlet, action: Action<'_>) -> Delivered {
    match action {
        Action::Skip => Delivered::Sent,
        Action::Emit(name, args) => emit(outlet, &name, &args),
        Action::Authenticated { payload, encrypted } => {
            if outlet.authenticated(&payload, encrypted) {
                Delivered::Sent
            } else {
                outlet.disconnect();
                Delivered::Failed
            }
        }
        Action::GoAway => {
            outlet.go_away();
            Delivered::Closed
        }
        Action::Disconnect { unauthenticated } => {
            match unauthenticated {
                Some(message) => outlet.refuse(&message),
                None => outlet.disconnect(),
            }
            Delivered::Closed
        }
    }
}

fn hardened(outlet: &impl Outlet, action: TunnelAction<'_>) -> Delivered {
    let frame = match action {
        TunnelAction::Skip => return Delivered::Sent,
        TunnelAction::Emit(frame) => frame,
        TunnelAction::Hello { id, frame } => {
            outlet.hello(&id);
            frame
        }
        TunnelAction::Close { code, reason } => {
            outlet.close(code, reason);
            return Delivered::Closed;
        }
    };
    emit(outlet, tunnel::FRAME_EVENT, &Args::One(frame))
}

/// The outlet of a live socket: emits on the [`SocketRef`] it holds (looked up once, when
/// the core connection starts). The core connection's task owns it and drops it when the
/// connection ends, which the socket's disconnect brings about ([`Bridge`]'s
/// `on_disconnect`), so it never keeps a disconnected socket alive.
pub(super) struct Live {
    bridge: Arc<Bridge>,
    socket: SocketRef,
}

impl Live {
    /// The outlet of `socket`, the bridge's own.
    pub(super) fn new(bridge: Arc<Bridge>, socket: SocketRef) -> Self {
        Self { bridge, socket }
    }
}

impl Outlet for Live {
    fn emit(&self, event: &str, args: &Args<'_>) -> Emitted {
        try_emit(&self.socket, event, args)
    }

    fn authenticated(&self, payload: &serde_json::Value, encrypted: bool) -> bool {
        self.bridge.authenticated(&self.socket, payload, encrypted)
    }

    fn refuse(&self, message: &str) {
        if self.bridge.server().is_ready() {
            refuse(&self.socket, message);
        } else {
            // Refused because the server is going away: the client is to reconnect elsewhere.
            self.bridge.go_away();
        }
    }

    fn hello(&self, id: &str) {
        self.bridge.set_tunnel_id(id);
    }

    fn admitted(&self, id: &str) {
        self.bridge.admitted(id);
    }

    fn close(&self, code: u16, reason: &str) {
        let last = json!({ "code": code, "reason": reason });
        disconnect_after(self.socket.clone(), Some((tunnel::CLOSE_EVENT, last)));
    }

    fn disconnect(&self) {
        // While the server shuts down every end is a transport end: the client reconnects
        // (to another instance), where a `41` would stop it for good.
        if self.bridge.server().is_ready() {
            disconnect(self.socket.clone());
        } else {
            self.bridge.go_away();
        }
    }

    fn go_away(&self) {
        self.bridge.go_away();
    }
}

/// Emits one event. A full engine.io buffer is reported ([`Emitted::Full`], nothing
/// emitted), so that a delivery can be held and the messages after it wait in the core's
/// outbox under its slow-consumer bound; any other failure disconnects the socket.
pub(super) fn try_emit<T: Serialize + ?Sized>(socket: &SocketRef, name: &str, data: &T) -> Emitted {
    match socket.emit(name, data) {
        Ok(()) => Emitted::Sent,
        Err(SendError::Socket(SocketError::InternalChannelFull)) => Emitted::Full,
        Err(e) => {
            tracing::debug!(sid = %socket.id, error = %e, "emit failed; disconnecting");
            disconnect(socket.clone());
            Emitted::Failed
        }
    }
}

/// Emits one event that cannot wait (the handshake's replies, a ping); `false` when the
/// socket is gone or its buffer is full, and then it is disconnected.
pub(super) fn emit_now<T: Serialize + ?Sized>(socket: &SocketRef, name: &str, data: &T) -> bool {
    match try_emit(socket, name, data) {
        Emitted::Sent => true,
        Emitted::Full => {
            tracing::debug!(sid = %socket.id, "engine.io buffer full; disconnecting");
            disconnect(socket.clone());
            false
        }
        Emitted::Failed => false,
    }
}
