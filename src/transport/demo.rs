//! The demo page (`sealwire serve --dev`): `GET /` serves a page built on the browser SDK, and
//! `GET /sdk/{file}` the SDK's modules, both compiled into the binary. The page connects as a
//! user, joins a room and pushes through the admin API (with the token the developer pastes or
//! passes in the URL fragment), showing each frame as it crossed the wire next to what the SDK
//! decrypted. Not meant for production: mount it only in development.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("demo.html");

/// The SDK's modules, as shipped in `sdk/js/src`.
const SDK: [(&str, &str); 8] = [
    ("index.js", include_str!("../../sdk/js/src/index.js")),
    ("client.js", include_str!("../../sdk/js/src/client.js")),
    ("crypto.js", include_str!("../../sdk/js/src/crypto.js")),
    ("encoding.js", include_str!("../../sdk/js/src/encoding.js")),
    ("reason.js", include_str!("../../sdk/js/src/reason.js")),
    ("room.js", include_str!("../../sdk/js/src/room.js")),
    ("socketio.js", include_str!("../../sdk/js/src/socketio.js")),
    ("helper.js", include_str!("../../sdk/js/src/helper.js")),
];

/// The line of the page that names the WebSocket path.
const PATH_LINE: &str = "const WS_PATH = \"/ws\";";

/// `GET /` (the page) and `GET /sdk/{file}` (the browser SDK), to merge into the server's
/// router in development; the page connects to `/ws`.
pub fn routes() -> Router {
    routes_at("/ws")
}

/// [`routes`] for a server whose WebSocket path is `ws_path` (`--path`).
pub fn routes_at(ws_path: &str) -> Router {
    // A JSON string, with `<` escaped so that no path can end the script element.
    let quoted = serde_json::to_string(ws_path)
        .unwrap_or_else(|_| "\"/ws\"".to_owned())
        .replace('<', "\\u003c");
    let page = PAGE.replacen(PATH_LINE, &format!("const WS_PATH = {quoted};"), 1);
    Router::new()
        .route("/", get(|| async move { Html(page) }))
        .route("/sdk/{file}", get(module))
}

async fn module(Path(file): Path<String>) -> Response {
    match SDK.iter().find(|(name, _)| *name == file) {
        Some((_, source)) => (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *source,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_servers_path() {
        assert!(PAGE.contains(PATH_LINE), "the line the server fills in");
        let quoted = serde_json::to_string("/rt</script>")
            .expect("json")
            .replace('<', "\\u003c");
        assert_eq!(quoted, r#""/rt\u003c/script>""#);
    }

    /// Every module of the SDK is served (the entry point imports them all).
    #[test]
    fn every_sdk_module_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/js/src");
        let mut shipped: Vec<String> = std::fs::read_dir(dir)
            .expect("sdk/js/src")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".js"))
            .collect();
        shipped.sort();
        let mut served: Vec<String> = super::SDK.iter().map(|(n, _)| (*n).to_owned()).collect();
        served.sort();
        assert_eq!(served, shipped);
    }
}
