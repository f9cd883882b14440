//! Helpers for the client SDK tests: servers on a fixed address (to restart them) and event
//! waits with timeouts.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use sealwire::client::{Event, Events, ReconnectPolicy};
use sealwire::server::{Server, ServerBuilder};
use sealwire::transport::{HttpConfig, serve_with_shutdown};

use super::{RECV_TIMEOUT, TestServer, wait_for};

/// Reconnects after 20 ms at first, 200 ms at most: a test's reconnects happen at once.
pub fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy::default()
        .initial_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
}

/// Starts a server built from `builder` on `addr` (e.g. the address of a stopped server).
pub async fn start_on(addr: SocketAddr, builder: ServerBuilder) -> TestServer {
    let server: Server = builder.build().expect("valid server config");
    let mut listener = None;
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let listener = listener.expect("rebind the address");
    let s = server.clone();
    let task = tokio::spawn(async move {
        serve_with_shutdown(listener, s, super::test_http(), std::future::pending()).await
    });
    wait_for(|| server.is_ready()).await;
    TestServer {
        server,
        addr,
        path: HttpConfig::default().path,
        task,
    }
}

/// The next event, failing the test after `RECV_TIMEOUT`.
pub async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(RECV_TIMEOUT, events.recv())
        .await
        .expect("timed out waiting for an event")
        .expect("event stream ended")
}

/// Skips events until `pred` matches one; returns it.
pub async fn event_where(events: &mut Events, mut pred: impl FnMut(&Event) -> bool) -> Event {
    loop {
        let ev = next_event(events).await;
        if pred(&ev) {
            return ev;
        }
    }
}

/// The next application message (other events are skipped).
pub async fn next_message(events: &mut Events) -> sealwire::client::Message {
    match event_where(events, |e| matches!(e, Event::Message(_))).await {
        Event::Message(m) => m,
        _ => unreachable!(),
    }
}
