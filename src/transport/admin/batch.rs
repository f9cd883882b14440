//! `POST /socket/batch`: many sends in one request, validated whole before the first goes
//! out, then published in order.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, MAX_BATCH, bad_request, check_room, parse};
use crate::protocol::{EventName, SendError};
use crate::publish::{Publication, Publish};
use crate::server::Server;

#[derive(Deserialize)]
struct BatchItem {
    #[serde(default)]
    destination: Option<String>,
    /// Missing, `null`, empty or not a string: 400 `message N: Topic is required`.
    #[serde(default)]
    topic: Value,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct BatchBody {
    messages: Vec<BatchItem>,
}

/// Many sends in one request, routed like `send()` and delivered in order. The whole batch is
/// validated before the first message goes out, so a bad item sends nothing.
pub(super) async fn batch(
    State(server): State<Server>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: BatchBody = parse(&body)?;
    if b.messages.len() > MAX_BATCH {
        return Err(bad_request(format!(
            "batch too large: {} messages (max {MAX_BATCH})",
            b.messages.len()
        )));
    }
    // All of a batch may go to one client, queued faster than it can read: it must fit in one
    // outbox, or that client would be closed as a slow consumer with none of it.
    let outbox = (
        server.config().outbox_messages,
        server.config().outbox_bytes,
    );
    if b.messages.len() > outbox.0 {
        return Err(bad_request(format!(
            "batch too large: {} messages (max {}, one client's outbox); send it in parts",
            b.messages.len(),
            outbox.0
        )));
    }
    let mut bytes = 0usize;
    let mut prepared = Vec::with_capacity(b.messages.len());
    for (i, m) in b.messages.into_iter().enumerate() {
        let topic = match m.topic {
            Value::String(t) if !t.is_empty() => t,
            _ => return Err(bad_request(format!("message {i}: Topic is required"))),
        };
        let data = serde_json::value::to_raw_value(&m.data).map_err(SendError::from)?;
        let event = EventName::new(topic)
            .map_err(|e| bad_request(format!("message {i}: {}", SendError::from(e))))?;
        // A destination is a client id (always a valid room name) or a room.
        if let Some(d) = &m.destination {
            check_room(d).map_err(|e| bad_request(format!("message {i}: {}", e.1)))?;
        }
        // The size limit, for the whole batch before the first message goes out.
        let frame = server
            .frame(event.as_str(), data.clone())
            .map_err(|e| bad_request(format!("message {i}: {e}")))?;
        bytes = bytes.saturating_add(frame.json.len());
        prepared.push((m.destination, event, data));
    }
    if bytes > outbox.1 {
        return Err(bad_request(format!(
            "batch too large: {bytes} bytes (max {}, one client's outbox); send it in parts",
            outbox.1
        )));
    }
    let mut local = 0;
    let count = prepared.len();
    // Each one published as `send()` publishes: history offsets, publishing turns, the bus.
    for (destination, event, data) in prepared {
        let target = server.resolve_destination(destination.as_deref());
        local += server
            .publish(Publication::new(target, event, data))
            .await?
            .local_recipients;
    }
    Ok(Json(json!({
        "ok": true,
        "success": true,
        "message": format!("Batch of {count} messages sent"),
        "count": count,
        "localRecipients": local,
    })))
}
