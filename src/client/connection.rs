//! The connection task: owns the WebSocket and the crypto session, reconnects.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::builder::{ClientConfig, Encryption};
use super::event::{DisconnectReason, Event, Message};
use super::{ClientError, Command, ConnectionInfo, SharedState};
use crate::crypto::{ClientHandshake, CryptoError, HandshakeConfig, Profile, Session};
use crate::protocol::{
    AuthenticatePayload, ConnectedPayload, EncryptedPayload, Inbound, RoomsPayload, event,
    frame_json,
};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Time given to the close handshake when the client closes.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// An established, authenticated connection.
pub(crate) struct Live {
    ws: Ws,
    session: Option<Session>,
    info: ConnectionInfo,
}

pub(crate) struct Task {
    config: ClientConfig,
    shared: Arc<SharedState>,
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

    /// Opens the socket, authenticates and derives the session key.
    async fn establish(&self) -> Result<Live, DisconnectReason> {
        let attempt = async {
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
                self.config.url.as_str(),
                Some(self.ws_config()),
                true,
            )
            .await
            .map_err(|e| DisconnectReason::Network(e.to_string()))?;
            let handshake = match &self.config.encryption {
                Encryption::Off => None,
                Encryption::Compat => Some(ClientHandshake::new(
                    HandshakeConfig {
                        profile: Profile::Compat,
                        ..self.config.handshake.clone()
                    },
                    &mut rand::rng(),
                )),
                Encryption::Hardened { pinned_server_keys } => Some(ClientHandshake::new(
                    HandshakeConfig {
                        profile: Profile::HardenedV1,
                        pinned_server_keys: pinned_server_keys.clone(),
                        ..self.config.handshake.clone()
                    },
                    &mut rand::rng(),
                )),
            };
            let payload = AuthenticatePayload {
                kind: Some(self.config.token_type.clone()),
                token: Some(self.config.token.clone()),
                public_key: handshake.as_ref().map(ClientHandshake::public_key_base64),
                profile: handshake
                    .as_ref()
                    .and_then(ClientHandshake::profile_id)
                    .map(str::to_owned),
            };
            let data = serde_json::to_string(&payload)
                .map_err(|e| DisconnectReason::Protocol(e.to_string()))?;
            ws.send(WsMessage::text(frame_json(event::AUTHENTICATE, &data)))
                .await
                .map_err(|e| DisconnectReason::Network(e.to_string()))?;
            let mut last_error = None;
            loop {
                let text = match ws.next().await {
                    None => {
                        return Err(DisconnectReason::Network(
                            "connection ended during authentication".into(),
                        ));
                    }
                    Some(Err(e)) => return Err(DisconnectReason::Network(e.to_string())),
                    Some(Ok(WsMessage::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        return Err(DisconnectReason::from_close(code, &reason, last_error));
                    }
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(_)) => continue,
                };
                let Ok(msg) = Inbound::parse(text.as_str()) else {
                    continue;
                };
                match msg.event.as_deref() {
                    Some(event::ERROR) => last_error = error_message(msg.data.as_ref()),
                    Some(event::CONNECTED) => {
                        let connected: ConnectedPayload = serde_json::from_value(
                            msg.data.unwrap_or(Value::Null),
                        )
                        .map_err(|_| DisconnectReason::Protocol("malformed connected".into()))?;
                        let session = match handshake {
                            None => None,
                            Some(hs) => {
                                let finished = match hs.finish_connected(&connected) {
                                    Ok(f) => f,
                                    Err(e) => {
                                        let _ = ws.close(None).await;
                                        return Err(DisconnectReason::Protocol(match e {
                                            CryptoError::UntrustedServer => {
                                                "server identity not trusted".into()
                                            }
                                            _ => "encryption handshake failed".into(),
                                        }));
                                    }
                                };
                                if let Some(confirmation) = finished.confirmation {
                                    ws.send(WsMessage::text(confirmation))
                                        .await
                                        .map_err(|e| DisconnectReason::Network(e.to_string()))?;
                                }
                                Some(finished.session)
                            }
                        };
                        let info = ConnectionInfo {
                            client_id: connected.id,
                            user_id: connected.user_id,
                            encrypted: session.is_some(),
                        };
                        return Ok(Live { ws, session, info });
                    }
                    _ => {}
                }
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
        loop {
            let mut reason = self.drive(live).await;
            let _ = self.info.send(None);
            let mut attempt = 0u32;
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
        } = live;
        let _ = self.info.send(Some(info));
        let rooms: Vec<String> = self.shared.rooms().iter().cloned().collect();
        if !rooms.is_empty()
            && let Err(e) = send_rooms(&mut ws, &mut session, event::JOIN, rooms).await
        {
            return e;
        }
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
                            return DisconnectReason::from_close(code, &reason, last_error);
                        }
                        Some(Ok(WsMessage::Text(text))) => {
                            if let Some(ev) = self.on_text(text.as_str(), &mut session) {
                                if let Event::ServerError { message } = &ev {
                                    last_error = Some(message.clone());
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
                        Some(Command::Send(json)) => send_app(&mut ws, &mut session, &json).await,
                        Some(Command::Join(rooms)) => send_rooms(&mut ws, &mut session, event::JOIN, rooms).await,
                        Some(Command::Leave(rooms)) => send_rooms(&mut ws, &mut session, event::LEAVE, rooms).await,
                    };
                    if let Err(reason) = result {
                        return reason;
                    }
                }
                _ = heartbeat.tick() => {
                    // The heartbeat keeps the server's idle timer fresh; the ping makes a live
                    // server answer (its WebSocket layer sends the pong), which keeps ours fresh.
                    let frame = frame_json(event::HEARTBEAT, "{}");
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

    /// Turns an inbound text frame into an event; `None` for frames that carry nothing for the
    /// application (no event name).
    fn on_text(&self, text: &str, session: &mut Option<Session>) -> Option<Event> {
        let raw = self.config.capture_raw_frames.then(|| text.to_owned());
        let Ok(msg) = Inbound::parse(text) else {
            return Some(Event::ServerError {
                message: "unparseable frame from the server".into(),
            });
        };
        let name = msg.event?;
        match (name.as_str(), session) {
            (event::ENCRYPTED, Some(session)) => {
                let inner = msg
                    .data
                    .and_then(|d| serde_json::from_value::<EncryptedPayload>(d).ok())
                    .and_then(|p| session.open(&p).ok())
                    .and_then(|pt| serde_json::from_slice::<Inbound>(&pt).ok())
                    .and_then(|i| i.event.map(|e| (e, i.data)));
                match inner {
                    Some((event, data)) => Some(app_event(event, data, true, raw)),
                    None => Some(Event::DecryptFailed {
                        frame_len: text.len(),
                    }),
                }
            }
            (event::ENCRYPTED, None) => Some(Event::DecryptFailed {
                frame_len: text.len(),
            }),
            (_, Some(_)) => Some(Event::PlaintextRejected { event: name }),
            (_, None) => Some(app_event(name, msg.data, false, raw)),
        }
    }
}

fn error_message(data: Option<&Value>) -> Option<String> {
    data.and_then(|d| d.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn app_event(event: String, data: Option<Value>, encrypted: bool, raw: Option<String>) -> Event {
    if event == event::ERROR {
        let message = error_message(data.as_ref()).unwrap_or_default();
        return Event::ServerError { message };
    }
    Event::Message(Message {
        event,
        data: data.unwrap_or(Value::Null),
        encrypted,
        raw,
    })
}

/// Sends an application envelope, sealed when the session is encrypted.
async fn send_app(
    ws: &mut Ws,
    session: &mut Option<Session>,
    json: &str,
) -> Result<(), DisconnectReason> {
    let frame = match session {
        Some(s) => match s.seal_frame(json.as_bytes()) {
            Ok(f) => f,
            Err(e) => {
                // Never fall back to plaintext.
                tracing::warn!(error = %e, len = json.len(), "seal failed; message not sent");
                return Ok(());
            }
        },
        None => json.to_owned(),
    };
    ws.send(WsMessage::text(frame))
        .await
        .map_err(|e| DisconnectReason::Network(e.to_string()))
}

async fn send_rooms(
    ws: &mut Ws,
    session: &mut Option<Session>,
    event: &str,
    rooms: Vec<String>,
) -> Result<(), DisconnectReason> {
    let data = serde_json::to_string(&RoomsPayload { rooms })
        .map_err(|e| DisconnectReason::Protocol(e.to_string()))?;
    send_app(ws, session, &frame_json(event, &data)).await
}
