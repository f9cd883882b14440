//! The subscriber task: holds the pub/sub connection, subscribes it to everything this instance
//! needs (broadcast plus patterns or interest channels), keeps it alive with pings, reconnects
//! with backoff and hands every accepted envelope to the server's inbox, opening sealed ones.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};

use super::connect::{connect_subscriber, timed};
use super::{Inner, SUBSCRIBE_CHUNK};
use crate::bus::config::{Backoff, SubscriptionMode};
use crate::crypto::CryptoError;
use crate::crypto::backplane::{Opener, is_sealed};
use crate::protocol::{BusEnvelope, channel};
use crate::server::BusInbox;

/// How long a subscription that came back waits for the server to catch up on what it
/// missed ([`BusInbox::resubscribed`]) before it delivers what arrives on it.
const CATCH_UP_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A connected, fully subscribed pub/sub connection (or why it is not).
pub(super) type Subscribed = Result<(PubSubSink, PubSubStream, HashSet<String>), String>;

impl Inner {
    /// Subscribes a fresh connection to everything this instance needs.
    pub(super) async fn subscribe_all(
        self: &Arc<Self>,
        (mut sink, stream): (PubSubSink, PubSubStream),
    ) -> Subscribed {
        let t = self.response_timeout;
        timed(t, sink.subscribe(channel::BROADCAST)).await?;
        let mut actual = HashSet::new();
        match self.mode {
            SubscriptionMode::Pattern => {
                timed(
                    t,
                    sink.psubscribe(&[
                        channel::ROOM_PATTERN,
                        channel::CLIENT_PATTERN,
                        channel::USER_PATTERN,
                    ]),
                )
                .await?;
            }
            SubscriptionMode::Interest => {
                let wanted = self.wanted_channels();
                for chunk in wanted.chunks(SUBSCRIBE_CHUNK) {
                    timed(t, sink.subscribe(chunk)).await?;
                }
                actual.extend(wanted);
            }
        }
        self.set_up(&self.sub_up, "subscriber");
        self.confirm(Some(&actual));
        Ok((sink, stream, actual))
    }

    pub(super) async fn subscriber(
        self: Arc<Self>,
        first: Subscribed,
        inbox: BusInbox,
        mut opener: Option<Opener>,
    ) {
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        let mut current = first;
        let mut resumed = false;
        loop {
            match current {
                Ok((sink, stream, actual)) => {
                    backoff.reset();
                    // What was published while the subscription was down: the server
                    // delivers what it kept before anything newer (what arrives meanwhile
                    // waits in the connection).
                    if resumed
                        && tokio::time::timeout(CATCH_UP_WITHIN, inbox.resubscribed())
                            .await
                            .is_err()
                    {
                        tracing::warn!(
                            "catching up after the subscription came back took too long; going on"
                        );
                    }
                    resumed = true;
                    let why = self.pump(sink, stream, actual, &inbox, &mut opener).await;
                    match why {
                        None => return,
                        Some(e) => {
                            self.set_down(&self.sub_up, format!("subscriber: {e}"));
                            self.confirm(None);
                            self.publisher_reset.send_modify(|n| *n += 1);
                        }
                    }
                }
                Err(e) => self.set_down(&self.sub_up, format!("subscriber: {e}")),
            }
            if !self.sleep_or_cancel(backoff.next_delay()).await {
                return;
            }
            current = match connect_subscriber(&self.client, self.connect_timeout).await {
                Ok(pair) => self.subscribe_all(pair).await,
                Err(e) => Err(e.to_string()),
            };
            // Reconnections, not attempts: an outage counts once whatever its length.
            if current.is_ok() {
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Runs one subscriber connection until it fails (`Some(reason)`) or the bus stops (`None`).
    async fn pump(
        &self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        mut actual: HashSet<String>,
        inbox: &BusInbox,
        opener: &mut Option<Opener>,
    ) -> Option<String> {
        let mut ping = tokio::time::interval(self.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        // Changes that raced with the initial subscription.
        if self.mode == SubscriptionMode::Interest {
            if let Err(e) = self.apply_interest(&mut sink, &mut actual).await {
                return Some(e);
            }
            self.confirm(Some(&actual));
        }
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return None,
                msg = stream.next() => match msg {
                    Some(msg) => {
                        if let Some(env) = self.handle(&msg, opener) {
                            inbox.deliver_paced(env).await;
                        }
                    }
                    None => return Some("connection closed".to_owned()),
                },
                () = self.interest_changed.notified(), if self.mode == SubscriptionMode::Interest => {
                    if let Err(e) = self.apply_interest(&mut sink, &mut actual).await {
                        return Some(e);
                    }
                    self.confirm(Some(&actual));
                }
                _ = ping.tick() => {
                    if let Err(e) = timed(self.response_timeout, sink.ping::<redis::Value>()).await {
                        return Some(format!("ping failed: {e}"));
                    }
                }
            }
        }
    }

    /// Checks one message from Redis: the envelope to deliver, or `None` (counted and
    /// logged) when it is rejected.
    fn handle(&self, msg: &redis::Msg, opener: &mut Option<Opener>) -> Option<BusEnvelope> {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let reject = |why: &str| -> Option<BusEnvelope> {
            let n = self.stats.rejected.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    channel = msg.get_channel_name(),
                    reason = why,
                    rejected = n,
                    "dropping bus message"
                );
            } else {
                tracing::debug!(
                    channel = msg.get_channel_name(),
                    reason = why,
                    "dropping bus message"
                );
            }
            None
        };
        let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else {
            return reject("payload is not UTF-8");
        };
        let mut env = match BusEnvelope::from_json(text) {
            Ok(env) => env,
            Err(_) => return reject("malformed envelope"),
        };
        if env.target.channel() != msg.get_channel_name() {
            return reject("envelope target does not match its channel");
        }
        if crate::protocol::EventName::check(&env.event).is_err() {
            return reject("invalid or reserved event name");
        }
        match opener {
            Some(opener) => match opener.open(&mut env) {
                Ok(()) => {}
                Err(CryptoError::Replay) => return reject("replayed or stale sealed envelope"),
                Err(_) => return reject("not sealed with this bus key"),
            },
            None => {
                if is_sealed(&env.data) {
                    return reject("sealed envelope but no bus key configured");
                }
            }
        }
        Some(env)
    }
}
