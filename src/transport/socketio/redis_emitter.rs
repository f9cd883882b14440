//! Messages of `@socket.io/redis-emitter` (IGNIS workers) and of Socket.IO servers on the
//! Redis adapter, delivered to this instance's clients: every instance subscribes to the
//! adapter channels itself and delivers locally, so nothing is published again.
//!
//! What arrives is routed like a bus message ([`adapter_wire`] decodes it): no room means
//! every authenticated client, rooms (a client id is a room) their members, each client
//! once, except the members of `except` rooms. `socketsJoin`/`socketsLeave` requests apply
//! to this instance's authenticated clients; other requests (`disconnectSockets`,
//! `serverSideEmit`, fetches) are ignored.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::value::to_raw_value;

use super::adapter_wire::{self, Broadcast, RoomRequest};
use crate::backoff::ExponentialBackoff;
use crate::protocol::{BusEnvelope, BusTarget};
use crate::server::{ClientSnapshot, Server};

/// The adapter key IGNIS and Socket.IO use by default.
pub const DEFAULT_KEY: &str = "socket.io";

/// The sender id given to delivered messages (never this server's own id).
const SENDER: &str = "socket.io-emitter";

/// Reconnect delays: doubling from 100 ms to 5 s, full jitter above a 50 ms floor.
const BACKOFF: ExponentialBackoff = ExponentialBackoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(5),
    multiplier: 2.0,
    jitter: 1.0,
    floor: Duration::from_millis(50),
};

/// Subscribes to the Socket.IO adapter channels of `key` (`{key}#/#*` and
/// `{key}-request#/#`) on `redis_url` and delivers what arrives to `server`'s clients until
/// it shuts down, reconnecting with backoff (messages published while disconnected are lost:
/// Redis pub/sub is at-most-once).
///
/// # Errors
/// A `redis_url` the Redis client does not accept.
pub fn spawn_redis_emitter_bridge(
    server: &Server,
    redis_url: &str,
    key: &str,
) -> Result<(), redis::RedisError> {
    spawn_redis_emitter_bridge_with_ca(server, redis_url, key, None)
}

/// [`spawn_redis_emitter_bridge`] for a `rediss://` server whose certificate is signed by
/// `ca_pem` (PEM; replaces the bundled web roots as for the bus, `--redis-ca-file`).
///
/// # Errors
/// A `redis_url` the Redis client does not accept.
pub fn spawn_redis_emitter_bridge_with_ca(
    server: &Server,
    redis_url: &str,
    key: &str,
    ca_pem: Option<&[u8]>,
) -> Result<(), redis::RedisError> {
    let client = crate::bus::open_client(redis_url, ca_pem)?;
    let key = key.to_owned();
    let task_server = server.clone();
    server.spawn_tracked(async move {
        let stop = task_server.shutdown_started();
        tokio::pin!(stop);
        let mut retry = 0_u32;
        loop {
            tokio::select! {
                () = &mut stop => return,
                r = run(&client, &key, &task_server) => match r {
                    // A subscription that was up and ended: reconnect from the start of the curve.
                    Ok(()) => retry = 0,
                    Err(e) => {
                        tracing::warn!(error = %e, retry, "socket.io adapter subscription failed; retrying");
                    }
                },
            }
            let delay = BACKOFF.delay(retry, rand::random::<f64>());
            retry = retry.saturating_add(1);
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    });
    Ok(())
}

/// One subscription, until the connection ends.
async fn run(client: &redis::Client, key: &str, server: &Server) -> redis::RedisResult<()> {
    let mut pubsub = client.get_async_pubsub().await?;
    let broadcasts = format!("{key}#/#*");
    let requests = format!("{key}-request#/#");
    pubsub.psubscribe(&broadcasts).await?;
    pubsub.subscribe(&requests).await?;
    tracing::info!(key, "subscribed to the socket.io adapter channels");
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        let payload = msg.get_payload_bytes();
        if msg.get_channel_name() == requests {
            match adapter_wire::decode_request(payload) {
                Some(request) => apply_request(server, &request),
                None => tracing::debug!("socket.io adapter request ignored"),
            }
        } else {
            match adapter_wire::decode_broadcast(payload) {
                Some(broadcast) => deliver(server, broadcast),
                None => tracing::debug!(len = payload.len(), "socket.io adapter message ignored"),
            }
        }
    }
    Ok(())
}

fn in_any(client: &ClientSnapshot, rooms: &[String]) -> bool {
    client.rooms.iter().any(|r| rooms.contains(r))
}

/// Delivers one broadcast locally.
fn deliver(server: &Server, b: Broadcast) {
    let Ok(data) = to_raw_value(&b.data) else {
        return;
    };
    // Members of `except` rooms, and with several rooms the members of earlier ones, are
    // skipped: a client gets each message once.
    let snapshot = (!b.except.is_empty() || b.rooms.len() > 1).then(|| server.clients());
    let mut exclude: Vec<String> = snapshot
        .iter()
        .flatten()
        .filter(|c| in_any(c, &b.except))
        .map(|c| c.id.clone())
        .collect();
    let targets: Vec<BusTarget> = if b.rooms.is_empty() {
        vec![BusTarget::Broadcast]
    } else {
        b.rooms.iter().cloned().map(BusTarget::Room).collect()
    };
    for (i, target) in targets.into_iter().enumerate() {
        if i > 0
            && let Some(clients) = &snapshot
        {
            let previous = &b.rooms[i - 1];
            exclude.extend(
                clients
                    .iter()
                    .filter(|c| c.rooms.contains(previous))
                    .map(|c| c.id.clone()),
            );
        }
        server.deliver_remote(BusEnvelope {
            server_id: SENDER.to_owned(),
            target,
            event: b.event.clone(),
            data: data.clone(),
            exclude: exclude.clone(),
            kept: None,
        });
    }
    tracing::debug!(uid = %b.uid, event = %b.event, "socket.io adapter message delivered");
}

/// Applies `socketsJoin` / `socketsLeave` to this instance's authenticated clients.
fn apply_request(server: &Server, r: &RoomRequest) {
    for client in server.clients() {
        if client.user_id.is_none()
            || (!r.in_rooms.is_empty() && !in_any(&client, &r.in_rooms))
            || in_any(&client, &r.except)
        {
            continue;
        }
        let _ = if r.join {
            server.join(&client.id, &r.rooms)
        } else {
            server.leave(&client.id, &r.rooms)
        };
    }
}
