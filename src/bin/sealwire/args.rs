//! Command-line arguments of the `sealwire` command (clap derive).

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use sealwire::server::{EncryptionPolicy, JwtAuth};

#[derive(Parser)]
#[command(
    name = "sealwire",
    version,
    about = "End-to-end encrypted realtime WebSocket server"
)]
pub(crate) struct Cli {
    /// Log format on stderr: `text` (for people) or `json` (one JSON object per line, for log
    /// pipelines). The level comes from `RUST_LOG` (default `info`).
    #[arg(
        long,
        global = true,
        env = "SEALWIRE_LOG_FORMAT",
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// and `span`/`spans` when inside spans.
    Json,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing buys nothing"
)]
pub(crate) enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Publish one message to the clients of every server through Redis.
    #[cfg(feature = "redis")]
    Emit(EmitArgs),
    /// Print a new random backplane key (base64 of 32 bytes) for --bus-key.
    #[cfg(feature = "redis")]
    GenBusKey,
}

#[cfg(feature = "redis")]
#[derive(Args)]
pub(crate) struct RedisArgs {
    /// Redis URL (redis:// or rediss://, ACL user:password in the URL): for `serve`,
    /// multi-instance scale-out (without it the server runs single-instance); required by
    /// `emit`.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,
    /// PEM file of the CA(s) to trust for rediss:// instead of the bundled web roots (needs a
    /// rediss:// --redis-url).
    #[arg(long, env = "SEALWIRE_REDIS_CA_FILE", requires = "redis_url")]
    pub(crate) redis_ca_file: Option<std::path::PathBuf>,
    /// Backplane key: base64 of 32 bytes. Seals every envelope's data on Redis with
    /// AES-256-GCM (not IGNIS-compatible; every server and emitter needs the same key).
    #[arg(long, env = "SEALWIRE_BUS_KEY", hide_env_values = true)]
    pub(crate) bus_key: Option<String>,
}

#[cfg(feature = "redis")]
#[derive(Args)]
#[group(required = true, multiple = false, id = "target")]
pub(crate) struct EmitTarget {
    /// Send to one client id.
    #[arg(long)]
    pub(crate) client: Option<String>,
    /// Send to every session of a user.
    #[arg(long)]
    pub(crate) user: Option<String>,
    /// Send to every member of a room.
    #[arg(long)]
    pub(crate) room: Option<String>,
    /// Send to every authenticated client.
    #[arg(long)]
    pub(crate) broadcast: bool,
}

#[cfg(feature = "redis")]
#[derive(Args)]
pub(crate) struct EmitArgs {
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    #[command(flatten)]
    pub(crate) target: EmitTarget,
    /// Client ids to skip (room and broadcast only; comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = trimmed)]
    pub(crate) exclude: Vec<String>,
    /// Event name clients receive.
    #[arg(long)]
    pub(crate) event: String,
    /// Payload as JSON.
    #[arg(long, default_value = "null")]
    pub(crate) data: String,
    #[command(flatten)]
    pub(crate) history: HistoryArgs,
}

/// Message history: which streams keep it and how much (shared by `serve` and `emit`, which
/// must agree on them when history lives in Redis).
#[derive(Args)]
pub(crate) struct HistoryArgs {
    /// Rooms that keep message history for recovery on reconnect, as glob patterns
    /// (comma-separated, e.g. `orders:*`). None by default: history off.
    #[arg(long, env = "SEALWIRE_HISTORY_ROOMS", value_delimiter = ',', value_parser = trimmed)]
    pub(crate) history_rooms: Vec<String>,
    /// Keep message history for every user's stream.
    #[arg(long, env = "SEALWIRE_HISTORY_USERS", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) history_users: bool,
    /// Keep message history for broadcasts.
    #[arg(long, env = "SEALWIRE_HISTORY_BROADCAST", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) history_broadcast: bool,
    /// Publications kept per stream with history.
    #[arg(long, env = "SEALWIRE_HISTORY_SIZE", default_value_t = 1000)]
    pub(crate) history_size: usize,
    /// Seconds a publication is kept in history (1 to 315360000, ten years).
    #[arg(long, env = "SEALWIRE_HISTORY_TTL", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=315_360_000))]
    pub(crate) history_ttl: u64,
    /// Room streams the server makes for clients that ask where a room they joined stands,
    /// before it answers them without a position (in memory: streams held; with Redis: room
    /// streams this instance creates by lookup per --history-ttl). Bounds what joins can make
    /// the server hold; users' streams and the broadcast stream are always made.
    #[arg(long, env = "SEALWIRE_HISTORY_MAX_STREAMS", default_value_t = 100_000)]
    pub(crate) history_max_streams: usize,
}

impl HistoryArgs {
    /// The history configuration these flags describe.
    pub(crate) fn config(&self) -> sealwire::server::HistoryConfig {
        let mut c = sealwire::server::HistoryConfig::default();
        c.rooms = self.history_rooms.clone();
        c.users = self.history_users;
        c.broadcast = self.history_broadcast;
        c.size = self.history_size;
        c.ttl = std::time::Duration::from_secs(self.history_ttl);
        c.max_streams = self.history_max_streams;
        c
    }
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SEALWIRE_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Share the listen address with other sealwire processes on this host (SO_REUSEPORT);
    /// give them all the same Redis bus.
    #[arg(long, env = "SEALWIRE_REUSE_PORT", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) reuse_port: bool,
    /// PEM certificate chain (server certificate first) for built-in TLS: serve `wss://` and
    /// `https://` on the listen address. Needs --tls-key. Reloaded on SIGHUP and when the
    /// file changes.
    #[arg(long, env = "SEALWIRE_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert. Needs --tls-cert.
    #[arg(long, env = "SEALWIRE_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// WebSocket path: a literal path (letters, digits, `-`, `.`, `_`, `~` between slashes),
    /// not under `/socket` or `/metrics`.
    #[arg(long, env = "SEALWIRE_PATH", default_value = "/ws")]
    pub(crate) path: String,
    /// Encryption policy: `off` (no handshake), `optional` (each client chooses), `required`
    /// (every client encrypts, either profile), `hardened-only` (every client uses
    /// `sealwire-v2`). Others get 4004.
    #[arg(long, env = "SEALWIRE_ENCRYPTION", default_value_t = EncryptionPolicy::Optional,
          conflicts_with_all = ["require_encryption", "refuse_compat"])]
    pub(crate) encryption: EncryptionPolicy,
    /// Shorthand for `--encryption required`.
    #[arg(
        long,
        env = "SEALWIRE_REQUIRE_ENCRYPTION",
        conflicts_with = "refuse_compat",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) require_encryption: bool,
    /// Refuse plaintext application events from encrypted clients of every profile, not only
    /// the hardened one (IGNIS compatibility-profile clients then cannot join rooms).
    #[arg(long, env = "SEALWIRE_REQUIRE_ENCRYPTED_INBOUND", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) require_encrypted_inbound: bool,
    /// Shorthand for `--encryption hardened-only`: every client must use `sealwire-v2`, whose
    /// credentials never cross in the clear (IGNIS compatibility and plaintext clients: 4004).
    #[arg(long, env = "SEALWIRE_REFUSE_COMPAT", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) refuse_compat: bool,
    /// File holding the server identity key (64 hex characters: a P-256 scalar) that signs
    /// hardened-profile handshakes; its public key is logged at start for clients to pin.
    #[arg(long, env = "SEALWIRE_IDENTITY_KEY_FILE")]
    pub(crate) identity_key_file: Option<std::path::PathBuf>,
    /// Time to send `authenticate`, in milliseconds.
    #[arg(long, env = "SEALWIRE_AUTH_TIMEOUT_MS", default_value_t = 5_000)]
    pub(crate) auth_timeout_ms: u64,
    /// Socket.IO endpoint path (IGNIS `SocketIOServerHelper` clients), on the listen
    /// address next to the WebSocket path; `off` disables it.
    #[cfg(feature = "socketio")]
    #[arg(long, env = "SEALWIRE_SOCKETIO_PATH", default_value = "/io")]
    pub(crate) socketio_path: String,
    /// Time a Socket.IO socket has to authenticate after connecting, in milliseconds.
    #[cfg(feature = "socketio")]
    #[arg(
        long,
        env = "SEALWIRE_SOCKETIO_AUTH_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub(crate) socketio_auth_timeout_ms: u64,
    /// Key of the Socket.IO Redis adapter channels (`{key}#/#...`) on --redis-url whose
    /// messages (`@socket.io/redis-emitter` workers) are delivered to this server's clients;
    /// empty disables that.
    #[cfg(all(feature = "socketio", feature = "redis"))]
    #[arg(long, env = "SEALWIRE_SOCKETIO_REDIS_KEY", default_value = "socket.io")]
    pub(crate) socketio_redis_key: String,
    /// Heartbeat sweep interval, in milliseconds.
    #[arg(long, env = "SEALWIRE_HEARTBEAT_INTERVAL_MS", default_value_t = 30_000)]
    pub(crate) heartbeat_interval_ms: u64,
    /// Close after this long without a message, in milliseconds.
    #[arg(long, env = "SEALWIRE_HEARTBEAT_TIMEOUT_MS", default_value_t = 90_000)]
    pub(crate) heartbeat_timeout_ms: u64,
    /// On SIGTERM/SIGINT, spread the clients' 1001 closes over this many seconds (rolling
    /// deploys: they reconnect elsewhere gradually); 0 closes everyone at once.
    #[arg(long, env = "SEALWIRE_DRAIN_SECS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(..=3600))]
    pub(crate) drain_secs: u64,
    /// Largest inbound message, in bytes.
    #[arg(long, env = "SEALWIRE_MAX_MESSAGE_BYTES", default_value_t = 128 * 1024)]
    pub(crate) max_message_bytes: usize,
    /// Rooms every client joins after authentication (comma-separated).
    // The default is `protocol::DEFAULT_ROOMS` (clap needs a literal; a test keeps them equal).
    #[arg(
        long,
        env = "SEALWIRE_DEFAULT_ROOMS",
        value_delimiter = ',',
        value_parser = trimmed,
        default_value = "ws-default,ws-notification"
    )]
    pub(crate) default_rooms: Vec<String>,
    /// Glob patterns of rooms clients may join themselves (comma-separated); none: no joins.
    #[arg(long, env = "SEALWIRE_ALLOW_ROOMS", value_delimiter = ',', value_parser = trimmed)]
    pub(crate) allow_rooms: Vec<String>,
    /// Most concurrent WebSocket connections; further upgrades get HTTP 503. Defaults to the
    /// soft RLIMIT_NOFILE less 256 (at least 64).
    #[arg(long, env = "SEALWIRE_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,
    /// Origins WebSocket upgrades may come from, comma-separated (`https://app.example`);
    /// others, and upgrades without an Origin, get 403. Default: any origin.
    #[arg(long, env = "SEALWIRE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub(crate) allowed_origins: Vec<String>,
    /// Most concurrent WebSocket connections from one IP address; further upgrades from it
    /// get HTTP 429. Unlimited by default (behind a proxy every client has its address).
    #[arg(long, env = "SEALWIRE_MAX_CONNECTIONS_PER_IP")]
    pub(crate) max_connections_per_ip: Option<usize>,
    /// Most concurrent connections still speaking HTTP (before an upgrade, admin calls, health
    /// checks); further ones wait to be accepted. They share the open-file budget with the
    /// WebSockets: keep it within the 256 descriptors `--max-connections` leaves by default
    /// where floods of idle connections are a concern. Default: 200000.
    #[arg(long, env = "SEALWIRE_MAX_TCP_CONNECTIONS")]
    pub(crate) max_tcp_connections: Option<usize>,
    /// Most of those connections from one IP address at once; one more from it is answered
    /// 429 and closed, so that one address cannot hold the whole budget with idle
    /// connections. Unlimited by default (behind a proxy every client has its address).
    #[arg(long, env = "SEALWIRE_MAX_TCP_CONNECTIONS_PER_IP")]
    pub(crate) max_tcp_connections_per_ip: Option<usize>,
    #[command(flatten)]
    pub(crate) history: HistoryArgs,
    /// Rooms that use room keys (hardened clients that opt in get one key per room epoch,
    /// and each publication is sealed once for all of them), as glob patterns
    /// (comma-separated, e.g. `orders:*`). None by default.
    #[arg(long, env = "SEALWIRE_ROOM_KEYS", value_delimiter = ',', value_parser = trimmed)]
    pub(crate) room_keys: Vec<String>,
    /// Records sealed under one room epoch key before a new epoch starts (at most 2^32).
    #[arg(long, env = "SEALWIRE_ROOM_KEY_MESSAGES", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    pub(crate) room_key_messages: u64,
    /// Seconds after which a room epoch is replaced at the next publication.
    #[arg(long, env = "SEALWIRE_ROOM_KEY_SECONDS", default_value_t = 600)]
    pub(crate) room_key_seconds: u64,
    /// Bearer token for the admin REST API under /socket (must not be empty).
    #[arg(long, env = "SEALWIRE_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) admin_token: Option<String>,
    /// HS256 secret: clients authenticate with JWTs whose `sub` is the user id.
    #[arg(long, env = "SEALWIRE_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,
    /// JWKS URL of an identity provider: clients authenticate with JWTs signed by one of its
    /// keys (RS256/384/512, PS256/384/512, ES256/384, EdDSA). https://, or http:// to a
    /// loopback address. The start fails if the set cannot be loaded.
    #[arg(long, env = "SEALWIRE_JWKS_URL")]
    pub(crate) jwks_url: Option<String>,
    /// Required `iss` claim of client JWTs (unset: not checked; empty is refused).
    #[arg(long, env = "SEALWIRE_JWT_ISSUER", conflicts_with = "dev",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub(crate) jwt_issuer: Option<String>,
    /// Required `aud` claim of client JWTs (unset: not checked; empty is refused).
    #[arg(long, env = "SEALWIRE_JWT_AUDIENCE", conflicts_with = "dev",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub(crate) jwt_audience: Option<String>,
    /// Clock leeway for JWT `exp`/`nbf`, in seconds; a session lasts until `exp` plus this.
    #[arg(long, env = "SEALWIRE_JWT_LEEWAY_SECS", default_value_t = JwtAuth::DEFAULT_LEEWAY_SECS, conflicts_with = "dev",
          value_parser = clap::value_parser!(u64).range(..=86_400))]
    pub(crate) jwt_leeway_secs: u64,
    /// Development mode: any non-empty token is the user id (loopback addresses only).
    #[arg(long)]
    pub(crate) dev: bool,
    #[cfg(feature = "redis")]
    #[command(flatten)]
    pub(crate) redis: RedisArgs,
    /// Redis subscription mode: interest (per-target channels, the default) or pattern (IGNIS).
    #[cfg(feature = "redis")]
    #[arg(long, env = "SEALWIRE_REDIS_MODE", default_value = "interest")]
    pub(crate) redis_mode: sealwire::bus::SubscriptionMode,
    /// Exit with an error if Redis is unreachable at start instead of retrying with backoff.
    #[cfg(feature = "redis")]
    #[arg(long, env = "SEALWIRE_REDIS_FAIL_FAST", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) redis_fail_fast: bool,
}

// Boolean flags with an environment variable read `1`/`0`, `yes`/`no`, `on`/`off` and
// `true`/`false` from it (`SEALWIRE_REUSE_PORT=1`): `BoolishValueParser`.

/// One element of a comma-separated list, without the spaces around it (`a, b`).
fn trimmed(s: &str) -> Result<String, std::convert::Infallible> {
    Ok(s.trim().to_owned())
}
