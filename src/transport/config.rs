//! [`HttpConfig`]: everything the HTTP and WebSocket door needs that the core does not (the
//! path, buffers, origins, the admin token, TLS, HTTP limits).

use std::sync::Arc;
use std::time::Duration;

use super::tls::TlsConfig;

/// The WebSocket and HTTP door's own configuration. What every door shares (connection
/// limits, message sizes, timeouts, encryption) is in
/// [`ServerConfig`](crate::server::ServerConfig).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpConfig {
    /// WebSocket path. Defaults to `/ws`.
    pub path: String,
    /// Origins (`scheme://host[:port]`, compared ASCII case-insensitively) a WebSocket upgrade
    /// may come from. A request without an `Origin` header, or with one not listed, is refused
    /// with HTTP 403. Empty, the default, allows any origin or none: browsers then let any web
    /// page open a socket to the server with its users' cookies, so set it when the
    /// authenticate hook relies on cookies. (The Socket.IO door has its own list,
    /// `SocketIoConfig::allowed_origins`.)
    pub allowed_origins: Vec<String>,
    /// Bearer token for the admin REST API and `GET /metrics`; `None` disables every admin
    /// call (health then answers without details). An empty or whitespace-only token is
    /// refused by [`HttpConfig::validate`]. Defaults to `None`.
    pub admin_token: Option<String>,
    /// WebSocket read buffer per connection, in bytes: allocated up front for every socket and
    /// also the most read from the socket per call (a larger inbound message grows the buffer
    /// to fit, but is read in steps of this size). Inbound traffic here is small (authenticate,
    /// join, heartbeat), so the default of 512 bytes favours idle memory. At least 256.
    pub read_buffer_bytes: usize,
    /// Bytes buffered before a write reaches the socket (flushes write everything anyway).
    /// The buffer is freed each time it has been written out, so idle connections hold none.
    /// Defaults to 32 KiB: a burst's backlog leaves in fewer, larger writes, which costs the
    /// kernel less per message than 8 KiB writes did (BENCHMARKS.md, "Larger writes").
    pub write_buffer_bytes: usize,
    /// Time a client has to send complete request headers. Defaults to 10 s.
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's whole body, from when its headers arrived
    /// (admin API calls, Socket.IO polling `POST`s); past it the request fails and the
    /// connection is closed after the answer. Defaults to 30 s.
    pub body_read_timeout: Duration,
    /// Time a write to an HTTP connection (an answer, a Socket.IO long-poll, an upgraded
    /// Socket.IO WebSocket) may make no progress because the client does not read; past it
    /// the connection is closed. Defaults to 30 s.
    pub send_timeout: Duration,
    /// Most concurrent HTTP connections still speaking HTTP (upgraded WebSockets are limited by
    /// `ServerConfig::max_connections` instead). Defaults to 200,000.
    pub max_tcp_connections: usize,
    /// Most of those connections from one IP address at once; one past it is answered 429
    /// and closed right after the accept (an address cannot then hold the whole
    /// `max_tcp_connections` budget with idle connections). `None` (the default): no cap per
    /// address, as behind a proxy every client has the proxy's address.
    pub max_tcp_connections_per_ip: Option<usize>,
    /// More routes served beside the WebSocket endpoint and the admin API (the demo page of
    /// `sealwire serve --dev`, the Socket.IO door, an application's own pages). Defaults to
    /// none.
    pub routes: Option<axum::Router>,
    /// Built-in TLS: serve `wss://` and `https://` on the listener instead of plaintext.
    /// `None` (the default): plaintext.
    pub tls: Option<TlsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            path: "/ws".to_owned(),
            allowed_origins: Vec::new(),
            admin_token: None,
            read_buffer_bytes: 512,
            write_buffer_bytes: 32 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            max_tcp_connections: 200_000,
            max_tcp_connections_per_ip: None,
            routes: None,
            tls: None,
        }
    }
}

/// An [`HttpConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HttpConfigError {
    /// The WebSocket path is not a literal path ([`check_path`]).
    #[error(
        "invalid path {0:?}: a literal path such as /ws is needed ('/', then segments of letters, digits, '-', '.', '_' or '~', no trailing '/', at most 256 bytes)"
    )]
    InvalidPath(String),
    /// The WebSocket path is (or is under) a route the server serves itself.
    #[error("path {path:?} is taken by {by}")]
    PathTaken {
        /// The path asked for.
        path: String,
        /// What serves it.
        by: &'static str,
    },
    /// A limit is zero or out of range.
    #[error("invalid limit: {0}")]
    InvalidLimit(&'static str),
    /// The admin token is empty or only whitespace (it would accept an empty bearer token).
    #[error("the admin token must not be empty; leave it unset to disable the admin API")]
    EmptyAdminToken,
    /// An allowed origin is not of the form `scheme://host[:port]`.
    #[error("invalid allowed origin: {0:?}")]
    InvalidOrigin(String),
}

impl HttpConfig {
    /// A configuration with `token` guarding the admin API, the rest default.
    #[must_use]
    pub fn with_admin_token(token: impl Into<String>) -> Self {
        Self {
            admin_token: Some(token.into()),
            ..Self::default()
        }
    }

    /// Checks the values for consistency.
    ///
    /// # Errors
    /// [`HttpConfigError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), HttpConfigError> {
        check_path(&self.path)?;
        if let Some(by) = reserved_route(&self.path) {
            return Err(HttpConfigError::PathTaken {
                path: self.path.clone(),
                by,
            });
        }
        let limits = [
            (
                self.read_buffer_bytes < 256,
                "read_buffer_bytes (at least 256)",
            ),
            (self.max_tcp_connections == 0, "max_tcp_connections"),
            (
                self.max_tcp_connections_per_ip == Some(0),
                "max_tcp_connections_per_ip",
            ),
            (self.header_read_timeout.is_zero(), "header_read_timeout"),
            (self.body_read_timeout.is_zero(), "body_read_timeout"),
            (self.send_timeout.is_zero(), "send_timeout"),
        ];
        if let Some((_, name)) = limits.iter().find(|(bad, _)| *bad) {
            return Err(HttpConfigError::InvalidLimit(name));
        }
        if self
            .admin_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(HttpConfigError::EmptyAdminToken);
        }
        check_origins(&self.allowed_origins)
    }

    /// What the WebSocket endpoint needs on every upgrade.
    pub(crate) fn websocket(&self) -> Arc<WsSettings> {
        Arc::new(WsSettings {
            path: self.path.as_str().into(),
            allowed_origins: self.allowed_origins.clone(),
            read_buffer_bytes: self.read_buffer_bytes,
            write_buffer_bytes: self.write_buffer_bytes,
        })
    }
}

/// The WebSocket endpoint's settings, shared by every upgrade of one router or accept loop.
#[derive(Debug)]
pub(crate) struct WsSettings {
    pub(crate) path: Arc<str>,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) read_buffer_bytes: usize,
    pub(crate) write_buffer_bytes: usize,
}

/// Every origin in `origins` is a serialized origin ([`valid_origin`]).
///
/// # Errors
/// [`HttpConfigError::InvalidOrigin`] with the first one that is not.
pub(crate) fn check_origins(origins: &[String]) -> Result<(), HttpConfigError> {
    match origins.iter().find(|o| !valid_origin(o)) {
        Some(bad) => Err(HttpConfigError::InvalidOrigin(bad.clone())),
        None => Ok(()),
    }
}

/// Whether `origin` (an `Origin` header's value) is one of `allowed` (ASCII case ignored).
pub(crate) fn origin_listed(origin: &[u8], allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|a| a.as_bytes().eq_ignore_ascii_case(origin))
}

/// The routes the server serves itself on every listener, with what serves them.
/// (The admin API's routes are all under `/socket/`: a door may be named `/socket` itself.)
const RESERVED_PATHS: [(&str, &str); 2] = [("/socket/", "the admin API"), ("/metrics", "metrics")];

/// Longest path accepted by [`check_path`].
const MAX_PATH_BYTES: usize = 256;

/// Checks that `path` is a literal URL path that routes as itself (not a route pattern):
/// `/` alone, or `/` followed by segments of unreserved characters (`A-Z a-z 0-9 - . _ ~`),
/// none empty (so no trailing `/`) nor `.` or `..`, at most 256 bytes in all.
///
/// # Errors
/// [`HttpConfigError::InvalidPath`] otherwise.
pub fn check_path(path: &str) -> Result<(), HttpConfigError> {
    let literal = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    let fine = path == "/"
        || (path.len() <= MAX_PATH_BYTES
            && path
                .strip_prefix('/')
                .is_some_and(|rest| rest.split('/').all(literal)));
    if fine {
        Ok(())
    } else {
        Err(HttpConfigError::InvalidPath(path.to_owned()))
    }
}

/// What the server itself serves at `path` on every listener (the admin API under `/socket/`,
/// metrics at and under `/metrics`), so that no door may take it; `None` when it is free.
#[must_use]
pub fn reserved_route(path: &str) -> Option<&'static str> {
    RESERVED_PATHS
        .iter()
        .find(|(route, _)| taken_by(path, route))
        .map(|(_, by)| *by)
}

/// Whether `path` is taken by a reserved `route`: a route ending in `/` takes the paths under
/// it, any other the path itself and those under it.
fn taken_by(path: &str, route: &str) -> bool {
    match route.strip_suffix('/') {
        Some(prefix) => path.len() > route.len() - 1 && path_is_under(path, prefix),
        None => path_is_under(path, route),
    }
}

/// Whether `path` is `outer` or a path under it (both as [`check_path`] accepts them; every
/// path is under `/`).
#[must_use]
pub fn path_is_under(path: &str, outer: &str) -> bool {
    outer == "/"
        || path
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// An origin as browsers serialize it: `scheme://host[:port]`, no path, no whitespace; or
/// `null` (sandboxed documents, `file:` pages).
fn valid_origin(origin: &str) -> bool {
    if origin == "null" {
        return true;
    }
    let Some((scheme, host)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        && !host.is_empty()
        && !host.contains('/')
        && host.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_admin_tokens_are_refused() {
        for token in ["", " ", "\t\n "] {
            let c = HttpConfig::with_admin_token(token);
            assert_eq!(
                c.validate(),
                Err(HttpConfigError::EmptyAdminToken),
                "{token:?}"
            );
        }
        let mut c = HttpConfig::with_admin_token("secret");
        assert_eq!(c.validate(), Ok(()));
        c.admin_token = None;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn paths_and_limits() {
        let c = HttpConfig {
            path: "ws".into(),
            ..HttpConfig::default()
        };
        assert_eq!(c.validate(), Err(HttpConfigError::InvalidPath("ws".into())));
        for bad in [
            "", "ws", "/ws/", "//ws", "/ws//x", "/{x}", "/ws/:id", "/*rest", "/a b", "/./ws",
            "/ws/..", "/ws?x=1", "/ws#x", "/é",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        for good in ["/", "/ws", "/io", "/v1/realtime", "/a-b.c_d~e", "/WS2"] {
            assert_eq!(check_path(good), Ok(()), "{good:?}");
        }
        assert!(check_path(&format!("/{}", "a".repeat(256))).is_err());
        for taken in ["/socket/health", "/socket/x/y", "/metrics", "/metrics/x"] {
            let c = HttpConfig {
                path: taken.into(),
                ..HttpConfig::default()
            };
            assert!(
                matches!(c.validate(), Err(HttpConfigError::PathTaken { .. })),
                "{taken:?}"
            );
        }
        for free in ["/", "/socket", "/sockets", "/metricsx", "/ws"] {
            let c = HttpConfig {
                path: free.into(),
                ..HttpConfig::default()
            };
            assert_eq!(c.validate(), Ok(()), "{free:?}");
        }
        assert!(path_is_under("/io/x", "/io") && path_is_under("/io", "/io"));
        assert!(path_is_under("/io", "/") && !path_is_under("/iox", "/io"));
        let c = HttpConfig {
            read_buffer_bytes: 255,
            ..HttpConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(HttpConfigError::InvalidLimit(_))
        ));
    }

    #[test]
    fn allowed_origins_must_be_serialized_origins() {
        for good in ["https://app.example", "http://127.0.0.1:8080", "null"] {
            assert!(valid_origin(good), "{good}");
        }
        for bad in [
            "",
            "app.example",
            "https://app.example/",
            "https://",
            "https://a b",
        ] {
            assert!(!valid_origin(bad), "{bad}");
        }
        let c = HttpConfig {
            allowed_origins: vec!["https://ok.example".into(), "nope".into()],
            ..HttpConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(HttpConfigError::InvalidOrigin("nope".into()))
        );
    }
}
