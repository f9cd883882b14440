//! What the admin API answers when a request is refused before its handler runs (a query
//! string that does not parse, a body over the limit, a path segment that does not decode):
//! the API's own JSON error shape, instead of the framework's plain text.

use axum::body::to_bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The largest request body the admin API reads (413 beyond): room for a full batch
/// ([`super::MAX_BATCH`] messages) of a few kilobytes each.
pub(super) const BODY_LIMIT: usize = 8 << 20;

/// How much of a refusal's text is kept as its message.
const MESSAGE_LIMIT: usize = 4096;

/// Turns a plain-text 4xx response into `{"error", "success": false, "message"}` with the
/// same status and text; any other response passes unchanged.
pub(super) async fn as_json(response: Response) -> Response {
    let status = response.status();
    let plain_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !status.is_client_error() || !plain_text {
        return response;
    }
    let text = to_bytes(response.into_body(), MESSAGE_LIMIT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("bad request")
            .to_owned()
    } else {
        text
    };
    ApiError(status, message).into_response()
}
