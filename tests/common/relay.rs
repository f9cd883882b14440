//! A WebSocket relay that sits between a client and a server, as a TLS-terminating proxy or
//! an active attacker would: it records every text frame in both directions and may rewrite,
//! drop or inject frames.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// What the relay does with one frame: the frames to forward instead (empty drops it).
pub type Tamper = Arc<dyn Fn(Dir, usize, &str) -> Vec<String> + Send + Sync>;

/// What a [`Tamper`] returns to send a close frame instead of a text frame (see
/// [`close_frame`]); the relay then stops forwarding in that direction.
const CLOSE_MARKER: &str = "\u{0}close ";

/// A close frame with `code` and `reason` for a [`Tamper`] to inject.
pub fn close_frame(code: u16, reason: &str) -> String {
    format!("{CLOSE_MARKER}{code} {reason}")
}

/// The close frame `out` stands for, if it is one ([`close_frame`]).
fn as_close(out: &str) -> Option<Message> {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let (code, reason) = out.strip_prefix(CLOSE_MARKER)?.split_once(' ')?;
    Some(Message::Close(Some(CloseFrame {
        code: code.parse::<u16>().ok()?.into(),
        reason: reason.to_owned().into(),
    })))
}

/// Forwards every frame unchanged.
pub fn passive() -> Tamper {
    Arc::new(|_, _, text| vec![text.to_owned()])
}

pub struct Relay {
    pub addr: SocketAddr,
    /// Every text frame seen, in order, with its direction (before tampering).
    pub seen: Arc<Mutex<Vec<(Dir, String)>>>,
}

impl Relay {
    /// Relays each accepted connection to `upstream` (a `ws://` URL). `tamper` gets each frame
    /// with its direction and its index in that direction (0-based).
    pub async fn start(upstream: String, tamper: Tamper) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<(Dir, String)>>> = Arc::default();
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (upstream, tamper, log) =
                    (upstream.clone(), Arc::clone(&tamper), Arc::clone(&log));
                tokio::spawn(async move {
                    let Ok(client) = tokio_tungstenite::accept_async(tcp).await else {
                        return;
                    };
                    let Ok((server, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await
                    else {
                        return;
                    };
                    let (mut c_tx, mut c_rx) = client.split();
                    let (mut s_tx, mut s_rx) = server.split();
                    let (log_up, tamper_up) = (Arc::clone(&log), Arc::clone(&tamper));
                    let up = async move {
                        let mut n = 0;
                        while let Some(Ok(msg)) = c_rx.next().await {
                            match msg {
                                Message::Text(t) => {
                                    log_up.lock().expect("log").push((Dir::Up, t.to_string()));
                                    for out in tamper_up(Dir::Up, n, t.as_str()) {
                                        if let Some(close) = as_close(&out) {
                                            let _ = s_tx.send(close).await;
                                            return;
                                        }
                                        if s_tx.send(Message::text(out)).await.is_err() {
                                            return;
                                        }
                                    }
                                    n += 1;
                                }
                                Message::Close(f) => {
                                    let _ = s_tx.send(Message::Close(f)).await;
                                    return;
                                }
                                _ => {}
                            }
                        }
                        let _ = s_tx.close().await;
                    };
                    let down = async move {
                        let mut n = 0;
                        while let Some(Ok(msg)) = s_rx.next().await {
                            match msg {
                                Message::Text(t) => {
                                    log.lock().expect("log").push((Dir::Down, t.to_string()));
                                    for out in tamper(Dir::Down, n, t.as_str()) {
                                        if let Some(close) = as_close(&out) {
                                            let _ = c_tx.send(close).await;
                                            return;
                                        }
                                        if c_tx.send(Message::text(out)).await.is_err() {
                                            return;
                                        }
                                    }
                                    n += 1;
                                }
                                Message::Close(f) => {
                                    let _ = c_tx.send(Message::Close(f)).await;
                                    return;
                                }
                                _ => {}
                            }
                        }
                        let _ = c_tx.close().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Self { addr, seen }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Every recorded frame, concatenated (for "never appears on the wire" checks).
    pub fn transcript(&self) -> String {
        self.seen
            .lock()
            .expect("log")
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn frames(&self, dir: Dir) -> Vec<String> {
        self.seen
            .lock()
            .expect("log")
            .iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, t)| t.clone())
            .collect()
    }
}
