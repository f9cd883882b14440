//! Recovery on the client side (`docs/PROTOCOL.md` §12): the positions sent with a join, and
//! the bookkeeping of positioned messages and `recovered` answers.

use super::Event;
use super::connection::Task;
use crate::protocol::{BusTarget, Inbound, RecoverRequest, RecoveredPayload, event, stream_of};

impl Task {
    /// The `recover` field of a join of `rooms`: the positions held in their streams, when
    /// recovery is on.
    pub(super) fn recover_for(&self, rooms: &[String]) -> Option<RecoverRequest> {
        if !self.config.recover {
            return None;
        }
        let positions = self.shared.positions();
        Some(
            rooms
                .iter()
                .filter_map(|r| {
                    let stream = stream_of(&BusTarget::Room(r.clone()))?;
                    positions.get(&stream).map(|p| (stream, p.clone()))
                })
                .collect(),
        )
    }

    /// Records the position of a positioned message, and turns `recovered` into its event.
    pub(super) fn track(&self, inbound: &Inbound) -> Option<Event> {
        if !self.config.recover {
            return None;
        }
        if let (Some(stream), Some(offset), Some(epoch)) =
            (&inbound.stream, inbound.offset, &inbound.epoch)
        {
            self.shared.advance(stream, offset, epoch);
        }
        if inbound.event.as_deref() != Some(event::RECOVERED) {
            return None;
        }
        let payload: RecoveredPayload = inbound
            .data
            .clone()
            .and_then(|d| serde_json::from_value(d).ok())
            .unwrap_or_default();
        // An unheld position (epoch `""`) is kept too, where no other is held: sent back on
        // the next reconnect, it is answered `recovered: false`, so a stream the server could
        // not track is never taken for one that missed nothing.
        for s in &payload.streams {
            self.shared.advance(&s.stream, s.offset, &s.epoch);
        }
        Some(Event::Recovered {
            streams: payload.streams,
        })
    }
}
