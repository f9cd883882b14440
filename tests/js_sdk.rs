//! The browser SDK (`sdk/js`) against real servers: its crypto tests (the published vectors
//! and every refusal), its client tests against a scripted in-memory server (WebSocket and
//! Socket.IO transports; the real socket.io-client is in tests/socketio.rs), and its
//! end-to-end tests (real WebSockets, WebCrypto in Node, the admin API pushing user, room and
//! broadcast messages, sealed authentication seen from a wire tap, room keys with one room
//! record for every member, session refresh and the 4006 expiry with `ttl:<ms>:<user>` tokens,
//! recovery of missed messages on reconnect, also on another instance sharing history in
//! Redis). Fails, never skips, when `node` is missing: CI installs it.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::hardened::{config_with, identity};
use common::*;
use sealwire::bus::{RedisBus, RedisBusConfig};
use sealwire::crypto::HandshakeConfig;
use sealwire::server::{GlobRooms, ServerConfig};

/// How many tests the five files hold; fewer passing means some did not run.
const EXPECTED_TESTS: usize = 82;

fn sdk_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/sdk/js"))
}

fn rooms() -> GlobRooms {
    GlobRooms::new(["chat:*"]).expect("glob")
}

/// Node 22+ has a global `WebSocket`; Node 20 needs `--experimental-websocket`.
async fn node_flags() -> Vec<&'static str> {
    let has_websocket = tokio::process::Command::new("node")
        .args([
            "-e",
            "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
        ])
        .status()
        .await
        .expect("`node` (Node.js >= 20.10) must be installed to test the browser SDK");
    if has_websocket.success() {
        vec![]
    } else {
        vec!["--experimental-websocket"]
    }
}

#[tokio::test]
async fn browser_sdk_passes_its_tests_against_a_real_server() {
    let identity = identity(0x42);
    let config = config_with(
        Some(identity.clone()),
        HandshakeConfig::default().rekey_after,
    );
    let mut config = config;
    config.history.rooms = vec!["chat:hist*".to_owned()];
    // Room keys (§14) for `chat:keyed*`, on both instances.
    config.room_keys.rooms = vec!["chat:keyed*".to_owned()];
    // `main` and its twin share one Redis: bus, and history in Redis Streams, so a client
    // recovers on either.
    let redis = common::redis::RedisServer::start().await;
    let on_redis = |config: ServerConfig| {
        let bus = RedisBus::new(RedisBusConfig::new(redis.url())).expect("bus");
        let store = bus
            .history_store(config.history.size, config.history.ttl)
            .expect("history store");
        builder(config)
            .validate_rooms(rooms())
            .bus(bus)
            .history_store(store)
    };
    let main = start_with(on_redis(config.clone())).await;
    let twin = start_with(on_redis(config)).await;

    let mut strict: ServerConfig = base_config();
    strict.encryption = sealwire::server::EncryptionPolicy::Required;
    let strict = start_with(builder(strict)).await;

    let mut idle = base_config();
    idle.heartbeat_interval = Duration::from_millis(250);
    idle.heartbeat_timeout = Duration::from_millis(1500);
    let idle = start_with(builder(idle).validate_rooms(rooms())).await;

    let mut cmd = tokio::process::Command::new("node");
    cmd.args(node_flags().await)
        .args([
            "--test",
            "--test-reporter=tap",
            "test/crypto.test.mjs",
            "test/client.test.mjs",
            "test/reconnect.test.mjs",
            "test/socketio.test.mjs",
            "test/e2e/client.e2e.mjs",
        ])
        .current_dir(sdk_dir())
        .env("SEALWIRE_URL", main.ws_url())
        .env("SEALWIRE_ADMIN", main.http(""))
        .env("SEALWIRE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SEALWIRE_IDENTITY_KEY", identity.public_key().to_base64())
        .env("SEALWIRE_STRICT_URL", strict.ws_url())
        .env("SEALWIRE_IDLE_URL", idle.ws_url())
        .env("SEALWIRE_IDLE_ADMIN", idle.http(""))
        .env("SEALWIRE_TWIN_URL", twin.ws_url())
        .env("SEALWIRE_TWIN_ADMIN", twin.http(""))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the SDK tests finished in time")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK tests failed:\n{stdout}\n{stderr}"
    );
    let count = |key: &str| -> usize {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {key} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `# {key}` line in:\n{stdout}"))
    };
    assert_eq!(count("fail"), 0, "{stdout}");
    assert_eq!(count("skipped"), 0, "{stdout}");
    assert_eq!(count("todo"), 0, "{stdout}");
    assert_eq!(count("cancelled"), 0, "{stdout}");
    assert_eq!(count("pass"), EXPECTED_TESTS, "{stdout}");

    for s in [main, twin, strict, idle] {
        s.stop().await;
    }
}
