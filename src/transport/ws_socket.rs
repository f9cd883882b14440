//! [`WsSocket`]: a tungstenite WebSocket as the core's [`FrameSocket`].

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::protocol::Text;
use crate::server::{FrameSocket, Incoming, Outgoing, SocketError, WrittenWith};

/// Any `Stream + Sink` of tungstenite messages (a `WebSocketStream`, in practice) as a socket a
/// connection runs on ([`Server::serve_socket`](crate::Server::serve_socket)).
///
/// Pings are answered and pongs consumed by tungstenite; neither reaches the core. Text
/// crosses without a copy in either direction.
pub struct WsSocket<S> {
    inner: S,
    /// The built-in door's hooks into the stream under tungstenite; `None` for any other
    /// socket.
    hooks: Option<Hooks<S>>,
}

/// What the built-in door can do below tungstenite ([`WsSocket::built_in`]).
pub(crate) struct Hooks<S> {
    /// Drops what the stream buffers but has not written ([`FrameSocket::discard_unsent`]).
    pub(crate) discard: fn(&mut S),
    /// Writes a text message straight into the stream's buffer, if it can without
    /// reordering anything ([`FrameSocket::write_now`]).
    pub(crate) write_now: fn(&mut S, &str) -> bool,
    /// [`Self::write_now`] for a binary message ([`FrameSocket::write_binary_now`]).
    pub(crate) write_binary_now: fn(&mut S, &[u8]) -> bool,
    /// Makes a text message straight in the stream's buffer, on the same terms
    /// ([`FrameSocket::write_text_with`]).
    pub(crate) write_with: WriteWith<S>,
}

/// [`Hooks::write_with`]: the socket, the message's length, and what makes it in the buffer.
pub(crate) type WriteWith<S> =
    fn(&mut S, usize, &mut dyn FnMut(&mut Vec<u8>) -> bool) -> WrittenWith;

impl<S> WsSocket<S> {
    /// Wraps `ws`. Nothing it buffers can be dropped, so a slow consumer's close frame waits
    /// behind it ([`FrameSocket::discard_unsent`]).
    pub fn new(ws: S) -> Self {
        Self {
            inner: ws,
            hooks: None,
        }
    }

    /// Wraps the built-in door's `ws`, with its `hooks` below tungstenite.
    pub(crate) fn built_in(ws: S, hooks: Hooks<S>) -> Self {
        Self {
            inner: ws,
            hooks: Some(hooks),
        }
    }

    /// The wrapped socket.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> std::fmt::Debug for WsSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSocket").finish_non_exhaustive()
    }
}

/// The core's view of a tungstenite error: the peer's violations that have a close code of
/// their own (an oversized message, broken framing, invalid UTF-8) are told apart.
fn socket_error(e: WsError) -> SocketError {
    match e {
        WsError::Capacity(e) => SocketError::TooLarge(e.to_string()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => SocketError::Closed,
        WsError::Io(e) => SocketError::Io(e),
        // The peer went away without a close frame: nobody to tell.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => SocketError::Closed,
        WsError::Protocol(e) => SocketError::Protocol(e.to_string()),
        WsError::Utf8(e) => SocketError::InvalidUtf8(e),
        e => SocketError::Transport(e.to_string()),
    }
}

impl<S> Stream for WsSocket<S>
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
{
    type Item = Result<Incoming, SocketError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let inner = &mut self.get_mut().inner;
        loop {
            let frame = match std::task::ready!(Pin::new(&mut *inner).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(socket_error(e)))),
                Some(Ok(Message::Text(text))) => Incoming::Text(Text::from_utf8_bytes(text)),
                Some(Ok(Message::Binary(bytes))) => Incoming::Binary(bytes),
                Some(Ok(Message::Close(frame))) => {
                    Incoming::Close(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            };
            return Poll::Ready(Some(Ok(frame)));
        }
    }
}

impl<S> Sink<Outgoing> for WsSocket<S>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    type Error = SocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_ready(cx)
            .map_err(socket_error)
    }

    fn start_send(self: Pin<&mut Self>, item: Outgoing) -> Result<(), SocketError> {
        let msg = match item {
            Outgoing::Text(text) => Message::Text(text.into_utf8_bytes()),
            Outgoing::Binary(bytes) => Message::Binary(bytes),
            Outgoing::Ping => Message::Ping(bytes::Bytes::new()),
            Outgoing::Close(code) => Message::Close(Some(CloseFrame {
                code: WsCloseCode::from(code.code()),
                reason: code.reason().into(),
            })),
        };
        Pin::new(&mut self.get_mut().inner)
            .start_send(msg)
            .map_err(socket_error)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_flush(cx)
            .map_err(socket_error)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_close(cx)
            .map_err(socket_error)
    }
}

impl<S> FrameSocket for WsSocket<S>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send,
{
    fn discard_unsent(&mut self) {
        if let Some(hooks) = &self.hooks {
            (hooks.discard)(&mut self.inner);
        }
    }

    fn write_now(&mut self, text: &Text) -> bool {
        match &self.hooks {
            Some(hooks) => (hooks.write_now)(&mut self.inner, text.as_str()),
            None => false,
        }
    }

    fn carries_binary(&self) -> bool {
        true
    }

    fn write_binary_now(&mut self, bytes: &bytes::Bytes) -> bool {
        match &self.hooks {
            Some(hooks) => (hooks.write_binary_now)(&mut self.inner, bytes),
            None => false,
        }
    }

    fn write_text_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    ) -> WrittenWith {
        match &self.hooks {
            Some(hooks) => (hooks.write_with)(&mut self.inner, len, fill),
            None => WrittenWith::Refused,
        }
    }
}
