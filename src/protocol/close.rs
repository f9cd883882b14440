//! WebSocket close codes used by sealwire.

/// Why the server closed a connection. The numeric codes are part of the wire protocol.
///
/// 1001 and 4001..=4004 are IGNIS-compatible; 4005 and 4006 are sealwire additions that an
/// IGNIS client sees as ordinary application close codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: normal closure (the peer asked to close).
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1006: the connection dropped without a close frame (never sent on the wire; reported
    /// to hooks and clients).
    Abnormal,
    /// 1002: the peer broke the WebSocket framing rules (an unmasked client frame, reserved
    /// bits or opcodes, a fragmented or oversized control frame, a continuation without a
    /// start).
    ProtocolError,
    /// 1007: a text message was not valid UTF-8.
    InvalidPayload,
    /// 1009: a message exceeded the configured maximum size.
    MessageTooBig,
    /// 4001: no `authenticate` in time, or authentication did not finish in time.
    AuthTimeout,
    /// 4002: no message within the heartbeat timeout.
    HeartbeatTimeout,
    /// 4003: authentication failed or the authenticate hook errored.
    AuthFailed,
    /// 4004: encryption is required and no session could be established.
    EncryptionRequired,
    /// 4005: the client did not read its messages fast enough (outbound queue full).
    SlowConsumer,
    /// 4006: the session reached the expiry its credentials gave it, without a `refresh`.
    SessionExpired,
}

impl CloseCode {
    /// The numeric close code sent in the WebSocket close frame.
    #[must_use]
    pub const fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::Abnormal => 1006,
            Self::ProtocolError => 1002,
            Self::InvalidPayload => 1007,
            Self::MessageTooBig => 1009,
            Self::AuthTimeout => 4001,
            Self::HeartbeatTimeout => 4002,
            Self::AuthFailed => 4003,
            Self::EncryptionRequired => 4004,
            Self::SlowConsumer => 4005,
            Self::SessionExpired => 4006,
        }
    }

    /// The close reason text sent with the code.
    #[must_use]
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Normal => "Normal closure",
            Self::GoingAway => "Server shutting down",
            Self::Abnormal => "Connection lost",
            Self::ProtocolError => "Protocol error",
            Self::InvalidPayload => "Invalid UTF-8",
            Self::MessageTooBig => "Message too big",
            Self::AuthTimeout => "Authentication timeout",
            Self::HeartbeatTimeout => "Heartbeat timeout",
            Self::AuthFailed => "Authentication failed",
            Self::EncryptionRequired => "Encryption required",
            Self::SlowConsumer => "Slow consumer",
            Self::SessionExpired => "Session expired",
        }
    }

    /// Maps a numeric code back, for clients interpreting a close frame.
    #[must_use]
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1000 => Self::Normal,
            1001 => Self::GoingAway,
            1006 => Self::Abnormal,
            1002 => Self::ProtocolError,
            1007 => Self::InvalidPayload,
            1009 => Self::MessageTooBig,
            4001 => Self::AuthTimeout,
            4002 => Self::HeartbeatTimeout,
            4003 => Self::AuthFailed,
            4004 => Self::EncryptionRequired,
            4005 => Self::SlowConsumer,
            4006 => Self::SessionExpired,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in [
            CloseCode::Normal,
            CloseCode::GoingAway,
            CloseCode::ProtocolError,
            CloseCode::InvalidPayload,
            CloseCode::MessageTooBig,
            CloseCode::AuthTimeout,
            CloseCode::HeartbeatTimeout,
            CloseCode::AuthFailed,
            CloseCode::EncryptionRequired,
            CloseCode::SlowConsumer,
            CloseCode::SessionExpired,
        ] {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
        assert_eq!(CloseCode::AuthFailed.code(), 4003);
        assert_eq!(CloseCode::from_code(4999), None);
    }
}
