//! Server-side handshake (both ECDH backends), the ECDH step alone, and seal/open by payload
//! size.
//!
//! ```text
//! cargo bench --bench crypto
//! ```

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealwire::crypto::{Backend, ClientHandshake, HandshakeConfig, server_handshake};
use std::hint::black_box;

fn handshake(c: &mut Criterion) {
    let mut group = c.benchmark_group("server_handshake");
    let client = ClientHandshake::new(HandshakeConfig::default(), &mut rand::rng());
    let pk = client.public_key_base64();
    for (name, backend) in [("aws-lc", Backend::AwsLc), ("p256", Backend::RustCrypto)] {
        let cfg = HandshakeConfig {
            backend,
            ..HandshakeConfig::default()
        };
        group.bench_function(name, |b| {
            let mut rng = rand::rng();
            b.iter(|| {
                server_handshake(&cfg, "client", black_box(&pk), None, &mut rng).expect("handshake")
            });
        });
    }
    group.finish();
}

/// The one P-256 operation no server can skip: ECDH with the client's fresh public key (a
/// variable-base scalar multiplication, plus parsing and validating the point). Even a server
/// that reused its own key pair for every client would pay this per handshake.
fn ecdh_only(c: &mut Criterion) {
    use aws_lc_rs::agreement::{ECDH_P256, PrivateKey, UnparsedPublicKey, agree};
    let mut group = c.benchmark_group("ecdh_agree_only");
    let peer = PrivateKey::generate(&ECDH_P256).expect("peer key");
    let peer_public = peer.compute_public_key().expect("peer public key");
    let peer_public = peer_public.as_ref().to_vec();
    let ours = PrivateKey::generate(&ECDH_P256).expect("our key");
    group.bench_function("aws-lc", |b| {
        b.iter(|| {
            let peer = UnparsedPublicKey::new(&ECDH_P256, black_box(&peer_public));
            agree(&ours, peer, (), |x| Ok(x[0])).expect("agree")
        });
    });
    let ours = p256::SecretKey::from_slice(&[0x5a; 32]).expect("scalar");
    group.bench_function("p256", |b| {
        b.iter(|| {
            let pk = p256::PublicKey::from_sec1_bytes(black_box(&peer_public)).expect("point");
            p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), pk.as_affine()).raw_secret_bytes()
                [0]
        });
    });
    group.finish();
}

fn seal_open(c: &mut Criterion) {
    let cfg = HandshakeConfig::default();
    let client = ClientHandshake::new(cfg.clone(), &mut rand::rng());
    let (hello, mut server) = server_handshake(
        &cfg,
        "client",
        &client.public_key_base64(),
        None,
        &mut rand::rng(),
    )
    .expect("server");
    let mut client = client
        .finish(&hello.server_public_key, &hello.salt)
        .expect("client");
    let mut group = c.benchmark_group("seal_frame");
    for size in [64usize, 256, 1024, 4096, 16384] {
        let msg = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &msg, |b, m| {
            b.iter(|| server.seal_frame(black_box(m)).expect("seal"));
        });
    }
    group.finish();
    // The per-recipient step of an encrypted fan-out as the server writes it: sealed straight
    // into the socket's write buffer (reused, as a batch reuses it), against a message of its
    // own copied into that buffer (the path a socket that cannot take it in place gets).
    let mut group = c.benchmark_group("seal_frame_into_buffer");
    for size in [64usize, 256, 1024] {
        let msg = vec![b'x'; size];
        let mut buf = Vec::with_capacity(64 * 1024);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("in_place", size), &msg, |b, m| {
            b.iter(|| {
                buf.clear();
                server
                    .seal_frame_into(black_box(m), &mut buf)
                    .expect("seal");
            });
        });
        group.bench_with_input(BenchmarkId::new("own_message", size), &msg, |b, m| {
            b.iter(|| {
                buf.clear();
                let frame = server.seal_frame(black_box(m)).expect("seal");
                buf.extend_from_slice(frame.as_bytes());
            });
        });
    }
    group.finish();
    let mut group = c.benchmark_group("open");
    for size in [64usize, 256, 1024, 4096, 16384] {
        let sealed = server.seal(&vec![b'x'; size]).expect("seal");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &sealed, |b, p| {
            b.iter(|| client.open(black_box(p)).expect("open"));
        });
    }
    group.finish();
}

criterion_group!(benches, handshake, ecdh_only, seal_open);
criterion_main!(benches);
