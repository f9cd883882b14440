//! Hardened-profile helpers: an echo server and the client half of `sealwire-v1`.

use std::sync::Arc;

use sealwire::crypto::{
    ClientFinished, ClientHandshake, CryptoError, HandshakeConfig, ServerIdentity,
};
use sealwire::protocol::ConnectedPayload;
use sealwire::server::{InboundMessage, Server, ServerConfig};
use serde_json::{Value, json};

use super::{TestServer, WsClient, base_config, start_with, test_auth};

/// A server identity key made from one repeated byte (tests only).
pub fn identity(byte: u8) -> Arc<ServerIdentity> {
    Arc::new(ServerIdentity::from_bytes(&[byte; 32]).expect("identity key"))
}

/// The test base configuration with a handshake signed by `identity` (if any) and rekeying
/// every `rekey_after` records.
pub fn config_with(identity: Option<Arc<ServerIdentity>>, rekey_after: u32) -> ServerConfig {
    let mut c = base_config();
    c.handshake = Some(HandshakeConfig {
        identity,
        rekey_after,
        ..HandshakeConfig::default()
    });
    c
}

/// A server whose message handler echoes every custom event back to its sender as `echo`,
/// with `{event, data, encrypted}`.
pub async fn start_echo(config: ServerConfig) -> TestServer {
    start_with(
        Server::builder()
            .config(config)
            .authenticate(test_auth())
            .on_message(|server: Server, m: InboundMessage| async move {
                let data = json!({"event": m.event, "data": m.data, "encrypted": m.was_encrypted});
                let _ = server.send_to_client(&m.client.id, "echo", &data);
            }),
    )
    .await
}

impl WsClient {
    /// Sends `authenticate` for the profile of `config` and returns the `connected` payload
    /// and the handshake (not finished yet).
    pub async fn hardened_hello(
        &mut self,
        token: &str,
        config: HandshakeConfig,
    ) -> (Value, ClientHandshake) {
        let hs = ClientHandshake::new(config, &mut rand::rng());
        let mut data = json!({"token": token, "publicKey": hs.public_key_base64()});
        if let Some(p) = hs.profile_id() {
            data["profile"] = json!(p);
        }
        self.send_json(&json!({"event": "authenticate", "data": data}))
            .await;
        let connected = self.recv_json().await;
        (connected, hs)
    }

    /// Full hardened authentication: finishes the handshake, sends the key confirmation,
    /// installs the session. Returns the `connected` frame or the client-side error.
    pub async fn authenticate_hardened(
        &mut self,
        token: &str,
        config: HandshakeConfig,
    ) -> Result<Value, CryptoError> {
        let (connected, hs) = self.hardened_hello(token, config).await;
        assert_eq!(connected["event"], "connected", "{connected}");
        let payload: ConnectedPayload =
            serde_json::from_value(connected["data"].clone()).expect("connected payload");
        let ClientFinished {
            session,
            confirmation,
            ..
        } = hs.finish_connected(&payload)?;
        if let Some(frame) = confirmation {
            self.send_text(&frame).await;
        }
        self.session = Some(session);
        self.id = Some(payload.id);
        Ok(connected)
    }
}

impl WsClient {
    /// A valid public key (for requests that fail before any key is used).
    pub fn any_public_key() -> String {
        ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng()).public_key_base64()
    }
}

/// A pure (no network) hardened handshake: `(connected, server session, client handshake)`.
pub fn hardened_hello(
    server_cfg: &HandshakeConfig,
    client_cfg: HandshakeConfig,
) -> (ConnectedPayload, sealwire::crypto::Session, ClientHandshake) {
    let client = ClientHandshake::new(client_cfg, &mut rand::rng());
    let (hello, server) = sealwire::crypto::server_handshake(
        server_cfg,
        "client-1",
        &client.public_key_base64(),
        client.profile_id(),
        &mut rand::rng(),
    )
    .expect("server handshake");
    let mut connected = ConnectedPayload {
        id: "client-1".into(),
        user_id: "u".into(),
        time: "t".into(),
        server_public_key: None,
        salt: None,
        profile: None,
        extra: serde_json::Map::new(),
    };
    hello.apply_to(&mut connected);
    (connected, server, client)
}

/// A confirmed hardened pair `(server, client)` with `rekey_after`.
pub fn hardened_pair(rekey_after: u32) -> (sealwire::crypto::Session, sealwire::crypto::Session) {
    let server_cfg = HandshakeConfig {
        rekey_after,
        ..HandshakeConfig::default()
    };
    let (connected, mut server, client) =
        hardened_hello(&server_cfg, HandshakeConfig::hardened(vec![]));
    let done = client.finish_connected(&connected).expect("client finish");
    let frame: Value =
        serde_json::from_str(&done.confirmation.expect("confirmation")).expect("json");
    let payload = serde_json::from_value(frame["data"].clone()).expect("payload");
    let inner: Value =
        serde_json::from_slice(&server.open(&payload).expect("open")).expect("inner");
    server
        .confirm_client(inner["data"]["mac"].as_str().expect("mac"))
        .expect("confirm");
    (server, done.session)
}

/// A server and a client session of the compatibility profile, from a real handshake.
pub fn compat_pair() -> (sealwire::crypto::Session, sealwire::crypto::Session) {
    use sealwire::crypto::{ClientHandshake, HandshakeConfig, server_handshake};
    let cfg = HandshakeConfig::default();
    let client = ClientHandshake::new(cfg.clone(), &mut rand::rng());
    let (hello, server) = server_handshake(
        &cfg,
        "c",
        &client.public_key_base64(),
        None,
        &mut rand::rng(),
    )
    .expect("server");
    let client = client
        .finish(&hello.server_public_key, &hello.salt)
        .expect("client");
    (server, client)
}
