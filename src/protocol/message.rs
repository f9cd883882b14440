//! The client <-> server JSON envelope and the payloads of the system events.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Names of the system events (IGNIS-compatible).
pub mod event {
    /// C->S: credentials (and the client's public key for the handshake).
    pub const AUTHENTICATE: &str = "authenticate";
    /// S->C: authentication succeeded; carries the server's handshake reply.
    pub const CONNECTED: &str = "connected";
    /// Both: the connection is closing.
    pub const DISCONNECT: &str = "disconnect";
    /// C->S: join rooms.
    pub const JOIN: &str = "join";
    /// C->S: leave rooms.
    pub const LEAVE: &str = "leave";
    /// S->C: an error notification.
    pub const ERROR: &str = "error";
    /// C->S: keep-alive; only refreshes activity.
    pub const HEARTBEAT: &str = "heartbeat";
    /// Both: an encrypted message whose plaintext is another envelope.
    pub const ENCRYPTED: &str = "encrypted";
    /// C->S, hardened profile, inside the first `encrypted` record: the client's key
    /// confirmation `{mac}`.
    pub const CONFIRM: &str = "confirm";
    /// Both, hardened profile: the key exchange that comes before any credential. C->S
    /// `{profile, publicKey}`, S->C [`super::HelloPayload`].
    pub const HELLO: &str = "hello";
    /// C->S: a new token for the same user, before the session expires (`{token}`).
    pub const REFRESH: &str = "refresh";
    /// S->C: the refresh was accepted (`{userId, time, expiresAt?}`).
    pub const REFRESHED: &str = "refreshed";
    /// S->C, to a client that asked for positions: where it stands in each stream with
    /// history, after the replay of what it missed ([`crate::protocol::RecoveredPayload`]).
    pub const RECOVERED: &str = "recovered";
    /// S->C, room keys, inside the member's own record layer: a room epoch's secret
    /// `{room, epoch, key}` (`docs/PROTOCOL.md` §14).
    pub const ROOM_KEY: &str = "room-key";
    /// S->C, room keys: a publication sealed once under a room epoch's key
    /// `{room, epoch, seq, ct}`, outside any per-client record layer.
    pub const ROOM_ENCRYPTED: &str = "room-encrypted";

    /// Events an application may not send itself: they would impersonate the protocol. An
    /// `error` from the application would read as the server's own (a `Refresh failed` one
    /// fails the client's pending refresh), and the SDKs take `hello` for the handshake's.
    pub const RESERVED_OUTBOUND: [&str; 9] = [
        AUTHENTICATE,
        CONNECTED,
        ENCRYPTED,
        ERROR,
        HELLO,
        REFRESHED,
        RECOVERED,
        ROOM_KEY,
        ROOM_ENCRYPTED,
    ];

    /// Client commands the server acts on itself: a client sends them through dedicated
    /// calls, never as application events ([`EventName::check_client_outbound`]).
    ///
    /// [`EventName::check_client_outbound`]: crate::protocol::EventName::check_client_outbound
    pub const CLIENT_COMMANDS: [&str; 4] = [JOIN, LEAVE, HEARTBEAT, DISCONNECT];
}

/// The exact error strings of the protocol (IGNIS-compatible where IGNIS has one).
pub mod error_message {
    /// Not JSON, or not a JSON object.
    pub const INVALID_FORMAT: &str = "Invalid message format";
    /// `authenticate` on an authenticated connection.
    pub const ALREADY_AUTHENTICATED: &str = "Already authenticated";
    /// Any event but `authenticate`/`heartbeat` before authentication.
    pub const NOT_AUTHENTICATED: &str = "Not authenticated";
    /// The authenticate hook rejected the credentials (close 4003 follows).
    pub const AUTH_FAILED: &str = "Authentication failed";
    /// The authenticate hook failed (close 4003 follows).
    pub const AUTH_ERROR: &str = "Authentication error";
    /// No session could be established while encryption is required (close 4004 follows).
    pub const HANDSHAKE_FAILED: &str = "Encryption handshake failed";
    /// An `encrypted` frame that did not decrypt, or whose plaintext was not an envelope.
    pub const DECRYPT_FAILED: &str = "Invalid encrypted message";
    /// A plaintext application event from a hardened-profile client, or from any encrypted
    /// client when encrypted inbound events are required.
    pub const ENCRYPTION_REQUIRED: &str = "Encrypted message required";
    /// `join`/`leave` payload that is not `{rooms:[string..]}`.
    pub const INVALID_ROOMS: &str = "Invalid rooms";
    /// `refresh` rejected, failed, or naming another user; the session keeps its expiry.
    pub const REFRESH_FAILED: &str = "Refresh failed";
    /// `join`/`leave` listing more rooms than a client may be in (`max_rooms_per_client`).
    pub const TOO_MANY_ROOMS: &str = "Too many rooms";
}

/// An inbound frame as parsed from the wire: `{event, data?, id?}`.
///
/// `event` is optional here so that a frame without one can be told apart from invalid JSON:
/// the protocol drops the former silently and answers the latter with an error.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Inbound {
    /// Event name.
    #[serde(default)]
    pub event: Option<String>,
    /// Payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Application-defined message id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// S->C, to a client that asked for positions: the message's stream (§12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Its offset in the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The stream's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

impl Inbound {
    /// Parses a text frame.
    ///
    /// # Errors
    /// Returns an error when the text is not a JSON object of the envelope's shape.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// `authenticate` payload: `{type?, token, publicKey?, profile?}`. Its `Debug` leaves the
/// token out.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatePayload {
    /// Token type, e.g. `Bearer` (informational).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The credential handed to the authenticate hook.
    #[serde(default)]
    pub token: Option<String>,
    /// Base64 of the client's uncompressed SEC1 P-256 public key (65 bytes, 0x04 prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Crypto profile the client asks for; absent means the IGNIS compatibility profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Positions to recover from, by stream; present (even empty) asks for positions (§12).
    /// A value that is not an object of positions counts as `{}`: it never makes the payload
    /// (and so the credentials) unreadable.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_recover"
    )]
    pub recover: Option<super::RecoverRequest>,
    /// Hardened profile, sealed `authenticate` only: `"sealwire-room-v1"` asks for room keys
    /// (§14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_keys: Option<String>,
    /// Hardened profile, sealed `authenticate` only, with `room_keys`: `"binary"` asks for room
    /// records as binary messages (§14.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_records: Option<String>,
}

/// Server `hello` payload (hardened profile): the client id and every handshake field, sent
/// before the client's credentials.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HelloPayload {
    /// The client id the server assigned (bound into the transcript).
    pub id: String,
    /// Crypto profile in force.
    pub profile: String,
    /// Base64 of the server's ephemeral uncompressed P-256 public key.
    pub server_public_key: String,
    /// Base64 of the 32-byte HKDF salt.
    pub salt: String,
    /// Profile-specific fields (`rekeyAfter`, `confirm`, `identityKey`, `signature`).
    #[serde(default, flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// `refresh` payload: `{token}`. Its `Debug` leaves the token out.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RefreshPayload {
    /// The new credential.
    #[serde(default)]
    pub token: Option<String>,
}

/// A present `recover`, as positions ([`super::history::recover_request_of`]).
fn lenient_recover<'de, D>(d: D) -> Result<Option<super::RecoverRequest>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = Value::deserialize(d)?;
    Ok(Some(super::history::recover_request_of(&raw)))
}

/// How a bearer token shows in `Debug`: whether there is one, never what it is (an
/// application that logs a payload or a hook's request with `{:?}` must not log credentials).
fn redacted(token: Option<&String>) -> Option<&'static str> {
    token.map(|_| "<redacted>")
}

impl std::fmt::Debug for AuthenticatePayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatePayload")
            .field("kind", &self.kind)
            .field("token", &redacted(self.token.as_ref()))
            .field("public_key", &self.public_key)
            .field("profile", &self.profile)
            .field("recover", &self.recover)
            .field("room_keys", &self.room_keys)
            .field("room_records", &self.room_records)
            .finish()
    }
}

impl std::fmt::Debug for RefreshPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshPayload")
            .field("token", &redacted(self.token.as_ref()))
            .finish()
    }
}

/// `refreshed` payload: `{userId, time, expiresAt?}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefreshedPayload {
    /// The (unchanged) user id.
    pub user_id: String,
    /// Server time, ISO-8601 UTC.
    pub time: String,
    /// The session's new expiry, ISO-8601 UTC; absent when it no longer expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `connected` payload: `{id, userId, time, expiresAt?, serverPublicKey?, salt?, ...}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedPayload {
    /// The client id the server assigned.
    pub id: String,
    /// The user id the authenticate hook returned.
    pub user_id: String,
    /// Server time, ISO-8601 UTC (`...Z`).
    pub time: String,
    /// When the session ends (close 4006) unless refreshed, ISO-8601 UTC; absent when the
    /// credentials gave it no lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Base64 of the server's ephemeral uncompressed P-256 public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_public_key: Option<String>,
    /// Base64 of the 32-byte HKDF salt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Crypto profile in force (absent for the compatibility profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Profile-specific handshake fields (key confirmation, server signature, ...).
    #[serde(default, flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// `encrypted` payload: `{iv, ct}` (base64), plus the sequence number in the hardened profile.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct EncryptedPayload {
    /// Base64 of the 12-byte nonce.
    pub iv: String,
    /// Base64 of ciphertext || 16-byte tag.
    pub ct: String,
    /// Sequence number (hardened profile only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// `join` / `leave` payload.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct RoomsPayload {
    /// Room names.
    pub rooms: Vec<String>,
}

/// `error` payload.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct ErrorPayload {
    /// One of [`error_message`].
    pub message: String,
}

/// Serializes `{"event":<event>,"data":<data>}` where `data` is already JSON text.
///
/// This is the one place an outbound envelope is built: the same bytes are the plaintext frame
/// for plaintext clients and the AEAD plaintext for encrypted clients.
#[must_use]
pub fn frame_json(event: &str, data_json: &str) -> String {
    let mut out = String::with_capacity(event.len() + data_json.len() + 24);
    out.push_str("{\"event\":");
    // Serializing a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(event).unwrap_or_else(|_| "\"\"".to_owned()));
    out.push_str(",\"data\":");
    out.push_str(data_json);
    out.push('}');
    out
}

/// Current time as ISO-8601 / RFC 3339 in UTC with a `Z` offset and millisecond precision.
#[must_use]
pub fn now_iso8601() -> String {
    iso8601_millis(time::OffsetDateTime::now_utc())
}

/// `t` as ISO-8601 / RFC 3339 in UTC with a `Z` offset and millisecond precision. A time
/// outside the years 0..=9999 (a token's `exp` can say anything) is clamped to the nearest
/// end of that range.
#[must_use]
pub fn iso8601(t: std::time::SystemTime) -> String {
    use time::{OffsetDateTime, PrimitiveDateTime};
    let at = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => time::Duration::try_from(after)
            .ok()
            .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_add(d))
            .unwrap_or(PrimitiveDateTime::MAX.assume_utc()),
        Err(before) => time::Duration::try_from(before.duration())
            .ok()
            .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_sub(d))
            .unwrap_or(PrimitiveDateTime::MIN.assume_utc()),
    };
    iso8601_millis(at)
}

/// Parses an RFC 3339 timestamp (as in `time` and `expiresAt`).
#[must_use]
pub fn parse_iso8601(s: &str) -> Option<std::time::SystemTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(std::time::SystemTime::from)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `t` (taken as UTC). Written digit by digit: this runs for
/// every `connected` frame, and `format!` with seven padded fields costs several times more.
fn iso8601_millis(t: time::OffsetDateTime) -> String {
    fn push(out: &mut String, value: u32, width: u32) {
        for i in (0..width).rev() {
            out.push(char::from_digit((value / 10u32.pow(i)) % 10, 10).unwrap_or('0'));
        }
    }
    let mut out = String::with_capacity(24);
    // Years outside 0..=9999 are not representable in this format; clamp rather than
    // produce a malformed timestamp.
    push(&mut out, t.year().clamp(0, 9999).unsigned_abs(), 4);
    out.push('-');
    push(&mut out, u32::from(u8::from(t.month())), 2);
    out.push('-');
    push(&mut out, u32::from(t.day()), 2);
    out.push('T');
    push(&mut out, u32::from(t.hour()), 2);
    out.push(':');
    push(&mut out, u32::from(t.minute()), 2);
    out.push(':');
    push(&mut out, u32::from(t.second()), 2);
    out.push('.');
    push(&mut out, u32::from(t.millisecond()), 3);
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_to_the_millisecond() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        let s = iso8601(t);
        assert!(s.ends_with(".123Z"), "{s}");
        assert_eq!(parse_iso8601(&s), Some(t));
        assert_eq!(parse_iso8601("yesterday"), None);
    }

    #[test]
    fn a_malformed_recover_counts_as_empty_and_keeps_the_token() {
        for recover in ["5", "[]", "\"x\"", "null"] {
            let text = format!(r#"{{"token":"t","recover":{recover}}}"#);
            let p: AuthenticatePayload = serde_json::from_str(&text).expect(&text);
            assert_eq!(p.token.as_deref(), Some("t"), "{text}");
            assert_eq!(p.recover, Some(Default::default()), "{text}");
        }
        // A malformed position is one that matches nothing.
        for recover in [r#"{"user:z":5}"#, r#"{"user:z":{"offset":-1,"epoch":"e"}}"#] {
            let text = format!(r#"{{"token":"t","recover":{recover}}}"#);
            let p: AuthenticatePayload = serde_json::from_str(&text).expect(&text);
            assert_eq!(p.token.as_deref(), Some("t"), "{text}");
            let recover = p.recover.expect("asked");
            assert!(recover["user:z"].is_unheld(), "{text}");
        }
        let p: AuthenticatePayload = serde_json::from_str(r#"{"token":"t"}"#).expect("absent");
        assert_eq!(p.recover, None);
        let p: AuthenticatePayload =
            serde_json::from_str(r#"{"recover":{"user:a":{"offset":3,"epoch":"e"}}}"#)
                .expect("valid");
        assert_eq!(p.recover.expect("asked")["user:a"].offset, 3);
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let auth = AuthenticatePayload {
            token: Some("tok-s3cret".into()),
            public_key: Some("BPUB".into()),
            ..AuthenticatePayload::default()
        };
        let refresh = RefreshPayload {
            token: Some("tok-s3cret".into()),
        };
        for shown in [format!("{auth:?}"), format!("{refresh:#?}")] {
            assert!(!shown.contains("tok-s3cret"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
        assert!(format!("{auth:?}").contains("BPUB"), "the rest is shown");
        assert!(format!("{:?}", RefreshPayload::default()).contains("None"));
    }

    #[test]
    fn frame_json_is_valid_json() {
        let f = frame_json("a\"b", r#"{"x":1}"#);
        let v: Value = serde_json::from_str(&f).expect("valid");
        assert_eq!(v["event"], "a\"b");
        assert_eq!(v["data"]["x"], 1);
    }

    #[test]
    fn inbound_without_event_parses() {
        let m = Inbound::parse(r#"{"data":1}"#).expect("parses");
        assert!(m.event.is_none());
        assert!(Inbound::parse("[1,2]").is_err());
        assert!(Inbound::parse("nope").is_err());
        assert!(Inbound::parse(r#"{"event":5}"#).is_err());
    }

    #[test]
    fn iso8601_matches_the_padded_format() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_007_000_000)
            .expect("valid timestamp");
        assert_eq!(iso8601_millis(t), "2023-11-14T22:13:20.007Z");
        let t = time::Date::from_calendar_date(987, time::Month::January, 2)
            .and_then(|d| d.with_hms_milli(3, 4, 5, 678))
            .expect("valid date")
            .assume_utc();
        assert_eq!(iso8601_millis(t), "0987-01-02T03:04:05.678Z");
    }

    #[test]
    fn times_out_of_range_are_clamped_not_a_panic() {
        use std::time::{Duration, UNIX_EPOCH};
        // A token `exp` of 1e13 seconds, and the largest one `SystemTime` takes.
        let far = UNIX_EPOCH + Duration::from_secs(10_000_000_000_000);
        assert_eq!(iso8601(far), "9999-12-31T23:59:59.999Z");
        let farthest = UNIX_EPOCH + Duration::from_secs(i64::MAX as u64);
        assert_eq!(iso8601(farthest), "9999-12-31T23:59:59.999Z");
        let before = UNIX_EPOCH - Duration::from_secs(1_000_000_000_000);
        assert_eq!(iso8601(before), "0000-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_007);
        assert_eq!(iso8601(t), "2023-11-14T22:13:20.007Z");
    }

    #[test]
    fn time_is_utc_iso() {
        let t = now_iso8601();
        assert!(t.ends_with('Z'), "{t}");
        assert_eq!(t.len(), 24, "{t}");
        assert!(
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).is_ok()
        );
    }

    #[test]
    fn connected_serializes_camel_case() {
        let c = ConnectedPayload {
            id: "c".into(),
            user_id: "u".into(),
            time: "t".into(),
            expires_at: None,
            server_public_key: Some("k".into()),
            salt: None,
            profile: None,
            extra: Default::default(),
        };
        let v = serde_json::to_value(&c).expect("ser");
        assert_eq!(v["userId"], "u");
        assert_eq!(v["serverPublicKey"], "k");
        assert!(v.get("salt").is_none());
    }
}
