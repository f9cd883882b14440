//! [`ServerWebSocket`]: the built-in door's WebSocket, tungstenite over [`Coalesce`], with the
//! frames the core sends most (text messages, and binary room records) written straight into
//! the coalescing buffer.
//!
//! tungstenite formats every frame into a buffer of its own and then writes that buffer to the
//! stream below it, so a message was copied twice on its way to the socket, and passed through
//! tungstenite's write machinery once per recipient of a fan-out. A text message is just a
//! two-to-ten-byte header and its payload, so this type formats it itself, once, into
//! [`Coalesce`]'s buffer, whenever that cannot reorder anything:
//! - tungstenite holds nothing it has not handed down yet ([`Coalesce::takes_text`]: a frame
//!   pushed past tungstenite's backlog would overtake it);
//! - tungstenite runs without a write buffer of its own (`write_buffer_size = 0`, as the
//!   door configures it), so that it never holds frames back unseen;
//! - no close frame has been sent or received (tungstenite refuses data after one; the
//!   ordinary path gives the same error);
//! - the message is smaller than the buffer (a larger one is written through uncopied).
//!
//! Everything else (pings, pongs, close frames, and text in those cases) goes through
//! tungstenite as before. Both paths end in the same buffer, in call order, so the stream is
//! the same sequence of whole frames either way, and [`Coalesce::discard_unsent`] treats them
//! alike.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::coalesce::Coalesce;
use super::ws_socket::Hooks;
use crate::server::WrittenWith;

/// A server WebSocket over [`Coalesce`] (see the module docs). Its `close` also writes out
/// what `Coalesce` still holds: tungstenite answers a peer's close frame by writing the reply
/// and then reporting the connection closed without flushing the stream (it expects writes to
/// reach the socket); the reply would stay in the buffer and the peer see the connection drop
/// without a closing handshake (Autobahn|Testsuite: "UNCLEAN" on every case).
pub(crate) struct ServerWebSocket<S> {
    ws: WebSocketStream<Coalesce<S>>,
    /// Text may take the direct path: tungstenite runs with `write_buffer_size = 0`, so it
    /// hands every frame down at once and [`Coalesce`] knows when it holds anything back.
    /// (With a buffer of its own, tungstenite could hold frames that a direct one would
    /// overtake.)
    direct: bool,
    /// A close frame was sent or received, or reading failed: text goes through tungstenite,
    /// which knows what may still be sent.
    closing: bool,
}

impl<S> ServerWebSocket<S> {
    pub(crate) fn new(ws: WebSocketStream<Coalesce<S>>) -> Self {
        let direct = ws.get_config().write_buffer_size == 0;
        Self {
            ws,
            direct,
            closing: false,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ServerWebSocket<S> {
    /// What [`super::WsSocket`] calls below tungstenite.
    pub(crate) fn hooks() -> Hooks<Self> {
        Hooks {
            discard: Self::discard_unsent,
            write_now: Self::write_now,
            write_binary_now: Self::write_binary_now,
            write_with: Self::write_with,
        }
    }

    /// Drops the whole messages not written yet ([`Coalesce::discard_unsent`]).
    pub(crate) fn discard_unsent(&mut self) {
        self.ws.get_mut().discard_unsent();
    }

    /// Appends a text message to the buffer without the `Sink` round, if the direct path may
    /// take it (see the module docs) and the buffer has room; returns whether it did.
    pub(crate) fn write_now(&mut self, text: &str) -> bool {
        let takes = self.takes_now(text.len());
        if takes {
            self.ws.get_mut().push_text(text.as_bytes());
        }
        takes
    }

    /// [`Self::write_now`] for a binary message (a binary room record).
    pub(crate) fn write_binary_now(&mut self, bytes: &[u8]) -> bool {
        let takes = self.takes_now(bytes.len());
        if takes {
            self.ws.get_mut().push_binary(bytes);
        }
        takes
    }

    /// Makes a text message of `len` bytes straight in the buffer with `fill`, on the terms of
    /// [`Self::write_now`] ([`crate::server::FrameSocket::write_text_with`]).
    pub(crate) fn write_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    ) -> WrittenWith {
        if !self.takes_now(len) {
            return WrittenWith::Refused;
        }
        if self.ws.get_mut().push_text_with(len, fill) {
            WrittenWith::Written
        } else {
            WrittenWith::Failed
        }
    }

    /// Whether a text message of `len` bytes may take the direct path and the buffer has room
    /// for it now.
    fn takes_now(&self, len: usize) -> bool {
        self.takes_text(len) && self.ws.get_ref().has_room()
    }

    /// Whether a text message of `len` bytes may take the direct path (see the module docs).
    fn takes_text(&self, len: usize) -> bool {
        self.direct && !self.closing && self.ws.get_ref().takes_text(len)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for ServerWebSocket<S> {
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let next = ready!(Pin::new(&mut this.ws).poll_next(cx));
        if !matches!(
            next,
            Some(Ok(Message::Text(_)
                | Message::Binary(_)
                | Message::Ping(_)
                | Message::Pong(_)))
        ) {
            this.closing = true;
        }
        Poll::Ready(next)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for ServerWebSocket<S> {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        // tungstenite first (it writes out its own backlog), then room in the buffer.
        ready!(Pin::new(&mut this.ws).poll_ready(cx))?;
        ready!(this.ws.get_mut().poll_room(cx)).map_err(WsError::Io)?;
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        let this = self.get_mut();
        match item {
            Message::Text(text) if this.takes_text(text.len()) => {
                this.ws.get_mut().push_text(text.as_bytes());
                Ok(())
            }
            Message::Binary(bytes) if this.takes_text(bytes.len()) => {
                this.ws.get_mut().push_binary(&bytes);
                Ok(())
            }
            item => {
                if matches!(item, Message::Close(_)) {
                    this.closing = true;
                }
                Pin::new(&mut this.ws).start_send(item)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.get_mut().ws).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let this = self.get_mut();
        this.closing = true;
        let ws = &mut this.ws;
        // Idempotent: polled again after a pending drain, tungstenite queues nothing twice.
        let closed = ready!(Pin::new(&mut *ws).poll_close(cx));
        ready!(Pin::new(ws.get_mut()).poll_flush(cx)).map_err(WsError::Io)?;
        Poll::Ready(closed)
    }
}

#[cfg(test)]
mod tests;
