//! The per-recipient cost of an encrypted fan-out: from the publication's shared JSON bytes
//! (serialized once per publication) to the text message one encrypted recipient is sent, in
//! both profiles; the plaintext recipient's cost for comparison; the room-key path (one seal
//! per publication, shared by every member as a text or a binary record, and the grant each
//! member is sealed at a new epoch); and the AES-256-GCM seal alone in both implementations.
//!
//! ```text
//! cargo bench --bench seal_path
//! ```

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sealwire::crypto::session::encrypted_frame;
use sealwire::crypto::{AeadBackend, ClientHandshake, HandshakeConfig, Session, server_handshake};
use sealwire::protocol::frame_json;
use std::hint::black_box;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A publication whose `{"event":..,"data":..}` JSON is 200 bytes.
fn publication() -> Utf8Bytes {
    let head = frame_json("chat", r#"{"room":"lobby","from":"u-1234","text":""}"#);
    let fill = "x".repeat(200 - head.len());
    let json = frame_json(
        "chat",
        &format!(r#"{{"room":"lobby","from":"u-1234","text":"{fill}"}}"#),
    );
    assert_eq!(json.len(), 200);
    json.into()
}

fn server_session(profile: Option<&str>, aead: AeadBackend) -> Session {
    let cfg = HandshakeConfig {
        aead,
        ..HandshakeConfig::default()
    };
    let client = ClientHandshake::new(cfg.clone(), &mut rand::rng());
    let (_, session) = server_handshake(
        &cfg,
        "client",
        &client.public_key_base64(),
        profile,
        &mut rand::rng(),
    )
    .expect("server handshake");
    session
}

fn per_recipient(c: &mut Criterion) {
    let json = publication();
    let mut group = c.benchmark_group("per_recipient_200B");
    group.throughput(Throughput::Elements(1));
    group.bench_function("plaintext", |b| {
        b.iter(|| Message::Text(black_box(&json).clone()));
    });
    for (name, profile) in [("compat", None), ("hardened", Some("sealwire-v2"))] {
        for (lib, aead) in [
            ("aws-lc", AeadBackend::AwsLc),
            ("rustcrypto", AeadBackend::RustCrypto),
        ] {
            // `seal_frame`: the one-allocation frame writer, what a connection sends.
            let mut session = server_session(profile, aead);
            group.bench_function(format!("{name}/{lib}"), |b| {
                b.iter(|| {
                    let frame = session
                        .seal_frame(black_box(&json).as_bytes())
                        .expect("seal");
                    Message::text(frame)
                });
            });
            // The two-step path: seal to a payload of base64 strings, then render the frame.
            let mut session = server_session(profile, aead);
            group.bench_function(format!("{name}/{lib}/two-step"), |b| {
                b.iter(|| {
                    let p = session.seal(black_box(&json).as_bytes()).expect("seal");
                    Message::text(encrypted_frame(&p))
                });
            });
        }
    }
    group.finish();
}

/// One publication to a room of `MEMBERS` encrypted members, per recipient: sealed for each
/// member (hardened profile) against sealed once under the room key and shared.
fn room_key(c: &mut Criterion) {
    use sealwire::crypto::room::{RoomSealer, RoomSecret, grant_json};
    const MEMBERS: usize = 1000;
    let json = publication();
    let mut group = c.benchmark_group("room_of_1000_200B");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    group.bench_function("plaintext", |b| {
        b.iter(|| {
            for _ in 0..MEMBERS {
                black_box(Message::Text(json.clone()));
            }
        });
    });
    let mut sessions: Vec<Session> = (0..MEMBERS)
        .map(|_| server_session(Some("sealwire-v2"), AeadBackend::AwsLc))
        .collect();
    group.bench_function("per-client", |b| {
        b.iter(|| {
            for s in &mut sessions {
                black_box(Message::text(s.seal_frame(json.as_bytes()).expect("seal")));
            }
        });
    });
    let secret = RoomSecret::random(&mut rand::rng());
    let mut sealer = RoomSealer::new("lobby", 1, &secret, AeadBackend::AwsLc).expect("sealer");
    // One seal makes both forms of the record (§14.6): members get the text frame here...
    group.bench_function("room-key", |b| {
        b.iter(|| {
            let record: Utf8Bytes = sealer.seal_frame(json.as_bytes()).expect("seal").into();
            for _ in 0..MEMBERS {
                black_box(Message::Text(record.clone()));
            }
        });
    });
    // ... and the binary message here.
    group.bench_function("room-key/binary", |b| {
        b.iter(|| {
            let record = bytes::Bytes::from(sealer.seal(json.as_bytes()).expect("seal").binary);
            for _ in 0..MEMBERS {
                black_box(Message::Binary(record.clone()));
            }
        });
    });
    // A new epoch: its grant sealed for each member (paid once per epoch, not per message).
    group.bench_function("room-key/new-epoch-grants", |b| {
        b.iter(|| {
            let grant = grant_json("lobby", 2, &secret);
            for s in &mut sessions {
                black_box(s.seal_frame(grant.as_bytes()).expect("seal"));
            }
        });
    });
    group.finish();
}

fn aead_seal(c: &mut Criterion) {
    let key = [0x42u8; 32];
    let nonce = [7u8; 12];
    let msg = vec![b'x'; 200];
    let mut group = c.benchmark_group("aes256gcm_seal_200B");
    group.throughput(Throughput::Bytes(200));
    {
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let cipher = aes_gcm::Aes256Gcm::new((&key).into());
        let mut buf = Vec::with_capacity(256);
        group.bench_function("rustcrypto", |b| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(&msg));
                cipher
                    .encrypt_in_place(&aes_gcm::Nonce::from(nonce), b"", &mut buf)
                    .expect("seal");
            });
        });
    }
    {
        let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("key"));
        let mut buf = Vec::with_capacity(256);
        group.bench_function("aws-lc", |b| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(black_box(&msg));
                let tag = lc
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::empty(),
                        &mut buf,
                    )
                    .expect("seal");
                buf.extend_from_slice(tag.as_ref());
            });
        });
    }
    group.finish();
    let mut group = c.benchmark_group("aes256gcm_expand");
    group.bench_function("rustcrypto", |b| {
        use aes_gcm::aead::KeyInit;
        b.iter(|| Box::new(aes_gcm::Aes256Gcm::new(black_box(&key).into())));
    });
    group.bench_function("aws-lc", |b| {
        b.iter(|| LessSafeKey::new(UnboundKey::new(&AES_256_GCM, black_box(&key)).expect("key")));
    });
    group.finish();
}

criterion_group!(benches, per_recipient, room_key, aead_seal);
criterion_main!(benches);
