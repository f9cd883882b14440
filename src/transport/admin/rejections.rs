//! What the admin API answers when a request is refused before its handler runs (a query
//! string that does not parse, a body over the limit, a path segment that does not decode):
//! the API's own JSON error shape, instead of the framework's plain text.

use axum::body::to_bytes;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The largest request body the admin API reads (413 beyond): room for a full batch
/// ([`super::MAX_BATCH`] messages) of a few kilobytes each.
pub(super) const BODY_LIMIT: usize = 8 << 20;

/// How much of a refusal's text is kept as its message.
const MESSAGE_LIMIT: usize = 4096;

/// Turns a plain-text or untyped 4xx response (the framework's: a refused extraction, a
/// method the route does not take) into `{"error", "success": false, "message"}` with the
/// same status and text (or the status's reason when it has none); any other response passes
/// unchanged. Headers such as `Allow` are kept.
pub(in crate::transport) async fn as_json(response: Response) -> Response {
    let status = response.status();
    let plain_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("text/plain"));
    if !status.is_client_error() || !plain_text {
        return response;
    }
    let mut kept = response.headers().clone();
    kept.remove(header::CONTENT_TYPE);
    kept.remove(header::CONTENT_LENGTH);
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
    let mut json = ApiError(status, message).into_response();
    for (name, value) in &kept {
        json.headers_mut().append(name, value.clone());
    }
    json
}

/// Refuses at once (413) a request whose `Content-Length` announces more than
/// [`BODY_LIMIT`], instead of reading towards the limit first.
pub(super) async fn refuse_oversized(req: axum::extract::Request, next: Next) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > BODY_LIMIT as u64) {
        return ApiError(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {BODY_LIMIT} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// What an unknown path under `/socket/` is answered: 404 in the admin API's JSON error shape.
pub(super) async fn not_found() -> Response {
    ApiError(axum::http::StatusCode::NOT_FOUND, "Not found".to_owned()).into_response()
}

/// Middleware of the whole listener: `/socket` and `/socket/` are no routes of the API (a
/// WebSocket or Socket.IO door may be named `/socket`), so when nothing else answers them
/// either, the router's 404 (bare, or shaped by whichever fallback the merged router kept)
/// becomes the API's JSON one.
pub(crate) async fn api_root_not_found(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let api_root = matches!(request.uri().path(), "/socket" | "/socket/");
    let response = next.run(request).await;
    if api_root && response.status() == axum::http::StatusCode::NOT_FOUND {
        return not_found().await;
    }
    response
}
