//! The task that carries a core connection's frames to its Socket.IO socket: through the
//! [`Translator`] for IGNIS-path sockets, through the [`Tunnel`] for hardened ones.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::bridge::Bridge;
use super::translate::{Action, Translator};
use super::tunnel::{self, Tunnel, TunnelAction};
use crate::protocol::Text;
use crate::server::{Incoming, Outgoing};

/// The plaintext `heartbeat` that keeps the core from timing out a connected socket.
const HEARTBEAT_FRAME: &str = r#"{"event":"heartbeat"}"#;

/// What one core message led to.
enum Step {
    Go,
    /// The socket was admitted: restart the ping interval.
    Admitted,
    Stop,
}

/// Carries the core's frames to the socket until either side ends; sends the periodic
/// `ping` (IGNIS path only) and, while the socket is connected, the `heartbeat` frames that
/// keep the core from timing it out (engine.io's own heartbeat is what detects a dead
/// Socket.IO client).
pub(super) async fn pump(bridge: Arc<Bridge>, mut from_core: mpsc::Receiver<Outgoing>) {
    let mut translator = Translator::default();
    let mut tunnel = Tunnel::default();
    let mut encrypted = false;
    let hardened = bridge.is_hardened();
    let ping_every = bridge.config().ping_interval.max(Duration::from_millis(10));
    let keepalive_every = (bridge.server().config().heartbeat_timeout / 3)
        .min(ping_every)
        .max(Duration::from_millis(10));
    let start = tokio::time::Instant::now();
    let mut ping = tokio::time::interval_at(start + ping_every, ping_every);
    let mut keepalive = tokio::time::interval_at(start + keepalive_every, keepalive_every);
    loop {
        let authenticated = bridge.is_authenticated();
        tokio::select! {
            msg = from_core.recv() => {
                let Some(msg) = msg else {
                    bridge.disconnect();
                    break;
                };
                let step = if hardened {
                    tunnel_step(&bridge, &mut tunnel, &msg)
                } else {
                    ignis_step(&bridge, &mut translator, &msg, &mut encrypted)
                };
                match step {
                    Step::Go => {}
                    Step::Admitted => ping.reset(),
                    Step::Stop => break,
                }
            }
            // Hardened sockets get no application-level `ping` (an IGNIS convention).
            _ = ping.tick(), if authenticated && !hardened => {
                if encrypted {
                    bridge.ping();
                } else if let Some(socket) = bridge.socket() {
                    if !bridge.ping_plain(&socket) {
                        break;
                    }
                } else {
                    break;
                }
            }
            _ = keepalive.tick(), if authenticated => {
                // Plaintext `heartbeat` is allowed in every profile (docs/PROTOCOL.md §5.4).
                let _ = bridge.to_core(Incoming::Text(Text::from_static(HEARTBEAT_FRAME)));
            }
        }
    }
}

fn ignis_step(
    bridge: &Bridge,
    translator: &mut Translator,
    msg: &Outgoing,
    encrypted: &mut bool,
) -> Step {
    let Some(socket) = bridge.socket() else {
        return Step::Stop;
    };
    match translator.translate(msg) {
        Action::Skip => Step::Go,
        Action::Emit(name, data) => {
            if bridge.emit(&socket, &name, &data) {
                Step::Go
            } else {
                Step::Stop
            }
        }
        Action::Authenticated {
            payload,
            encrypted: sealed,
        } => {
            *encrypted = sealed;
            if bridge.authenticated(&socket, &payload, sealed) {
                Step::Admitted
            } else {
                let _ = socket.disconnect();
                Step::Stop
            }
        }
        Action::Disconnect { unauthenticated } => {
            match unauthenticated {
                Some(message) => bridge.refuse(&message),
                None => {
                    let _ = socket.disconnect();
                }
            }
            Step::Stop
        }
    }
}

fn tunnel_step(bridge: &Bridge, tunnel: &mut Tunnel, msg: &Outgoing) -> Step {
    let Some(socket) = bridge.socket() else {
        return Step::Stop;
    };
    let (frame, admitted) = match tunnel.translate(msg) {
        TunnelAction::Skip => return Step::Go,
        TunnelAction::Emit(frame) => (frame, false),
        TunnelAction::Hello { id, frame } => {
            bridge.set_tunnel_id(&id);
            (frame, false)
        }
        TunnelAction::FirstRecord(frame) => {
            // The core indexes a client before it writes its `connected`: a registered
            // client means this record is that `connected`, not the error before a close.
            let admitted = bridge
                .tunnel_id()
                .filter(|id| bridge.server().client_info(id).is_some())
                .map(str::to_owned);
            if let Some(id) = &admitted {
                bridge.admitted(id);
            }
            (frame, admitted.is_some())
        }
        TunnelAction::Close { code, reason } => {
            let _ = socket.emit(
                tunnel::CLOSE_EVENT,
                &json!({ "code": code, "reason": reason }),
            );
            let _ = socket.disconnect();
            return Step::Stop;
        }
    };
    if !bridge.emit(&socket, tunnel::FRAME_EVENT, &frame) {
        return Step::Stop;
    }
    if admitted { Step::Admitted } else { Step::Go }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keepalive_is_a_heartbeat() {
        let frame: serde_json::Value =
            serde_json::from_str(HEARTBEAT_FRAME).expect("heartbeat frame is JSON");
        assert_eq!(frame["event"], crate::protocol::event::HEARTBEAT);
    }
}
