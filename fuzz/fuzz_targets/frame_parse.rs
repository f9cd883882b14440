//! Everything the server and the client parse from the network before any key is used:
//! the envelope, `authenticate`, `connected`, `hello`, `encrypted` payloads, public keys, and
//! the client's finishing of a handshake from an arbitrary `connected` (compatibility) or
//! server `hello` (hardened) payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealwire::crypto::{ClientHandshake, EphemeralSecret, HandshakeConfig, PeerPublicKey};
use sealwire::protocol::{
    AuthenticatePayload, ConnectedPayload, EncryptedPayload, HelloPayload, Inbound,
};

fuzz_target!(|data: &[u8]| {
    let _ = PeerPublicKey::from_bytes(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = PeerPublicKey::from_base64(text);
    let Ok(msg) = Inbound::parse(text) else {
        return;
    };
    let Some(value) = msg.data else {
        return;
    };
    let _ = serde_json::from_value::<AuthenticatePayload>(value.clone());
    let _ = serde_json::from_value::<EncryptedPayload>(value.clone());
    if let Ok(hello) = serde_json::from_value::<HelloPayload>(value.clone())
        && let Ok(secret) = EphemeralSecret::from_bytes(&[0x12; 32])
    {
        let _ = ClientHandshake::from_secret(HandshakeConfig::hardened(vec![]), secret)
            .finish_hello(&hello);
    }
    if let Ok(connected) = serde_json::from_value::<ConnectedPayload>(value) {
        let Ok(secret) = EphemeralSecret::from_bytes(&[0x11; 32]) else {
            return;
        };
        for cfg in [
            HandshakeConfig::default(),
            HandshakeConfig::hardened(vec![]),
        ] {
            let Ok(secret) = EphemeralSecret::from_bytes(&[0x11; 32]) else {
                return;
            };
            let _ = ClientHandshake::from_secret(cfg, secret).finish_connected(&connected);
        }
        drop(secret);
    }
});
