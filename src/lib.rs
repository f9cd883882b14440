//! # sealwire
//!
//! An end-to-end encrypted realtime WebSocket server. Every connection authenticates. Clients
//! that run a P-256 key exchange get their own AES-256-GCM session, and every frame the server
//! sends them afterwards is sealed with it; in the hardened profile the exchange comes first
//! and the credentials themselves travel sealed. Plaintext clients still get the shared-frame
//! fast path. Wire-compatible with the IGNIS `WebSocketServerHelper` protocol.
//!
//! ```no_run
//! use sealwire::publish::Publish;
//! use sealwire::server::{Identity, Server};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let server = Server::builder()
//!     .authenticate(|req: sealwire::server::AuthRequest| async move {
//!         // Check req.token against your identity provider here.
//!         Ok(req.token.map(Identity::new))
//!     })
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let handle = server.clone();
//! tokio::spawn(sealwire::transport::serve(listener, server));
//! handle.to_user("alice").emit("payment:settled", &serde_json::json!({"amount": 42})).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Dependencies point one way: `protocol` <- `publish` <- `crypto` <- `server` <-
//! {`transport`, `bus`, `compat`}, `protocol` <- `crypto` <- `bus::emitter`, and `protocol` <-
//! `crypto` <- `client`.
//!
//! - [`protocol`]: the wire: JSON envelope, system events, error strings, close codes, validated
//!   event and room names ([`protocol::EventName`], [`protocol::RoomName`]) with the reserved
//!   and default names, the bus envelope and Redis channel names. Pure data.
//! - [`crypto`]: P-256 ECDH, HKDF-SHA256, AES-256-GCM sessions and the handshake in two
//!   profiles (IGNIS compatibility and the hardened `sealwire-v2`), with the client half for
//!   SDKs. Pure functions with injected randomness.
//! - [`server`]: the [`server::Server`] handle, configuration, hooks, the client/user/room
//!   registry, the per-connection actor (which owns the socket and the crypto session), fan-out
//!   and the [`Bus`](server::Bus) trait with its in-process implementation.
//! - [`transport`]: the axum router (WebSocket upgrade and admin REST API), an accept loop, and
//!   [`transport::front_door`], the one decision on every WebSocket upgrade.
//! - `bus` (feature `redis`): the Redis pub/sub [`Bus`](server::Bus), plugged in from outside
//!   the core, with optional backplane encryption ([`crypto::backplane`]).
//! - `emitter` (feature `redis`, `bus::emitter` re-exported): a Redis-only publisher for
//!   processes that run no server; it never imports `server`.
//! - [`publish`]: the one way to publish, `to(target).except(id).emit(event, data)`, which the
//!   server handle and the emitter both implement ([`publish::Publish`]).
//! - [`compat`]: IGNIS-shaped publishing over [`publish`]: `send(destination, ..)` and the base
//!   for domain event services.
//! - `client` (feature `client`, on by default): the Rust client SDK. It depends on
//!   `protocol` and `crypto` only, never on `server`.
//! - `backoff` (internal): the jittered exponential backoff curve that both `bus` and `client`
//!   reconnect with. Pure, so it depends on nothing.
//!
//! See `docs/ARCHITECTURE.md` for the module map and the two hot paths, `docs/PROTOCOL.md` for
//! the wire format and `SECURITY.md` for the threat model.

#[cfg(any(feature = "redis", feature = "client"))]
mod backoff;
#[cfg(feature = "redis")]
pub mod bus;
#[cfg(feature = "client")]
pub mod client;
pub mod crypto;
/// The Redis-only publisher ([`bus::emitter`]), at its historical path.
#[cfg(feature = "redis")]
pub use bus::emitter;
pub mod compat;
pub mod protocol;
pub mod publish;
pub mod server;
pub mod transport;

#[cfg(feature = "client")]
pub use client::ClientError;
pub use crypto::CryptoError;
pub use protocol::CloseCode;
pub use publish::{Publish, PublishError, Receipt};
pub use server::{BusError, ConfigError, HookError, SendError, Server, ServerConfig};

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
