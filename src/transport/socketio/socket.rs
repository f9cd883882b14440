//! The socket a Socket.IO client's connection task runs on: what the client sends arrives
//! through a bounded channel from the bridge ([`super::bridge`]); what the connection writes
//! is emitted into the Socket.IO socket at once, from the connection's own task
//! ([`super::outlet`]).
//!
//! An emit never waits, so the socket takes every data message at once
//! ([`FrameSocket::write_now`]), and a frame for an encrypted client is sealed into a buffer
//! the socket keeps and emitted from there ([`FrameSocket::write_text_with`]): the core's
//! batches go out without a `Sink` round, a message of their own or a trip back through the
//! outbox per message.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio::sync::mpsc;

use super::outlet::{Delivered, Outlet, Route};
use crate::protocol::Text;
use crate::server::{FrameSocket, Incoming, Outgoing, SocketError, WrittenWith};

/// The sealing buffer is released after a frame larger than this, so that a socket that once
/// carried a large message does not keep its size while idle.
const KEPT_SEAL_BUFFER: usize = 16 * 1024;

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
    /// Where [`FrameSocket::write_text_with`] has a sealed frame made before it is emitted.
    sealing: Vec<u8>,
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
            sealing: Vec::new(),
        };
        (socket, in_tx)
    }

    /// Emits one text message the core wrote; whether the socket took it (otherwise it is
    /// disconnected, and every later write fails).
    fn emit_text(&mut self, text: &str) -> bool {
        match self.route.deliver_text(&self.outlet, text) {
            Delivered::Sent => true,
            Delivered::Closed => {
                self.done = true;
                true
            }
            Delivered::Failed => {
                self.done = true;
                false
            }
        }
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
    /// Emits `text` at once. An emit that fails disconnects the socket and answers `false`:
    /// the core then feeds the message, the write fails, and the connection ends.
    fn write_now(&mut self, text: &Text) -> bool {
        !self.done && self.emit_text(text.as_str())
    }

    /// Has the frame made in the socket's own buffer, then emits it from there. A fill that
    /// failed or came out other than `len` bytes of UTF-8 emits nothing (`Failed`), and so does
    /// an emit that failed (the socket is disconnected).
    fn write_text_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    ) -> WrittenWith {
        if self.done {
            return WrittenWith::Refused;
        }
        let mut buf = std::mem::take(&mut self.sealing);
        buf.clear();
        buf.reserve_exact(len);
        let made = fill(&mut buf) && buf.len() == len;
        let written = match made.then(|| std::str::from_utf8(&buf).ok()).flatten() {
            Some(text) if self.emit_text(text) => WrittenWith::Written,
            _ => WrittenWith::Failed,
        };
        if buf.capacity() <= KEPT_SEAL_BUFFER {
            buf.clear();
            self.sealing = buf;
        }
        written
    }

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
