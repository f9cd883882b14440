//! The socket a Socket.IO client's connection task runs on: two bounded channels carrying the
//! core's frames, one from the bridge ([`super::bridge`]) and one to it.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use crate::server::{FrameSocket, Incoming, Outgoing, SocketError};

/// A [`FrameSocket`] over channels. Messages the connection writes wait in
/// a bounded channel, so a bridge that cannot emit fast enough holds them back and the
/// connection's outbox applies its slow-consumer policy, as with a real WebSocket.
pub(super) struct ChannelSocket {
    inbound: mpsc::Receiver<Incoming>,
    outbound: PollSender<Outgoing>,
    /// The connection sent a close frame: the next read answers it, as a peer would.
    closing: bool,
    answered: bool,
}

impl ChannelSocket {
    /// The socket and its far ends: the sender of inbound messages (the Socket.IO client's
    /// events) and the receiver of what the connection writes.
    pub(super) fn pair(
        inbound: usize,
        outbound: usize,
    ) -> (Self, mpsc::Sender<Incoming>, mpsc::Receiver<Outgoing>) {
        let (in_tx, in_rx) = mpsc::channel(inbound.max(1));
        let (out_tx, out_rx) = mpsc::channel(outbound.max(1));
        let socket = Self {
            inbound: in_rx,
            outbound: PollSender::new(out_tx),
            closing: false,
            answered: false,
        };
        (socket, in_tx, out_rx)
    }
}

impl Stream for ChannelSocket {
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

impl Sink<Outgoing> for ChannelSocket {
    type Error = SocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.get_mut()
            .outbound
            .poll_reserve(cx)
            .map_err(|_| SocketError::Closed)
    }

    fn start_send(self: Pin<&mut Self>, item: Outgoing) -> Result<(), SocketError> {
        let this = self.get_mut();
        if matches!(item, Outgoing::Close(_)) {
            this.closing = true;
        }
        this.outbound
            .send_item(item)
            .map_err(|_| SocketError::Closed)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), SocketError>> {
        self.get_mut().outbound.close();
        Poll::Ready(Ok(()))
    }
}

impl FrameSocket for ChannelSocket {}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};

    #[tokio::test]
    async fn carries_both_ways_and_answers_a_close() {
        let (mut socket, tx, mut rx) = ChannelSocket::pair(4, 4);
        let text = |s: &str| crate::protocol::Text::from(s);
        tx.send(Incoming::Text(text("in"))).await.expect("send");
        let got = socket.next().await.expect("message").expect("ok");
        assert_eq!(got, Incoming::Text(text("in")));
        socket
            .send(Outgoing::Text(text("out")))
            .await
            .expect("send");
        assert_eq!(rx.recv().await, Some(Outgoing::Text(text("out"))));
        socket
            .send(Outgoing::Close(crate::protocol::CloseCode::Normal))
            .await
            .expect("close");
        assert!(matches!(socket.next().await, Some(Ok(Incoming::Close(_)))));
        assert!(socket.next().await.is_none());
    }

    #[tokio::test]
    async fn a_gone_bridge_fails_writes() {
        let (mut socket, _tx, rx) = ChannelSocket::pair(1, 1);
        drop(rx);
        assert!(socket.send(Outgoing::Ping).await.is_err());
    }
}
