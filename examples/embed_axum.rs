//! Embedding sealwire in an existing axum application, with every hook.
//!
//! ```sh
//! cargo run --example embed_axum                       # listens on 127.0.0.1:3000
//! # in another terminal: connect a client as user "alice" (token "token-alice")
//! cargo run --example encrypted_client -- ws://127.0.0.1:3000/realtime token-alice
//! curl -X POST localhost:3000/orders/42/pay            # the app's own route pushes to the room
//! ```
//!
//! What it shows:
//! - an app router (`/`, `/orders/{id}/pay`) merged with sealwire's router at `/realtime`;
//! - an authenticate hook mapping `token-<user>` to a user with metadata;
//! - a room validator letting users join only `orders:*` and their own `user:<id>` room;
//! - connected/disconnected hooks, a typed handler for `order:note` (`{orderId, text}`) and a
//!   catch-all handler that answers `ping` with `pong`;
//! - an outbound transformer that stamps every message with the recipient's user id (encrypted
//!   clients still get it encrypted: the encryptor always runs last).

use sealwire::publish::Publish;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use sealwire::server::{AuthRequest, ClientInfo, Event, Identity, Server};
use sealwire::transport::HttpConfig;
use serde_json::json;
use serde_json::value::RawValue;

/// The payload of the `order:note` event.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderNote {
    order_id: u64,
    text: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("info,sealwire=debug")
        .init();

    let server = Server::builder()
        .authenticate(|req: AuthRequest| async move {
            let user = req.token.as_deref().and_then(|t| t.strip_prefix("token-")).map(str::to_owned);
            Ok(user.map(|u| Identity {
                metadata: json!({ "plan": if u == "alice" { "pro" } else { "free" } }),
                user_id: u,
                expires_at: None,
            }))
        })
        .validate_rooms(|client: Arc<ClientInfo>, rooms: Vec<String>| async move {
            let own = format!("user:{}", client.user_id);
            rooms.into_iter().filter(|r| r.starts_with("orders:") || *r == own).collect()
        })
        .on_connected(|server, client| async move {
            tracing::info!(user = %client.user_id, encrypted = client.encrypted, "client connected");
            let _ = server.to_client(&client.id).emit("welcome", &json!({ "user": client.user_id })).await;
        })
        .on_disconnected(|client, code| async move {
            tracing::info!(user = %client.user_id, code = code.code(), "client disconnected");
        })
        // `data` must decode into `OrderNote`; a client sending anything else gets the error
        // "Invalid message format".
        .on("order:note", |server, note: Event<OrderNote>| async move {
            let room = format!("orders:{}", note.data.order_id);
            let line = json!({ "from": note.client.user_id, "text": note.data.text });
            let _ = server.to_room(&room).emit("order:note", &line).await;
        })
        // Every other custom event.
        .on_message(|server, msg| async move {
            if msg.event == "ping" {
                let _ = server.to_client(&msg.client.id).emit("pong", &msg.data).await;
            }
        })
        .outbound_transformer(|client: &ClientInfo, event: &str, data: &RawValue| {
            let stamped = format!(r#"{{"for":{},"payload":{}}}"#, serde_json::to_string(&client.user_id).ok()?, data.get());
            Some((event.to_owned(), RawValue::from_string(stamped).ok()?))
        })
        .build()?;
    // Optional: `router` starts the server too, but starting here surfaces a bus error now.
    server.start().await?;
    // The WebSocket door's own settings: its path (and origins, buffers, the admin token).
    let mut door = HttpConfig::default();
    door.path = "/realtime".into();
    door.validate()?;

    let app = axum::Router::new()
        .route("/", get(|| async { "my shop" }))
        .route("/orders/{id}/pay", post(pay))
        .with_state(server.clone())
        .merge(sealwire::transport::router(server.clone(), &door));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    tracing::info!("listening on http://127.0.0.1:3000 (WebSocket at /realtime)");
    let shutdown_handle = server.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = tokio::signal::ctrl_c().await;
        // Close every WebSocket with 1001 before the HTTP server stops.
        shutdown_handle.shutdown().await;
    })
    .await?;
    Ok(())
}

async fn pay(State(server): State<Server>, Path(id): Path<u64>) -> String {
    let room = format!("orders:{id}");
    match server
        .to_room(&room)
        .emit("order:paid", &json!({ "order": id }))
        .await
    {
        Ok(r) => format!(
            "notified {} local client(s) in {room}\n",
            r.local_recipients
        ),
        Err(e) => format!("error: {e}\n"),
    }
}
