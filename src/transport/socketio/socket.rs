//! The socket a Socket.IO client's connection task runs on: what the client sends arrives
//! through a bounded channel from the bridge ([`super::bridge`]); what the connection writes
//! is emitted into the Socket.IO socket at once, from the connection's own task
//! ([`super::outlet`]).
//!
//! An emit never waits, so while engine.io's buffer has room the socket takes every data
//! message at once ([`FrameSocket::write_now`]), and a frame for an encrypted client is
//! sealed into a buffer the socket keeps and emitted from there
//! ([`FrameSocket::write_text_with`]): the core's batches go out without a `Sink` round, a
//! message of their own or a trip back through the outbox per message. When the buffer is
//! full, the socket holds the one emit that found no room and takes nothing more until it
//! has gone out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::{Sink, Stream};
use tokio::sync::mpsc;

use super::outlet::{Delivered, Emitted, Held, Outlet, Route};
use crate::protocol::Text;
use crate::server::{FrameSocket, Incoming, Outgoing, SocketError, WrittenWith};

/// The sealing buffer is released after a frame larger than this, so that a socket that once
/// carried a large message does not keep its size while idle.
const KEPT_SEAL_BUFFER: usize = 16 * 1024;

/// The first wait before a held emit is tried again; each later wait doubles, up to
/// [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(1);
/// The longest wait between two tries of a held emit.
const LAST_RETRY: Duration = Duration::from_millis(50);

/// A [`FrameSocket`] whose writes are Socket.IO emits. An emit does not wait: when engine.io's
/// buffer for the socket is full (its writer is behind, or the client reads slowly), the
/// socket holds that one message and takes nothing more until it has emitted it, trying again
/// on a short timer (engine.io cannot say when it has room). Meanwhile the messages after it
/// wait in the connection's outbox, whose bounds decide, as on `/ws`, when a client is a slow
/// consumer. An emit on a socket that is gone fails, the socket is disconnected and the write
/// fails, so the connection ends as if the peer had gone.
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
    /// The emit engine.io had no room for, and when to try it again.
    held: Option<(Held, Pin<Box<tokio::time::Sleep>>)>,
    /// The wait before the next try of the held emit.
    retry: Duration,
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
            held: None,
            retry: FIRST_RETRY,
        };
        (socket, in_tx)
    }

    /// Emits one text message the core wrote; whether the socket took it (emitted, or held
    /// until engine.io has room). Otherwise it is disconnected, and every later write fails.
    fn emit_text(&mut self, text: &str) -> bool {
        let delivered = self.route.deliver_text(&self.outlet, text);
        self.took(delivered)
    }

    /// Records what a delivery did; whether the socket took the message.
    fn took(&mut self, delivered: Delivered) -> bool {
        match delivered {
            Delivered::Sent => true,
            Delivered::Held(held) => {
                self.retry = FIRST_RETRY;
                self.held = Some((held, Box::pin(tokio::time::sleep(FIRST_RETRY))));
                true
            }
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

    /// Whether the socket can take another message now (nothing held, not gone).
    fn takes_now(&self) -> bool {
        !self.done && self.held.is_none()
    }

    /// Ready once the held emit (if any) has gone out; tries it again each time its timer
    /// fires. An error when the socket is gone.
    fn poll_held(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        while let Some((held, retry)) = &mut self.held {
            ready!(retry.as_mut().poll(cx));
            match held.emit(&self.outlet) {
                Emitted::Sent => self.held = None,
                Emitted::Full => {
                    self.retry = (self.retry * 2).min(LAST_RETRY);
                    let at = tokio::time::Instant::now() + self.retry;
                    retry.as_mut().reset(at);
                }
                Emitted::Failed => {
                    self.held = None;
                    self.done = true;
                }
            }
        }
        if self.done {
            Poll::Ready(Err(SocketError::Closed))
        } else {
            Poll::Ready(Ok(()))
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

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.get_mut().poll_held(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Outgoing) -> Result<(), SocketError> {
        let this = self.get_mut();
        if this.done {
            return Err(SocketError::Closed);
        }
        if matches!(item, Outgoing::Close(_)) {
            this.closing = true;
        }
        if this.held.is_some() {
            // `poll_ready` was not awaited: keep the order, take nothing past the held one.
            return Err(SocketError::Transport(
                "a message was sent before the socket was ready".to_owned(),
            ));
        }
        let delivered = this.route.deliver(&this.outlet, &item);
        if this.took(delivered) {
            Ok(())
        } else {
            Err(SocketError::Closed)
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        let this = self.get_mut();
        if this.held.is_none() {
            return Poll::Ready(Ok(()));
        }
        this.poll_held(cx)
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        let this = self.get_mut();
        this.held = None;
        if !this.done {
            this.done = true;
            this.outlet.disconnect();
        }
        Poll::Ready(Ok(()))
    }
}

impl<O: Outlet> FrameSocket for BridgeSocket<O> {
    /// Emits `text` at once (or holds it, when engine.io's buffer is full). Answers `false`
    /// while a message is held (the core then feeds it, which waits for the held one), and
    /// when the socket is gone (the write then fails and the connection ends).
    fn write_now(&mut self, text: &Text) -> bool {
        self.takes_now() && self.emit_text(text.as_str())
    }

    /// Drops the held emit, so that a slow consumer's close does not wait behind it.
    fn discard_unsent(&mut self) {
        self.held = None;
    }

    /// Has the frame made in the socket's own buffer, then emits it from there. A fill that
    /// failed or came out other than `len` bytes of UTF-8 emits nothing (`Failed`), and so does
    /// an emit that failed (the socket is disconnected).
    fn write_text_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    ) -> WrittenWith {
        if !self.takes_now() {
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
