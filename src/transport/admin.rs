//! The admin REST API under `/socket`. Every route but health needs
//! `Authorization: Bearer <admin token>` (health shows its details only with it); errors are
//! `{"error": ".."}` with a 4xx status, refusals before a handler runs included
//! ([`rejections`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

mod batch;
mod membership;
mod rejections;
pub(super) use rejections::api_root_not_found;

pub(in crate::transport) use rejections::as_json;

use crate::protocol::{BusTarget, RoomName, SendError, now_iso8601};
use crate::publish::{Publish, PublishError};
use crate::server::Server;

/// Largest batch accepted by `POST /socket/batch`.
pub(crate) const MAX_BATCH: usize = 1000;

pub(crate) fn routes(token: Option<&str>) -> Router<Server> {
    let token = AdminToken::new(token);
    let protected = Router::new()
        .route("/socket/info", get(info))
        .route("/socket/clients", get(clients))
        .route("/socket/client/{client_id}/rooms", get(client_rooms))
        .route("/socket/broadcast", post(broadcast))
        .route("/socket/room/{room}/send", post(room_send))
        .route("/socket/client/{client_id}/send", post(client_send))
        .route("/socket/user/{user_id}/send", post(user_send))
        .route(
            "/socket/client/{client_id}/join",
            post(membership::client_join),
        )
        .route(
            "/socket/client/{client_id}/leave",
            post(membership::client_leave),
        )
        .route("/socket/batch", post(batch::batch))
        .route("/socket/history/{stream}", get(history))
        // Any other path under the API's prefix: its JSON 404 (after the token check, so
        // that probing for routes needs the token).
        .route("/socket/{*rest}", any(rejections::not_found))
        .route_layer(middleware::from_fn(rejections::refuse_oversized))
        .route_layer(middleware::from_fn_with_state(token.clone(), require_token));
    Router::new()
        .route(
            "/socket/health",
            get(move |State(server): State<Server>, headers: HeaderMap| {
                std::future::ready(health(&server, &token, &headers))
            }),
        )
        .merge(protected)
        .layer(middleware::map_response(rejections::as_json))
        .layer(DefaultBodyLimit::max(rejections::BODY_LIMIT))
}

/// The admin token, kept as its SHA-256 digest.
///
/// A presented token is hashed and the two digests are compared in constant time: the
/// comparison then always covers 32 bytes, so its time says nothing about the token's length
/// (a constant-time comparison of the raw strings returns at once when the lengths differ),
/// and the configured token is hashed once, not on every request.
#[derive(Clone)]
pub(super) struct AdminToken(Option<Arc<[u8; 32]>>);

/// Why a request does not carry the admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenRefusal {
    /// No admin token is configured.
    Disabled,
    /// The `Authorization: Bearer` token is missing or wrong.
    Invalid,
}

impl AdminToken {
    pub(super) fn new(token: Option<&str>) -> Self {
        Self(token.map(|t| Arc::new(digest(t))))
    }

    /// Checks `Authorization: Bearer <token>` (the scheme in any case, RFC 7235).
    fn check(&self, headers: &HeaderMap) -> Result<(), TokenRefusal> {
        let Some(expected) = self.0.as_deref() else {
            return Err(TokenRefusal::Disabled);
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .unwrap_or("");
        aws_lc_rs::constant_time::verify_slices_are_equal(&digest(given), expected)
            .map_err(|_| TokenRefusal::Invalid)
    }
}

/// The credentials of a `Bearer` authorization value; the scheme name is case-insensitive.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

fn digest(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// An admin API error: a status and a message rendered as `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // `error` (sealwire) plus `success`/`message` (the IGNIS examples' failure shape).
        let body = json!({ "error": self.1, "success": false, "message": self.1 });
        (self.0, Json(body)).into_response()
    }
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        Self(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Message(e) => e.into(),
            e => Self(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    // serde reads a struct from an array too (`[topic, data]`): every body here is an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(bad_request(
            "invalid JSON body: invalid type: sequence, expected an object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        // serde names the body's Rust type for a body of the wrong kind (`null`, `[]`): say
        // what was expected instead.
        let e = e.to_string();
        match e.split_once(", expected struct ") {
            Some((what, _)) => {
                bad_request(format!("invalid JSON body: {what}, expected an object"))
            }
            None => bad_request(format!("invalid JSON body: {e}")),
        }
    })
}

pub(super) async fn require_token(
    State(token): State<AdminToken>,
    req: Request,
    next: Next,
) -> Response {
    let why = match token.check(req.headers()) {
        Ok(()) => {
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            let answer = next.run(req).await;
            tracing::debug!(%method, path, status = answer.status().as_u16(), "admin call");
            return answer;
        }
        Err(TokenRefusal::Disabled) => "admin API disabled: no admin token configured",
        Err(TokenRefusal::Invalid) => "missing or invalid admin token",
    };
    tracing::debug!(method = %req.method(), path = req.uri().path(), why, "admin call refused");
    // RFC 6750: a 401 names the scheme it wants.
    let mut refused = ApiError(StatusCode::UNAUTHORIZED, why.into()).into_response();
    refused.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    refused
}

/// `GET /socket/health`: open to anyone, for load balancers. Without the admin token it tells
/// only whether the server is up and whether its bus is connected; with it, also the server id
/// and the bus details (kind, error text).
fn health(server: &Server, token: &AdminToken, headers: &HeaderMap) -> Response {
    let bus = server.bus_status();
    let ready = server.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if ready { "ok" } else { "unavailable" },
        "healthy": ready,
        "timestamp": now_iso8601(),
    });
    body["bus"] = if token.check(headers).is_ok() {
        body["serverId"] = json!(server.id());
        json!(bus)
    } else {
        json!({ "connected": bus.connected })
    };
    (status, Json(body)).into_response()
}

async fn info(State(server): State<Server>) -> Json<Value> {
    let c = server.counts();
    let ids: Vec<String> = server.clients().into_iter().map(|c| c.id).collect();
    Json(json!({
        // The IGNIS Socket.IO example's fields.
        "status": "running",
        "connectedClients": c.clients,
        "clientIds": ids,
        "serverId": server.id(),
        "clients": c.clients,
        "authenticated": c.authenticated,
        "encrypted": c.encrypted,
        "users": c.users,
        "rooms": c.rooms,
        "requireEncryption": server.config().encryption.requires_encryption(),
        "encryption": server.config().encryption.as_str(),
        "bus": server.bus_status(),
    }))
}

/// `{count, clients: [{id, userId, state, encrypted, rooms, socketId?}], clientIds: [id]}`:
/// the clients as `PRODUCT.md` lists them, and their ids alone as the IGNIS examples'
/// `clientIds`.
async fn clients(State(server): State<Server>) -> Json<Value> {
    let all = server.clients();
    let ids: Vec<&str> = all.iter().map(|c| &*c.id).collect();
    let clients: Vec<Value> = all
        .iter()
        .map(|c| {
            let mut client = json!({
                "id": c.id,
                "userId": c.user_id,
                "state": c.state.as_str(),
                "encrypted": c.encrypted,
                "rooms": c.rooms,
            });
            if let Some(sid) = &c.alias {
                client["socketId"] = sid.as_str().into();
            }
            client
        })
        .collect();
    Json(json!({ "count": ids.len(), "clients": clients, "clientIds": ids }))
}

async fn client_rooms(
    State(server): State<Server>,
    Path(client_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    server
        .client_rooms(&client_id)
        .map(|rooms| Json(json!({ "success": true, "rooms": rooms })))
        .ok_or_else(|| client_not_found(&client_id))
}

#[derive(Deserialize)]
struct TopicBody {
    /// Missing, `null`, empty or not a string: 400 `Topic is required`, the IGNIS examples'
    /// words.
    #[serde(default)]
    topic: Value,
    #[serde(default)]
    data: Value,
}

/// A 404 for an unknown client, worded as the IGNIS examples word it.
fn client_not_found(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("Client not found: {id}"))
}

async fn send_to(
    server: &Server,
    target: BusTarget,
    body: &Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: TopicBody = parse(body)?;
    let topic = match &b.topic {
        Value::String(t) if !t.is_empty() => t,
        _ => return Err(bad_request("Topic is required".to_owned())),
    };
    let receipt = server.to(target.clone()).emit(topic, &b.data).await?;
    let message = match &target {
        BusTarget::Broadcast => format!("Broadcast sent to {} clients", receipt.local_recipients),
        BusTarget::Room(r) => format!("Message sent to room: {r}"),
        BusTarget::Client(c) => format!("Message sent to client: {c}"),
        BusTarget::User(u) => format!("Message sent to user: {u}"),
    };
    let mut answer = json!({
        "ok": true,
        "success": true,
        "message": message,
        "localRecipients": receipt.local_recipients,
    });
    if let Some(offset) = receipt.offset {
        answer["offset"] = offset.into();
    }
    Ok(Json(answer))
}

async fn broadcast(State(server): State<Server>, body: Bytes) -> Result<Json<Value>, ApiError> {
    send_to(&server, BusTarget::Broadcast, &body).await
}

async fn room_send(
    State(server): State<Server>,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    check_room(&room)?;
    send_to(&server, BusTarget::Room(room), &body).await
}

/// A room a send names must be one a client could be in: a name no client can join would
/// reach nobody, which is the caller's mistake to be told of.
fn check_room(room: &str) -> Result<(), ApiError> {
    RoomName::check(room).map_err(|_| {
        bad_request(format!(
            "invalid room name {room:?}: 1..=256 characters, not starting with \"ws:\""
        ))
    })
}

async fn client_send(
    State(server): State<Server>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    send_to(&server, BusTarget::Client(id), &body).await
}

async fn user_send(
    State(server): State<Server>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    send_to(&server, BusTarget::User(id), &body).await
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// Most publications one history page returns.
const MAX_HISTORY_PAGE: usize = 1000;

/// `GET /socket/history/{stream}?since=&limit=`: kept publications of a stream after `since`.
async fn history(
    State(server): State<Server>,
    Path(stream): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).min(MAX_HISTORY_PAGE);
    let page = server
        .history(&stream, q.since, limit)
        .await
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no history for stream {stream}"),
            )
        })?;
    Ok(Json(json!({
        "ok": true,
        "success": true,
        "stream": stream,
        "epoch": page.epoch,
        "offset": page.offset,
        "messages": page.messages,
    })))
}
