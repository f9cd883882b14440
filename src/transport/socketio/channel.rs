//! The socket a Socket.IO client's connection task runs on: two bounded channels carrying the
//! core's WebSocket messages, one from the bridge ([`super::bridge`]) and one to it.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, Stream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::PollSender;

/// A [`crate::server::MessageSocket`] over channels. Messages the connection writes wait in
/// a bounded channel, so a bridge that cannot emit fast enough holds them back and the
/// connection's outbox applies its slow-consumer policy, as with a real WebSocket.
pub(super) struct ChannelSocket {
    inbound: mpsc::Receiver<Message>,
    outbound: PollSender<Message>,
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
    ) -> (Self, mpsc::Sender<Message>, mpsc::Receiver<Message>) {
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
    type Item = Result<Message, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.closing {
            if this.answered {
                return Poll::Ready(None);
            }
            this.answered = true;
            return Poll::Ready(Some(Ok(Message::Close(None))));
        }
        this.inbound.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Sink<Message> for ChannelSocket {
    type Error = WsError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.get_mut()
            .outbound
            .poll_reserve(cx)
            .map_err(|_| WsError::ConnectionClosed)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        let this = self.get_mut();
        if item.is_close() {
            this.closing = true;
        }
        this.outbound
            .send_item(item)
            .map_err(|_| WsError::ConnectionClosed)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.get_mut().outbound.close();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};

    #[tokio::test]
    async fn carries_both_ways_and_answers_a_close() {
        let (mut socket, tx, mut rx) = ChannelSocket::pair(4, 4);
        tx.send(Message::text("in")).await.expect("send");
        let got = socket.next().await.expect("message").expect("ok");
        assert_eq!(got, Message::text("in"));
        socket.send(Message::text("out")).await.expect("send");
        assert_eq!(rx.recv().await, Some(Message::text("out")));
        socket.send(Message::Close(None)).await.expect("close");
        assert!(matches!(socket.next().await, Some(Ok(Message::Close(_)))));
        assert!(socket.next().await.is_none());
    }

    #[tokio::test]
    async fn a_gone_bridge_fails_writes() {
        let (mut socket, _tx, rx) = ChannelSocket::pair(1, 1);
        drop(rx);
        assert!(socket.send(Message::text("x")).await.is_err());
    }
}
