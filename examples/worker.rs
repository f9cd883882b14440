//! A background worker that runs no WebSocket server and notifies clients through Redis with
//! the [`Emitter`]: job progress to every session of a user, then a room update.
//!
//! ```text
//! redis-server --port 6379 --save '' --appendonly no &
//! cargo run -- serve --dev --redis-url redis://127.0.0.1:6379          # one or more instances
//! cargo run --example worker -- alice                                  # user id to notify
//! REDIS_URL=redis://127.0.0.1:6379 SEALWIRE_BUS_KEY=<base64> cargo run --example worker -- alice
//! ```
//!
//! A client authenticated as `alice` (with `--dev`, the token `alice`) on any instance receives
//! the `job:progress` events; members of `dashboard-viewers` receive `job:done`. When the
//! servers run with `--bus-key`, the worker needs the same `SEALWIRE_BUS_KEY`.

use sealwire::publish::Publish;
use std::time::Duration;

use anyhow::Context;
use sealwire::crypto::backplane::BusKey;
use sealwire::emitter::{Emitter, EmitterConfig};
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let user = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "alice".to_owned());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let key = match std::env::var("SEALWIRE_BUS_KEY") {
        Ok(k) if !k.is_empty() => Some(
            BusKey::from_base64(&k)
                .map_err(|_| anyhow::anyhow!("SEALWIRE_BUS_KEY must be base64 of 32 bytes"))?,
        ),
        _ => None,
    };
    let emitter = Emitter::connect(EmitterConfig::new(url).bus_key(key))
        .await
        .context("connecting to Redis")?;

    let job_id = "report-2026-11";
    for progress in [0, 25, 50, 75, 100] {
        // The count is how many server instances are listening for this user right now.
        let receipt = emitter
            .to_user(&user)
            .emit(
                "job:progress",
                &json!({"jobId": job_id, "progress": progress}),
            )
            .await?;
        let listeners = receipt.instances.unwrap_or(0);
        println!("job:progress {progress}% -> {listeners} instance(s)");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    emitter
        .to_room("dashboard-viewers")
        .emit("job:done", &json!({"jobId": job_id}))
        .await?;
    emitter.shutdown().await;
    Ok(())
}
