//! HTTP transport: the axum router (WebSocket upgrade + admin REST API) and an accept loop
//! with the timeouts `axum::serve` lacks.

mod admin;
mod body_deadline;
mod closable;
mod coalesce;
mod config;
pub mod demo;
mod direct;
pub mod front_door;
mod listener;
mod metrics;
mod places;
mod server_ws;
#[cfg(feature = "socketio")]
pub mod socketio;
mod tls;
mod upgrade;
mod ws_socket;

pub use config::{HttpConfig, HttpConfigError, check_path, path_is_under, reserved_route};
pub use direct::{AcceptedWebSocket, accept_websocket};
pub use listener::{LISTEN_BACKLOG, bind, bind_shared, serve, serve_with_shutdown};
pub use tls::{DEFAULT_TLS_RELOAD_INTERVAL, TlsConfig};
pub use ws_socket::WsSocket;

use axum::Router;
use axum::routing::any;

use crate::server::Server;

/// Builds the router: the WebSocket endpoint at `http.path` and the admin API under
/// `/socket` (behind `http.admin_token`). Of `http`, the accept loop's own settings
/// (`header_read_timeout`, `max_tcp_connections`, `routes`, `tls`) do not apply here. Every
/// request to the WebSocket path, whatever its method, is answered by
/// [`front_door::decide`], as in the accept loop. Mount it into an existing app with
/// `Router::merge`.
///
/// Called inside a Tokio runtime, it starts the server ([`Server::start`]: the bus and the
/// heartbeat sweeper) if nothing has yet, so embedding needs no separate call; until the
/// start has finished the WebSocket path answers 503 and health reports `unavailable`. A
/// start that fails is logged at error level and the server stays unavailable: call
/// [`Server::start`] yourself first to handle that error (a bus that cannot connect, say).
///
/// # Panics
/// If `http` does not validate ([`HttpConfig::validate`]): a router that accepted an empty
/// admin token, say, would be worse than none. Validate first to handle the error.
pub fn router(server: Server, http: &HttpConfig) -> Router {
    if let Err(e) = http.validate() {
        panic!("invalid HttpConfig: {e}");
    }
    if !server.is_ready()
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        let starting = server.clone();
        runtime.spawn(async move {
            if let Err(e) = starting.start().await {
                tracing::error!(error = %e, "server start failed; WebSocket upgrades get 503");
            }
        });
    }
    routes(server, http, http.websocket())
}

/// The routes of [`router`] for a validated `http` whose WebSocket settings are `ws` (the
/// accept loop shares them with its own upgrade path).
fn routes(server: Server, http: &HttpConfig, ws: std::sync::Arc<config::WsSettings>) -> Router {
    let token = http.admin_token.as_deref();
    let door = upgrade::Door {
        server: server.clone(),
        ws,
    };
    Router::new()
        .route(&http.path, any(upgrade::handle))
        .with_state(door)
        .merge(
            admin::routes(token)
                .merge(metrics::routes(token))
                .with_state(server),
        )
}
