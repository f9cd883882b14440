//! What the connection task reports to the application.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::ConnectionInfo;
use crate::protocol::CloseCode;

/// One thing that happened on a client connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Authenticated (and, when encryption is on, the session key derived). Sent after the
    /// first connection and after every reconnect.
    Connected {
        /// The new connection's identity.
        info: ConnectionInfo,
        /// `false` for the first connection, `true` after a reconnect.
        reconnected: bool,
    },
    /// An application message (decrypted when it arrived encrypted).
    Message(Message),
    /// After connecting (and after a join) with [`ClientBuilder::recover`](super::ClientBuilder::recover)
    /// on: the missed messages have been delivered as [`Event::Message`]s, and this says where
    /// each stream stands. `recovered: Some(false)` means the gap could not be filled: refetch
    /// from the application's own store.
    Recovered {
        /// Every stream with history the client receives, with the server's verdict.
        streams: Vec<crate::protocol::StreamState>,
    },
    /// The server sent `{"event":"error","data":{"message":..}}`.
    ServerError {
        /// The server's error string.
        message: String,
    },
    /// An `encrypted` frame that did not decrypt (or whose plaintext was not an envelope).
    /// The frame is dropped, but never silently.
    DecryptFailed {
        /// Length of the raw frame, for diagnostics (the frame itself is not kept).
        frame_len: usize,
    },
    /// A plaintext application frame arrived on an encrypted session. The client refuses it
    /// (an attacker on the path could have injected it).
    PlaintextRejected {
        /// The event name the frame claimed.
        event: String,
    },
    /// The server accepted a `refresh`: the session now ends at `expires_at` (`None`: never).
    Refreshed {
        /// The user the session goes on as (always the one it connected as: a `refreshed`
        /// naming another user ends the connection with [`DisconnectReason::Protocol`]).
        user_id: String,
        /// The new expiry.
        expires_at: Option<SystemTime>,
    },
    /// A refresh could not be made: the token provider failed, or the server answered
    /// `Refresh failed`. The client tries again halfway to the expiry while at least a
    /// second of the session is left; if no refresh succeeds, the session ends at its
    /// current expiry (then 4006 and a reconnect with a fresh token).
    RefreshFailed {
        /// What went wrong.
        message: String,
    },
    /// A message [`Client::send`](super::Client::send) had queued could not be sent: the
    /// connection broke while it was written (it may or may not have reached the server, so
    /// it is not sent again), or it could not be sealed (it never left the client). Messages
    /// still in the queue go out on the next connection.
    SendFailed {
        /// The event name of the message.
        event: String,
        /// What went wrong.
        message: String,
    },
    /// The connection ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// When the next attempt starts; `None` means the client stopped for good and the
        /// event stream ends.
        retry_in: Option<Duration>,
    },
}

/// An application message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// Event name.
    pub event: String,
    /// Payload (`null` when absent).
    pub data: Value,
    /// Whether it arrived inside an `encrypted` frame.
    pub encrypted: bool,
    /// The frame exactly as it arrived on the wire, when
    /// [`ClientBuilder::capture_raw_frames`](super::ClientBuilder::capture_raw_frames) is on
    /// (text frames only: a binary room record has no text form to keep).
    pub raw: Option<String>,
    /// Its stream and offset, on a stream with history when
    /// [`ClientBuilder::recover`](super::ClientBuilder::recover) is on.
    pub position: Option<(String, u64)>,
}

/// The sealed errors by which a server refuses a hardened client's credentials, before its
/// 4003 (`docs/PROTOCOL.md` §10.9): the only ones that make that close final.
const AUTH_REFUSALS: [&str; 2] = ["Authentication failed", "Authentication error"];

/// How far a hardened connection got, for what a close means there
/// ([`DisconnectReason::from_hardened_close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HardenedStage {
    /// Before the key exchange: nothing from the server is authenticated yet.
    Hello,
    /// After it, before `connected`: the server may refuse the credentials, sealed.
    Login,
    /// An established session.
    Established,
}

/// Why a connection ended. The numeric close codes are those of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// 4001: authentication did not happen (or finish) in time. Retried.
    AuthTimeout,
    /// 4002: the server saw no message within its heartbeat timeout. Retried.
    HeartbeatTimeout,
    /// 4003: the credentials were refused (or the server's auth hook failed). Final. On a
    /// hardened connection only after the server's sealed refusal of the credentials before
    /// `connected`; any other 4003 there is
    /// [`DisconnectReason::Closed`], retried.
    AuthFailed {
        /// The server's error string, if it sent one.
        message: Option<String>,
    },
    /// 4004: encryption is required and no session could be established. Final. (A hardened
    /// client never gets this: a 4004 before its key exchange is
    /// [`DisconnectReason::Handshake`], after it [`DisconnectReason::Crypto`]: the server could
    /// not open a record of this client's.)
    EncryptionRequired,
    /// 4005: this client read too slowly and the server dropped it. Retried.
    SlowConsumer,
    /// 4006: the session reached its expiry without a refresh. Retried (with a fresh token
    /// from the token provider, when one is configured).
    SessionExpired,
    /// 1001: the server is shutting down. Retried.
    ServerShutdown,
    /// Another close code from the server. Retried.
    Closed {
        /// The close code.
        code: u16,
        /// The close reason text.
        reason: String,
    },
    /// The connection broke or could not be opened (no close frame). Retried.
    Network(String),
    /// The server broke the protocol (e.g. no handshake reply although encryption was asked
    /// for, or, inside a hardened session's record layer, a `connected` for another client
    /// id). Final when it happens during the handshake.
    Protocol(String),
    /// Hardened profile: the server's `hello` did not check out (malformed, a server identity
    /// that is not pinned, a bad signature or key confirmation), a plaintext `connected` came
    /// where the key exchange belongs (a downgrade), or the server closed with 4004 before the
    /// key exchange. The token was not sent. Nothing of this is authenticated (anyone on the
    /// path can cause it), so it is retried: an attacker cannot stop the client for good.
    Handshake(String),
    /// A hardened session received a record it could not open, or the server closed it with
    /// 4004 because it could not open one of this client's (sessions in that profile cannot
    /// skip records). Retried with a fresh handshake.
    Crypto(String),
    /// [`Client::close`](super::Client::close) was called. Final.
    ClientClosed,
}

impl DisconnectReason {
    /// Maps a close frame.
    #[must_use]
    pub fn from_close(code: u16, reason: &str, last_error: Option<String>) -> Self {
        match CloseCode::from_code(code) {
            Some(CloseCode::AuthTimeout) => Self::AuthTimeout,
            Some(CloseCode::HeartbeatTimeout) => Self::HeartbeatTimeout,
            Some(CloseCode::AuthFailed) => Self::AuthFailed {
                message: last_error,
            },
            Some(CloseCode::EncryptionRequired) => Self::EncryptionRequired,
            Some(CloseCode::SlowConsumer) => Self::SlowConsumer,
            Some(CloseCode::SessionExpired) => Self::SessionExpired,
            Some(CloseCode::GoingAway) => Self::ServerShutdown,
            _ => Self::Closed {
                code,
                reason: reason.to_owned(),
            },
        }
    }

    /// Maps a close frame on a hardened connection at `stage`, where a close code and its
    /// reason text are not authenticated (anyone on the path can send them); `sealed_error` is
    /// the last `error` that came inside the record layer. A 4003 is final
    /// ([`Self::AuthFailed`]) only as the server's sealed refusal of the credentials before
    /// `connected` ([`AUTH_REFUSALS`]); any other 4003 is [`Self::Closed`], retried. A 4004
    /// is never final: before the key exchange ([`Self::Handshake`]) nothing says it is the
    /// server's, and after it ([`Self::Crypto`]) it means the server could not open a record
    /// of this client's, damaged or altered on its way. No unauthenticated text goes into the
    /// reason.
    pub(crate) fn from_hardened_close(
        code: u16,
        reason: &str,
        sealed_error: Option<&str>,
        stage: HardenedStage,
    ) -> Self {
        match CloseCode::from_code(code) {
            Some(CloseCode::EncryptionRequired) if stage == HardenedStage::Hello => {
                Self::Handshake("4004 before the key exchange (unauthenticated)".into())
            }
            Some(CloseCode::EncryptionRequired) => Self::Crypto(match sealed_error {
                Some(detail) => format!("the server could not open a record (4004 {detail})"),
                None => "the server could not open a record (4004)".into(),
            }),
            Some(CloseCode::AuthFailed) => match sealed_error {
                Some(refusal)
                    if stage == HardenedStage::Login && AUTH_REFUSALS.contains(&refusal) =>
                {
                    Self::AuthFailed {
                        message: Some(refusal.to_owned()),
                    }
                }
                _ => Self::Closed {
                    code,
                    reason: "4003 not announced by a sealed refusal".into(),
                },
            },
            _ => Self::from_close(code, reason, None),
        }
    }

    /// The close code, when the server sent one.
    #[must_use]
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::AuthTimeout => Some(4001),
            Self::HeartbeatTimeout => Some(4002),
            Self::AuthFailed { .. } => Some(4003),
            Self::EncryptionRequired => Some(4004),
            Self::SlowConsumer => Some(4005),
            Self::SessionExpired => Some(4006),
            Self::ServerShutdown => Some(1001),
            Self::Closed { code, .. } => Some(*code),
            Self::Network(_)
            | Self::Protocol(_)
            | Self::Handshake(_)
            | Self::Crypto(_)
            | Self::ClientClosed => None,
        }
    }

    /// Whether reconnecting with the same credentials can help. 4003, 4004, protocol
    /// violations and [`DisconnectReason::ClientClosed`] are final; a hardened handshake that
    /// did not check out ([`DisconnectReason::Handshake`]) is not.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::AuthFailed { .. }
                | Self::EncryptionRequired
                | Self::Protocol(_)
                | Self::ClientClosed
        )
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AuthTimeout => f.write_str("4001 authentication timeout"),
            Self::HeartbeatTimeout => f.write_str("4002 heartbeat timeout"),
            Self::AuthFailed { message: Some(m) } => write!(f, "4003 {m}"),
            Self::AuthFailed { message: None } => f.write_str("4003 authentication failed"),
            Self::EncryptionRequired => f.write_str("4004 encryption required"),
            Self::SlowConsumer => f.write_str("4005 slow consumer"),
            Self::SessionExpired => f.write_str("4006 session expired"),
            Self::ServerShutdown => f.write_str("1001 server shutting down"),
            Self::Closed { code, reason } => write!(f, "{code} {reason}"),
            Self::Network(e) => write!(f, "network: {e}"),
            Self::Protocol(e) => write!(f, "protocol: {e}"),
            Self::Handshake(e) => write!(f, "handshake: {e}"),
            Self::Crypto(e) => write!(f, "crypto: {e}"),
            Self::ClientClosed => f.write_str("closed by the client"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_map_to_reasons() {
        assert_eq!(
            DisconnectReason::from_close(4003, "", Some("Authentication failed".into())),
            DisconnectReason::AuthFailed {
                message: Some("Authentication failed".into())
            }
        );
        assert_eq!(
            DisconnectReason::from_close(4005, "", None),
            DisconnectReason::SlowConsumer
        );
        assert_eq!(
            DisconnectReason::from_close(1001, "", None).code(),
            Some(1001)
        );
        assert!(!DisconnectReason::from_close(4004, "", None).is_retryable());
        assert!(DisconnectReason::from_close(4001, "", None).is_retryable());
        assert_eq!(
            DisconnectReason::from_close(4006, "", None),
            DisconnectReason::SessionExpired
        );
        assert!(DisconnectReason::SessionExpired.is_retryable());
        assert!(DisconnectReason::Network("reset".into()).is_retryable());
    }
}
