//! The connection actor: one task per WebSocket that owns the socket and the crypto session.
//!
//! Everyone else reaches a connection through its bounded outbox ([`super::outbox`]). The loop
//! waits on, in priority order: server shutdown, the kill switch (slow consumer, heartbeat
//! timeout), the authentication deadline, queued outbound messages, and inbound frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Server;
use super::hooks::ClientInfo;
use super::outbox::{ClientHandle, Frame, Outbound};
use super::registry::ClientState;
use crate::crypto::Session;
use crate::protocol::{CloseCode, frame_json};

/// Messages written per flush when the outbox has a backlog.
const MAX_BATCH: usize = 64;

/// How a connection loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// The server closes with this code (a close frame is sent).
    Close(CloseCode),
    /// The peer sent a close frame (tungstenite answers it).
    PeerClosed(u16),
    /// The transport failed or ended without a close frame.
    Gone,
}

pub(super) struct Connection<S> {
    pub(super) server: Server,
    pub(super) socket: S,
    pub(super) handle: Arc<ClientHandle>,
    rx: mpsc::Receiver<Outbound>,
    pub(super) remote: Option<SocketAddr>,
    pub(super) connected_at: SystemTime,
    pub(super) state: ClientState,
    pub(super) session: Option<Session>,
    pub(super) info: Option<Arc<ClientInfo>>,
}

pub(super) async fn run<S>(server: Server, socket: S, remote: Option<SocketAddr>)
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send,
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
    let (handle, rx) = ClientHandle::new(
        Arc::clone(&id),
        cfg.outbox_messages,
        cfg.outbox_bytes,
        server.0.epoch,
    );
    server.0.registry().insert(Arc::clone(&handle));
    let _deregister = Deregister {
        server: server.clone(),
        id: Arc::clone(&id),
    };
    tracing::debug!(client = %id, ?remote, "connection opened");
    let mut conn = Connection {
        server,
        socket,
        handle,
        rx,
        remote,
        connected_at: SystemTime::now(),
        state: ClientState::Unauthorized,
        session: None,
        info: None,
    };
    let exit = conn.event_loop().await;
    Box::pin(conn.finish(exit)).await;
}

/// Removes a connection from the indexes when its task ends, even by a panic in a hook.
/// On the normal path [`Connection::finish`] has already removed it and this is a no-op.
struct Deregister {
    server: Server,
    id: Arc<str>,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        let mut changes = Vec::new();
        {
            // Any registry guard of the same task was dropped earlier in the unwind, so this
            // cannot deadlock.
            let mut registry = self.server.0.registry();
            if !registry.has_client(&self.id) {
                return;
            }
            let _ = registry.remove(&self.id, &mut changes);
        }
        tracing::warn!(client = %self.id, "connection task ended abnormally; client removed");
        self.server.0.apply_interest(&changes);
    }
}

impl<S> Connection<S>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send,
{
    async fn event_loop(&mut self) -> Exit {
        let shutdown = self.server.0.shutdown.clone();
        let kill = self.handle.kill_token().clone();
        let auth_deadline = tokio::time::sleep(self.server.0.config.auth_timeout);
        tokio::pin!(auth_deadline);
        loop {
            let exit = tokio::select! {
                biased;
                () = shutdown.cancelled() => Some(Exit::Close(CloseCode::GoingAway)),
                () = kill.cancelled() => Some(Exit::Close(self.handle.close_code())),
                () = &mut auth_deadline, if self.state != ClientState::Authenticated => {
                    Some(Exit::Close(CloseCode::AuthTimeout))
                }
                Some(out) = self.rx.recv() => {
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => Some(Exit::Close(CloseCode::GoingAway)),
                        () = kill.cancelled() => Some(Exit::Close(self.handle.close_code())),
                        r = self.write_batch(out) => r.err().map(|_| Exit::Gone),
                    }
                }
                msg = self.socket.next() => match msg {
                    None => Some(Exit::Gone),
                    // Hooks run inside `on_frame` (authenticate, message handler, room
                    // validator, connected); a slow one must not hold the connection open
                    // past shutdown, so handling is abandoned when shutdown begins.
                    // Boxed: inbound handling (authentication above all) is rare but its
                    // future is large; inline it would grow every idle connection's task by
                    // kilobytes.
                    Some(Ok(msg)) => tokio::select! {
                        biased;
                        () = shutdown.cancelled() => Some(Exit::Close(CloseCode::GoingAway)),
                        r = Box::pin(self.on_frame(msg)) => r,
                    },
                    Some(Err(WsError::Capacity(e))) => {
                        tracing::debug!(client = %self.handle.id, error = %e, "inbound message over the limit");
                        Some(Exit::Close(CloseCode::MessageTooBig))
                    }
                    Some(Err(e)) => {
                        tracing::debug!(client = %self.handle.id, error = %e, "socket error");
                        Some(Exit::Gone)
                    }
                },
            };
            if let Some(exit) = exit {
                return exit;
            }
        }
    }

    async fn write_batch(&mut self, first: Outbound) -> Result<(), WsError> {
        self.feed(first).await?;
        for _ in 0..MAX_BATCH {
            match self.rx.try_recv() {
                Ok(next) => self.feed(next).await?,
                Err(_) => break,
            }
        }
        self.socket.flush().await
    }

    async fn feed(&mut self, out: Outbound) -> Result<(), WsError> {
        match out {
            Outbound::Ping => self.socket.feed(Message::Ping(Bytes::new())).await,
            Outbound::Message(frame) => {
                self.handle.dequeued(&frame);
                match self.render(&frame) {
                    Some(msg) => self.socket.feed(msg).await,
                    None => Ok(()),
                }
            }
        }
    }

    /// Turns a shared frame into this client's wire message: the shared bytes for a plaintext
    /// client, a fresh ciphertext for an encrypted one. `None` means "do not send" (fail
    /// closed when sealing fails).
    fn render(&mut self, frame: &Frame) -> Option<Message> {
        let transformed = match (&self.server.0.hooks.transformer, &self.info) {
            (Some(t), Some(info)) => t
                .transform(info, &frame.event, &frame.data)
                .map(|(event, data)| frame_json(&event, data.get())),
            _ => None,
        };
        match (&mut self.session, transformed) {
            (Some(session), t) => {
                let plaintext = t.as_deref().unwrap_or(frame.json.as_str());
                match session.seal_frame(plaintext.as_bytes()) {
                    Ok(sealed) => Some(Message::text(sealed)),
                    Err(e) => {
                        tracing::debug!(client = %self.handle.id, error = %e, len = plaintext.len(), "seal failed; message dropped");
                        None
                    }
                }
            }
            (None, Some(t)) => Some(Message::text(t)),
            (None, None) => Some(Message::Text(frame.json.clone())),
        }
    }

    /// Sends a system frame now: sealed for an encrypted client, plain otherwise.
    pub(super) async fn send_system(&mut self, event: &str, data_json: &str) {
        let json = frame_json(event, data_json);
        let msg = match &mut self.session {
            Some(session) => match session.seal_frame(json.as_bytes()) {
                Ok(sealed) => Message::text(sealed),
                Err(_) => return,
            },
            None => Message::text(json),
        };
        if let Err(e) = self.socket.send(msg).await {
            tracing::debug!(client = %self.handle.id, error = %e, "send failed");
        }
    }

    /// Sends `{"event":"error","data":{"message":..}}`.
    pub(super) async fn send_error(&mut self, message: &str) {
        let data = serde_json::json!({ "message": message }).to_string();
        self.send_system(crate::protocol::event::ERROR, &data).await;
    }

    /// Sends a plaintext frame regardless of the session (only `connected` uses this).
    pub(super) async fn send_plain(&mut self, json: String) -> Result<(), WsError> {
        self.socket.send(Message::text(json)).await
    }

    async fn finish(mut self, exit: Exit) {
        let id = Arc::clone(&self.handle.id);
        let mut changes = Vec::new();
        let info = self.server.0.registry().remove(&id, &mut changes);
        self.server.0.apply_interest(&changes);
        let code = match exit {
            Exit::Close(code) => {
                self.close(code).await;
                code
            }
            Exit::PeerClosed(code) => {
                // Flush tungstenite's automatic close reply.
                let limit = self.server.0.config.shutdown_timeout;
                let _ = tokio::time::timeout(limit, self.socket.close()).await;
                CloseCode::from_code(code).unwrap_or(CloseCode::Normal)
            }
            Exit::Gone => CloseCode::Abnormal,
        };
        self.session = None;
        tracing::debug!(client = %id, code = code.code(), "connection closed");
        if let (Some(info), Some(hook)) = (info, self.server.0.hooks.disconnected.clone()) {
            hook.on_disconnected(info, code).await;
        }
    }

    /// Sends a close frame and waits (bounded) for the peer's reply.
    async fn close(&mut self, code: CloseCode) {
        let frame = CloseFrame {
            code: WsCloseCode::from(code.code()),
            reason: code.reason().into(),
        };
        let limit = self.server.0.config.shutdown_timeout;
        let socket = &mut self.socket;
        let _ = tokio::time::timeout(limit, async move {
            if socket.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            while let Some(Ok(msg)) = socket.next().await {
                if msg.is_close() {
                    break;
                }
            }
        })
        .await;
    }
}
