//! A command-line notification client for `sealwire serve`.
//!
//! It connects (encrypted by default), prints every event it receives, and reads commands
//! from stdin: `/join ROOM`, `/leave ROOM`, `/send EVENT JSON`, `/quit`. Disconnects are
//! printed with their reason, and the client reconnects (re-joining its rooms) on its own.
//!
//! ```text
//! # terminal 1: a development server that lets clients join `chat:*` rooms
//! cargo run --release -- serve --dev --allow-rooms 'chat:*' --admin-token devtoken
//!
//! # terminal 2: the client (arguments: URL, token = user id in --dev mode, [--plain])
//! cargo run --example chat -- ws://127.0.0.1:8080/ws alice
//! /join chat:lobby
//!
//! # terminal 3: push notifications through the admin API
//! curl -s -H 'Authorization: Bearer devtoken' -H 'content-type: application/json' \
//!   -d '{"topic":"greeting","data":{"text":"hi alice"}}' http://127.0.0.1:8080/socket/user/alice/send
//! curl -s -H 'Authorization: Bearer devtoken' -H 'content-type: application/json' \
//!   -d '{"topic":"chat","data":{"text":"hi room"}}' http://127.0.0.1:8080/socket/room/chat:lobby/send
//! ```

use anyhow::Context as _;
use sealwire::client::{Client, Encryption, Event};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws".to_owned());
    let token = args.next().unwrap_or_else(|| "alice".to_owned());
    let encryption = if args.any(|a| a == "--plain") {
        Encryption::Off
    } else {
        Encryption::default()
    };
    let (client, mut events) = Client::builder(&url)
        .token(&token)
        .encryption(encryption)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))?;

    let printer = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Connected { info, reconnected } => println!(
                    "* {} as {} (client {}, encrypted: {})",
                    if reconnected {
                        "reconnected"
                    } else {
                        "connected"
                    },
                    info.user_id,
                    info.client_id,
                    info.encrypted
                ),
                Event::Message(m) => println!(
                    "{} {} {}",
                    if m.encrypted { "[e2e]" } else { "[plain]" },
                    m.event,
                    m.data
                ),
                Event::ServerError { message } => println!("! server error: {message}"),
                Event::DecryptFailed { frame_len } => {
                    println!("! a {frame_len}-byte frame failed to decrypt");
                }
                Event::PlaintextRejected { event } => {
                    println!("! refused a plaintext {event:?} frame on an encrypted session");
                }
                Event::Disconnected { reason, retry_in } => match retry_in {
                    Some(d) => println!("* disconnected ({reason}); retrying in {d:?}"),
                    None => println!("* disconnected ({reason}); giving up"),
                },
                other => println!("{other:?}"),
            }
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let result = match cmd {
            "" => Ok(()),
            "/quit" => break,
            "/join" => client.join(rest.split_whitespace()).await,
            "/leave" => client.leave(rest.split_whitespace()).await,
            "/send" => {
                let (event, json) = rest.split_once(' ').unwrap_or((rest, "null"));
                match serde_json::from_str::<serde_json::Value>(json) {
                    Ok(data) => client.send(event, &data).await,
                    Err(e) => {
                        println!("! not JSON: {e}");
                        Ok(())
                    }
                }
            }
            _ => {
                println!("commands: /join ROOM.. | /leave ROOM.. | /send EVENT JSON | /quit");
                Ok(())
            }
        };
        if let Err(e) = result {
            println!("! {e}");
            if client.is_closed() {
                break;
            }
        }
    }
    client.close();
    let _ = printer.await;
    Ok(())
}
