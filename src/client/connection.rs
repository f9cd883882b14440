//! The connection task: owns the WebSocket and the crypto session, reconnects.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::config::{ClientConfig, Encryption};
use super::event::{DisconnectReason, Event, HardenedStage};
use super::inbound::UNPARSEABLE;
use super::lifetime::Lifetime;
use super::login::{CLOSE_GRACE, Live, Ws, plain_login, sealed_login};
use super::{ClientError, Command, ConnectionInfo, SharedState};
use crate::crypto::{ClientHandshake, CryptoError, HandshakeConfig, Profile, Session, room};
use crate::protocol::{
    AuthenticatePayload, RecoverRequest, RefreshPayload, RoomsPayload, event, frame_json,
};

pub(crate) struct Task {
    pub(super) config: ClientConfig,
    pub(super) shared: Arc<SharedState>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
    info: watch::Sender<Option<ConnectionInfo>>,
    stop: CancellationToken,
}

impl Task {
    pub(crate) fn new(
        config: ClientConfig,
        shared: Arc<SharedState>,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Event>,
        info: watch::Sender<Option<ConnectionInfo>>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            config,
            shared,
            commands,
            events,
            info,
            stop,
        }
    }

    /// The first connection: failures go back to the caller of `connect`.
    pub(crate) async fn first_connect(&mut self) -> Result<Live, ClientError> {
        match self.establish().await {
            Ok(live) => {
                self.shared.remember_limit(&live.info);
                let _ = self.info.send(Some(live.info.clone()));
                let _ = self.events.try_send(Event::Connected {
                    info: live.info.clone(),
                    reconnected: false,
                });
                Ok(live)
            }
            Err(DisconnectReason::Network(e)) => Err(ClientError::Connect(e)),
            Err(reason) => Err(ClientError::Disconnected(reason)),
        }
    }

    fn ws_config(&self) -> WebSocketConfig {
        let max = self.config.max_message_bytes;
        WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(16 * 1024)
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
    }

    /// Sends one application message (an envelope from [`Client::send`](super::Client::send));
    /// one that could not be sealed or written is reported as [`Event::SendFailed`].
    async fn send_message(
        &self,
        ws: &mut Ws,
        session: &mut Option<Session>,
        event: String,
        json: &str,
    ) -> Result<(), DisconnectReason> {
        let (message, result) = match outbound(session, json) {
            Ok(frame) => match write(ws, frame).await {
                Ok(()) => return Ok(()),
                Err(reason) => (
                    format!("the connection broke while it was written: {reason}"),
                    Err(reason),
                ),
            },
            // Never a plaintext fallback; the connection goes on.
            Err(e) => (format!("it could not be sealed: {e}"), Ok(())),
        };
        let _ = self.events.send(Event::SendFailed { event, message }).await;
        result
    }

    /// A token: from the provider when there is one, else the configured one.
    async fn token(&self) -> Result<String, String> {
        match &self.config.token_provider {
            Some(provider) => provider.token().await,
            None => Ok(self.config.token.clone()),
        }
    }

    /// Opens the socket, authenticates and derives the session key.
    async fn establish(&self) -> Result<Live, DisconnectReason> {
        let attempt = async {
            let token = self
                .token()
                .await
                .map_err(|e| DisconnectReason::Network(format!("token provider: {e}")))?;
            let (ws, _) = tokio_tungstenite::connect_async_with_config(
                self.config.url.as_str(),
                Some(self.ws_config()),
                true,
            )
            .await
            .map_err(|e| DisconnectReason::Network(e.to_string()))?;
            let authenticate = AuthenticatePayload {
                kind: Some(self.config.token_type.clone()),
                token: Some(token),
                public_key: None,
                profile: None,
                recover: self.config.recover.then(|| self.shared.positions().clone()),
                room_keys: None,
                room_records: None,
            };
            match &self.config.encryption {
                Encryption::Hardened { pinned_server_keys } => {
                    let mut authenticate = authenticate;
                    if self.config.room_keys {
                        authenticate.room_keys = Some(room::EXTENSION_ID.to_owned());
                        if self.config.binary_room_records {
                            authenticate.room_records =
                                Some(room::binary::RECORDS_BINARY.to_owned());
                        }
                    }
                    let handshake = ClientHandshake::new(
                        HandshakeConfig {
                            profile: Profile::Hardened,
                            pinned_server_keys: self.config.pins(pinned_server_keys),
                            ..self.config.handshake.clone()
                        },
                        &mut rand::rng(),
                    );
                    sealed_login(ws, handshake, authenticate).await
                }
                Encryption::Compat => {
                    let handshake = ClientHandshake::new(
                        HandshakeConfig {
                            profile: Profile::Compat,
                            ..self.config.handshake.clone()
                        },
                        &mut rand::rng(),
                    );
                    plain_login(ws, Some(handshake), authenticate).await
                }
                Encryption::Off => plain_login(ws, None, authenticate).await,
            }
        };
        tokio::select! {
            () = self.stop.cancelled() => Err(DisconnectReason::ClientClosed),
            r = tokio::time::timeout(self.config.connect_timeout, attempt) => {
                r.unwrap_or_else(|_| Err(DisconnectReason::Network("connect timed out".into())))
            }
        }
    }

    /// Drives connections until the client is closed or a disconnect is final.
    pub(crate) async fn run(mut self, first: Live) {
        let mut live = first;
        // Consecutive failed attempts; a connection that lasted `min_uptime` starts it again.
        let mut attempt = 0u32;
        loop {
            let since = tokio::time::Instant::now();
            let mut reason = self.drive(live).await;
            let _ = self.info.send(None);
            if since.elapsed() >= self.config.reconnect.min_uptime {
                attempt = 0;
            }
            live = loop {
                let retry_in = if reason.is_retryable() {
                    attempt += 1;
                    self.config.reconnect.delay(attempt)
                } else {
                    None
                };
                tracing::debug!(%reason, ?retry_in, "client disconnected");
                let _ = self
                    .events
                    .send(Event::Disconnected {
                        reason: reason.clone(),
                        retry_in,
                    })
                    .await;
                let Some(delay) = retry_in else {
                    return;
                };
                tokio::select! {
                    () = self.stop.cancelled() => reason = DisconnectReason::ClientClosed,
                    () = tokio::time::sleep(delay) => match self.establish().await {
                        Ok(live) => break live,
                        Err(r) => reason = r,
                    },
                }
            };
            let _ = self
                .events
                .send(Event::Connected {
                    info: live.info.clone(),
                    reconnected: true,
                })
                .await;
        }
    }

    /// One established connection, until it ends.
    async fn drive(&mut self, live: Live) -> DisconnectReason {
        let Live {
            mut ws,
            mut session,
            info,
            session_left,
            mut room_keys,
            binary_room_records,
        } = live;
        // Only a token provider can renew anything: a fixed token keeps its expiry.
        let mut lifetime = Lifetime::new(session_left, self.config.token_provider.is_some());
        self.shared.remember_limit(&info);
        let _ = self.info.send(Some(info));
        let rooms: Vec<String> = self.shared.rooms().iter().cloned().collect();
        if let Err(e) = send_rooms(
            &mut ws,
            &mut session,
            event::JOIN,
            rooms.clone(),
            self.recover_for(&rooms),
        )
        .await
        {
            return e;
        }
        // What the re-join carried: a join queued before it (for an earlier connection) is
        // not sent a second time.
        let mut rejoined: std::collections::HashSet<String> = rooms.into_iter().collect();
        let stop = self.stop.clone();
        let start = tokio::time::Instant::now() + self.config.heartbeat_interval;
        let mut heartbeat = tokio::time::interval_at(start, self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error: Option<String> = None;
        let server_timeout = self.config.effective_server_timeout();
        let mut last_inbound = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                    return DisconnectReason::ClientClosed;
                }
                // A dead server (or path) that never resets the connection: every heartbeat
                // carries a ping, so a live server is never silent this long.
                () = tokio::time::sleep_until(last_inbound + server_timeout) => {
                    return DisconnectReason::Network(format!(
                        "no traffic from the server for {} ms",
                        server_timeout.as_millis()
                    ));
                }
                () = sleep_until_some(lifetime.next_refresh()) => {
                    lifetime.refreshing();
                    let sent = match self.token().await {
                        Ok(token) => {
                            let data = serde_json::to_string(&RefreshPayload { token: Some(token) })
                                .unwrap_or_default();
                            send_app(&mut ws, &mut session, &frame_json(event::REFRESH, &data)).await
                        }
                        Err(message) => {
                            lifetime.failed();
                            let _ = self.events.send(Event::RefreshFailed { message }).await;
                            Ok(())
                        }
                    };
                    if let Err(reason) = sent {
                        return reason;
                    }
                }
                msg = ws.next() => {
                    if let Some(Ok(_)) = &msg {
                        last_inbound = tokio::time::Instant::now();
                    }
                    match msg {
                        None => return DisconnectReason::Network("connection closed without a close frame".into()),
                        Some(Err(e)) => return DisconnectReason::Network(e.to_string()),
                        Some(Ok(WsMessage::Close(frame))) => {
                            let (code, reason) = frame
                                .map(|f| (u16::from(f.code), f.reason.to_string()))
                                .unwrap_or((1005, String::new()));
                            // Flush the automatic close reply.
                            let _ = tokio::time::timeout(CLOSE_GRACE, ws.flush()).await;
                            return established_close(code, &reason, last_error, session.as_ref());
                        }
                        Some(Ok(msg @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => {
                            let ev = match &msg {
                                WsMessage::Text(text) => self.on_text(text.as_str(), &mut session, &mut room_keys, &mut lifetime),
                                _ => self.on_binary(&msg.into_data(), &session, binary_room_records.then_some(&mut room_keys)),
                            };
                            if let Some(ev) = ev {
                                if let Event::ServerError { message } = &ev
                                    && message != UNPARSEABLE
                                {
                                    // An error the server sent (sealed, on an encrypted
                                    // session): it explains a 4003/4004 that follows.
                                    last_error = Some(message.clone());
                                }
                                if let Event::Refreshed { user_id, .. } = &ev
                                    && self.info.borrow().as_ref().is_some_and(|i| &i.user_id != user_id)
                                {
                                    // The session is this user's; a server naming another broke the protocol.
                                    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                                    return DisconnectReason::Protocol("refreshed names another user".into());
                                }
                                let fatal = matches!(ev, Event::DecryptFailed { .. })
                                    && session.as_ref().is_some_and(Session::open_failure_is_fatal);
                                if self.events.send(ev).await.is_err() {
                                    // The application dropped the event stream: nothing to report to.
                                    tracing::trace!("event dropped: no receiver");
                                }
                                if fatal {
                                    // A hardened session cannot skip a record: start over.
                                    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                                    return DisconnectReason::Crypto("undecryptable record".into());
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                    }
                }
                cmd = self.commands.recv() => {
                    let result = match cmd {
                        None => {
                            let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
                            return DisconnectReason::ClientClosed;
                        }
                        Some(Command::Send { event, frame }) => self.send_message(&mut ws, &mut session, event, &frame).await,
                        Some(Command::Join(rooms)) => {
                            // A command queued for an earlier connection may be stale: only
                            // rooms still asked for (a leave since took them back) and not
                            // carried by this connection's re-join.
                            let rooms: Vec<String> = self
                                .still(rooms, true)
                                .into_iter()
                                .filter(|r| !rejoined.remove(r))
                                .collect();
                            let recover = self.recover_for(&rooms);
                            send_rooms(&mut ws, &mut session, event::JOIN, rooms, recover).await
                        }
                        Some(Command::Leave(rooms)) => {
                            let rooms = self.still(rooms, false);
                            for r in &rooms {
                                rejoined.remove(r);
                            }
                            send_rooms(&mut ws, &mut session, event::LEAVE, rooms, None).await
                        }
                    };
                    if let Err(reason) = result {
                        return reason;
                    }
                }
                _ = heartbeat.tick() => {
                    // The heartbeat keeps the server's idle timer fresh; the ping makes a live
                    // server answer (its WebSocket layer sends the pong), which keeps ours fresh.
                    // Sealed on an encrypted session: a hardened server counts only records as
                    // activity, so nobody on the path can keep a dead session alive.
                    let frame = match outbound(&mut session, &frame_json(event::HEARTBEAT, "{}")) {
                        Ok(frame) => frame,
                        Err(e) => return DisconnectReason::Crypto(e.to_string()),
                    };
                    let sent = async {
                        ws.feed(WsMessage::text(frame)).await?;
                        ws.feed(WsMessage::Ping(Default::default())).await?;
                        ws.flush().await
                    };
                    if let Err(e) = sent.await {
                        return DisconnectReason::Network(e.to_string());
                    }
                }
            }
        }
    }
}

/// Maps the close of an established connection. On a hardened session a close code is not
/// authenticated ([`DisconnectReason::from_hardened_close`]): every frame such a client sends
/// is a sealed record, so a 4004 means the server could not open one of them (a frame damaged
/// or altered on its way), retried with a fresh handshake, and a 4003 is never final (the
/// server refuses credentials only before `connected`). `last_error` is then a sealed one
/// (plaintext frames are refused on an encrypted session), kept as the 4004's detail.
fn established_close(
    code: u16,
    reason: &str,
    last_error: Option<String>,
    session: Option<&Session>,
) -> DisconnectReason {
    if session.is_some_and(|s| s.profile() == Profile::Hardened) {
        return DisconnectReason::from_hardened_close(
            code,
            reason,
            last_error.as_deref(),
            HardenedStage::Established,
        );
    }
    DisconnectReason::from_close(code, reason, last_error)
}

/// Completes at `at`; never when there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The frame for an application envelope: sealed when the session is encrypted (never a
/// plaintext fallback).
fn outbound(session: &mut Option<Session>, json: &str) -> Result<String, CryptoError> {
    match session {
        Some(s) => s.seal_frame(json.as_bytes()),
        None => Ok(json.to_owned()),
    }
}

impl Task {
    /// The rooms of a queued join (`joined`) or leave that the application still wants joined
    /// (or left) now.
    fn still(&self, rooms: Vec<String>, joined: bool) -> Vec<String> {
        let wanted = self.shared.rooms();
        rooms
            .into_iter()
            .filter(|r| wanted.contains(r) == joined)
            .collect()
    }
}

/// Writes one frame; a failed write ends the connection.
async fn write(ws: &mut Ws, frame: String) -> Result<(), DisconnectReason> {
    ws.send(WsMessage::text(frame))
        .await
        .map_err(|e| DisconnectReason::Network(e.to_string()))
}

/// Sends a protocol envelope of the client's own (`join`, `leave`, `refresh`), sealed when
/// the session is encrypted.
async fn send_app(
    ws: &mut Ws,
    session: &mut Option<Session>,
    json: &str,
) -> Result<(), DisconnectReason> {
    match outbound(session, json) {
        Ok(frame) => write(ws, frame).await,
        Err(e) => {
            tracing::warn!(error = %e, len = json.len(), "seal failed; frame not sent");
            Ok(())
        }
    }
}

async fn send_rooms(
    ws: &mut Ws,
    session: &mut Option<Session>,
    event: &str,
    rooms: Vec<String>,
    recover: Option<RecoverRequest>,
) -> Result<(), DisconnectReason> {
    // Nothing to ask for (no rooms to re-join, a queued change that no longer applies).
    if rooms.is_empty() {
        return Ok(());
    }
    let mut payload = serde_json::to_value(RoomsPayload { rooms })
        .map_err(|e| DisconnectReason::Protocol(e.to_string()))?;
    if let (Some(recover), Some(fields)) = (recover, payload.as_object_mut()) {
        let recover =
            serde_json::to_value(recover).map_err(|e| DisconnectReason::Protocol(e.to_string()))?;
        fields.insert("recover".to_owned(), recover);
    }
    let data = payload.to_string();
    send_app(ws, session, &frame_json(event, &data)).await
}

#[cfg(test)]
mod tests;
