//! The WebSocket upgrade on hyper: [`decide`] on the request, then tokio-tungstenite with the
//! server's size and buffer limits.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::coalesce::Coalesce;
use super::config::WsSettings;
use super::front_door::{Refusal, UpgradeRequest, decide};
use super::server_ws::ServerWebSocket;
use super::ws_socket::WsSocket;
use crate::server::{Server, SlotRefused, UpgradeHead};

fn reject(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The HTTP answer to a refused upgrade: [`Refusal::status`], `{"error": reason}`, and the
/// header the status calls for (`Allow`, `Sec-WebSocket-Version`).
pub(super) fn refusal_response(refusal: Refusal) -> Response {
    let mut r = reject(refusal.status(), refusal.reason());
    if let Some((name, value)) = refusal.extra_header() {
        r.headers_mut().insert(name, value);
    }
    r
}

/// The tungstenite configuration derived from the server's limits and the door's buffers.
pub(crate) fn ws_config(server: &Server, ws: &WsSettings) -> WebSocketConfig {
    let cfg = server.config();
    WebSocketConfig::default()
        .read_buffer_size(ws.read_buffer_bytes)
        // Coalescing happens in `Coalesce`, whose buffer is freed when it drains;
        // tungstenite's own write buffer never shrinks (see `super::coalesce`).
        .write_buffer_size(0)
        .max_write_buffer_size(
            ws.write_buffer_bytes + cfg.outbox_bytes.max(cfg.max_message_bytes) * 2,
        )
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes))
}

/// The WebSocket endpoint's state: the server and the door's settings.
#[derive(Clone)]
pub(crate) struct Door {
    pub(crate) server: Server,
    pub(crate) ws: Arc<WsSettings>,
}

/// The WebSocket route of [`super::router`].
pub(crate) async fn handle(State(door): State<Door>, mut req: Request) -> Response {
    let remote = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    upgrade(&door.server, &door.ws, &mut req, remote)
}

/// Checks an upgrade request with [`decide`], spawns the WebSocket task and returns the
/// response (101 or a refusal). The accept loop also calls it, without the router, for a
/// request to the WebSocket path that it left to HTTP.
pub(crate) fn upgrade<B>(
    server: &Server,
    ws: &WsSettings,
    req: &mut http::Request<B>,
    remote: Option<SocketAddr>,
) -> Response {
    let view = UpgradeRequest::from_http(req.method(), req.version(), req.headers());
    let accept = match decide(&view, &ws.allowed_origins) {
        Ok(accept) => accept.accept_key,
        Err(refusal) => {
            tracing::debug!(%refusal, remote = remote.map(tracing::field::display), "upgrade refused");
            return refusal_response(refusal);
        }
    };
    if !server.is_ready() {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is not accepting connections",
        );
    }
    let slot = match server.try_reserve_slot(remote.map(|a| a.ip())) {
        Ok(slot) => slot,
        Err(SlotRefused::Full) => {
            return reject(StatusCode::SERVICE_UNAVAILABLE, "connection limit reached");
        }
        Err(SlotRefused::PerIp) => {
            return reject(
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address",
            );
        }
    };
    // Taken, not cloned: the response needs none of the request's headers.
    let head = Arc::new(UpgradeHead::new(
        req.uri().clone(),
        std::mem::take(req.headers_mut()),
    ));
    let on_upgrade = hyper::upgrade::on(req);
    let config = ws_config(server, ws);
    let write_buffer = ws.write_buffer_bytes;
    let task_server = server.clone();
    server.spawn_tracked(async move {
        // Held until the connection ends.
        let _slot = slot;
        // The connection runs in its own allocation, built in its own statement: awaiting an
        // unboxed future here would make this task reserve room for it twice (once as the
        // value, once as the pinned future being polled) for the connection's whole life.
        // The WebSocket is built without an `.await` for the same reason.
        let conn = match on_upgrade.await {
            Ok(upgraded) => {
                match websocket(TokioIo::new(upgraded), Vec::new(), config, write_buffer) {
                    Some(ws) => Box::pin(task_server.serve_upgraded(ws, remote, head)),
                    None => {
                        tracing::error!("WebSocket setup did not complete synchronously");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        conn.await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// Wraps an upgraded connection in tungstenite with the server's limits, writes coalesced
/// up to `write_buffer` bytes ([`Coalesce`]); `rest` are bytes the client sent after its
/// request head. Skipping the HTTP handshake (it is done already) performs no I/O, so the
/// future tokio-tungstenite returns for it is ready on its first poll.
pub(super) fn websocket<S>(
    io: S,
    rest: Vec<u8>,
    config: WebSocketConfig,
    write_buffer: usize,
) -> Option<WsSocket<ServerWebSocket<S>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let io = Coalesce::new(io, write_buffer);
    let ws = if rest.is_empty() {
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).now_or_never()
    } else {
        WebSocketStream::from_partially_read(io, rest, Role::Server, Some(config)).now_or_never()
    };
    ws.map(|ws| WsSocket::built_in(ServerWebSocket::new(ws), ServerWebSocket::hooks()))
}
