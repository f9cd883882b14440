//! Decryption of attacker-controlled `encrypted` frames in both profiles. Oracle: a frame
//! that is not byte-identical to a genuine record must never open, and nothing may panic.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sealwire::crypto::{
    ClientHandshake, EphemeralSecret, HandshakeConfig, Session, server_handshake_with,
};
use sealwire::protocol::{ConnectedPayload, EncryptedPayload, Inbound};

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

/// A fixed (server, client) pair in `profile`, plus the server's first genuine record.
fn pair(hardened: bool) -> (Session, Session, EncryptedPayload) {
    let secret = |b| EphemeralSecret::from_bytes(&[b; 32]).expect("scalar");
    let client_cfg = if hardened {
        HandshakeConfig::hardened(vec![])
    } else {
        HandshakeConfig::default()
    };
    let client = ClientHandshake::from_secret(client_cfg, secret(0x21));
    let (hello, mut server) = server_handshake_with(
        &HandshakeConfig::default(),
        "fuzz",
        &client.public_key_base64(),
        client.profile_id(),
        secret(0x22),
        [7u8; 32],
    )
    .expect("handshake");
    let client = if hardened {
        // sealwire-v2: the keys come from the server's `hello`.
        let hello = hello.hello_payload("fuzz");
        client.finish_hello(&hello).expect("finish").session
    } else {
        let mut connected = ConnectedPayload {
            id: "fuzz".into(),
            user_id: "u".into(),
            time: "t".into(),
            expires_at: None,
            server_public_key: None,
            salt: None,
            profile: None,
            extra: serde_json::Map::new(),
        };
        hello.apply_to(&mut connected);
        client.finish_connected(&connected).expect("finish").session
    };
    let genuine = server.seal(br#"{"event":"x","data":1}"#).expect("seal");
    (server, client, genuine)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let hardened = mode & 1 == 1;
    let (_, mut client, genuine) = pair(hardened);
    let candidate = if mode & 2 == 0 {
        // Structured: XOR the input into the genuine record's bytes.
        let mut iv = b64().decode(&genuine.iv).expect("iv");
        let mut ct = b64().decode(&genuine.ct).expect("ct");
        for (i, b) in rest.iter().enumerate() {
            let n = iv.len() + ct.len();
            let at = i % n;
            if at < iv.len() {
                iv[at] ^= b;
            } else {
                ct[at - iv.len()] ^= b;
            }
        }
        if mode & 4 != 0 {
            ct.truncate(rest.len() % (ct.len() + 1));
        }
        EncryptedPayload {
            iv: b64().encode(iv),
            ct: b64().encode(ct),
            seq: genuine.seq.map(|s| s ^ u64::from(mode >> 3)),
        }
    } else {
        // Raw: an arbitrary inbound frame, as the server's dispatch would parse it.
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        let Some(p) = Inbound::parse(text)
            .ok()
            .and_then(|m| m.data)
            .and_then(|d| serde_json::from_value::<EncryptedPayload>(d).ok())
        else {
            return;
        };
        p
    };
    let opened = client.open(&candidate);
    let identical = genuine.iv == candidate.iv && genuine.ct == candidate.ct;
    if opened.is_ok() {
        assert!(identical, "a modified record opened");
    }
});
