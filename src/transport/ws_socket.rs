//! [`WsSocket`]: a tungstenite WebSocket as the core's [`FrameSocket`].

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::protocol::Text;
use crate::server::{FrameSocket, Incoming, Outgoing, SocketError};

/// Any `Stream + Sink` of tungstenite messages (a `WebSocketStream`, in practice) as a socket a
/// connection runs on ([`Server::serve_socket`](crate::Server::serve_socket)).
///
/// Pings are answered and pongs consumed by tungstenite; neither reaches the core. Text
/// crosses without a copy in either direction.
pub struct WsSocket<S> {
    inner: S,
    /// How to drop what `inner` buffers but has not written (the built-in transports' own
    /// write buffer); `None` keeps it.
    discard: Option<fn(&mut S)>,
}

impl<S> WsSocket<S> {
    /// Wraps `ws`. Nothing it buffers can be dropped, so a slow consumer's close frame waits
    /// behind it ([`FrameSocket::discard_unsent`]).
    pub fn new(ws: S) -> Self {
        Self {
            inner: ws,
            discard: None,
        }
    }

    /// Wraps `ws`, dropping unsent whole messages with `discard` before a slow consumer's close.
    pub(crate) fn with_discard(ws: S, discard: fn(&mut S)) -> Self {
        Self {
            inner: ws,
            discard: Some(discard),
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

/// The core's view of a tungstenite error: only an oversized message is told apart.
fn socket_error(e: WsError) -> SocketError {
    match e {
        WsError::Capacity(e) => SocketError::TooLarge(e.to_string()),
        WsError::ConnectionClosed | WsError::AlreadyClosed => SocketError::Closed,
        WsError::Io(e) => SocketError::Io(e),
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
        if let Some(discard) = self.discard {
            discard(&mut self.inner);
        }
    }
}
