//! Inbound events: one match over what a client may send, in each state.
//!
//! Mapping of failures to protocol errors and close codes happens here and nowhere else.

use std::sync::Arc;

use futures_util::{Sink, Stream};
use serde::Deserialize as _;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::connection::{Connection, Exit};
use super::hooks::{AuthRequest, ClientInfo, HookError, InboundMessage};
use super::registry::{ClientState, valid_room_name};
use crate::protocol::{
    AuthenticatePayload, CloseCode, ConnectedPayload, EncryptedPayload, Inbound, RoomsPayload,
    error_message as err, event, frame_json, now_iso8601,
};

impl<S> Connection<S>
where
    S: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin + Send,
{
    /// Handles one inbound WebSocket message; `Some` ends the connection.
    pub(super) async fn on_frame(&mut self, msg: Message) -> Option<Exit> {
        match msg {
            Message::Text(text) => {
                self.handle.touch();
                self.on_text(text.as_str()).await
            }
            Message::Binary(_) => {
                self.handle.touch();
                self.send_error(err::INVALID_FORMAT).await;
                None
            }
            Message::Close(frame) => {
                Some(Exit::PeerClosed(frame.map_or(1000, |f| u16::from(f.code))))
            }
            // Pings are answered by tungstenite; pongs only prove the TCP path is alive and,
            // as in IGNIS, do not count as activity.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
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
        match name.as_str() {
            event::HEARTBEAT => None,
            event::AUTHENTICATE if self.state == ClientState::Authenticated => {
                self.send_error(err::ALREADY_AUTHENTICATED).await;
                None
            }
            event::AUTHENTICATE => self.authenticate(msg.data).await,
            _ if self.state != ClientState::Authenticated => {
                self.send_error(err::NOT_AUTHENTICATED).await;
                None
            }
            event::ENCRYPTED => self.on_encrypted(msg.data).await,
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
            return None;
        }
        if name == event::DISCONNECT {
            return Some(Exit::Close(CloseCode::Normal));
        }
        // Policy: with encryption required, or in the hardened profile, an encrypted client's
        // application events must arrive encrypted too; plaintext ones are refused
        // (heartbeat/disconnect excepted).
        let strict = self.server.0.config.require_encryption
            || self
                .session
                .as_ref()
                .is_some_and(crate::crypto::Session::open_failure_is_fatal);
        if self.session.is_some() && !was_encrypted && strict {
            self.send_error(err::ENCRYPTION_REQUIRED).await;
            return None;
        }
        match name.as_str() {
            event::JOIN => self.on_join(data).await,
            event::LEAVE => self.on_leave(data).await,
            _ => {
                let (Some(handler), Some(client)) =
                    (self.server.0.hooks.message.clone(), self.info.clone())
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
                handler.handle(self.server.clone(), message).await;
            }
        }
        None
    }

    fn rooms_from(&self, data: Option<Value>) -> Option<Vec<String>> {
        let payload: RoomsPayload = serde_json::from_value(data?).ok()?;
        let mut rooms: Vec<String> = Vec::new();
        for r in payload.rooms {
            if valid_room_name(&r) && !rooms.contains(&r) && r != *self.handle.id {
                rooms.push(r);
            }
        }
        Some(rooms)
    }

    async fn on_join(&mut self, data: Option<Value>) {
        let Some(mut requested) = self.rooms_from(data) else {
            self.send_error(err::INVALID_ROOMS).await;
            return;
        };
        let max = self.server.0.config.max_rooms_per_client;
        requested.truncate(max);
        let (Some(validator), Some(info)) = (
            self.server.0.hooks.room_validator.clone(),
            self.info.clone(),
        ) else {
            tracing::debug!(client = %self.handle.id, "join refused: no room validator");
            return;
        };
        if requested.is_empty() {
            return;
        }
        let allowed = validator.validate(info, requested.clone()).await;
        let allowed: Vec<String> = allowed
            .into_iter()
            .filter(|r| requested.contains(r))
            .collect();
        let mut changes = Vec::new();
        let joined = self
            .server
            .0
            .registry()
            .join(&self.handle.id, allowed, max, &mut changes);
        self.server.0.apply_interest(&changes);
        tracing::debug!(client = %self.handle.id, ?joined, "joined rooms");
    }

    async fn on_leave(&mut self, data: Option<Value>) {
        let Some(rooms) = self.rooms_from(data) else {
            self.send_error(err::INVALID_ROOMS).await;
            return;
        };
        let mut changes = Vec::new();
        let left = self
            .server
            .0
            .registry()
            .leave(&self.handle.id, rooms, &mut changes);
        self.server.0.apply_interest(&changes);
        tracing::debug!(client = %self.handle.id, ?left, "left rooms");
    }

    /// `authenticate`: hook, then handshake, then indexes, then `connected`.
    async fn authenticate(&mut self, data: Option<Value>) -> Option<Exit> {
        self.state = ClientState::Authenticating;
        self.server
            .0
            .registry()
            .set_state(&self.handle.id, self.state);
        let budget = self.server.0.config.auth_timeout * 3;
        match tokio::time::timeout(budget, self.run_auth(data)).await {
            Err(_) => Some(Exit::Close(CloseCode::AuthTimeout)),
            Ok(Err(exit)) => Some(exit),
            Ok(Ok(info)) => {
                self.guard.announced = true;
                if let Some(hook) = self.server.0.hooks.connected.clone() {
                    hook.on_connected(self.server.clone(), info).await;
                }
                None
            }
        }
    }

    async fn run_auth(&mut self, data: Option<Value>) -> Result<Arc<ClientInfo>, Exit> {
        let raw = data.unwrap_or(Value::Null);
        // Deserialized from a borrow: `from_value` would need a clone of the whole payload.
        let payload = AuthenticatePayload::deserialize(&raw).unwrap_or_default();
        let Some(authenticator) = self.server.0.hooks.authenticator.clone() else {
            return Err(self.fail(err::AUTH_ERROR, CloseCode::AuthFailed).await);
        };
        let request = AuthRequest {
            client_id: String::from(&*self.handle.id),
            remote_addr: self.remote,
            token: payload.token.clone(),
            payload: raw,
            upgrade: self.upgrade.take(),
        };
        let identity = match authenticator.authenticate(request).await {
            Ok(Some(identity)) if !identity.user_id.is_empty() => identity,
            Ok(_) => return Err(self.fail(err::AUTH_FAILED, CloseCode::AuthFailed).await),
            Err(e) => {
                tracing::debug!(client = %self.handle.id, error = %e, "authenticate hook failed");
                return Err(self.fail(err::AUTH_ERROR, CloseCode::AuthFailed).await);
            }
        };

        // Fail closed: a client that sent a public key gets an encrypted session or nothing.
        let wants_encryption = payload.public_key.is_some();
        if wants_encryption
            && payload.profile.is_none()
            && !self.server.0.config.allow_compat_profile
        {
            tracing::debug!(client = %self.handle.id, "compatibility profile refused");
            return Err(self
                .fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                .await);
        }
        let outcome = match &self.server.0.hooks.handshake {
            Some(h) => h.handshake(&self.handle.id, &payload),
            None if wants_encryption => Err(HookError("handshake disabled".into())),
            None => Ok(None),
        };
        let established = match outcome {
            Ok(Some(pair)) => Some(pair),
            Ok(None) if !self.server.0.config.require_encryption => None,
            Ok(None) => {
                return Err(self
                    .fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await);
            }
            Err(e) => {
                tracing::debug!(client = %self.handle.id, error = %e, "handshake failed");
                return Err(self
                    .fail(err::HANDSHAKE_FAILED, CloseCode::EncryptionRequired)
                    .await);
            }
        };
        let (hello, session) = match established {
            Some((hello, session)) => (Some(hello), Some(session)),
            None => (None, None),
        };

        let info = Arc::new(ClientInfo {
            id: String::from(&*self.handle.id),
            user_id: identity.user_id,
            metadata: identity.metadata,
            encrypted: session.is_some(),
            remote_addr: self.remote,
            connected_at: self.connected_at,
        });
        // The session exists before the client enters any index, so no message can reach it
        // unencrypted.
        self.session = session;
        self.info = Some(Arc::clone(&info));
        let defaults = &self.server.0.config.default_rooms;
        let mut rooms = Vec::with_capacity(1 + defaults.len());
        rooms.push(String::from(&*self.handle.id));
        rooms.extend(defaults.iter().cloned());
        let mut changes = Vec::new();
        self.server.0.registry().authenticate(
            &self.handle.id,
            Arc::clone(&info),
            &rooms,
            &mut changes,
        );
        self.server.0.apply_interest(&changes);
        self.state = ClientState::Authenticated;

        let mut connected = ConnectedPayload {
            id: info.id.clone(),
            user_id: info.user_id.clone(),
            time: now_iso8601(),
            server_public_key: None,
            salt: None,
            profile: None,
            extra: serde_json::Map::new(),
        };
        if let Some(hello) = &hello {
            hello.apply_to(&mut connected);
        }
        let data = serde_json::to_string(&connected).unwrap_or_default();
        // `connected` goes out in plaintext: it carries what the client needs to derive its key.
        if self
            .send_plain(frame_json(event::CONNECTED, &data))
            .await
            .is_err()
        {
            return Err(Exit::Gone);
        }
        tracing::debug!(client = %info.id, user = %info.user_id, encrypted = info.encrypted, "authenticated");
        Ok(info)
    }

    /// Sends an error (plaintext: no session exists yet) and returns the close to perform.
    async fn fail(&mut self, message: &str, code: CloseCode) -> Exit {
        self.send_error(message).await;
        Exit::Close(code)
    }
}
