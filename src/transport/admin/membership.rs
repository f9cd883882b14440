//! The admin API's membership calls: `POST /socket/client/{id}/join` and `/leave`.

use std::collections::HashSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, bad_request, check_room, client_not_found, parse};
use crate::protocol::{BusTarget, RoomName};
use crate::server::Server;

#[derive(Deserialize)]
struct RoomsBody {
    /// Missing, `null`, empty or not an array: 400 `Rooms array is required`, the IGNIS
    /// examples' words.
    #[serde(default)]
    rooms: Value,
}

/// The rooms of a join or leave body for client `id`: at most `max_rooms_per_client` of them
/// (a client can never be in more), every one a valid room name, each kept once. A join also
/// refuses names shaped like a client id, and the id or `socket.id` of another client here:
/// those rooms belong to the client they name.
fn rooms_body(
    server: &Server,
    id: &str,
    body: &Bytes,
    join: bool,
) -> Result<Vec<String>, ApiError> {
    let b: RoomsBody = parse(body)?;
    let rooms: Vec<String> = match b.rooms {
        Value::Array(rooms) if !rooms.is_empty() => rooms
            .into_iter()
            .map(|r| match r {
                Value::String(r) => Ok(r),
                other => Err(bad_request(format!(
                    "invalid room name {other}: not a string"
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad_request("Rooms array is required".to_owned())),
    };
    let max = server.config().max_rooms_per_client;
    if rooms.len() > max {
        return Err(bad_request(format!(
            "Too many rooms: {} (max {max})",
            rooms.len()
        )));
    }
    for room in &rooms {
        check_room(room)?;
    }
    if join && let Some(bad) = rooms.iter().find(|r| RoomName::check_joinable(r).is_err()) {
        return Err(bad_request(format!(
            "invalid room name {bad:?}: names shaped like a client id (a UUID) are reserved"
        )));
    }
    if join {
        let own = server.client_named(id);
        if let Some(bad) = rooms.iter().find(|r| {
            server
                .client_named(r)
                .is_some_and(|named| Some(&named) != own.as_ref())
        }) {
            return Err(bad_request(format!(
                "invalid room name {bad:?}: it names another client"
            )));
        }
    }
    let mut seen = HashSet::with_capacity(rooms.len());
    Ok(rooms
        .into_iter()
        .filter(|r| seen.insert(r.clone()))
        .collect())
}

pub(super) async fn client_join(
    State(server): State<Server>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let rooms = rooms_body(&server, &id, &body, true)?;
    // A name another instance's client holds (its `socket.id`); the client's own is local.
    let own = server.client_named(&id);
    let in_use = server.names_in_use(&rooms).await;
    if let Some(bad) = rooms
        .iter()
        .find(|r| in_use.contains(*r) && server.client_named(r) != own)
    {
        return Err(bad_request(format!(
            "invalid room name {bad:?}: it names another client"
        )));
    }
    let joined = server
        .join(&id, &rooms)
        .ok_or_else(|| client_not_found(&id))?;
    // Answered once sends to the rooms from other instances reach the client.
    let targets: Vec<_> = joined.iter().cloned().map(BusTarget::Room).collect();
    server.await_targets(&targets).await;
    let message = format!("Client {id} joined rooms: {}", joined.join(", "));
    Ok(Json(json!({
        "ok": true,
        "success": true,
        "message": message,
        "joined": joined,
        "rooms": server.client_rooms(&id).unwrap_or_default(),
    })))
}

pub(super) async fn client_leave(
    State(server): State<Server>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let rooms = rooms_body(&server, &id, &body, false)?;
    let left = server
        .leave(&id, &rooms)
        .ok_or_else(|| client_not_found(&id))?;
    let message = format!("Client {id} left rooms: {}", left.join(", "));
    Ok(Json(json!({
        "ok": true,
        "success": true,
        "message": message,
        "left": left,
        "rooms": server.client_rooms(&id).unwrap_or_default(),
    })))
}
