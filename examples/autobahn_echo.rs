//! An echo endpoint for the Autobahn|Testsuite fuzzing client, on sealwire's own WebSocket
//! stack: the accept loop's upgrade path (`transport::accept_websocket`: the same head parsing,
//! `front_door::decide`, 101 and write coalescing) and the tungstenite configuration the
//! server derives from its `ServerConfig`. Only the message limit is raised (to 64 MiB), since
//! the suite's case 9 sends messages of up to 16 MiB; everything else is the default
//! configuration. Text and binary messages are echoed; pings, pongs and the close handshake
//! are tungstenite's, and a close is written out through the transport's closing wrapper, as
//! in the server.
//!
//! ```sh
//! cargo run --release --example autobahn_echo -- 127.0.0.1:9001
//! ```
//!
//! `benches/autobahn.sh` runs it under the suite; `docs/AUTOBAHN.md` has the results.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use sealwire::server::Server;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned())
        .parse()?;
    let server = Server::builder()
        .configure(|c| {
            c.max_message_bytes = 64 << 20;
            c.outbox_bytes = 64 << 20;
        })
        // Never called: these sockets do not run the sealwire protocol.
        .authenticate(|_| async { Ok(None) })
        .build()?;
    server.start().await?;
    let mut http = sealwire::transport::HttpConfig::default();
    http.path = "/".into();
    let http = std::sync::Arc::new(http);
    let listener = sealwire::transport::bind(addr)?;
    println!(
        "autobahn echo listening on ws://{}/",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let server = server.clone();
        let http = std::sync::Arc::clone(&http);
        tokio::spawn(async move {
            let Some(accepted) =
                sealwire::transport::accept_websocket(stream, &server, &http).await
            else {
                return;
            };
            let mut ws = accepted.socket;
            while let Some(Ok(msg)) = ws.next().await {
                match msg {
                    Message::Text(_) | Message::Binary(_) => {
                        if ws.send(msg).await.is_err() {
                            break;
                        }
                    }
                    // tungstenite has queued the reply; closing writes it out.
                    Message::Close(_) => {
                        let _ = ws.close().await;
                        break;
                    }
                    // Pongs to pings are queued by tungstenite and written by this flush.
                    _ => {
                        if ws.flush().await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}
