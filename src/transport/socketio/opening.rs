//! How a socket joins the namespace without losing its first event.
//!
//! socketioxide acknowledges a namespace connect (`40`) before it marks the socket connected
//! and runs the connect handler, and a client emits `authenticate` the moment the
//! acknowledgement arrives. So a socket is set up in a connect middleware, which runs before
//! the acknowledgement: its bridge made, its handlers registered ([`super::bridge::connect`]).
//! What it sends before it is connected waits at the [`Doorstep`], in order, and the connect
//! handler opens the door once the socket is connected, so that no reply (`authenticated`) is
//! emitted on a socket that cannot take it yet. A refusal is said by the connect handler too,
//! on the connected socket.
//!
//! ```text
//! CONNECT  -> middleware: bridge + handlers        (Setup kept in the socket's extensions)
//!          <- 40 (ack)
//! authenticate ...                                 kept at the doorstep
//!          -> connect handler: socket connected    door opened: kept events handled, in order
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use socketioxide::extract::SocketRef;

use super::admission::Admission;
use super::bridge::Bridge;
use super::farewell::{disconnect, refuse};

/// Events kept before the door opens; later ones are dropped (a client may only have sent its
/// `authenticate`, or a hardened socket its `hello`, before it hears back).
const KEPT: usize = 16;

/// Events that arrive before the socket is connected, kept until it is.
#[derive(Debug)]
pub(super) struct Doorstep<E> {
    /// `Some` (the events kept) until the door opens.
    waiting: Mutex<Option<VecDeque<E>>>,
}

impl<E> Default for Doorstep<E> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(Some(VecDeque::new())),
        }
    }
}

impl<E> Doorstep<E> {
    /// Hands `event` to `handle` if the door is open; keeps it otherwise (and drops it past
    /// [`KEPT`]). Events of one socket arrive one after another, so once the door is open
    /// they are handled in arrival order, after every kept one.
    pub(super) fn receive(&self, event: E, handle: impl FnOnce(E)) {
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(kept) = waiting.as_mut() {
                if kept.len() < KEPT {
                    kept.push_back(event);
                } else {
                    tracing::debug!("event before the socket was connected dropped");
                }
                return;
            }
        }
        handle(event);
    }

    /// Opens the door: the kept events go to `handle`, in order, and every later one goes
    /// straight through. An event arriving meanwhile waits for the kept ones.
    pub(super) fn open(&self, mut handle: impl FnMut(E)) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        for event in waiting.take().into_iter().flatten() {
            handle(event);
        }
    }
}

/// Why a socket is turned away; said on the socket once it is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Disconnected with nothing said (an origin not allowed).
    Quiet,
    /// The server is shutting down: the session's transport ends, with nothing said, so that
    /// the client reconnects (to another instance).
    Unavailable,
    /// `unauthenticated {message, time}`, then disconnected (over the connection limits).
    Unauthenticated(&'static str),
}

/// What the connect middleware left for the connect handler (in the socket's extensions).
#[derive(Clone)]
pub(super) enum Setup {
    /// The socket's bridge, whose door the handler opens.
    Ready(Arc<Bridge>),
    /// The socket is turned away.
    Refused(Refusal),
}

impl Setup {
    /// The connect handler's part, on the connected socket.
    pub(super) fn finish(self, socket: &SocketRef, admission: &Admission) {
        match self {
            Self::Ready(bridge) => bridge.open(),
            Self::Refused(Refusal::Quiet) => disconnect(socket.clone()),
            Self::Refused(Refusal::Unavailable) => admission.end_transport(socket),
            Self::Refused(Refusal::Unauthenticated(message)) => refuse(socket, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_events_go_first_and_in_order_then_the_door_stays_open() {
        let door = Doorstep::default();
        let mut handled = Vec::new();
        door.receive(1, |e| handled.push(e));
        door.receive(2, |e| handled.push(e));
        assert!(handled.is_empty(), "kept until the door opens");
        door.open(|e| handled.push(e));
        assert_eq!(handled, [1, 2]);
        door.receive(3, |e| handled.push(e));
        assert_eq!(handled, [1, 2, 3]);
        door.open(|e| handled.push(e));
        assert_eq!(handled, [1, 2, 3], "opening twice replays nothing");
    }

    #[test]
    fn a_flood_before_the_door_opens_is_bounded() {
        let door = Doorstep::default();
        for e in 0..100 {
            door.receive(e, |_| panic!("the door is closed"));
        }
        let mut handled = Vec::new();
        door.open(|e| handled.push(e));
        assert_eq!(handled, (0..KEPT).collect::<Vec<_>>());
    }

    #[test]
    fn an_event_arriving_while_the_door_opens_waits_for_the_kept_ones() {
        let door = Arc::new(Doorstep::default());
        let handled = Arc::new(Mutex::new(Vec::new()));
        door.receive(0, |_| unreachable!());
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let opener = {
            let (door, handled) = (Arc::clone(&door), Arc::clone(&handled));
            std::thread::spawn(move || {
                door.open(|e| {
                    started_tx.send(()).expect("started");
                    // Slow on purpose: the event below arrives while this one is handled.
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    handled.lock().expect("handled").push(e);
                });
            })
        };
        started_rx.recv().expect("the door is opening");
        door.receive(1, |e| handled.lock().expect("handled").push(e));
        opener.join().expect("opener");
        assert_eq!(*handled.lock().expect("handled"), [0, 1]);
    }
}
