//! Quick start: a server and two clients in one process.
//!
//! Starts a sealwire server on a free loopback port, connects a plaintext client (`bob`) and
//! an encrypted client (`alice`, compatibility profile), then sends one notification to a user,
//! one to a room and one to everyone, and prints what each client received. For the encrypted
//! client it also prints the raw frame it saw on the wire: only ciphertext.
//!
//! ```text
//! cargo run --example quickstart
//! ```

use sealwire::publish::Publish;
use std::sync::Arc;
use std::time::Duration;

use sealwire::client::{Client, Encryption, Event, Events};
use sealwire::server::{AuthRequest, ClientInfo, Identity, Server};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 1. The server: any non-empty token is the user id; clients may join `team:*` rooms.
    let server = Server::builder()
        .authenticate(|req: AuthRequest| async move {
            Ok(req.token.filter(|t| !t.is_empty()).map(Identity::new))
        })
        .validate_rooms(|_: Arc<ClientInfo>, rooms: Vec<String>| async move {
            rooms
                .into_iter()
                .filter(|r| r.starts_with("team:"))
                .collect()
        })
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    tokio::spawn(sealwire::transport::serve(listener, server.clone()));
    println!("server listening on {url}");

    // 2. Two clients.
    let (bob, mut bob_events) = Client::builder(&url)
        .token("bob")
        .encryption(Encryption::Off)
        .connect()
        .await?;
    let (alice, mut alice_events) = Client::builder(&url)
        .token("alice")
        .encryption(Encryption::Compat)
        .capture_raw_frames(true)
        .connect()
        .await?;
    for c in [&bob, &alice] {
        c.join(["team:blue"]).await?;
    }
    // Wait until both joins are in effect.
    for _ in 0..200 {
        let joined = server
            .clients()
            .iter()
            .filter(|c| c.rooms.iter().any(|r| r == "team:blue"))
            .count();
        if joined == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 3. Three notifications.
    server
        .to_user("alice")
        .emit("payment:settled", &json!({"amount": 42}))
        .await?;
    server
        .to_room("team:blue")
        .emit("deploy", &json!({"version": "1.4.2"}))
        .await?;
    server
        .to_all()
        .emit("maintenance", &json!({"in_minutes": 10}))
        .await?;

    println!("\nbob (plaintext) received:");
    print_messages(&mut bob_events, 2).await;
    println!("\nalice (encrypted) received:");
    print_messages(&mut alice_events, 3).await;

    bob.close();
    alice.close();
    server.shutdown().await;
    Ok(())
}

async fn print_messages(events: &mut Events, n: usize) {
    let mut got = 0;
    while got < n {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), events.recv()).await
        else {
            println!("  (timed out)");
            return;
        };
        match event {
            Event::Connected { info, .. } => println!(
                "  connected as client {} (user {}, encrypted: {})",
                info.client_id, info.user_id, info.encrypted
            ),
            Event::Message(m) => {
                got += 1;
                println!("  {} {} (encrypted: {})", m.event, m.data, m.encrypted);
                if let Some(raw) = m.raw {
                    println!("    on the wire: {raw}");
                }
            }
            other => println!("  {other:?}"),
        }
    }
}
