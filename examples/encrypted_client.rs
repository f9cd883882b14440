//! A minimal encrypted client, written against the raw protocol (no SDK): it handshakes inside
//! `authenticate`, joins a room, and prints every message decrypted.
//!
//! ```sh
//! cargo run --release -- serve --dev --allow-rooms 'news*'          # terminal 1
//! cargo run --example encrypted_client -- ws://127.0.0.1:8080/ws alice news
//! # terminal 3 (admin token printed by terminal 1):
//! curl -X POST 127.0.0.1:8080/socket/user/alice/send -H "Authorization: Bearer $TOKEN" \
//!      -H 'content-type: application/json' -d '{"topic":"greeting","data":{"n":1}}'
//! ```
//!
//! Arguments: `URL TOKEN [ROOM ...]`.

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use sealwire::crypto::{ClientHandshake, HandshakeConfig};
use sealwire::protocol::EncryptedPayload;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws".into());
    let token = args.next().unwrap_or_else(|| "alice".into());
    let rooms: Vec<String> = args.collect();

    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connect {url}"))?;

    // 1. Ephemeral key pair; the public key rides along with the credentials.
    let handshake = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
    let auth = json!({"event": "authenticate", "data": {"type": "Bearer", "token": token, "publicKey": handshake.public_key_base64()}});
    ws.send(Message::text(auth.to_string())).await?;

    // 2. `connected` (plaintext) carries the server's key and salt: derive the session.
    let connected: Value = loop {
        match ws.next().await.context("closed before connected")?? {
            Message::Text(t) => break serde_json::from_str(&t)?,
            Message::Close(f) => bail!("closed: {f:?}"),
            _ => continue,
        }
    };
    if connected["event"] != "connected" {
        bail!("authentication failed: {connected}");
    }
    let d = &connected["data"];
    let mut session = handshake.finish(
        d["serverPublicKey"]
            .as_str()
            .context("server did not encrypt")?,
        d["salt"].as_str().context("no salt")?,
    )?;
    println!(
        "connected as {} (client {}), encrypted",
        d["userId"], d["id"]
    );

    // 3. Join rooms with an encrypted `join`.
    if !rooms.is_empty() {
        let inner = json!({"event": "join", "data": {"rooms": rooms}}).to_string();
        let sealed = session.seal(inner.as_bytes())?;
        ws.send(Message::text(
            json!({"event": "encrypted", "data": sealed}).to_string(),
        ))
        .await?;
    }

    // 4. Every frame from now on is `encrypted`: open and print it.
    let mut heartbeat = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = heartbeat.tick() => ws.send(Message::text(r#"{"event":"heartbeat"}"#)).await?,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let frame: Value = serde_json::from_str(&t)?;
                    if frame["event"] != "encrypted" {
                        bail!("server sent plaintext to an encrypted client: {t}");
                    }
                    let payload: EncryptedPayload = serde_json::from_value(frame["data"].clone())?;
                    let plaintext = session.open(&payload)?;
                    println!("{}", String::from_utf8_lossy(&plaintext));
                }
                Some(Ok(Message::Close(f))) => {
                    println!("closed: {f:?}");
                    return Ok(());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
        }
    }
}
