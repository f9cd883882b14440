//! The timers of a Socket.IO socket: until it authenticates, the authentication timeout
//! (which also ends it at a shutdown); once the core admitted it, the periodic application
//! `ping` (IGNIS path only) and the [`Incoming::Alive`] signals that keep the core from timing
//! the socket out, on a timer for as long as the socket lives (engine.io's own heartbeat is what
//! detects a dead Socket.IO client and ends the socket). One small task
//! per socket, off the delivery path: the core's frames go from its connection task straight
//! into the socket ([`super::outlet`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use serde_json::value::to_raw_value;

use super::bridge::Bridge;
use super::outlet::{Emitted, try_emit};
use crate::protocol::{BusEnvelope, BusTarget, now_iso8601};
use crate::server::{Incoming, Server};

/// Until it is authenticated, a socket has no core connection for a shutdown to close: this
/// task ends it then (its transport: a plain socket.io-client reconnects after that), or
/// disconnects it at the authentication timeout.
pub(super) fn start_auth_timer(bridge: &Arc<Bridge>) {
    let timer = Arc::clone(bridge);
    let stopping = bridge.server().shutdown_started();
    // Tracked: the shutdown waits for it to end the socket's transport.
    bridge.server().spawn_tracked(async move {
        let shutdown = tokio::select! {
            () = tokio::time::sleep(timer.config().auth_timeout) => false,
            () = stopping => true,
            // Gone already: nothing to time out (and no bridge held past it).
            () = timer.gone().cancelled() => return,
        };
        if timer.is_authenticated() {
            return;
        }
        if shutdown {
            timer.go_away();
        } else {
            tracing::debug!(sid = %timer.sid(), "socket.io socket not authenticated in time");
            timer.disconnect();
        }
    });
}

/// The sender id of the pings sent through the core (never a server's id, so they are
/// delivered).
const PING_SENDER: &str = "socket.io-ping";

/// The application-level `ping {time}` to the client `client_id`, through the core so that
/// an encrypted client gets it sealed. Delivered the way a bus message from another sender
/// is: to this instance's client only, never published.
pub(super) fn ping_through_core(server: &Server, client_id: &str) {
    let Ok(data) = to_raw_value(&json!({ "time": now_iso8601() })) else {
        return;
    };
    server.deliver_remote(BusEnvelope {
        server_id: PING_SENDER.to_owned(),
        target: BusTarget::Client(client_id.to_owned()),
        event: "ping".to_owned(),
        data,
        exclude: Vec::new(),
        kept: None,
    });
}

/// The periodic `ping`: sealed through the core for an encrypted client, emitted as is
/// otherwise. When engine.io's buffer is full this one is skipped: the writer is behind a
/// burst, not a client gone (engine.io's own heartbeat watches the session), and a healthy
/// client is not disconnected for it. `false` when the socket is gone.
fn send_ping(bridge: &Bridge) -> bool {
    if bridge.is_encrypted() {
        ping(bridge);
        return true;
    }
    bridge.socket().is_some_and(|socket| {
        try_emit(&socket, "ping", &json!({ "time": now_iso8601() })) != Emitted::Failed
    })
}

/// The application-level ping of an admitted client, through the core so that an encrypted
/// client gets it sealed ([`ping_through_core`]).
pub(super) fn ping(bridge: &Bridge) {
    if let Some(id) = bridge.client_id() {
        ping_through_core(bridge.server(), id);
    }
}

/// Waits for the core to admit the socket, then sends the periodic `ping`, and tells the core
/// the socket is alive ([`Incoming::Alive`]: engine.io's own heartbeat checks the client),
/// until the socket disconnects or its core connection ends.
pub(super) async fn keepalive(bridge: Arc<Bridge>) {
    let gone = bridge.gone().clone();
    tokio::select! {
        () = bridge.admission() => {}
        () = gone.cancelled() => return,
    }
    // Hardened sockets get no application-level `ping` (an IGNIS convention).
    let hardened = bridge.is_hardened();
    let ping_every = bridge.config().ping_interval.max(Duration::from_millis(10));
    let keepalive_every = (bridge.server().config().heartbeat_timeout / 3)
        .min(ping_every)
        .max(Duration::from_millis(10));
    let start = tokio::time::Instant::now();
    let mut ping = tokio::time::interval_at(start + ping_every, ping_every);
    let mut keepalive = tokio::time::interval_at(start + keepalive_every, keepalive_every);
    loop {
        tokio::select! {
            () = gone.cancelled() => break,
            _ = ping.tick(), if !hardened => {
                if !send_ping(&bridge) {
                    break;
                }
            }
            _ = keepalive.tick() => {
                let _ = bridge.to_core(Incoming::Alive);
            }
        }
    }
}
