//! The socket a Socket.IO client's connection task runs on: what the client sends arrives
//! through a bounded channel from the bridge ([`super::bridge`]); what the connection writes
//! is emitted into the Socket.IO socket at once, from the connection's own task
//! ([`super::outlet`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio::sync::mpsc;

use super::outlet::{Delivered, Outlet, Route};
use crate::server::{FrameSocket, Incoming, Outgoing, SocketError};

/// A [`FrameSocket`] whose writes are Socket.IO emits. An emit never waits: when engine.io's
/// buffer for the socket is full (a client that does not read), the emit fails, the socket
/// is disconnected and the write fails, so the connection ends as if the peer had gone.
pub(super) struct BridgeSocket<O> {
    inbound: mpsc::Receiver<Incoming>,
    outlet: O,
    route: Route,
    /// The connection sent a close frame: the next read answers it, as a peer would.
    closing: bool,
    answered: bool,
    /// The socket was disconnected (a close delivered, or an emit that failed): every later
    /// write fails.
    done: bool,
}

impl<O: Outlet> BridgeSocket<O> {
    /// The socket over `outlet` (hardened: frames ride the tunnel) and the sender of the
    /// inbound messages (the Socket.IO client's events), `inbound` of them queued at most.
    pub(super) fn new(outlet: O, hardened: bool, inbound: usize) -> (Self, mpsc::Sender<Incoming>) {
        let (in_tx, in_rx) = mpsc::channel(inbound.max(1));
        let socket = Self {
            inbound: in_rx,
            outlet,
            route: Route::new(hardened),
            closing: false,
            answered: false,
            done: false,
        };
        (socket, in_tx)
    }
}

impl<O: Outlet> Stream for BridgeSocket<O> {
    type Item = Result<Incoming, SocketError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.closing {
            if this.answered {
                return Poll::Ready(None);
            }
            this.answered = true;
            return Poll::Ready(Some(Ok(Incoming::Close(None))));
        }
        this.inbound.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl<O: Outlet> Sink<Outgoing> for BridgeSocket<O> {
    type Error = SocketError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        if self.done {
            Poll::Ready(Err(SocketError::Closed))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn start_send(self: Pin<&mut Self>, item: Outgoing) -> Result<(), SocketError> {
        let this = self.get_mut();
        if this.done {
            return Err(SocketError::Closed);
        }
        if matches!(item, Outgoing::Close(_)) {
            this.closing = true;
        }
        match this.route.deliver(&this.outlet, &item) {
            Delivered::Sent => Ok(()),
            Delivered::Closed => {
                this.done = true;
                Ok(())
            }
            Delivered::Failed => {
                this.done = true;
                Err(SocketError::Closed)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        let this = self.get_mut();
        if !this.done {
            this.done = true;
            this.outlet.disconnect();
        }
        Poll::Ready(Ok(()))
    }
}

impl<O: Outlet> FrameSocket for BridgeSocket<O> {
    /// A hardened socket learns here that its client is in (whatever sealed replies came
    /// before its `connected`); an IGNIS-path socket learns it from the plaintext
    /// `connected` it turns into `authenticated`.
    fn admitted(&mut self, client_id: &str) {
        if matches!(self.route, Route::Hardened(_)) {
            self.outlet.admitted(client_id);
        }
    }
}

#[cfg(test)]
mod tests;
