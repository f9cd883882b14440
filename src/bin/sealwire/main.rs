//! The `sealwire` command: `serve` runs the server, `emit` publishes through Redis.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser as _;
use sealwire::server::{
    DevAuth, EncryptionPolicy, GlobRooms, JwksAuth, JwksOptions, JwtAuth, JwtRules, Server,
    ServerConfig,
};
use sealwire::transport::{HttpConfig, TlsConfig, serve_with_shutdown};

mod args;
mod logs;
mod signals;

#[cfg(feature = "redis")]
use args::EmitArgs;
use args::{Cli, Command, LogFormat, ServeArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let json = matches!(cli.log_format, LogFormat::Json);
    logs::init(cli.log_format);
    let result = run(cli.command).await;
    if json && let Err(e) = &result {
        // A JSON log pipeline gets the fatal error as one of its lines too.
        tracing::error!(error = format!("{e:#}"), "fatal");
    }
    result
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args).await,
        #[cfg(feature = "redis")]
        Command::Emit(args) => emit(args).await,
        #[cfg(feature = "redis")]
        Command::GenBusKey => {
            use base64::Engine as _;
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let key = base64::engine::general_purpose::STANDARD.encode(bytes);
            // A key that could not be written is lost: an error, not a panic.
            use std::io::Write as _;
            writeln!(std::io::stdout(), "{key}").context("cannot write the key to stdout")
        }
    }
}

/// Prints one of the server's announcements. A closed stdout (`serve | head -1`, a log pipe
/// that went away) must not end a running server, so a failed write is ignored; `println!`
/// would panic there.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
}

fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let modes = [args.dev, args.jwt_secret.is_some(), args.jwks_url.is_some()];
    if modes.iter().filter(|m| **m).count() != 1 {
        bail!(
            "choose exactly one auth mode: --jwt-secret <secret> (or SEALWIRE_JWT_SECRET), \
             --jwks-url <url> (or SEALWIRE_JWKS_URL) or --dev"
        );
    }
    if args.dev && !args.listen.ip().is_loopback() {
        bail!(
            "--dev accepts any token and is only allowed on a loopback address, not {}",
            args.listen
        );
    }
    if args
        .admin_token
        .as_deref()
        .is_some_and(|t| t.trim().is_empty())
    {
        bail!(
            "--admin-token (or SEALWIRE_ADMIN_TOKEN) must not be empty; leave it unset to disable the admin API"
        );
    }
    let mut admin_token = args.admin_token;
    if args.dev && admin_token.is_none() {
        let token = random_token();
        say(format_args!("dev admin token: {token}"));
        admin_token = Some(token);
    }
    let mut config = ServerConfig::default();
    let mut http = HttpConfig::default();
    http.path = args.path;
    config.encryption = if args.refuse_compat {
        EncryptionPolicy::HardenedOnly
    } else if args.require_encryption {
        EncryptionPolicy::Required
    } else {
        args.encryption
    };
    config.require_encrypted_inbound = args.require_encrypted_inbound;
    if let Some(path) = &args.identity_key_file {
        let identity = load_identity(path)?;
        tracing::info!(public_key = %identity.public_key().to_base64(), "server identity key loaded");
        config.handshake.identity = Some(std::sync::Arc::new(identity));
    }
    config.auth_timeout = Duration::from_millis(args.auth_timeout_ms);
    config.drain = Duration::from_secs(args.drain_secs);
    config.history = args.history.config();
    config.room_keys.rooms = args.room_keys.clone();
    config.room_keys.max_messages = args.room_key_messages;
    config.room_keys.max_age = std::time::Duration::from_secs(args.room_key_seconds);
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_interval_ms);
    config.heartbeat_timeout = Duration::from_millis(args.heartbeat_timeout_ms);
    config.max_message_bytes = args.max_message_bytes;
    config.default_rooms = args
        .default_rooms
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    if let Some(max) = args.max_connections {
        config.max_connections = Some(max);
    }
    config.max_connections_per_ip = args.max_connections_per_ip;
    // The demo page's link carries the admin token in its fragment (never sent to the server).
    let demo_token = args.dev.then(|| admin_token.clone()).flatten();
    http.admin_token = admin_token;
    if let Some(max) = args.max_tcp_connections {
        http.max_tcp_connections = max;
    }
    http.max_tcp_connections_per_ip = args.max_tcp_connections_per_ip;
    http.allowed_origins = args
        .allowed_origins
        .into_iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    http.validate().context("invalid configuration")?;
    #[cfg(feature = "socketio")]
    let socketio_path = args.socketio_path.as_str();
    #[cfg(not(feature = "socketio"))]
    let socketio_path = "off";
    check_paths(args.dev, socketio_path, &http.path)?;

    // `@socket.io/redis-emitter` messages carry no seal: with a bus key, where only key
    // holders may publish to clients, they are not accepted.
    #[cfg(all(feature = "socketio", feature = "redis"))]
    let sio_redis_url = args
        .redis
        .redis_url
        .clone()
        .filter(|u| !u.is_empty())
        .filter(|_| {
            let sealed = args.redis.bus_key.as_deref().is_some_and(|k| !k.is_empty());
            if sealed && !args.socketio_redis_key.is_empty() {
                tracing::warn!(
                    "--bus-key is set: unsealed @socket.io/redis-emitter messages are not accepted"
                );
            }
            !sealed
        });
    #[cfg(feature = "redis")]
    let history = config.history.clone();
    let mut builder = Server::builder().config(config);
    #[cfg(feature = "redis")]
    if let Some(url) = args.redis.redis_url.filter(|u| !u.is_empty()) {
        use sealwire::bus::{RedisBus, RedisBusConfig, StartupPolicy};
        let bus_key = parse_bus_key(args.redis.bus_key.as_deref())?;
        let startup = if args.redis_fail_fast {
            StartupPolicy::FailFast
        } else {
            StartupPolicy::Wait
        };
        let ca = read_ca(args.redis.redis_ca_file.as_deref(), &url)?;
        let bus = RedisBus::new(
            RedisBusConfig::new(url)
                .tls_ca_pem(ca)
                .mode(args.redis_mode)
                .startup(startup)
                .bus_key(bus_key),
        )
        .context("invalid --redis-url")?;
        // With Redis, history lives in Redis Streams: every instance recovers every stream.
        if history.enabled() {
            let store = bus
                .history_store(history.size, history.ttl)
                .context("history store")?;
            builder = builder.history_store(store);
        }
        builder = builder.bus(bus);
    } else if args.redis.bus_key.is_some() {
        bail!("--bus-key needs --redis-url");
    }
    let mut rules = JwtRules::default().leeway(args.jwt_leeway_secs);
    if let Some(iss) = args.jwt_issuer.as_deref().filter(|s| !s.is_empty()) {
        rules = rules.issuer(iss);
    }
    if let Some(aud) = args.jwt_audience.as_deref().filter(|s| !s.is_empty()) {
        rules = rules.audience(aud);
    }
    builder = match (args.jwt_secret, args.jwks_url) {
        (Some(secret), _) if secret.len() < 32 => bail!("--jwt-secret must be at least 32 bytes"),
        (Some(secret), _) => builder.authenticate(JwtAuth::hs256(secret.as_bytes()).rules(rules)),
        (None, Some(url)) => {
            let jwks = JwksAuth::load(&url, rules, JwksOptions::default())
                .await
                .context("--jwks-url")?;
            tracing::info!(url = %url, keys = ?jwks.key_ids(), "JWKS loaded");
            builder.authenticate(jwks)
        }
        (None, None) => builder.authenticate(DevAuth),
    };
    let allow: Vec<String> = args
        .allow_rooms
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect();
    if !allow.is_empty() {
        builder = builder
            .validate_rooms(GlobRooms::new(&allow).context("invalid --allow-rooms pattern")?);
    }
    let server = builder.build().context("invalid configuration")?;
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let tls = TlsConfig::load(cert, key).context("cannot start TLS")?;
        http.tls = Some(tls);
    }
    reload_on_sighup(http.tls.clone())?;
    let scheme = if http.tls.is_some() { "wss" } else { "ws" };

    let bind = if args.reuse_port {
        sealwire::transport::bind_shared
    } else {
        sealwire::transport::bind
    };
    let listener =
        bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    // Started (the bus connected, when there is one) before it says it listens: until then
    // connections would wait unanswered.
    server.start().await.context("server failed")?;
    say(format_args!(
        "sealwire listening on {scheme}://{local}{}",
        http.path
    ));
    #[cfg(feature = "socketio")]
    if args.socketio_path != "off" {
        let sio = sealwire::transport::socketio::SocketIoConfig::default()
            .path(args.socketio_path.clone())
            .auth_timeout(Duration::from_millis(args.socketio_auth_timeout_ms))
            .allowed_origins(http.allowed_origins.clone());
        let web = if http.tls.is_some() { "https" } else { "http" };
        say(format_args!(
            "socket.io listening on {web}://{local}{}/",
            sio.path
        ));
        http.routes = Some(sealwire::transport::socketio::router(server.clone(), sio));
        #[cfg(feature = "redis")]
        if let Some(url) = sio_redis_url.filter(|_| !args.socketio_redis_key.is_empty()) {
            let ca = read_ca(args.redis.redis_ca_file.as_deref(), &url)?;
            sealwire::transport::socketio::spawn_redis_emitter_bridge_with_ca(
                &server,
                &url,
                &args.socketio_redis_key,
                ca.as_deref(),
            )
            .context("invalid --redis-url")?;
        }
    }
    if args.dev {
        let demo = sealwire::transport::demo::routes_at(&http.path);
        http.routes = Some(match http.routes.take() {
            Some(routes) => routes.merge(demo),
            None => demo,
        });
        let fragment = demo_token
            .map(|t| format!("#admin={t}"))
            .unwrap_or_default();
        let web = if http.tls.is_some() { "https" } else { "http" };
        say(format_args!("demo page: {web}://{local}/{fragment}"));
    }
    tracing::info!(%local, server_id = server.id(), tls = http.tls.is_some(), "serving");
    serve_with_shutdown(listener, server, http, signals::shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(feature = "redis")]
fn parse_bus_key(
    text: Option<&str>,
) -> anyhow::Result<Option<sealwire::crypto::backplane::BusKey>> {
    match text {
        None => Ok(None),
        // An empty key (an unset variable in a template, say) must not mean "no encryption".
        Some("") => Err(anyhow::anyhow!(
            "--bus-key is empty: give a key (`sealwire gen-bus-key`) or leave the option out"
        )),
        Some(t) => sealwire::crypto::backplane::BusKey::from_base64(t)
            .map(Some)
            .map_err(|_| {
                anyhow::anyhow!(
                    "--bus-key must be base64 of exactly 32 bytes (try `sealwire gen-bus-key`)"
                )
            }),
    }
}

#[cfg(feature = "redis")]
fn read_ca(path: Option<&std::path::Path>, url: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(p) = path else {
        return Ok(None);
    };
    if !url.starts_with("rediss://") {
        bail!("--redis-ca-file is for TLS: give a rediss:// --redis-url");
    }
    let pem =
        std::fs::read(p).with_context(|| format!("cannot read --redis-ca-file {}", p.display()))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        bail!(
            "--redis-ca-file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            p.display()
        );
    }
    Ok(Some(pem))
}

#[cfg(feature = "redis")]
async fn emit(args: EmitArgs) -> anyhow::Result<()> {
    use sealwire::emitter::{Emitter, EmitterConfig};
    use sealwire::protocol::BusTarget;
    use sealwire::publish::Publish;
    let Some(url) = args.redis.redis_url.filter(|u| !u.is_empty()) else {
        bail!("--redis-url (or REDIS_URL) is required");
    };
    let data =
        serde_json::value::RawValue::from_string(args.data).context("--data must be valid JSON")?;
    let t = args.target;
    let target = match (t.client, t.user, t.room, t.broadcast) {
        (Some(c), _, _, _) => BusTarget::Client(c),
        (_, Some(u), _, _) => BusTarget::User(u),
        (_, _, Some(r), _) => BusTarget::Room(r),
        _ => BusTarget::Broadcast,
    };
    if !args.exclude.is_empty() && matches!(target, BusTarget::Client(_) | BusTarget::User(_)) {
        bail!("--exclude applies to --room and --broadcast only");
    }
    let h = &args.history;
    if h.history_size == 0
        && (!h.history_rooms.is_empty() || h.history_users || h.history_broadcast)
    {
        bail!("--history-size must be at least 1 where history is kept");
    }
    let key = parse_bus_key(args.redis.bus_key.as_deref())?;
    let ca = read_ca(args.redis.redis_ca_file.as_deref(), &url)?;
    let config = EmitterConfig::new(url)
        .bus_key(key)
        .tls_ca_pem(ca)
        .history(args.history.config());
    let emitter = Emitter::connect(config).await?;
    let result = emitter
        .to(target.clone())
        .except_all(args.exclude)
        .emit_raw(&args.event, data)
        .await;
    emitter.shutdown().await;
    let receipt = result.context("publish failed")?;
    let kept = receipt
        .offset
        .map(|o| format!(", kept at offset {o}"))
        .unwrap_or_default();
    // Published already: a reader that went away does not make it a failure.
    say(format_args!(
        "published {} to {} ({} Redis subscriber(s){kept})",
        args.event,
        target.channel(),
        receipt.instances.unwrap_or(0)
    ));
    Ok(())
}

/// Reloads the TLS certificate and key on every SIGHUP (unix); without TLS there is nothing
/// to reload, and a SIGHUP (`systemctl reload`, a closed terminal) is logged and ignored. The
/// handler is installed before the server announces itself, so a SIGHUP never finds the
/// default action (exit).
#[cfg(unix)]
fn reload_on_sighup(tls: Option<TlsConfig>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match &tls {
                Some(tls) => {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    tls.reload_logged();
                }
                None => tracing::info!("SIGHUP: nothing to reload (no TLS); still serving"),
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_sighup(_tls: Option<TlsConfig>) -> anyhow::Result<()> {
    Ok(())
}

/// Reads a server identity key: 64 hex characters (surrounding whitespace ignored).
fn load_identity(path: &std::path::Path) -> anyhow::Result<sealwire::crypto::ServerIdentity> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the identity key file {}", path.display()))?,
    );
    let hex = text.trim();
    anyhow::ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}: expected 64 hex characters",
        path.display()
    );
    let mut scalar = zeroize::Zeroizing::new([0u8; 32]);
    for (i, byte) in scalar.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    sealwire::crypto::ServerIdentity::from_bytes(&scalar)
        .map_err(|_| anyhow::anyhow!("{}: not a valid P-256 private key", path.display()))
}

/// The paths besides `--path` against the server's own routes (`HttpConfig::validate`
/// checks that one): `--socketio-path` (served as `{path}` and `{path}/`) must be a literal
/// path other than `/` and `--path`, and free of the server's routes
/// ([`reserved_route`](sealwire::transport::reserved_route)); with `--dev`, neither path may
/// take the demo page's routes (`/`, `/sdk/...`).
fn check_paths(dev: bool, socketio_path: &str, ws_path: &str) -> anyhow::Result<()> {
    use sealwire::transport::{check_path, path_is_under, reserved_route};
    if dev && (ws_path == "/" || path_is_under(ws_path, "/sdk")) {
        bail!("--path {ws_path} is taken by the --dev demo page (/ and /sdk/...)");
    }
    if socketio_path == "off" {
        return Ok(());
    }
    // Socket.IO clients are often given the path with a trailing '/': the same path.
    let sio = match socketio_path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    check_path(sio).context("invalid --socketio-path")?;
    if sio == "/" {
        bail!("--socketio-path / would take every path (use e.g. /io, or `off`)");
    }
    let taken = if sio == ws_path {
        Some("--path")
    } else if dev && path_is_under(sio, "/sdk") {
        Some("the --dev demo page")
    } else {
        reserved_route(sio)
    };
    if let Some(by) = taken {
        bail!("--socketio-path {sio} is taken by {by}: choose another path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn default_rooms_flag_is_the_protocol_default() {
        let cli = super::Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve subcommand");
        let arg = serve
            .get_arguments()
            .find(|a| a.get_id() == "default_rooms")
            .expect("--default-rooms");
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            defaults.join(","),
            sealwire::protocol::DEFAULT_ROOMS.join(",")
        );
    }
}
