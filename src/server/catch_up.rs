//! Catching up after the bus subscription was down. Kept publications made meanwhile never
//! reached this instance live, and its clients that stayed connected would otherwise move on
//! past them without knowing (their next positioned message names a later offset). So before
//! the bus delivers anything that arrives on its new subscription, the instance reads what
//! it missed from the shared store and delivers it, in offset order
//! ([`super::history::Tails`] keeps where each stream stands here and skips the live copies).
//! Where the store no longer keeps all of it, the clients that asked for positions get
//! `recovered` with `recovered: false` for the stream instead (what a recovery would tell
//! them), so that none of them goes on as if it had missed nothing.

use std::sync::Arc;

use futures_util::StreamExt;

use super::Server;
use super::history::{Gap, Keeper};
use super::outbox::Frame;
use crate::protocol::{BusTarget, Position, target_of};

/// How many streams are read from the store at once.
const READS_AT_ONCE: usize = 8;

impl Server {
    /// Delivers, from the shared store, every kept publication of a stream with recipients
    /// here that came after the last one delivered here: what a subscription that was down
    /// missed. A stream that started again meanwhile (Redis lost it) is delivered from the
    /// start of its new epoch. For a stream whose missed publications are no longer all kept,
    /// its clients that asked for positions are told so ([`Frame::gap_notice`]); one that
    /// cannot be read is left as it is.
    ///
    /// A bus calls it ([`super::BusInbox::resubscribed`]) once its subscription is back and
    /// before it delivers what arrives on it, so nothing newer overtakes what is caught up.
    pub(crate) async fn catch_up(&self) {
        let Some(history) = &self.0.history else {
            return;
        };
        if history.shared().is_none() {
            return;
        }
        let streams: Vec<(String, BusTarget, Position)> = history
            .tails()
            .snapshot()
            .into_iter()
            .filter_map(|(stream, last)| {
                let target = target_of(&stream)?;
                let here = !self.0.registry().recipients(&target, &[]).is_empty();
                here.then_some((stream, target, last))
            })
            .collect();
        if streams.is_empty() {
            return;
        }
        let mut reads = futures_util::stream::iter(streams)
            .map(|(stream, target, last)| async move {
                let missed = missed(history, &stream, &last).await;
                (stream, target, missed)
            })
            .buffer_unordered(READS_AT_ONCE);
        let mut delivered = 0usize;
        while let Some((stream, target, missed)) = reads.next().await {
            match missed {
                Missed::Kept(missed) => {
                    delivered += self.deliver_missed(history, &stream, &target, &missed);
                }
                Missed::Restarted(start, missed) => {
                    // What the old epoch held after the last publication delivered here is
                    // gone: its clients are told, then get the new epoch from its start.
                    tracing::warn!(
                        stream,
                        "the stream started again while the bus subscription was down; its clients are told they may have missed publications"
                    );
                    self.fan_out_sessions(&target, &Frame::gap_notice(&stream, &start), &[]);
                    history.tails().caught_up(&stream, &start);
                    delivered += self.deliver_missed(history, &stream, &target, &missed);
                }
                Missed::Gap(here) => {
                    tracing::warn!(
                        stream,
                        "publications missed while the bus subscription was down are no longer all kept; its clients are told"
                    );
                    // A system event: in each client's own session, also in a room-key room.
                    self.fan_out_sessions(&target, &Frame::gap_notice(&stream, &here), &[]);
                    history.tails().caught_up(&stream, &here);
                }
                Missed::Unknown => {}
            }
        }
        if delivered > 0 {
            tracing::info!(
                delivered,
                "caught up on kept publications missed while the bus subscription was down"
            );
        }
    }

    /// Delivers the caught-up publications of one stream; returns how many.
    fn deliver_missed(
        &self,
        history: &Keeper,
        stream: &str,
        target: &BusTarget,
        missed: &[Arc<Frame>],
    ) -> usize {
        let echoes = history.echoes();
        let mut last = None;
        let mut delivered = 0;
        for frame in missed {
            let Some(p) = &frame.position else {
                continue;
            };
            let at = Position {
                offset: p.offset,
                epoch: p.epoch.to_string(),
            };
            // This instance's own publications that it delivered itself already (their echo
            // came too late, or their append was unconfirmed).
            let here_already = echoes.was_delivered_ahead(stream, &at)
                || echoes.is_late_copy(stream, &frame.event, frame.data.get());
            if !here_already {
                self.fan_out(target, frame, &p.exclude);
                delivered += 1;
            }
            echoes.delivered(stream, &at);
            last = Some(at);
        }
        if let Some(at) = last {
            history.tails().caught_up(stream, &at);
        }
        delivered
    }
}

/// What a stream's catch-up found.
enum Missed {
    /// Every publication after the last one delivered here, in offset order.
    Kept(Vec<Arc<Frame>>),
    /// The stream started a new epoch (Redis lost it, or an append it could not confirm
    /// started one): whatever the old one held after the last publication delivered here is
    /// unknown. The start of the new epoch, and its publications in offset order.
    Restarted(Position, Vec<Arc<Frame>>),
    /// Some are no longer kept (trimmed, expired): where the stream stands.
    Gap(Position),
    /// The store could not be read.
    Unknown,
}

/// What `stream` kept after `last`: from the start of its new epoch when it started again.
async fn missed(history: &Keeper, stream: &str, last: &Position) -> Missed {
    let (frames, here) = history.since(stream, last).await;
    match frames {
        Err(Gap::Epoch) if !here.is_unheld() && here.epoch != last.epoch => {
            let start = Position {
                offset: 0,
                epoch: here.epoch,
            };
            let (frames, here) = history.since(stream, &start).await;
            match frames {
                Ok(frames) => Missed::Restarted(start, frames),
                Err(Gap::Unavailable) => Missed::Unknown,
                Err(_) if here.is_unheld() => Missed::Unknown,
                Err(_) => Missed::Gap(here),
            }
        }
        Ok(frames) => Missed::Kept(frames),
        Err(Gap::Unavailable) => Missed::Unknown,
        Err(_) if here.is_unheld() => Missed::Unknown,
        Err(_) => Missed::Gap(here),
    }
}
