//! Inbound events: one match over what a client may send, in each state.
//!
//! Mapping of failures to protocol errors and close codes happens here and nowhere else.

use std::collections::HashSet;

use serde_json::Value;
use std::future::poll_fn;
use std::pin::Pin;

use tokio::time::Sleep;

use super::connection::{Connection, Exit, deadline};
use super::hooks::InboundMessage;
use super::outbox::ClientHandle;
use super::registry::{ClientState, joinable_room_name};
use super::socket::{FrameSocket, Incoming, SocketError};
use crate::protocol::{
    CloseCode, EncryptedPayload, Inbound, ROOM_STREAM_PREFIX, RoomsPayload, error_message as err,
    event,
};

impl<S> Connection<S>
where
    S: FrameSocket,
{
    /// Handles what the socket yielded: a message (raced against close requests and the
    /// deadline), its end, or an error.
    ///
    /// Hooks run inside `on_frame` (authenticate, message handler, room validator,
    /// connected); a slow one must not hold the connection open past shutdown or any other
    /// close request, so handling is abandoned when one arrives. Boxed: inbound handling
    /// (authentication above all) is rare but its future is large; inline it would grow every
    /// idle connection's task by kilobytes. The deadline is raced too: neither a slow hook nor
    /// a client that does not read its replies can hold authentication open.
    pub(super) async fn on_inbound(
        &mut self,
        msg: Option<Result<Incoming, SocketError>>,
        handle: &ClientHandle,
        timer: &mut Option<Pin<Box<Sleep>>>,
    ) -> Option<Exit> {
        match msg {
            None => Some(Exit::Gone),
            Some(Ok(msg)) => {
                self.server.0.metrics.inbound(&msg);
                let authenticated = self.state == ClientState::Authenticated;
                tokio::select! {
                    biased;
                    code = poll_fn(|cx| handle.poll_close(cx)) => Some(Exit::Close(code)),
                    () = deadline(handle, timer) => Some(Exit::Close(if authenticated {
                        CloseCode::SessionExpired
                    } else {
                        CloseCode::AuthTimeout
                    })),
                    r = Box::pin(self.on_frame(msg)) => r,
                }
            }
            Some(Err(SocketError::TooLarge(e))) => {
                tracing::debug!(client = %self.handle.id, error = %e, "inbound message over the limit");
                Some(Exit::Close(CloseCode::MessageTooBig))
            }
            Some(Err(SocketError::Protocol(e))) => {
                tracing::debug!(client = %self.handle.id, error = %e, "WebSocket protocol violation");
                Some(Exit::Close(CloseCode::ProtocolError))
            }
            Some(Err(SocketError::InvalidUtf8(e))) => {
                tracing::debug!(client = %self.handle.id, error = %e, "text message not UTF-8");
                Some(Exit::Close(CloseCode::InvalidPayload))
            }
            Some(Err(e)) => {
                tracing::debug!(client = %self.handle.id, error = %e, "socket error");
                Some(Exit::Gone)
            }
        }
    }

    /// Handles one inbound frame; `Some` ends the connection. (Transports answer pings
    /// themselves; pongs only prove the TCP path is alive and, as in IGNIS, do not count as
    /// activity, so neither reaches the core.)
    pub(super) async fn on_frame(&mut self, frame: Incoming) -> Option<Exit> {
        match frame {
            Incoming::Text(text) => {
                // A hardened client sends only records; a plaintext frame on its session may
                // have been injected on the path, so only records that open keep it alive.
                if !self.sealed_only() {
                    self.handle.touch();
                }
                self.on_text(text.as_str()).await
            }
            Incoming::Binary(_) => {
                if !self.sealed_only() {
                    self.handle.touch();
                }
                self.send_error(err::INVALID_FORMAT).await;
                None
            }
            Incoming::Close(code) => Some(Exit::PeerClosed(code.unwrap_or(1000))),
            Incoming::Alive => {
                self.handle.touch();
                None
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Option<Exit> {
        let Ok(msg) = Inbound::parse(text) else {
            self.send_error(err::INVALID_FORMAT).await;
            return None;
        };
        let Some(name) = msg.event else {
            tracing::debug!(client = %self.handle.id, "dropping message without event");
            return None;
        };
        let authenticated = self.state == ClientState::Authenticated;
        match name.as_str() {
            event::HEARTBEAT => None,
            event::AUTHENTICATE if authenticated => {
                self.send_error(err::ALREADY_AUTHENTICATED).await;
                None
            }
            // After authentication `hello` is an ordinary application event name.
            event::HELLO if authenticated => self.on_app_event(name, msg.data, msg.id, false).await,
            // After the hardened hello exchange, a plaintext `authenticate` would expose the
            // token (or is a relay trying to swap one in), and a second hello has no meaning.
            event::AUTHENTICATE | event::HELLO if self.awaiting_sealed_credentials() => Some(
                self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await,
            ),
            event::AUTHENTICATE => self.authenticate(msg.data).await,
            event::HELLO => self.hello(msg.data).await,
            event::ENCRYPTED if authenticated || self.awaiting_sealed_credentials() => {
                self.on_encrypted(msg.data).await
            }
            _ if !authenticated => {
                self.send_error(err::NOT_AUTHENTICATED).await;
                None
            }
            _ => self.on_app_event(name, msg.data, msg.id, false).await,
        }
    }

    /// Decrypts an `encrypted` frame and handles the envelope inside it.
    ///
    /// Compatibility profile: a frame that does not open gets "Invalid encrypted message" and
    /// the connection stays up. Hardened profile: the receive sequence cannot recover from a
    /// bad record (replayed, reordered, reflected, tampered), so the client gets the same
    /// error and close 4004; its first record must be the key confirmation (`confirm`), or
    /// it gets "Encryption handshake failed" and close 4004.
    async fn on_encrypted(&mut self, data: Option<Value>) -> Option<Exit> {
        let payload = data.and_then(|d| serde_json::from_value::<EncryptedPayload>(d).ok());
        let fatal = self
            .session
            .as_ref()
            .is_some_and(crate::crypto::Session::open_failure_is_fatal);
        let plaintext = match (&mut self.session, payload) {
            (Some(session), Some(p)) => session.open(&p).ok(),
            _ => None,
        };
        let inner = plaintext
            .as_deref()
            .and_then(|pt| std::str::from_utf8(pt).ok())
            .and_then(|s| Inbound::parse(s).ok());
        let Some(inner) = inner else {
            tracing::debug!(client = %self.handle.id, fatal, "undecryptable encrypted frame");
            if fatal {
                return Some(
                    self.fail(err::DECRYPT_FAILED, CloseCode::EncryptionRequired)
                        .await,
                );
            }
            self.send_error(err::DECRYPT_FAILED).await;
            return None;
        };
        // Only a record that opens counts as activity on a hardened session.
        self.handle.touch();
        if let Some(session) = self
            .session
            .as_mut()
            .filter(|s| s.awaiting_client_confirmation())
        {
            let mac = (inner.event.as_deref() == Some(event::CONFIRM))
                .then(|| inner.data.as_ref()?.get("mac")?.as_str())
                .flatten();
            if mac.is_some_and(|m| session.confirm_client(m).is_ok()) {
                tracing::debug!(client = %self.handle.id, "client key confirmation verified");
                return None;
            }
            tracing::debug!(client = %self.handle.id, "bad or missing client key confirmation");
            return Some(
                self.fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await,
            );
        }
        let name = inner.event?;
        if self.awaiting_sealed_credentials() {
            // Hardened: the record after the confirmation must be the sealed `authenticate`.
            return match name.as_str() {
                event::AUTHENTICATE => self.sealed_authenticate(inner.data).await,
                event::HEARTBEAT => None,
                _ => {
                    self.send_error(err::NOT_AUTHENTICATED).await;
                    None
                }
            };
        }
        match name.as_str() {
            event::AUTHENTICATE => {
                self.send_error(err::ALREADY_AUTHENTICATED).await;
                None
            }
            event::ENCRYPTED | event::CONNECTED => {
                self.send_error(err::INVALID_FORMAT).await;
                None
            }
            _ => self.on_app_event(name, inner.data, inner.id, true).await,
        }
    }

    /// Events of an authenticated client (plaintext or decrypted).
    async fn on_app_event(
        &mut self,
        name: String,
        data: Option<Value>,
        id: Option<String>,
        was_encrypted: bool,
    ) -> Option<Exit> {
        if name == event::HEARTBEAT {
            // Activity was counted when the frame arrived (on a hardened session only for a
            // record that opened).
            return None;
        }
        // A plaintext `disconnect` on a hardened session may have been injected on the path:
        // refused like any other plaintext event, so it cannot end the session as a normal
        // closure. Compatibility-profile clients (IGNIS) send theirs in plaintext.
        if name == event::DISCONNECT && (was_encrypted || !self.sealed_only()) {
            return Some(Exit::Close(CloseCode::Normal));
        }
        // Policy: in the hardened profile, or everywhere with `require_encrypted_inbound`, an
        // encrypted client's application events must arrive encrypted too; plaintext ones are
        // refused (a compatibility-profile `disconnect` excepted). IGNIS compatibility-profile
        // clients never encrypt inbound, so the `Required` policy alone does not refuse theirs.
        let strict = self.server.0.config.require_encrypted_inbound || self.sealed_only();
        if self.session.is_some() && !was_encrypted && strict {
            self.send_error(err::ENCRYPTION_REQUIRED).await;
            return None;
        }
        match name.as_str() {
            event::JOIN => self.on_join(data).await,
            event::LEAVE => self.on_leave(data).await,
            event::REFRESH => self.refresh(data).await,
            _ => {
                let hooks = &self.server.0.hooks;
                let typed = hooks.events.get(&name).cloned();
                let catch_all = hooks.message.clone().filter(|_| typed.is_none());
                let Some(client) = self
                    .info
                    .clone()
                    .filter(|_| typed.is_some() || catch_all.is_some())
                else {
                    tracing::debug!(client = %self.handle.id, event = %name, "no handler for event");
                    return None;
                };
                let message = InboundMessage {
                    client,
                    event: name,
                    data: data.unwrap_or(Value::Null),
                    id,
                    was_encrypted,
                };
                if let Some(route) = typed {
                    let event = message.event.clone();
                    match route.route(self.server.clone(), message) {
                        Ok(handled) => handled.await,
                        Err(e) => {
                            tracing::debug!(client = %self.handle.id, event = %event, error = %e, "payload does not fit the event's type");
                            self.send_error(err::INVALID_FORMAT).await;
                        }
                    }
                } else if let Some(handler) = catch_all {
                    handler.handle(self.server.clone(), message).await;
                }
            }
        }
        None
    }

    /// The rooms of a `join`/`leave` payload: valid, joinable names (the own-id room and every
    /// other client-id-shaped name are left out), each once, in request order. A list longer
    /// than `max_rooms_per_client` is refused before any work is done on it.
    fn rooms_from(&self, data: Option<Value>) -> Result<Vec<String>, &'static str> {
        let payload: RoomsPayload = data
            .and_then(|d| serde_json::from_value(d).ok())
            .ok_or(err::INVALID_ROOMS)?;
        if payload.rooms.len() > self.server.0.config.max_rooms_per_client {
            return Err(err::TOO_MANY_ROOMS);
        }
        let mut seen = HashSet::with_capacity(payload.rooms.len());
        Ok(payload
            .rooms
            .into_iter()
            .filter(|r| joinable_room_name(r) && seen.insert(r.clone()))
            .collect())
    }

    async fn on_join(&mut self, data: Option<Value>) {
        let recover = data.as_ref().and_then(super::recovery::recover_request);
        let requested = match self.rooms_from(data) {
            Ok(rooms) => rooms,
            Err(message) => {
                self.send_error(message).await;
                return;
            }
        };
        let max = self.server.0.config.max_rooms_per_client;
        let (Some(validator), Some(info)) = (
            self.server.0.hooks.room_validator.clone(),
            self.info.clone(),
        ) else {
            tracing::debug!(client = %self.handle.id, "join refused: no room validator");
            return;
        };
        // The room of a client's `socket.id` is that client's alone, on every instance.
        let in_use = self.server.names_in_use(&requested).await;
        let requested: Vec<String> = requested
            .into_iter()
            .filter(|r| !in_use.contains(r))
            .collect();
        if requested.is_empty() {
            return;
        }
        let allowed = validator.validate(info, requested.clone()).await;
        // Only names the client asked for (each once): a validator cannot widen the request.
        let mut asked: HashSet<String> = requested.into_iter().collect();
        let allowed: Vec<String> = allowed.into_iter().filter(|r| asked.remove(r)).collect();
        // Read only for a client that wants positions (a registry lookup).
        let entering = if recover.is_some() || self.positions().is_some() {
            self.not_in(&allowed)
        } else {
            Vec::new()
        };
        let entered = self
            .entry_positions(None, &entering, recover.as_ref())
            .await;
        let id = &self.handle.id;
        let joined = self
            .server
            .0
            .update_registry(|registry, changes| registry.join(id, allowed.clone(), max, changes));
        tracing::debug!(client = %self.handle.id, ?joined, "joined rooms");
        if recover.is_none() && self.positions().is_none() {
            return;
        }
        // Recovery answers for every room asked for that the client is in now: the rooms it
        // just entered, and those it was in already (a repeated join is answered with where
        // the stream stands, not as a room it is not in).
        let now_in = self.rooms_now();
        let answered: Vec<String> = allowed.into_iter().filter(|r| now_in.contains(r)).collect();
        let continuing: Vec<String> = answered
            .iter()
            .filter(|r| !joined.contains(r))
            .cloned()
            .collect();
        // A recovery's exit (the client stopped reading) reaches the loop as a close request.
        let _ = self
            .recover(recover, &answered, &continuing, false, entered)
            .await;
    }

    /// The rooms the client is in.
    fn rooms_now(&self) -> HashSet<String> {
        self.server
            .client_rooms(&self.handle.id)
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    /// The rooms of `rooms` the client is not in.
    fn not_in(&self, rooms: &[String]) -> Vec<String> {
        let current = self.rooms_now();
        rooms
            .iter()
            .filter(|r| !current.contains(*r))
            .cloned()
            .collect()
    }

    async fn on_leave(&mut self, data: Option<Value>) {
        let rooms = match self.rooms_from(data) {
            Ok(rooms) => rooms,
            Err(message) => {
                self.send_error(message).await;
                return;
            }
        };
        let id = &self.handle.id;
        let left = self
            .server
            .0
            .update_registry(|registry, changes| registry.leave(id, rooms, changes));
        // The recovery floors of the rooms left go with them: a client's floors stay within
        // the rooms it is in, however often it joins and leaves.
        if let Some(floors) = self.extras.as_mut().and_then(|e| e.positions.as_mut()) {
            for room in &left {
                floors.remove(format!("{ROOM_STREAM_PREFIX}{room}").as_str());
            }
        }
        tracing::debug!(client = %self.handle.id, ?left, "left rooms");
    }
}
