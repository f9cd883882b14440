//! Socket.IO transport: IGNIS `SocketIOServerHelper` clients on the same core as the
//! WebSocket ones.
//!
//! A Socket.IO socket is one more client of the core: it runs the same connection actor over
//! a socket of its own (`socket.rs`), so registry, rooms, users, delivery from every API,
//! hooks and per-client encryption are those of `/ws`. The bridge (`bridge.rs`) turns
//! Socket.IO events into the core's frames; the core's frames become emits in the connection's
//! own task (`outlet.rs`, `translate.rs`); a socket that asks for the hardened profile carries
//! the `/ws` frames themselves in `sealwire` events (`tunnel.rs`); see `docs/PROTOCOL.md`,
//! "Socket.IO".
//!
//! ```text
//! connect middleware (before the connect ack): bridge set up, handlers registered (opening.rs)
//! client events -> socketioxide handler -> bridge -> inbound channel -> core connection task
//! core connection task -> socket (translate, emit) -> engine.io writer task -> client
//! keepalive task (once admitted): ping every ping_interval, heartbeat to the core
//! ```
//!
//! Mount [`router`] next to [`super::router`] (the `sealwire` binary passes it to the accept
//! loop as [`super::HttpConfig::routes`]): engine.io's polling requests and WebSocket
//! upgrades to [`SocketIoConfig::path`] then reach it.

#[cfg(feature = "redis")]
mod adapter_wire;
mod admission;
mod bridge;
mod config;
mod credentials;
mod departed;
mod farewell;
mod keepalive;
mod lenient;
mod opening;
mod outlet;
mod raw_json;
#[cfg(feature = "redis")]
mod redis_emitter;
mod socket;
mod translate;
mod tunnel;

use std::sync::Arc;

use axum::Router;
use futures_util::future::Either;
use serde_json::Value;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler as _;
use socketioxide::{ParserConfig, SocketIo};

use opening::Setup;

pub use config::SocketIoConfig;
#[cfg(feature = "redis")]
pub use redis_emitter::{
    DEFAULT_KEY, spawn_redis_emitter_bridge, spawn_redis_emitter_bridge_with_ca,
};

use crate::server::Server;

/// The `connect_error` message of a second `CONNECT` on a connected session.
const ALREADY_CONNECTED: &str = "Already connected";

/// The `connect_error` message of a `CONNECT` on a session whose socket left.
const SESSION_CLOSED: &str = "Session closed";

/// The Socket.IO endpoint at [`SocketIoConfig::path`] (and `{path}/`), websocket and polling
/// transports, for `server`'s clients. Merge it into the app that serves `server`.
///
/// ```no_run
/// # async fn run() -> anyhow::Result<()> {
/// use sealwire::server::{DevAuth, Server};
/// use sealwire::transport::socketio::{self, SocketIoConfig};
/// use sealwire::transport::{HttpConfig, bind, serve_with_shutdown};
///
/// let server = Server::builder().authenticate(DevAuth).build()?;
/// let mut http = HttpConfig::default();
/// // `/ws` and `/io/` on one port.
/// http.routes = Some(socketio::router(server.clone(), SocketIoConfig::default()));
/// let listener = bind("127.0.0.1:8080".parse()?)?;
/// serve_with_shutdown(listener, server, http, std::future::pending()).await?;
/// # Ok(()) }
/// ```
///
/// # Panics
/// If an entry of [`SocketIoConfig::allowed_origins`] is not of the form
/// `scheme://host[:port]` (as `HttpConfig::validate` refuses it for `/ws`), or
/// [`SocketIoConfig::path`] (less a trailing `/`) is not a literal path
/// ([`check_path`](crate::transport::check_path)).
pub fn router(server: Server, config: SocketIoConfig) -> Router {
    if let Err(e) = super::config::check_origins(&config.allowed_origins)
        .and_then(|()| super::config::check_path(config.base_path()))
    {
        panic!("invalid SocketIoConfig: {e}");
    }
    let config = Arc::new(config);
    let path = config.base_path().to_owned();
    let max_payload = u64::try_from(server.config().max_message_bytes).unwrap_or(u64::MAX);
    // A session must connect to the namespace within the authentication timeout (clients
    // send that at once); until then its handshake holds a connection slot.
    let connect_timeout = config.auth_timeout;
    let admission = admission::Admission::new(
        server.clone(),
        connect_timeout.saturating_add(admission::HOLD_MARGIN),
        config
            .eio_ping_interval
            .saturating_add(config.eio_ping_timeout),
    );
    let (service, io) = SocketIo::builder()
        .req_path(path.clone())
        .ping_interval(config.eio_ping_interval)
        .ping_timeout(config.eio_ping_timeout)
        .connect_timeout(connect_timeout)
        .max_buffer_size(config.max_buffer_packets)
        // One bound on what a client may send, whichever the transport: a polling request's
        // payload, and each WebSocket message and frame (engine.io's default lets 64 MiB
        // through), as `max_message_bytes` bounds `/ws`.
        .max_payload(max_payload)
        .ws_max_message_size(server.config().max_message_bytes)
        .ws_max_frame_size(server.config().max_message_bytes)
        // Binary attachments: the protocol's events carry JSON, so a packet announcing
        // binary attachments is bounded like any message (and must be complete within the
        // connect timeout). The parser collects them before any namespace or authentication
        // is involved: without bounds, one session could make the server keep whatever
        // binary frames it sends.
        .with_parser(
            ParserConfig::common()
                .max_incoming_binaries(MAX_ATTACHMENTS)
                .max_incoming_binary_buf_size(server.config().max_message_bytes)
                .packet_completion_timeout(connect_timeout),
        )
        .build_svc();
    let ns_config = Arc::clone(&config);
    let ns_admission = Arc::clone(&admission);
    // See `opening.rs`: the socket is set up before socketioxide acknowledges its connect,
    // and opened once it is connected.
    let setup = move |socket: SocketRef, io: SocketIo, TryData::<Value>(auth): TryData<Value>| {
        // A second `CONNECT` on a session whose socket is still in the namespace: socketioxide
        // would put the new socket in the old one's place (both are named after the
        // session), leaving a connected old one without a disconnect, or, when the old one
        // is leaving (`41` just before), having its deferred removal take the new one out of
        // the namespace. Refused with a `connect_error`; a connected socket carries on.
        if io.get_socket(socket.id).is_some() {
            return Either::Left(std::future::ready(Err(ALREADY_CONNECTED)));
        }
        // A session whose socket left is ending (`departed.rs`): no socket again on it.
        if ns_admission.has_left(socket.id) {
            return Either::Left(std::future::ready(Err(SESSION_CLOSED)));
        }
        let setup = bridge::connect(&server, &ns_config, &ns_admission, io, &socket, auth.ok());
        socket.extensions.insert(setup);
        // The `socket.id` is reserved on every instance before the acknowledgement tells the
        // client (and so anyone) what it is: no client anywhere can join its room first.
        let reserved = server.reserve_socket_id(socket.id.as_str());
        Either::Right(async move {
            reserved.await;
            Ok(())
        })
    };
    let opened = Arc::clone(&admission);
    let connected = move |socket: SocketRef| {
        if let Some(setup) = socket.extensions.remove::<Setup>() {
            setup.finish(&socket, &opened);
        }
        std::future::ready(())
    };
    io.ns("/", connected.with(setup));
    let slash = if path == "/" {
        path.clone()
    } else {
        format!("{path}/")
    };
    let router = Router::new().route_service(&slash, service.clone());
    let router = if slash == path {
        router
    } else {
        router.route_service(&path, service)
    };
    router
        .route_layer(axum::middleware::from_fn_with_state(
            admission,
            admission::admit,
        ))
        .route_layer(cors(&config.allowed_origins))
}

/// CORS for the endpoint: socket.io-client in a browser on another origin starts with
/// polling, which is plain cross-origin HTTP. Without `allowed_origins`, any origin may
/// poll, without credentials (`Access-Control-Allow-Origin: *`, what IGNIS's `cors.origin:
/// '*'` amounts to in a browser): cookies are neither sent nor exposed, so an application
/// that authenticates by cookie is not readable from other sites. With a list, those origins
/// only, credentials included. Preflights are answered here.
fn cors(allowed_origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method};
    use tower_http::cors::{AllowCredentials, AllowHeaders, AllowOrigin, CorsLayer};
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(AllowHeaders::mirror_request());
    if allowed_origins.is_empty() {
        return layer.allow_origin(AllowOrigin::any());
    }
    let origins = allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect::<Vec<_>>();
    let listed = origins.clone();
    layer
        .allow_origin(AllowOrigin::list(origins))
        // To the listed origins only: another gets neither its origin nor credentials.
        .allow_credentials(AllowCredentials::predicate(move |origin, _| {
            listed.contains(origin)
        }))
}

/// The most binary attachments one Socket.IO packet may announce.
const MAX_ATTACHMENTS: usize = 8;
