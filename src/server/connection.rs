//! The connection actor: one task per WebSocket that owns the socket and the crypto session.
//!
//! Everyone else reaches a connection through its bounded outbox ([`super::outbox`]). The loop
//! waits on, in priority order: the outbox (a requested close, such as shutdown, a slow
//! consumer or a heartbeat timeout, before queued messages), the authentication deadline, and
//! inbound frames.
//!
//! The connection's deadline lives in its [`ClientHandle`]: the authentication deadline
//! (`auth_timeout`, moved to `3 x auth_timeout` by the first `authenticate` or `hello`), then
//! the session's expiry (4006). Inbound handling is raced against it, so neither a slow hook
//! nor a client that never reads its replies can outlast it. Replies sent straight from the
//! loop (errors, `connected`, the close frame) are bounded in time too: before
//! authentication a reply (or a ping from the outbox) must be written by the deadline,
//! afterwards within `shutdown_timeout`; a reply that is not is a close request (4001 or
//! 4005).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::time::Sleep;

use super::Server;
use super::allowance::{self, Allowance};
use super::hooks::{ClientInfo, UpgradeHead};
use super::metrics::ConnProfile;
use super::outbox::{ClientHandle, Wake};
use super::registry::ClientState;
use super::socket::{FrameSocket, Incoming, Outgoing, SocketError};
use crate::crypto::Session;
use crate::protocol::{CloseCode, Text, frame_json};

/// Per stream, the epoch and the last offset a recovering client's replay covered. Only frames
/// of that epoch are compared: a stream that expired and started again (a new epoch, offsets
/// from 1) while the client stays connected is delivered in full.
pub(super) type Floors = std::collections::HashMap<Arc<str>, (Arc<str>, u64)>;

/// Per room, the epoch whose key a client was sent last ([`super::room_keys`]).
pub(super) type HeldEpochs = std::collections::HashMap<Arc<str>, u64>;

/// The state only some connections need ([`Connection::extras`]).
#[derive(Default)]
pub(super) struct Extras {
    /// For a client that asked for positions (`recover`): per stream, the last offset the
    /// replay covered; queued frames at or below it are dropped (they were replayed).
    pub(super) positions: Option<Floors>,
    /// For a client that takes room keys: per room, the epoch whose key it was sent last.
    pub(super) room_epochs: HeldEpochs,
    /// The client agreed to binary room records (`docs/PROTOCOL.md` §14.6).
    pub(super) binary_room_records: bool,
    /// What is left of the client's `refresh` allowance, once it sent one.
    pub(super) refreshes: Option<Allowance>,
    /// What is left of the client's recovery allowance (streams read), once it recovered.
    pub(super) recoveries: Option<Allowance>,
}

/// How a connection loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// The server closes with this code (a close frame is sent).
    Close(CloseCode),
    /// The peer sent a close frame (the transport answers it).
    PeerClosed(u16),
    /// The transport failed or ended without a close frame.
    Gone,
}

pub(super) struct Connection<S> {
    pub(super) server: Server,
    pub(super) socket: S,
    pub(super) handle: Arc<ClientHandle>,
    pub(super) remote: Option<SocketAddr>,
    /// The upgrade request, until the authenticate hook takes it.
    pub(super) upgrade: Option<Arc<UpgradeHead>>,
    pub(super) connected_at: SystemTime,
    pub(super) state: ClientState,
    pub(super) session: Option<Session>,
    pub(super) info: Option<Arc<ClientInfo>>,
    /// What only some connections need (positions, room keys). Boxed: one pointer in every
    /// connection's task, which lives as long as the connection.
    pub(super) extras: Option<Box<Extras>>,
    /// Dropped with the connection, wherever its task ends.
    pub(super) guard: Deregister,
}

/// Registers a new connection and returns the future that runs it to completion.
///
/// A plain function rather than an `async fn`: the connection is built before the future
/// exists, so the socket is stored once in the task instead of once as an argument and again
/// as a field (the task is allocated for every connection for its whole life).
pub(super) fn run<S>(
    server: Server,
    socket: S,
    remote: Option<SocketAddr>,
    upgrade: Option<Arc<UpgradeHead>>,
) -> impl Future<Output = ()> + Send
where
    S: FrameSocket,
{
    // A v4 UUID from the thread-local CSPRNG: `Uuid::new_v4` would ask the OS for 16 bytes
    // with a system call on every connection.
    let uuid = uuid::Builder::from_random_bytes(rand::RngExt::random(&mut rand::rng())).into_uuid();
    let id: Arc<str> = Arc::from(
        &*uuid
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    let cfg = &server.0.config;
    let handle = ClientHandle::new(
        Arc::clone(&id),
        cfg.outbox_messages,
        cfg.outbox_bytes,
        server.0.epoch,
    );
    server.0.registry().insert(Arc::clone(&handle));
    // `Server::shutdown` cancels first and then asks every registered connection to close;
    // one registered after that sweep sees the cancellation here.
    if server.0.shutdown.is_cancelled() {
        handle.close(CloseCode::GoingAway);
    }
    tracing::debug!(client = %id, remote = remote.map(tracing::field::display), "connection opened");
    let conn = Connection {
        guard: Deregister {
            server: server.clone(),
            id,
            announced: false,
            profile: None,
            auth_started: None,
        },
        server,
        socket,
        handle,
        remote,
        upgrade,
        connected_at: SystemTime::now(),
        state: ClientState::Unauthorized,
        session: None,
        info: None,
        extras: None,
    };
    conn.serve()
}

/// Removes a connection from the indexes when its task ends, even by a panic in a hook, and
/// then still runs the disconnected hook (code 1006) for a client that was announced.
/// On the normal path [`Connection::finish`] has already done both and this is a no-op.
pub(super) struct Deregister {
    server: Server,
    id: Arc<str>,
    /// The client was announced (its connected hook was started): the disconnected hook must
    /// run for it exactly once. Hooks come in pairs.
    pub(super) announced: bool,
    /// The session profile, once authenticated (counted in the metrics until the end).
    pub(super) profile: Option<ConnProfile>,
    /// When the first `hello` or `authenticate` arrived.
    pub(super) auth_started: Option<std::time::Instant>,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        if let Some(profile) = self.profile.take() {
            self.server.0.metrics.disconnected(profile);
        }
        // Any registry guard of the same task was dropped earlier in the unwind, so this
        // cannot deadlock.
        let removed = self.server.0.update_registry(|registry, changes| {
            registry
                .has_client(&self.id)
                .then(|| registry.remove(&self.id, changes))
        });
        let Some(info) = removed else {
            return;
        };
        tracing::warn!(client = %self.id, "connection task ended abnormally; client removed");
        if let (true, Some(info), Some(hook)) = (
            self.announced,
            info,
            self.server.0.hooks.disconnected.clone(),
        ) && tokio::runtime::Handle::try_current().is_ok()
        {
            self.server
                .spawn_tracked(hook.on_disconnected(info, CloseCode::Abnormal));
        }
    }
}

impl<S> Connection<S> {
    /// The floors of a client that asked for positions.
    pub(super) fn positions(&self) -> Option<&Floors> {
        self.extras.as_ref()?.positions.as_ref()
    }

    /// The floors, created (the client now asks for positions) if need be.
    pub(super) fn positions_mut(&mut self) -> &mut Floors {
        self.extras
            .get_or_insert_default()
            .positions
            .get_or_insert_default()
    }

    /// The room epochs a client holds.
    pub(super) fn room_epochs(&self) -> Option<&HeldEpochs> {
        self.extras.as_ref().map(|e| &e.room_epochs)
    }

    /// The room epochs, for a grant.
    pub(super) fn room_epochs_mut(&mut self) -> &mut HeldEpochs {
        &mut self.extras.get_or_insert_default().room_epochs
    }

    /// Whether the client agreed to binary room records.
    pub(super) fn binary_room_records(&self) -> bool {
        self.extras.as_ref().is_some_and(|e| e.binary_room_records)
    }

    /// Takes one `refresh` from the client's allowance: `false` when it is spent.
    pub(super) fn take_refresh(&mut self) -> bool {
        let extras = self.extras.get_or_insert_default();
        let left = extras
            .refreshes
            .get_or_insert_with(|| Allowance::new(allowance::REFRESHES));
        left.take(1) == 1
    }

    /// Takes up to `want` stream reads from the client's recovery allowance: how many it
    /// may make.
    pub(super) fn take_recoveries(&mut self, want: usize) -> usize {
        let rate = allowance::recoveries(self.server.0.config.max_rooms_per_client);
        let extras = self.extras.get_or_insert_default();
        let left = extras
            .recoveries
            .get_or_insert_with(|| Allowance::new(rate));
        let want = u32::try_from(want).unwrap_or(u32::MAX);
        usize::try_from(left.take(want)).unwrap_or(usize::MAX)
    }
}

impl<S> Connection<S>
where
    S: FrameSocket,
{
    // This future is allocated for every connection for its whole life, so it is laid out
    // by hand: the loop lives directly in it (awaiting a nested `async fn` would hold that
    // future twice: as a value and as the pinned future being polled), and it is an `async
    // move` block over `self` rather than an `async fn(mut self)`, which would store the
    // connection twice (as the argument and as the `mut` binding).
    #[allow(
        clippy::manual_async_fn,
        reason = "`async fn serve(mut self)` stores the connection twice"
    )]
    fn serve(mut self) -> impl Future<Output = ()> + Send {
        async move {
            let handle = Arc::clone(&self.handle);
            handle.set_deadline(Some(
                std::time::Instant::now() + self.server.0.config.auth_timeout,
            ));
            // The timer behind the connection's deadline (authentication, then the session's
            // expiry). Boxed, and dropped with its timer entry while there is no deadline,
            // so an idle authenticated connection without an expiry carries none.
            let mut timer: Option<Pin<Box<Sleep>>> = None;
            let exit = loop {
                // Shutdown reaches the loop as a close request (1001) through the outbox.
                let exit = tokio::select! {
                    biased;
                    wake = poll_fn(|cx| handle.poll_wake(cx)) => match wake {
                        Wake::Close(code) => Some(Exit::Close(code)),
                        // What the client sent is read before the next write: a long
                        // outbound backlog must not starve its heartbeats.
                        Wake::Ready => match self.socket.next().now_or_never() {
                            Some(msg) => self.on_inbound(msg, &handle, &mut timer).await,
                            None => tokio::select! {
                                biased;
                                code = poll_fn(|cx| handle.poll_close(cx)) => Some(Exit::Close(code)),
                                r = self.write_outbox() => r,
                            },
                        },
                    },
                    () = deadline(&handle, &mut timer) => Some(Exit::Close(self.deadline_code())),
                    msg = self.socket.next() => self.on_inbound(msg, &handle, &mut timer).await,
                };
                if let Some(exit) = exit {
                    break exit;
                }
            };
            // Boxed: the close path runs once; inline it would grow every idle connection's task.
            Box::pin(self.finish(exit)).await;
        }
    }

    /// The close code for a deadline that passed: 4001 before authentication, 4006 after.
    fn deadline_code(&self) -> CloseCode {
        if self.state == ClientState::Authenticated {
            CloseCode::SessionExpired
        } else {
            CloseCode::AuthTimeout
        }
    }

    /// Sends a system frame now: sealed for an encrypted client, plain otherwise.
    pub(super) async fn send_system(&mut self, event: &str, data_json: &str) {
        let json = frame_json(event, data_json);
        let text = match &mut self.session {
            Some(session) => match session.seal_frame(json.as_bytes()) {
                Ok(sealed) => Text::from(sealed),
                Err(_) => return,
            },
            None => Text::from(json),
        };
        if let Err(e) = self.send_direct(text).await {
            tracing::debug!(client = %self.handle.id, error = %e, "send failed");
        }
    }

    /// Sends one message now, bounded in time: by the authentication deadline while the
    /// client is not authenticated (its replies cannot keep it connected past that),
    /// otherwise by `shutdown_timeout`. A send that does not complete in time (the client is
    /// not reading) asks the connection to close, with 4001 or 4005 (slow consumer), and
    /// fails with a timed-out I/O error.
    async fn send_direct(&mut self, text: Text) -> Result<(), SocketError> {
        let msg = Outgoing::Text(self.server.0.metrics.out(text));
        let (deadline, code) = match self.pending_auth_deadline() {
            Some(at) => (at, CloseCode::AuthTimeout),
            None => (
                tokio::time::Instant::now() + self.server.0.config.shutdown_timeout,
                CloseCode::SlowConsumer,
            ),
        };
        match tokio::time::timeout_at(deadline, self.socket.send(msg)).await {
            Ok(sent) => sent,
            Err(_) => {
                tracing::debug!(client = %self.handle.id, code = code.code(), "client does not read; closing");
                self.handle.close(code);
                Err(SocketError::Io(std::io::ErrorKind::TimedOut.into()))
            }
        }
    }

    /// Sends `{"event":"error","data":{"message":..}}`.
    pub(super) async fn send_error(&mut self, message: &str) {
        let data = serde_json::json!({ "message": message }).to_string();
        self.send_system(crate::protocol::event::ERROR, &data).await;
    }

    /// Sends a plaintext frame regardless of the session (only `connected` uses this), bounded
    /// in time as [`Self::send_direct`].
    pub(super) async fn send_plain(&mut self, json: String) -> Result<(), SocketError> {
        self.send_direct(Text::from(json)).await
    }

    async fn finish(mut self, exit: Exit) {
        let id = Arc::clone(&self.handle.id);
        let info = self
            .server
            .0
            .update_registry(|registry, changes| registry.remove(&id, changes));
        // Counted out with the registry, so the profile gauges agree with the connection counts.
        if let Some(profile) = self.guard.profile.take() {
            self.server.0.metrics.disconnected(profile);
        }
        self.handle.detach();
        let code = match exit {
            Exit::Close(code) => {
                let authenticated = self.state == ClientState::Authenticated;
                self.server.0.metrics.closed(code, authenticated);
                self.close(code).await;
                code
            }
            Exit::PeerClosed(code) => {
                // Flush the transport's automatic close reply.
                let limit = self.server.0.config.shutdown_timeout;
                let _ = tokio::time::timeout(limit, self.socket.close()).await;
                CloseCode::from_code(code).unwrap_or(CloseCode::Normal)
            }
            Exit::Gone => CloseCode::Abnormal,
        };
        self.session = None;
        tracing::debug!(client = %id, code = code.code(), "connection closed");
        // Only for a client whose connected hook was started: hooks come in pairs, also when
        // shutdown interrupts an authentication after the client entered the indexes.
        if let (true, Some(info), Some(hook)) = (
            self.guard.announced,
            info,
            self.server.0.hooks.disconnected.clone(),
        ) {
            hook.on_disconnected(info, code).await;
        }
    }

    /// Sends a close frame and waits (bounded) for the peer's reply. A slow consumer's close
    /// frame does not wait behind the messages it has not read: those still in the socket's
    /// buffers are dropped first ([`FrameSocket::discard_unsent`]).
    async fn close(&mut self, code: CloseCode) {
        if code == CloseCode::SlowConsumer {
            self.socket.discard_unsent();
        }
        let limit = self.server.0.config.shutdown_timeout;
        let socket = &mut self.socket;
        let _ = tokio::time::timeout(limit, async move {
            if socket.send(Outgoing::Close(code)).await.is_err() {
                return;
            }
            while let Some(Ok(frame)) = socket.next().await {
                if matches!(frame, Incoming::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// Completes when the connection's deadline ([`ClientHandle::deadline`]) passes; pending while
/// there is none. A deadline moved while this waits (authentication extends it, a refresh
/// extends the session) is picked up when the old one fires, or at the next loop turn.
pub(super) async fn deadline(handle: &ClientHandle, timer: &mut Option<Pin<Box<Sleep>>>) {
    loop {
        let Some(at) = handle.deadline() else {
            *timer = None;
            return std::future::pending().await;
        };
        let at = tokio::time::Instant::from_std(at);
        match timer {
            Some(t) if t.deadline() == at => {}
            Some(t) => t.as_mut().reset(at),
            None => *timer = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        if let Some(t) = timer {
            t.as_mut().await;
        }
        if handle.deadline().map(tokio::time::Instant::from_std) == Some(at) {
            return;
        }
    }
}
