//! The one decision on WebSocket upgrades.
//!
//! Upgrades reach the server two ways: the accept loop of [`super::serve`] reads request heads
//! straight off the socket, and hyper parses them for the router (requests the accept loop
//! leaves to HTTP, and applications that mount [`super::router`] in their own axum server).
//! Both ask [`decide`], over the same borrowed view of the request ([`UpgradeRequest`]), so a
//! rule exists on both paths or on neither, and a refused request gets the same status on both.
//!
//! The only check `decide` cannot make is on line endings, which hyper does not expose: the
//! accept loop refuses a head with bare-LF line endings ([`inspect_head`]) before anything else;
//! hyper, and so an application's own axum server, accepts them (see `SECURITY.md`).

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, Version};

/// Most headers [`inspect_head`] parses; a head with more is left to hyper, which then asks
/// [`decide`] itself.
pub const MAX_HEADERS: usize = 64;

/// A borrowed view of an upgrade request: method, HTTP version and headers. Build it from a
/// hyper/axum request with [`UpgradeRequest::from_http`]; the accept loop builds it from the
/// headers `httparse` found.
#[derive(Debug, Clone, Copy)]
pub struct UpgradeRequest<'a> {
    method: &'a str,
    version: Version,
    headers: Headers<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Headers<'a> {
    Raw(&'a [httparse::Header<'a>]),
    Map(&'a HeaderMap),
}

impl<'a> UpgradeRequest<'a> {
    /// The view of a request parsed by hyper (or built with `http`).
    #[must_use]
    pub fn from_http(method: &'a http::Method, version: Version, headers: &'a HeaderMap) -> Self {
        Self {
            method: method.as_str(),
            version,
            headers: Headers::Map(headers),
        }
    }

    /// The view of a request head parsed by `httparse`. `minor_version` is httparse's
    /// `version` (0 for HTTP/1.0, 1 for HTTP/1.1).
    pub(crate) fn from_httparse(
        method: &'a str,
        minor_version: u8,
        headers: &'a [httparse::Header<'a>],
    ) -> Self {
        Self {
            method,
            version: if minor_version == 0 {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            },
            headers: Headers::Raw(headers),
        }
    }

    /// Every value of header `name` (lowercase), in order.
    fn values(&self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let (raw, map) = match self.headers {
            Headers::Raw(h) => (Some(h), None),
            Headers::Map(m) => (None, Some(m)),
        };
        raw.into_iter()
            .flatten()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .chain(
                map.into_iter()
                    .flat_map(move |m| m.get_all(name).iter().map(HeaderValue::as_bytes)),
            )
    }

    /// The value of a header that appears exactly once.
    fn single(&self, name: &'static str) -> Option<&'a [u8]> {
        let mut values = self.values(name);
        let first = values.next()?;
        values.next().is_none().then_some(first)
    }

    /// Whether the comma-separated values of header `name` list `token`, in any case.
    fn lists_token(&self, name: &'static str, token: &str) -> bool {
        self.values(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// An acceptable upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// The `Sec-WebSocket-Accept` value answering the request's key.
    pub accept_key: String,
}

/// Why an upgrade request is refused. Each reason has one HTTP status ([`Refusal::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The method is not `GET` (405, with `Allow: GET`).
    Method,
    /// HTTP/1.0 (or older): RFC 6455 requires HTTP/1.1 or later (400).
    HttpVersion,
    /// A line of the head ends in a bare LF instead of CRLF (400). Only the accept loop sees
    /// line endings.
    LineEndings,
    /// No `Host` header, or more than one (400).
    Host,
    /// A `Content-Length` other than 0, or any `Transfer-Encoding`: an upgrade has no body
    /// (400).
    Body,
    /// `Connection` does not list `upgrade` or `Upgrade` does not list `websocket` (400).
    NotUpgrade,
    /// `Sec-WebSocket-Version` is not exactly `13` (426, with `Sec-WebSocket-Version: 13`).
    WebSocketVersion,
    /// Not exactly one `Sec-WebSocket-Key`, or one that is not 16 bytes in base64 (400).
    Key,
    /// An Origin allowlist is configured and the request has no `Origin` in it (403).
    Origin,
}

impl Refusal {
    /// The HTTP status of the refusal, the same on every path.
    #[must_use]
    pub fn status(self) -> StatusCode {
        match self {
            Self::Method => StatusCode::METHOD_NOT_ALLOWED,
            Self::WebSocketVersion => StatusCode::UPGRADE_REQUIRED,
            Self::Origin => StatusCode::FORBIDDEN,
            Self::HttpVersion
            | Self::LineEndings
            | Self::Host
            | Self::Body
            | Self::NotUpgrade
            | Self::Key => StatusCode::BAD_REQUEST,
        }
    }

    /// A short English reason, sent as `{"error": reason}`.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::Method => "a WebSocket upgrade must be a GET",
            Self::HttpVersion => "a WebSocket upgrade needs HTTP/1.1",
            Self::LineEndings => "request lines must end in CRLF",
            Self::Host => "expected exactly one Host header",
            Self::Body => "a WebSocket upgrade has no body",
            Self::NotUpgrade => "expected a WebSocket upgrade",
            Self::WebSocketVersion => "unsupported WebSocket version",
            Self::Key => "expected one Sec-WebSocket-Key of 16 bytes in base64",
            Self::Origin => "origin not allowed",
        }
    }

    /// Headers the refusal must carry besides the body's: `Allow` for 405,
    /// `Sec-WebSocket-Version` for 426 (RFC 6455 §4.4).
    #[must_use]
    pub fn extra_header(self) -> Option<(http::HeaderName, HeaderValue)> {
        match self {
            Self::Method => Some((http::header::ALLOW, HeaderValue::from_static("GET"))),
            Self::WebSocketVersion => Some((
                http::header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            )),
            _ => None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status().as_u16())
    }
}

/// Decides whether `req` is a WebSocket upgrade to accept (RFC 6455 §4.2.1), checking in this
/// order: `GET` only; HTTP/1.1 or later; exactly one `Host`; no body (a `Content-Length`
/// other than 0, or any `Transfer-Encoding`); `Connection` lists `upgrade` and `Upgrade` lists
/// `websocket` (comma lists, any case); `Sec-WebSocket-Version: 13`; exactly one
/// `Sec-WebSocket-Key` that is 16 bytes in base64; and, when `allowed_origins` is not empty,
/// exactly one `Origin` equal (ASCII case-insensitively) to one of them. An empty allowlist
/// allows any origin, or none.
///
/// # Errors
/// The first rule the request breaks.
pub fn decide(req: &UpgradeRequest<'_>, allowed_origins: &[String]) -> Result<Accept, Refusal> {
    if req.method != "GET" {
        return Err(Refusal::Method);
    }
    if req.version < Version::HTTP_11 {
        return Err(Refusal::HttpVersion);
    }
    if req.single("host").is_none() {
        return Err(Refusal::Host);
    }
    // Repeated `Content-Length: 0` lines are one length (RFC 9110 §8.6; hyper merges them).
    let body = req.values("content-length").any(|v| v.trim_ascii() != b"0");
    if body || req.values("transfer-encoding").next().is_some() {
        return Err(Refusal::Body);
    }
    if !req.lists_token("connection", "upgrade") || !req.lists_token("upgrade", "websocket") {
        return Err(Refusal::NotUpgrade);
    }
    if req.single("sec-websocket-version") != Some(b"13") {
        return Err(Refusal::WebSocketVersion);
    }
    let key = req.single("sec-websocket-key").ok_or(Refusal::Key)?;
    if !is_valid_key(key) {
        return Err(Refusal::Key);
    }
    if !allowed_origins.is_empty()
        && !req
            .single("origin")
            .is_some_and(|origin| super::config::origin_listed(origin, allowed_origins))
    {
        return Err(Refusal::Origin);
    }
    Ok(Accept {
        accept_key: tokio_tungstenite::tungstenite::handshake::derive_accept_key(key),
    })
}

/// A `Sec-WebSocket-Key` must be the base64 of 16 bytes: 24 characters, canonical padding.
fn is_valid_key(key: &[u8]) -> bool {
    // Room for the decoder's estimate (18 bytes for 24 characters); no allocation.
    let mut decoded = [0u8; 18];
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode_slice(key, &mut decoded)
            .is_ok_and(|n| n == 16)
}

/// What the accept loop makes of the bytes of a connection so far ([`inspect_head`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Head<'a> {
    /// The head is not complete yet: read more.
    Partial,
    /// Not a head the accept loop parses (malformed, or more than [`MAX_HEADERS`] headers):
    /// hyper gets it, and answers or calls [`decide`] itself.
    Unparsed,
    /// A complete head for `path` (query string removed), `len` bytes long, decided.
    Complete {
        /// The request path without the query string.
        path: &'a str,
        /// Length of the head in bytes, final blank line included.
        len: usize,
        /// The decision.
        decision: Result<Accept, Refusal>,
    },
}

/// Parses a request head with `httparse` the way the accept loop does and decides on it: a
/// head with a bare-LF line ending is refused ([`Refusal::LineEndings`]) whatever else it
/// holds; any other complete head goes to [`decide`]. Pure: no I/O and no server state, so it
/// can be fuzzed.
#[must_use]
pub fn inspect_head<'b>(buf: &'b [u8], allowed_origins: &[String]) -> Head<'b> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Unparsed,
    };
    let target = req.path.unwrap_or("");
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let decision = if has_bare_lf(&buf[..len]) {
        Err(Refusal::LineEndings)
    } else {
        let view = UpgradeRequest::from_httparse(
            req.method.unwrap_or(""),
            req.version.unwrap_or(0),
            req.headers,
        );
        decide(&view, allowed_origins)
    };
    Head::Complete {
        path,
        len,
        decision,
    }
}

/// Whether some LF in `head` is not preceded by CR.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(extra: &str) -> String {
        format!(
            "GET /ws?x=1 HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
        )
    }

    fn decision(raw: &str, origins: &[String]) -> Result<Accept, Refusal> {
        match inspect_head(raw.as_bytes(), origins) {
            Head::Complete { decision, path, .. } => {
                assert_eq!(path, "/ws");
                decision
            }
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn a_plain_upgrade_is_accepted_with_the_rfc_accept_key() {
        let accept = decision(&head(""), &[]).expect("accepted");
        assert_eq!(accept.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn each_rule_refuses_with_its_reason() {
        let origins = vec!["https://app.example".to_owned()];
        let cases: &[(String, Refusal)] = &[
            (head("").replacen("GET", "HEAD", 1), Refusal::Method),
            (
                head("").replacen("HTTP/1.1", "HTTP/1.0", 1),
                Refusal::HttpVersion,
            ),
            (head("").replace("\r\n", "\n"), Refusal::LineEndings),
            (head("").replacen("Host: h\r\n", "", 1), Refusal::Host),
            (head("Host: h2\r\n"), Refusal::Host),
            (head("Content-Length: 3\r\n"), Refusal::Body),
            (
                head("Content-Length: 0\r\nContent-Length: 1\r\n"),
                Refusal::Body,
            ),
            (head("Content-Length: 0, 0\r\n"), Refusal::Body),
            (head("Transfer-Encoding: chunked\r\n"), Refusal::Body),
            (
                head("").replacen("Upgrade: websocket", "Upgrade: h2c", 1),
                Refusal::NotUpgrade,
            ),
            (
                head("").replacen("Version: 13", "Version: 8", 1),
                Refusal::WebSocketVersion,
            ),
            (head(&format!("Sec-WebSocket-Key: {KEY}\r\n")), Refusal::Key),
            (head("").replacen(KEY, "c2hvcnQ=", 1), Refusal::Key),
            (
                head("").replacen(KEY, "dGhlIHNhbXBsZSBub25jZR==", 1),
                Refusal::Key,
            ),
            (head("Origin: https://evil.example\r\n"), Refusal::Origin),
            (head(""), Refusal::Origin),
        ];
        for (raw, want) in cases {
            assert_eq!(decision(raw, &origins), Err(*want), "{raw:?}");
        }
    }

    #[test]
    fn comma_lists_and_case_and_listed_origins_are_accepted() {
        let origins = vec!["https://app.example".to_owned()];
        let raw = head("Origin: HTTPS://APP.example\r\nContent-Length: 0\r\n")
            .replacen("Connection: Upgrade", "Connection: keep-alive, UPGRADE", 1)
            .replacen("Upgrade: websocket", "Upgrade: foo, WebSocket", 1);
        assert!(decision(&raw, &origins).is_ok());
    }

    #[test]
    fn the_map_view_decides_like_the_raw_view() {
        let mut map = HeaderMap::new();
        for (k, v) in [
            ("host", "h"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", KEY),
        ] {
            map.append(k, HeaderValue::from_static(v));
        }
        let get = http::Method::GET;
        let view = UpgradeRequest::from_http(&get, Version::HTTP_11, &map);
        assert_eq!(decide(&view, &[]), decision(&head(""), &[]));
        map.append("sec-websocket-key", HeaderValue::from_static(KEY));
        let view = UpgradeRequest::from_http(&get, Version::HTTP_11, &map);
        assert_eq!(decide(&view, &[]), Err(Refusal::Key));
        let head_method = http::Method::HEAD;
        let view = UpgradeRequest::from_http(&head_method, Version::HTTP_11, &map);
        assert_eq!(decide(&view, &[]), Err(Refusal::Method));
    }

    #[test]
    fn partial_and_unparsable_heads() {
        assert_eq!(
            inspect_head(b"GET /ws HTTP/1.1\r\nHost: h\r\n", &[]),
            Head::Partial
        );
        assert_eq!(
            inspect_head(b"GET /ws HTTP/9.9\r\n\r\n", &[]),
            Head::Unparsed
        );
    }
}
