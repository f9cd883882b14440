//! The clients: SDK connections spread over the instances, each in one room, each with a
//! task that records what it received.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use sealwire::client::{Client, DisconnectReason, Encryption, Event, Events, ReconnectPolicy};
use tokio::task::JoinHandle;

use crate::ledger::{EVENT, Life, Payload, Received};

/// The room of room number `r`.
pub(crate) fn room_name(r: u32) -> String {
    format!("soak-{r}")
}

/// Which encryption profile the clients use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Profile {
    /// `sealwire-v2` (the SDK's default).
    Hardened,
    /// The IGNIS-compatible profile.
    Compat,
    /// Half of each, chosen per client.
    Mixed,
}

/// How clients are made.
pub(crate) struct Spec {
    pub(crate) urls: Vec<String>,
    pub(crate) rooms: u32,
    pub(crate) profile: Profile,
    pub(crate) jwt_secret: String,
    /// Token lifetime (longer than the run).
    pub(crate) token_secs: u64,
}

/// Figures every client task adds to while the run goes on (for progress lines).
#[derive(Default)]
pub(crate) struct Live {
    pub(crate) delivered: AtomicU64,
    pub(crate) decrypt_failures: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) server_errors: AtomicU64,
}

/// A connected client.
pub(crate) struct Member {
    instance: u8,
    joined_at: Instant,
    client: Client,
    task: JoinHandle<Received>,
}

/// A client the driver closed, whose task is finishing.
pub(crate) struct Closed {
    instance: u8,
    joined_at: Instant,
    closed_at: Instant,
    task: JoinHandle<Received>,
}

impl Member {
    /// Closes the client; its record is complete once [`Closed::finish`] returns.
    pub(crate) fn close(self) -> Closed {
        let closed_at = Instant::now();
        self.client.close();
        Closed {
            instance: self.instance,
            joined_at: self.joined_at,
            closed_at,
            task: self.task,
        }
    }
}

impl Closed {
    pub(crate) async fn finish(self) -> anyhow::Result<Life> {
        let received = self.task.await.context("client task panicked")?;
        Ok(Life {
            instance: self.instance,
            joined_at: self.joined_at,
            closed_at: self.closed_at,
            received,
        })
    }
}

fn token(secret: &str, user: &str, secs: u64) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = serde_json::json!({"sub": user, "iat": now, "exp": now + secs});
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Connects client number `id` (instance `id % instances`, room `(id / instances) % rooms`, so
/// every room has members on both instances), joins its room and starts its receive task.
pub(crate) async fn connect(spec: &Spec, id: u64, live: &Arc<Live>) -> anyhow::Result<Member> {
    let n = spec.urls.len() as u64;
    let instance = (id % n) as u8;
    let room = ((id / n) % u64::from(spec.rooms)) as u32;
    let hardened = match spec.profile {
        Profile::Hardened => true,
        Profile::Compat => false,
        // A multiplicative hash, so that the profile does not follow instance or room.
        Profile::Mixed => id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 63 == 0,
    };
    let encryption = if hardened {
        Encryption::default()
    } else {
        Encryption::Compat
    };
    let (client, events) = Client::builder(spec.urls[usize::from(instance)].as_str())
        .token(token(
            &spec.jwt_secret,
            &format!("soak-{id}"),
            spec.token_secs,
        )?)
        .encryption(encryption)
        .connect_timeout(Duration::from_secs(20))
        .reconnect(ReconnectPolicy::default().max_delay(Duration::from_secs(5)))
        .connect()
        .await
        .with_context(|| format!("client {id}"))?;
    client.join([room_name(room)]).await?;
    let joined_at = Instant::now();
    let task = tokio::spawn(receive(events, room, Arc::clone(live)));
    Ok(Member {
        instance,
        joined_at,
        client,
        task,
    })
}

/// Connects client `id`, retrying a few times (connect failures are reported, not fatal).
pub(crate) async fn connect_retrying(
    spec: &Spec,
    id: u64,
    live: &Arc<Live>,
    failures: &AtomicU64,
) -> Option<Member> {
    for attempt in 0..5 {
        match connect(spec, id, live).await {
            Ok(m) => return Some(m),
            Err(e) => {
                if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("soak: connect failed (attempt {attempt}): {e:#}");
                }
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
        }
    }
    None
}

/// Connects clients `ids` with at most `concurrency` connects in flight.
pub(crate) async fn ramp(
    spec: &Spec,
    ids: std::ops::Range<u64>,
    concurrency: usize,
    live: &Arc<Live>,
    failures: &AtomicU64,
) -> Vec<Member> {
    futures_util::stream::iter(ids)
        .map(|id| connect_retrying(spec, id, live, failures))
        .buffer_unordered(concurrency.max(1))
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// Reads one client's events until its stream ends (after `close`).
async fn receive(mut events: Events, room: u32, live: Arc<Live>) -> Received {
    let mut rec = Received::default();
    while let Some(event) = events.recv().await {
        match event {
            Event::Message(m) if m.event == EVENT => {
                if !m.encrypted {
                    rec.plaintext += 1;
                    continue;
                }
                match serde_json::from_value::<Payload>(m.data) {
                    Ok(p) => rec.record(&p, room),
                    Err(_) => rec.misrouted += 1,
                }
                live.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Event::DecryptFailed { .. } => {
                rec.decrypt_failures += 1;
                live.decrypt_failures.fetch_add(1, Ordering::Relaxed);
            }
            Event::PlaintextRejected { .. } => rec.plaintext += 1,
            Event::ServerError { message } => {
                rec.server_errors += 1;
                if live.server_errors.fetch_add(1, Ordering::Relaxed) < 10 {
                    eprintln!("soak: a client got an error from the server: {message}");
                }
            }
            Event::Disconnected {
                reason: DisconnectReason::ClientClosed,
                ..
            } => {}
            Event::Disconnected { reason, .. } => {
                rec.disconnects += 1;
                if matches!(reason, DisconnectReason::Crypto(_)) {
                    rec.decrypt_failures += 1;
                    live.decrypt_failures.fetch_add(1, Ordering::Relaxed);
                }
                if live.disconnects.fetch_add(1, Ordering::Relaxed) < 10 {
                    eprintln!("soak: a client was disconnected: {reason}");
                }
            }
            _ => {}
        }
    }
    rec
}
