//! Hardened-profile helpers: an echo server and the client half of `sealwire-v2`.

use sealwire::publish::Publish;
use std::sync::Arc;

use sealwire::crypto::{
    ClientFinished, ClientHandshake, CryptoError, HandshakeConfig, ServerIdentity,
};
use sealwire::protocol::HelloPayload;
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
    c.handshake = HandshakeConfig {
        identity,
        rekey_after,
        ..HandshakeConfig::default()
    };
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
                let _ = server.to_client(&m.client.id).emit("echo", &data).await;
            }),
    )
    .await
}

impl WsClient {
    /// Sends the client `hello` for the profile of `config` and returns the server's answer
    /// (the `hello` frame, or whatever it sent instead) and the handshake (not finished yet).
    pub async fn hardened_hello(&mut self, config: HandshakeConfig) -> (Value, ClientHandshake) {
        let hs = ClientHandshake::new(config, &mut rand::rng());
        self.send_text(&hs.hello_json()).await;
        let hello = self.recv_json().await;
        (hello, hs)
    }

    /// Full hardened authentication: the hello exchange, the key confirmation and the sealed
    /// `authenticate`; installs the session and checks the sealed `connected`. Returns the
    /// server `hello` frame, or the client-side error (nothing was sent after the hello then).
    pub async fn authenticate_hardened(
        &mut self,
        token: &str,
        config: HandshakeConfig,
    ) -> Result<Value, CryptoError> {
        self.login_hardened(token, config)
            .await
            .map(|(hello, _)| hello)
    }

    /// Finishes the client side of the server's `hello` frame: checks it, sends the key
    /// confirmation (c2s record 0) and installs the session, so that the next `emit` is the
    /// sealed `authenticate`. Returns the hello's payload.
    pub async fn confirm_hello(
        &mut self,
        hello: &Value,
        hs: ClientHandshake,
    ) -> Result<HelloPayload, CryptoError> {
        let payload: HelloPayload =
            serde_json::from_value(hello["data"].clone()).expect("hello payload");
        let ClientFinished {
            session,
            confirmation,
            ..
        } = hs.finish_hello(&payload)?;
        self.send_text(&confirmation.expect("confirmation")).await;
        self.session = Some(session);
        Ok(payload)
    }

    /// As [`WsClient::authenticate_hardened`], returning the server `hello` frame and the
    /// opened `connected` envelope.
    pub async fn login_hardened(
        &mut self,
        token: &str,
        config: HandshakeConfig,
    ) -> Result<(Value, Value), CryptoError> {
        let (hello, hs) = self.hardened_hello(config).await;
        assert_eq!(hello["event"], "hello", "{hello}");
        let payload = self.confirm_hello(&hello, hs).await?;
        self.emit("authenticate", json!({ "token": token })).await;
        let connected = self.recv_msg().await;
        assert_eq!(connected["event"], "connected", "{connected}");
        assert_eq!(connected["data"]["id"], payload.id);
        self.id = Some(payload.id);
        Ok((hello, connected))
    }
}

impl WsClient {
    /// A valid public key (for requests that fail before any key is used).
    pub fn any_public_key() -> String {
        ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng()).public_key_base64()
    }
}

/// A pure (no network) hardened handshake: `(server hello, server session, client handshake)`.
pub fn hardened_hello(
    server_cfg: &HandshakeConfig,
    client_cfg: HandshakeConfig,
) -> (HelloPayload, sealwire::crypto::Session, ClientHandshake) {
    let client = ClientHandshake::new(client_cfg, &mut rand::rng());
    let (hello, server) = sealwire::crypto::server_handshake(
        server_cfg,
        "client-1",
        &client.public_key_base64(),
        client.profile_id(),
        &mut rand::rng(),
    )
    .expect("server handshake");
    (hello.hello_payload("client-1"), server, client)
}

/// A confirmed hardened pair `(server, client)` with `rekey_after`.
pub fn hardened_pair(rekey_after: u32) -> (sealwire::crypto::Session, sealwire::crypto::Session) {
    let server_cfg = HandshakeConfig {
        rekey_after,
        ..HandshakeConfig::default()
    };
    let (hello, mut server, client) =
        hardened_hello(&server_cfg, HandshakeConfig::hardened(vec![]));
    let done = client.finish_hello(&hello).expect("client finish");
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
