//! The periodic sweep: every `heartbeat_interval` it closes authenticated clients idle for
//! longer than `heartbeat_timeout` (4002), pings the others, and lets history (streams, the
//! tails a catch-up reads from) and room keys drop what nobody holds any more.

use super::Server;

impl Server {
    /// Runs until shutdown.
    pub(super) async fn sweep_loop(&self) {
        let mut tick = tokio::time::interval(self.0.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let timeout_ms =
            u64::try_from(self.0.config.heartbeat_timeout.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::select! {
                () = self.0.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Some(history) = &self.0.history {
                history.sweep();
                // A stream nobody here receives needs no catch-up.
                history.tails().retain(|stream| {
                    crate::protocol::target_of(stream)
                        .is_some_and(|t| !self.0.registry().recipients(&t, &[]).is_empty())
                });
            }
            if let Some(keys) = &self.0.room_keys {
                keys.wipe_unheld(|room| {
                    let snap = self.0.registry().room_snapshot(room, &[], true);
                    !snap.holders.is_empty()
                });
            }
            let handles = self.0.registry().handles_with_state();
            let mut expired = 0usize;
            for (h, authenticated) in handles {
                // Before authentication the authentication deadline (4001) governs, however
                // the two timeouts compare.
                if authenticated && h.idle_ms() > timeout_ms {
                    h.close(crate::protocol::CloseCode::HeartbeatTimeout);
                    expired += 1;
                } else {
                    h.ping();
                }
            }
            if expired > 0 {
                tracing::debug!(expired, "heartbeat sweep closed idle connections");
            }
        }
    }
}
