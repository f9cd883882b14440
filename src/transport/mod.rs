//! HTTP transport: the axum router (WebSocket upgrade + admin REST API) and an accept loop
//! with the timeouts `axum::serve` lacks.

mod admin;
mod coalesce;
mod direct;
pub mod front_door;
mod listener;
mod upgrade;

pub use direct::{AcceptedWebSocket, accept_websocket};
pub use listener::{HttpConfig, LISTEN_BACKLOG, bind, bind_shared, serve, serve_with_shutdown};

use axum::Router;
use axum::routing::any;

use crate::server::Server;

/// Builds the router: the WebSocket endpoint at `config().path` and the admin API under
/// `/socket`. Every request to the WebSocket path, whatever its method, is answered by
/// [`front_door::decide`], as in the accept loop. Mount it into an existing app with `Router::merge`; call
/// [`Server::start`] yourself in that case.
pub fn router(server: Server) -> Router {
    let path = server.config().path.clone();
    Router::new()
        .route(&path, any(upgrade::handle))
        .merge(admin::routes(server.clone()))
        .with_state(server)
}
