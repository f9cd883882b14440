//! [`Text`]: one text message on the wire, UTF-8 and cheap to share.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
// Storage only: the bytes sit in the WebSocket library's own UTF-8 type, so the WebSocket
// transport hands a shared frame to the socket without a copy and without validating it
// again. Nothing of that library appears in this type's API.
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One text message: a UTF-8 string whose clones share one buffer.
///
/// A frame rendered once for a publication is handed to every plaintext recipient as a clone
/// of the same `Text`, whatever door (WebSocket, Socket.IO) it leaves by.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Utf8Bytes);

impl Text {
    /// A `Text` over a static string, without allocating.
    #[must_use]
    pub const fn from_static(s: &'static str) -> Self {
        Self(Utf8Bytes::from_static(s))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The shared bytes (UTF-8).
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.0.into()
    }

    /// The library type the WebSocket transport writes (no copy).
    #[must_use]
    pub(crate) fn into_utf8_bytes(self) -> Utf8Bytes {
        self.0
    }

    /// A `Text` over a message the WebSocket transport read (no copy).
    #[must_use]
    pub(crate) fn from_utf8_bytes(bytes: Utf8Bytes) -> Self {
        Self(bytes)
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Self(Utf8Bytes::from(s))
    }
}

impl From<&str> for Text {
    /// Copies `s`.
    fn from(s: &str) -> Self {
        Self(Utf8Bytes::from(s))
    }
}

impl TryFrom<Bytes> for Text {
    type Error = std::str::Utf8Error;

    /// Checks that `bytes` are UTF-8; no copy.
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        Utf8Bytes::try_from(bytes).map(Self)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_buffer() {
        let text = Text::from(String::from(r#"{"event":"e","data":1}"#));
        let clone = text.clone();
        assert_eq!(text.as_str().as_ptr(), clone.as_str().as_ptr());
        assert_eq!(clone, r#"{"event":"e","data":1}"#);
    }

    #[test]
    fn bytes_must_be_utf8() {
        assert!(Text::try_from(Bytes::from_static(b"\xff\xfe")).is_err());
        let ok = Text::try_from(Bytes::from_static("héllo".as_bytes())).ok();
        assert_eq!(ok.as_deref(), Some("héllo"));
        assert_eq!(
            Text::from_static("x").into_bytes(),
            Bytes::from_static(b"x")
        );
    }
}
