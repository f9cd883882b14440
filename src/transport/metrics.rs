//! `GET /metrics`: the server's Prometheus metrics (text format), behind the admin token
//! like the admin API (`Authorization: Bearer <admin token>`, 401 otherwise).

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;

use super::admin::{AdminToken, require_token};
use crate::server::Server;

pub(crate) fn routes(token: Option<&str>) -> Router<Server> {
    let token = AdminToken::new(token);
    Router::new()
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(token, require_token))
        // A refusal (a method it does not take) in the admin API's JSON error shape.
        .layer(middleware::map_response(super::admin::as_json))
}

async fn metrics(State(server): State<Server>) -> impl IntoResponse {
    let (page, content_type) = server.render_metrics();
    ([(header::CONTENT_TYPE, content_type)], page)
}
