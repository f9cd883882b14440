//! Logging in on a freshly opened socket: plaintext `authenticate` (no encryption or the
//! compatibility profile) or the hardened key exchange followed by sealed credentials, up to
//! the `connected` that makes it a [`Live`] connection.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::ConnectionInfo;
use super::event::{DisconnectReason, HardenedStage};
use super::lifetime::session_left;
use crate::crypto::room::{self, RoomKeyring};
use crate::crypto::{ClientHandshake, CryptoError, Session};
use crate::protocol::{
    AuthenticatePayload, ConnectedPayload, EncryptedPayload, HelloPayload, Inbound, event,
    frame_json, parse_iso8601,
};

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Time given to the close handshake when the client closes.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// An established, authenticated connection.
pub(crate) struct Live {
    pub(super) ws: Ws,
    pub(super) session: Option<Session>,
    pub(super) info: ConnectionInfo,
    /// How long the session has to live, if it expires.
    pub(super) session_left: Option<Duration>,
    /// Room keys granted so far, when the client asked for them and the server uses them.
    pub(super) room_keys: Option<RoomKeyring>,
    /// Room records arrive as binary messages (asked for, and agreed in the sealed
    /// `connected`: §14.6).
    pub(super) binary_room_records: bool,
}

/// The next text frame during login, parsed; a close frame (mapped by `on_close`) or a
/// broken socket ends the login.
async fn next_inbound(
    ws: &mut Ws,
    on_close: impl FnOnce(u16, &str) -> DisconnectReason,
) -> Result<Inbound, DisconnectReason> {
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
                return Err(on_close(code, &reason));
            }
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(_)) => continue,
        };
        if let Ok(msg) = Inbound::parse(text.as_str()) {
            return Ok(msg);
        }
    }
}

/// Ends a login that must not go on: closes the socket and reports `reason`.
async fn abort(ws: &mut Ws, reason: DisconnectReason) -> DisconnectReason {
    let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(None)).await;
    reason
}

/// A compatibility `connected` whose handshake fields do not work: a server that does not
/// speak the profile (final).
fn handshake_refused(e: CryptoError) -> DisconnectReason {
    DisconnectReason::Protocol(match e {
        CryptoError::UntrustedServer => "server identity not trusted".into(),
        _ => "encryption handshake failed".into(),
    })
}

/// A hardened `hello` that does not check out. Unauthenticated, so retried
/// ([`DisconnectReason::Handshake`]).
fn hello_refused(e: CryptoError) -> DisconnectReason {
    DisconnectReason::Handshake(match e {
        CryptoError::UntrustedServer => "server identity not trusted".into(),
        _ => "encryption handshake failed".into(),
    })
}

fn connection_info(
    connected: ConnectedPayload,
    encrypted: bool,
) -> (ConnectionInfo, Option<Duration>) {
    let expires_at = connected.expires_at.as_deref().and_then(parse_iso8601);
    let session_left = session_left(connected.time.as_str(), connected.expires_at.as_deref());
    let max_message_bytes = connected
        .extra
        .get("maxMessageBytes")
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n >= 64);
    let info = ConnectionInfo {
        client_id: connected.id,
        user_id: connected.user_id,
        encrypted,
        expires_at,
        max_message_bytes,
    };
    (info, session_left)
}

/// Compatibility profile or no encryption: plaintext `authenticate` (with the public key when
/// encrypting), plaintext `connected`.
pub(super) async fn plain_login(
    mut ws: Ws,
    handshake: Option<ClientHandshake>,
    mut authenticate: AuthenticatePayload,
) -> Result<Live, DisconnectReason> {
    authenticate.public_key = handshake.as_ref().map(ClientHandshake::public_key_base64);
    let data = serde_json::to_string(&authenticate)
        .map_err(|e| DisconnectReason::Protocol(e.to_string()))?;
    ws.send(WsMessage::text(frame_json(event::AUTHENTICATE, &data)))
        .await
        .map_err(|e| DisconnectReason::Network(e.to_string()))?;
    let mut last_error = None;
    loop {
        let msg = next_inbound(&mut ws, |code, reason| {
            DisconnectReason::from_close(code, reason, last_error.clone())
        })
        .await?;
        match msg.event.as_deref() {
            Some(event::ERROR) => last_error = error_message(msg.data.as_ref()),
            Some(event::CONNECTED) => {
                let connected: ConnectedPayload =
                    serde_json::from_value(msg.data.unwrap_or(Value::Null))
                        .map_err(|_| DisconnectReason::Protocol("malformed connected".into()))?;
                let session = match handshake {
                    None => None,
                    Some(hs) => match hs.finish_connected(&connected) {
                        Ok(finished) => Some(finished.session),
                        Err(e) => return Err(abort(&mut ws, handshake_refused(e)).await),
                    },
                };
                let (info, session_left) = connection_info(connected, session.is_some());
                return Ok(Live {
                    ws,
                    session,
                    info,
                    session_left,
                    room_keys: None,
                    binary_room_records: false,
                });
            }
            _ => {}
        }
    }
}

/// Hardened profile: the key exchange first, the credentials sealed after the server has
/// proven (by its confirmation, and its signature when keys are pinned) that it holds the
/// session keys, then a sealed `connected`. Only what arrives inside the record layer can
/// make a failure final (a sealed refusal of the credentials, a sealed `connected` that
/// breaks the protocol); everything before it can be forged on the path, and is retried
/// ([`DisconnectReason::Handshake`], [`DisconnectReason::from_hardened_close`]).
pub(super) async fn sealed_login(
    mut ws: Ws,
    handshake: ClientHandshake,
    authenticate: AuthenticatePayload,
) -> Result<Live, DisconnectReason> {
    ws.send(WsMessage::text(handshake.hello_json()))
        .await
        .map_err(|e| DisconnectReason::Network(e.to_string()))?;
    let hello = loop {
        let msg = next_inbound(&mut ws, |code, reason| {
            DisconnectReason::from_hardened_close(code, reason, None, HardenedStage::Hello)
        })
        .await?;
        match msg.event.as_deref() {
            Some(event::ERROR) => {
                // Plaintext, so nothing to go by: it never explains a close.
                tracing::debug!(message = ?error_message(msg.data.as_ref()), "plaintext error before the hello");
            }
            Some(event::HELLO) => {
                match serde_json::from_value::<HelloPayload>(msg.data.unwrap_or(Value::Null)) {
                    Ok(hello) if !hello.id.is_empty() => break hello,
                    _ => {
                        let reason = DisconnectReason::Handshake("malformed hello".into());
                        return Err(abort(&mut ws, reason).await);
                    }
                }
            }
            Some(event::CONNECTED) => {
                // A plaintext `connected` would skip the key exchange: a downgrade.
                let reason = DisconnectReason::Handshake("plaintext connected refused".into());
                return Err(abort(&mut ws, reason).await);
            }
            _ => {}
        }
    };
    let finished = match handshake.finish_hello(&hello) {
        Ok(f) => f,
        Err(e) => return Err(abort(&mut ws, hello_refused(e)).await),
    };
    let mut session = finished.session;
    let Some(confirmation) = finished.confirmation else {
        let reason = DisconnectReason::Handshake("no key confirmation".into());
        return Err(abort(&mut ws, reason).await);
    };
    let data = serde_json::to_string(&authenticate)
        .map_err(|e| DisconnectReason::Protocol(e.to_string()))?;
    let sealed = session
        .seal_frame(frame_json(event::AUTHENTICATE, &data).as_bytes())
        .map_err(|_| DisconnectReason::Crypto("could not seal the credentials".into()))?;
    let sent = async {
        ws.feed(WsMessage::text(confirmation)).await?;
        ws.feed(WsMessage::text(sealed)).await?;
        ws.flush().await
    };
    sent.await
        .map_err(|e| DisconnectReason::Network(e.to_string()))?;
    // The last sealed error: it may explain a 4004, or refuse the credentials (only that
    // makes a 4003 final).
    let mut sealed_error: Option<String> = None;
    loop {
        let msg = next_inbound(&mut ws, |code, reason| {
            DisconnectReason::from_hardened_close(
                code,
                reason,
                sealed_error.as_deref(),
                HardenedStage::Login,
            )
        })
        .await?;
        if msg.event.as_deref() != Some(event::ENCRYPTED) {
            // Nothing but sealed records may follow the key exchange.
            if msg.event.as_deref() == Some(event::CONNECTED) {
                let reason = DisconnectReason::Handshake("plaintext connected refused".into());
                return Err(abort(&mut ws, reason).await);
            }
            continue;
        }
        let inner = msg
            .data
            .and_then(|d| serde_json::from_value::<EncryptedPayload>(d).ok())
            .and_then(|p| session.open(&p).ok().map(zeroize::Zeroizing::new))
            .and_then(|pt| serde_json::from_slice::<Inbound>(&pt).ok());
        let Some(inner) = inner else {
            let reason = DisconnectReason::Crypto("undecryptable record during login".into());
            return Err(abort(&mut ws, reason).await);
        };
        match inner.event.as_deref() {
            Some(event::ERROR) => sealed_error = error_message(inner.data.as_ref()),
            Some(event::CONNECTED) => {
                let connected: ConnectedPayload =
                    serde_json::from_value(inner.data.unwrap_or(Value::Null))
                        .map_err(|_| DisconnectReason::Protocol("malformed connected".into()))?;
                if connected.id != hello.id {
                    let reason =
                        DisconnectReason::Protocol("connected for another client id".into());
                    return Err(abort(&mut ws, reason).await);
                }
                // Room keys only when asked for and granted, both inside the record layer;
                // agreement to what was not asked for (or to another extension) is refused.
                let Ok(room_keys) = agreed(
                    authenticate.room_keys.is_some(),
                    connected.extra.get("roomKeys"),
                    room::EXTENSION_ID,
                ) else {
                    let reason = DisconnectReason::Protocol(
                        "connected agrees to room keys that were not asked for".into(),
                    );
                    return Err(abort(&mut ws, reason).await);
                };
                let room_keys = room_keys.then(RoomKeyring::new);
                let Ok(binary_room_records) = agreed(
                    authenticate.room_records.is_some() && room_keys.is_some(),
                    connected.extra.get("roomRecords"),
                    room::binary::RECORDS_BINARY,
                ) else {
                    let reason = DisconnectReason::Protocol(
                        "connected agrees to room records that were not asked for".into(),
                    );
                    return Err(abort(&mut ws, reason).await);
                };
                let (info, session_left) = connection_info(connected, true);
                return Ok(Live {
                    ws,
                    session: Some(session),
                    info,
                    session_left,
                    room_keys,
                    binary_room_records,
                });
            }
            // s2c record 0 is `connected`, or the error before a 4003/4004 (§10.9).
            other => {
                let reason = DisconnectReason::Protocol(format!(
                    "expected connected, got {}",
                    other.unwrap_or("a record without an event")
                ));
                return Err(abort(&mut ws, reason).await);
            }
        }
    }
}

/// Whether the sealed `connected` agreed to an extension the client may have asked for (room
/// keys, §14; binary room records, §14.6) by answering `value`; `Err` for an answer it must
/// refuse: agreement to what was not asked for, or to another value.
fn agreed(asked: bool, answer: Option<&Value>, value: &str) -> Result<bool, ()> {
    match answer {
        None | Some(Value::Null) => Ok(false),
        Some(v) if asked && v.as_str() == Some(value) => Ok(true),
        Some(_) => Err(()),
    }
}

/// The `message` of an `error` event's data.
pub(super) fn error_message(data: Option<&Value>) -> Option<String> {
    data.and_then(|d| d.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::agreed;

    fn agreed_binary_records(asked: bool, answer: Option<&Value>) -> Result<bool, ()> {
        agreed(asked, answer, crate::crypto::room::binary::RECORDS_BINARY)
    }
    use serde_json::{Value, json};

    #[test]
    fn binary_records_are_agreed_only_as_asked_and_anything_else_is_refused() {
        let binary = json!("binary");
        assert_eq!(agreed_binary_records(true, Some(&binary)), Ok(true));
        assert_eq!(agreed_binary_records(true, None), Ok(false));
        assert_eq!(agreed_binary_records(false, None), Ok(false));
        assert_eq!(agreed_binary_records(false, Some(&Value::Null)), Ok(false));
        // Not asked for (or without room keys), or another form: refused.
        assert_eq!(agreed_binary_records(false, Some(&binary)), Err(()));
        for other in [json!("cbor"), json!(true), json!(["binary"])] {
            assert_eq!(
                agreed_binary_records(true, Some(&other)),
                Err(()),
                "{other}"
            );
        }
    }
}
