//! What a connection needs from its WebSocket beyond `Stream + Sink`: dropping what it has
//! not sent yet when the server closes it as a slow consumer.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Server;
use super::hooks::UpgradeHead;

/// Any WebSocket [`Server::serve_socket`] can run a connection on: a `Stream` and `Sink` of
/// tungstenite messages. Implemented for every type that is both.
pub trait MessageSocket:
    Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send
{
}

impl<S> MessageSocket for S where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send
{
}

/// A WebSocket a connection runs on.
pub(crate) trait WebSocket: MessageSocket {
    /// Drops whole messages accepted by the `Sink` but not written to the network yet, up to
    /// the next close frame (never part of a message: one partly written is completed), so
    /// that a close frame sent next reaches a client that has stopped reading as soon as it
    /// reads again.
    fn discard_unsent(&mut self);
}

/// A socket handed to [`Server::serve_socket`] or [`Server::serve_upgraded`]: the server
/// cannot reach into its buffers, so nothing is discarded and a slow consumer's close frame
/// waits behind everything it buffers.
pub(super) struct Opaque<S>(pub(super) S);

impl<S: MessageSocket> WebSocket for Opaque<S> {
    fn discard_unsent(&mut self) {}
}

impl<S: Stream + Unpin> Stream for Opaque<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.get_mut().0).poll_next(cx)
    }
}

impl<S: Sink<Message> + Unpin> Sink<Message> for Opaque<S> {
    type Error = S::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Pin::new(&mut self.get_mut().0).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), S::Error> {
        Pin::new(&mut self.get_mut().0).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

impl Server {
    /// Like [`Server::serve_upgraded`], for the transports' own sockets, whose unsent messages
    /// a slow consumer's close can drop ([`WebSocket::discard_unsent`]).
    pub(crate) fn serve_websocket<S: WebSocket + 'static>(
        &self,
        socket: S,
        remote_addr: Option<std::net::SocketAddr>,
        upgrade: std::sync::Arc<UpgradeHead>,
    ) -> impl Future<Output = ()> + Send + 'static {
        super::connection::run(self.clone(), socket, remote_addr, Some(upgrade))
    }
}
