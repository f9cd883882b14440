//! Server-side handshake (both ECDH backends) and seal/open by payload size.
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

criterion_group!(benches, handshake, seal_open);
criterion_main!(benches);
