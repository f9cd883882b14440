//! The seam between the core and its doors: what a connection reads and writes.
//!
//! A connection actor runs on any [`FrameSocket`]: a stream of [`Incoming`] frames and a sink
//! of [`Outgoing`] ones. The WebSocket transport adapts tungstenite to it
//! (`transport::WsSocket`), the Socket.IO transport a pair of channels; the core knows
//! neither.

use bytes::Bytes;
use futures_util::{Sink, Stream};

use crate::protocol::{CloseCode, Text};

/// A frame a connection read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Incoming {
    /// A text message: one JSON envelope.
    Text(Text),
    /// A binary message (the protocol has none: the client gets `Invalid message format`).
    Binary(Bytes),
    /// The peer closes, with its close code if it sent one. The transport answers the close
    /// handshake itself.
    Close(Option<u16>),
    /// The transport vouches that its peer is alive (Socket.IO: sent on a timer while the
    /// socket lives, which engine.io's own ping/pong ends when the peer goes). Counts as
    /// activity for the idle timeout and does nothing else; a transport without such a check
    /// never sends it.
    Alive,
}

/// A frame a connection writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outgoing {
    /// A text message.
    Text(Text),
    /// A binary message: a binary room record (`docs/PROTOCOL.md` §14.6), only ever written
    /// to a socket that [carries binary messages](FrameSocket::carries_binary).
    Binary(Bytes),
    /// A liveness probe (a WebSocket ping). A transport with its own heartbeat may drop it.
    Ping,
    /// Close the connection with this code and its reason.
    Close(CloseCode),
}

/// Why a socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// An inbound message was over the size limit (the connection closes with 1009).
    #[error("message over the size limit: {0}")]
    TooLarge(String),
    /// The peer broke the WebSocket framing rules (the connection closes with 1002).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A text message was not valid UTF-8 (the connection closes with 1007).
    #[error("invalid UTF-8: {0}")]
    InvalidUtf8(String),
    /// The connection is closed.
    #[error("connection closed")]
    Closed,
    /// The transport's I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The transport failed otherwise (a protocol violation by the peer, say).
    #[error("{0}")]
    Transport(String),
}

/// A socket a connection can run on: the core's only view of a transport.
///
/// Implement it for a door of your own and hand the socket to
/// [`Server::serve_socket`](super::Server::serve_socket); a
/// tungstenite WebSocket needs only `transport::WsSocket::new`.
pub trait FrameSocket:
    Stream<Item = Result<Incoming, SocketError>> + Sink<Outgoing, Error = SocketError> + Unpin + Send
{
    /// Drops whole messages accepted by the `Sink` but not written to the network yet, up to
    /// the next close frame (never part of a message: one partly written is completed), so
    /// that a close frame sent next reaches a client that has stopped reading as soon as it
    /// reads again. Called before a slow consumer's close; the default keeps everything, so
    /// that close frame waits behind whatever the socket buffers.
    fn discard_unsent(&mut self) {}

    /// The core admitted the client as `client_id`: it is in the indexes, and the next frame
    /// the connection writes is its `connected` (plaintext, or sealed in the hardened
    /// profile). Called once, before that frame is written. A door that must know when its
    /// client is in (to set up rooms of its own, say) learns it here rather than by reading
    /// the frames; the default does nothing.
    fn admitted(&mut self, client_id: &str) {
        let _ = client_id;
    }

    /// Takes `text` at once if it can without waiting and without reordering anything: a
    /// copy of it goes into the socket's write buffer, behind everything accepted before, and
    /// leaves with the next flush. Returns whether it did; when it did not, the connection
    /// feeds the message through the `Sink` as usual. The core calls it for every data
    /// message, so a door that can take one synchronously saves the `Sink` round and the
    /// message's shared bytes their reference count; the default takes nothing.
    fn write_now(&mut self, text: &Text) -> bool {
        let _ = text;
        false
    }

    /// Whether the socket carries binary messages to its client as they are (a WebSocket
    /// does; a door that turns the core's messages into another protocol may not). Only then
    /// may a client agree to binary room records. The default is `false`.
    fn carries_binary(&self) -> bool {
        false
    }

    /// [`Self::write_now`] for a binary message.
    fn write_binary_now(&mut self, bytes: &Bytes) -> bool {
        let _ = bytes;
        false
    }

    /// [`Self::write_now`] for a message that is made in place: if the socket can take a
    /// text message of exactly `len` bytes at once, it hands `fill` its write buffer, and
    /// `fill` appends the message (only appends; returns whether it could). The socket checks
    /// that what was appended is `len` bytes of UTF-8 and removes it otherwise
    /// ([`WrittenWith::Failed`]). When the socket cannot take the message, `fill` is not
    /// called ([`WrittenWith::Refused`]): the core seals a message for an encrypted client
    /// this way, straight into the socket's buffer, and only once it has a place (sealing
    /// advances the session's counters). The default refuses.
    ///
    /// The contract: `fill` is called at most once, and a socket that called it answers
    /// `Written` (the message is in its buffer) or `Failed` (nothing of it is). The core drops
    /// a connection whose socket writes a sealed frame otherwise, because its session's
    /// counters have moved on without the frame.
    fn write_text_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut Vec<u8>) -> bool,
    ) -> WrittenWith {
        let _ = (len, fill);
        WrittenWith::Refused
    }
}

/// What became of a message offered with [`FrameSocket::write_text_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WrittenWith {
    /// It is in the socket's write buffer and leaves with the next flush (or, without `fill`
    /// being called, it was dropped because the socket is closing a slow consumer and drops
    /// every data message).
    Written,
    /// The socket cannot take it at once; `fill` was not called.
    Refused,
    /// `fill` failed or did not append `len` bytes of UTF-8: nothing was written.
    Failed,
}
