//! [`AuthRequest`]: what the authenticate hook is given (at a connection's authentication and
//! at each `refresh`), and [`UpgradeHead`], the HTTP request that opened the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;

/// What the authenticate hook sees. Its `Debug` shows the client id and the peer address
/// only: the token, the payload (which holds the token too) and the upgrade request (cookies,
/// `Authorization`, a query string) are left out.
#[derive(Clone)]
#[non_exhaustive]
pub struct AuthRequest {
    /// The connection's client id.
    pub client_id: String,
    /// The peer address, when known.
    pub remote_addr: Option<SocketAddr>,
    /// The `token` field of `authenticate` (or of `refresh`).
    pub token: Option<String>,
    /// The whole `authenticate` payload (or `refresh` payload), for custom fields.
    pub payload: Value,
    /// The HTTP request that opened the WebSocket (its URI and headers: cookies, `Origin`,
    /// `User-Agent`, forwarded addresses), for cookie, origin or address policies. Given to
    /// the connection's authentication only: `None` for a [`refresh`](Self::refresh) (the
    /// connection keeps nothing of it afterwards; its policies were applied then), and for a
    /// socket handed to [`Server::serve_socket`](super::Server::serve_socket) without one.
    pub upgrade: Option<Arc<UpgradeHead>>,
    /// `true` when this checks the token of a `refresh` on an authenticated connection
    /// (`docs/PROTOCOL.md` §11) rather than the connection's authentication. The identity
    /// returned must then have the session's user id, or the refresh is refused.
    pub refresh: bool,
}

impl AuthRequest {
    /// A request to authenticate connection `client_id` with `token` and the whole
    /// `payload`, of unknown address and upgrade request, not a refresh (set the public
    /// fields for the rest: what a test of a custom hook needs).
    #[must_use]
    pub fn new(client_id: impl Into<String>, token: Option<String>, payload: Value) -> Self {
        Self {
            client_id: client_id.into(),
            remote_addr: None,
            token,
            payload,
            upgrade: None,
            refresh: false,
        }
    }
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("client_id", &self.client_id)
            .field("remote_addr", &self.remote_addr)
            .finish_non_exhaustive()
    }
}

/// The head of the HTTP request that opened a WebSocket connection, as received, on either
/// upgrade path. The connection keeps it only until authentication: it is moved into the
/// [`AuthRequest`] of the connection's `authenticate`.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UpgradeHead {
    /// The request target: path and query string (`/ws?room=a`).
    pub uri: http::Uri,
    /// Every request header, duplicates included, in the order received.
    pub headers: http::HeaderMap,
}

impl UpgradeHead {
    /// A head with `uri` and `headers`.
    #[must_use]
    pub fn new(uri: http::Uri, headers: http::HeaderMap) -> Self {
        Self { uri, headers }
    }

    /// The query string of the request target, without `?`.
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The value of cookie `name` from the `Cookie` headers, if present.
    #[must_use]
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find_map(|(k, v)| (k == name).then_some(v))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{AuthRequest, UpgradeHead};

    #[test]
    fn an_auth_request_debug_shows_no_credential() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "cookie",
            http::HeaderValue::from_static("sid=cookie-s3cret"),
        );
        let req = AuthRequest {
            client_id: "c-1".into(),
            remote_addr: None,
            token: Some("tok-s3cret".into()),
            payload: serde_json::json!({"token": "tok-s3cret"}),
            upgrade: Some(Arc::new(UpgradeHead::new(
                "/ws?key=query-s3cret".parse().expect("uri"),
                headers,
            ))),
            refresh: false,
        };
        let shown = format!("{req:?}");
        assert!(shown.contains("c-1"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
