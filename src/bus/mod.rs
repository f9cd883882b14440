//! Bus backends that plug into the core's [`Bus`](crate::server::Bus) trait from outside it.
//!
//! - [`RedisBus`]: Redis pub/sub, wire-compatible with IGNIS (`ws:broadcast`, `ws:room:{room}`,
//!   `ws:client:{id}`, `ws:user:{id}` and the `{serverId,type,target,event,data,exclude}`
//!   envelope), with two subscription strategies, reconnection with jittered exponential
//!   backoff, a bounded non-blocking publish queue and optional backplane encryption.
//!
//! - [`emitter`]: a Redis-only publisher for processes that run no server. It builds on
//!   `protocol` and `crypto` only, never on the server.
//!
//! See `docs/OPERATIONS.md` for deployment, failure behaviour and the subscription trade-off.

mod config;
pub mod emitter;
mod redis;

pub use config::{RedisBusConfig, StartupPolicy, SubscriptionMode};
pub use redis::{RedisBus, RedisHistory};
pub(crate) use redis::{connect_publisher, open_client, redact_url};
