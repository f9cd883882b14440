//! How a connection writes its outbox: in batches, and without a `Sink` round per message
//! where the socket can take one at once.
//!
//! A batch is at most [`MAX_BATCH`] items and ends with one flush. Items are taken from the
//! outbox [`TAKE`] at a time under one lock ([`super::outbox::ClientHandle::take`]), rendered for this client
//! ([`super::render`]), and handed to the socket with [`FrameSocket::write_now`], which copies
//! a message into the socket's write buffer when it can do so without waiting. The first item
//! that cannot go that way (a ping, or a message while the socket's buffer is full or the
//! socket is behind) is fed through the `Sink` and awaited; the items taken with it go back to
//! the front of the outbox, in order, and are taken again. A message is rendered exactly once
//! (sealing advances the session's counters): one rendered and then refused by `write_now` is
//! fed as it is. A message for an encrypted client is sealed straight into the socket's write
//! buffer ([`FrameSocket::write_text_with`]): the socket first says whether it takes a
//! message of the sealed frame's length at once, and only then is it sealed, in place; one it
//! does not take is sealed into a message of its own and fed.

use futures_util::SinkExt;

use super::connection::{Connection, Exit};
use super::outbox::Outbound;
use super::registry::ClientState;
use super::render::{Prepared, Rendered};
use super::socket::{FrameSocket, Outgoing, SocketError, WrittenWith};
use crate::protocol::CloseCode;

/// Messages written per flush when the outbox has a backlog: enough that a backlog of small
/// messages fills the socket's write buffer (32 KiB by default) before the flush, so a burst
/// leaves in large writes (BENCHMARKS.md, "Larger writes").
const MAX_BATCH: usize = 256;

/// Items taken from the outbox under one lock.
const TAKE: usize = 16;

/// What [`Connection::write_taken`] could not write at once: it is fed through the `Sink`.
enum Unsent {
    Ping,
    /// A rendered message (counted in the batch already).
    Message(Outgoing),
    /// The socket broke its [`FrameSocket::write_text_with`] contract on a sealed frame: the
    /// connection cannot go on.
    Broken,
}

/// Data messages and their bytes written in one batch (two `u32`s: this lives in every
/// writing connection's task).
#[derive(Default)]
struct Tally {
    messages: u32,
    bytes: u32,
}

impl Tally {
    fn add(&mut self, len: usize) {
        self.messages += 1;
        self.bytes = self
            .bytes
            .saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
    }
}

impl<S> Connection<S>
where
    S: FrameSocket,
{
    /// Writes what the outbox holds. Before authentication that can only be pings, and
    /// writing them is bounded by the authentication deadline, like every reply
    /// ([`Self::send_direct`]): a client that does not read cannot outlast the deadline here
    /// either.
    pub(super) async fn write_outbox(&mut self) -> Option<Exit> {
        let written = match self.pending_auth_deadline() {
            None => self.write_batch().await,
            // Boxed: only connections that are not authenticated yet take this path.
            Some(at) => match Box::pin(tokio::time::timeout_at(at, self.write_batch())).await {
                Ok(written) => written,
                Err(_) => return Some(Exit::Close(CloseCode::AuthTimeout)),
            },
        };
        written.err().map(|_| Exit::Gone)
    }

    /// The authentication deadline, while the client is not authenticated.
    pub(super) fn pending_auth_deadline(&self) -> Option<tokio::time::Instant> {
        if self.state == ClientState::Authenticated {
            return None;
        }
        self.handle.deadline().map(tokio::time::Instant::from_std)
    }

    async fn write_batch(&mut self) -> Result<(), SocketError> {
        let mut tally = Tally::default();
        let mut left = MAX_BATCH;
        let fed = loop {
            let fed = match self.write_taken(&mut left, &mut tally) {
                None => break Ok(()),
                Some(Unsent::Ping) => {
                    // Once per heartbeat interval an encrypted connection drops its expanded
                    // AES key schedules (about 1 KiB each), so one that has gone quiet holds
                    // only its 32-byte keys; a busy one rebuilds them once per interval.
                    // (Dropping them whenever the outbox drains cost a rebuild per message
                    // under fan-out.)
                    if let Some(session) = &mut self.session {
                        session.compact();
                    }
                    self.socket.feed(Outgoing::Ping).await
                }
                Some(Unsent::Message(msg)) => self.socket.feed(msg).await,
                Some(Unsent::Broken) => Err(SocketError::Transport(
                    "a sealed frame was not written as it was made".to_owned(),
                )),
            };
            if let Err(e) = fed {
                break Err(e);
            }
        };
        // Counted once per batch: the counters are shared by every connection's thread.
        self.server.0.metrics.out_batch(tally.messages, tally.bytes);
        fed?;
        self.socket.flush().await
    }

    /// Takes items from the outbox and writes those the socket takes at once, until the
    /// outbox is empty or `left` items were handled; returns the first one that must be fed
    /// through the `Sink` (after putting back those taken with it).
    fn write_taken(&mut self, left: &mut usize, tally: &mut Tally) -> Option<Unsent> {
        let mut taken: [Option<Outbound>; TAKE] = Default::default();
        while *left > 0 {
            let n = self.handle.take(&mut taken[..TAKE.min(*left)]);
            if n == 0 {
                return None;
            }
            for i in 0..n {
                let Some(out) = taken[i].take() else {
                    continue;
                };
                *left -= 1;
                if let Some(unsent) = self.write_now(out, tally) {
                    self.handle.put_back(&mut taken[i + 1..n]);
                    return Some(unsent);
                }
            }
        }
        None
    }

    /// Renders `out` for this client and writes it at once if the socket takes it; otherwise
    /// returns what must be fed. Counts what it rendered.
    fn write_now(&mut self, out: Outbound, tally: &mut Tally) -> Option<Unsent> {
        let rendered = match &out {
            Outbound::Ping => return Some(Unsent::Ping),
            Outbound::Message(frame) => match self.prepare(frame)? {
                Prepared::Ready(rendered) => rendered,
                Prepared::Seal(plaintext) => return self.seal_now(&plaintext, tally),
            },
            Outbound::RoomKey(grant) => Rendered::Own(self.render_grant(grant)?),
        };
        tally.add(rendered.len());
        let written = match &rendered {
            Rendered::Shared(text) => self.socket.write_now(text),
            Rendered::Own(text) => self.socket.write_now(text),
            Rendered::Binary(bytes) => self.socket.write_binary_now(bytes),
        };
        if written {
            None
        } else {
            Some(Unsent::Message(rendered.into_outgoing()))
        }
    }

    /// Seals `plaintext` for this client straight into the socket's write buffer when the
    /// socket takes it at once ([`FrameSocket::write_text_with`]): no message of its own, no
    /// second copy. Otherwise it is sealed into a message of its own, to be fed. Counts what
    /// it sealed; a message that cannot be sealed is dropped ([`Connection::seal`]). A frame
    /// that was sealed and then not written breaks the connection ([`Unsent::Broken`]): the
    /// session's counters moved on, so a hardened peer could open nothing that follows.
    fn seal_now(&mut self, plaintext: &str, tally: &mut Tally) -> Option<Unsent> {
        let session = self.session.as_mut()?;
        if let Some(len) = session.sealed_frame_len(plaintext.len()) {
            // Whether `fill` ran, and whether it sealed.
            let mut sealed = None;
            let mut fill = |buf: &mut Vec<u8>| {
                // At most once: a second call makes nothing and keeps the first's outcome.
                if sealed.is_some() {
                    return false;
                }
                let ok = session.seal_frame_into(plaintext.as_bytes(), buf).is_ok();
                sealed = Some(ok);
                ok
            };
            let written = self.socket.write_text_with(len, &mut fill);
            match (sealed, written) {
                (Some(true), WrittenWith::Written) => {
                    tally.add(len);
                    return None;
                }
                (Some(true), _) | (Some(false), WrittenWith::Written) => {
                    tracing::warn!(client = %self.handle.id, ?written, "the socket did not write a sealed frame as it was made; connection dropped");
                    return Some(Unsent::Broken);
                }
                (Some(false), _) => {
                    tracing::debug!(client = %self.handle.id, len = plaintext.len(), "seal failed; message dropped");
                    return None;
                }
                // Dropped unsealed: the socket is closing a slow consumer.
                (None, WrittenWith::Written) => return None,
                // Not sealed yet: sealed on its own below.
                (None, WrittenWith::Refused) => {}
                (None, WrittenWith::Failed) => {
                    tracing::warn!(client = %self.handle.id, "the socket failed a frame it did not make; message dropped");
                    return None;
                }
            }
        }
        let text = self.seal(plaintext)?;
        tally.add(text.len());
        Some(Unsent::Message(Outgoing::Text(text)))
    }
}
