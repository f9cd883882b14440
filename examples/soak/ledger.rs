//! What was published, what each client received, and the loss accounting over both.
//!
//! Every publish tick sends one batch through one instance's admin API (the instances take
//! turns): a broadcast plus one message to every room, all carrying the tick's sequence number
//! for that instance. Each client is in exactly one room, so it should receive two messages per
//! tick: four sequence-numbered streams per client (broadcast and room, via either instance).
//!
//! A client is expected to receive a message when the publish request started at least `grace`
//! after the client joined its room and returned at least `grace` before the client was closed
//! (a message published through the other instance is still on its way through Redis when the
//! request returns).
//! An expected message that never arrived is a loss; it belongs to a Redis restart's window
//! when its publish request overlaps `[kill - before, recovered + after]`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Event name of every soak message.
pub(crate) const EVENT: &str = "soak";
/// Message kinds: 0 broadcast, 1 room.
const KINDS: usize = 2;
/// Publishing instances.
pub(crate) const VIAS: usize = 2;

/// The data of one soak message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Payload {
    /// Instance (0 or 1) whose admin API published it.
    pub(crate) v: u8,
    /// 0 broadcast, 1 room.
    pub(crate) k: u8,
    /// The room (room messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) r: Option<u32>,
    /// The tick's sequence number for this instance (from 0).
    pub(crate) s: u32,
}

/// One publish request (one tick).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Publish {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    /// Whether the admin API accepted the batch (2xx).
    pub(crate) ok: bool,
}

/// Every tick, per publishing instance, indexed by sequence number.
#[derive(Debug, Default)]
pub(crate) struct PublishLog {
    by_via: [Vec<Publish>; VIAS],
}

impl PublishLog {
    /// The sequence number the next tick through `via` carries.
    pub(crate) fn next_seq(&self, via: u8) -> u32 {
        u32::try_from(self.by_via[usize::from(via)].len()).unwrap_or(u32::MAX)
    }

    pub(crate) fn push(&mut self, via: u8, p: Publish) {
        self.by_via[usize::from(via)].push(p);
    }

    pub(crate) fn ticks(&self) -> usize {
        self.by_via.iter().map(Vec::len).sum()
    }

    pub(crate) fn failed(&self) -> usize {
        self.by_via.iter().flatten().filter(|p| !p.ok).count()
    }
}

/// What one client received over its life (including the SDK's own reconnects).
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// Bit sets of received sequence numbers, per instance and kind.
    bits: [[Vec<u64>; KINDS]; VIAS],
    /// Highest sequence number seen per stream, for the order check.
    last: [[Option<u32>; KINDS]; VIAS],
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
    /// Room messages for another room, or payloads that do not parse.
    pub(crate) misrouted: u64,
    /// `encrypted` frames that did not open, and hardened sessions dropped for a bad record.
    pub(crate) decrypt_failures: u64,
    /// Plaintext application frames on an encrypted session.
    pub(crate) plaintext: u64,
    /// Disconnects the driver did not ask for (the SDK then reconnects).
    pub(crate) disconnects: u64,
    /// `error` events from the server (a refused join, ...).
    pub(crate) server_errors: u64,
}

impl Received {
    /// Records one soak message received by a client of `room`.
    pub(crate) fn record(&mut self, p: &Payload, room: u32) {
        let (v, k) = (usize::from(p.v), usize::from(p.k));
        if v >= VIAS || k >= KINDS || (k == 1 && p.r != Some(room)) {
            self.misrouted += 1;
            return;
        }
        let bits = &mut self.bits[v][k];
        let (word, bit) = ((p.s / 64) as usize, p.s % 64);
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        if bits[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        bits[word] |= 1 << bit;
        let last = &mut self.last[v][k];
        if last.is_some_and(|l| p.s < l) {
            self.out_of_order += 1;
        }
        *last = Some(last.map_or(p.s, |l| l.max(p.s)));
    }

    fn has(&self, v: usize, k: usize, s: u32) -> bool {
        self.bits[v][k]
            .get((s / 64) as usize)
            .is_some_and(|w| w & (1 << (s % 64)) != 0)
    }
}

/// One client from its join to its close.
#[derive(Debug)]
pub(crate) struct Life {
    /// Instance it connected to (0 or 1).
    pub(crate) instance: u8,
    pub(crate) joined_at: Instant,
    pub(crate) closed_at: Instant,
    pub(crate) received: Received,
}

/// A Redis restart: when it was killed, when it answered again, and when both instances
/// reported their bus connected again.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub(crate) kill: Instant,
    pub(crate) restarted: Instant,
    pub(crate) recovered: Instant,
    /// Per instance, the bus reconnection attempts from the kill to the recovery.
    pub(crate) reconnects: Vec<u64>,
}

/// How far around a restart losses are attributed to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Margins {
    /// Time for a join to take effect, and for a message to arrive through Redis.
    pub(crate) grace: Duration,
    pub(crate) before: Duration,
    pub(crate) after: Duration,
}

/// Losses of one restart window.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WindowLoss {
    /// Lost by clients of the instance that published the message (no Redis involved).
    pub(crate) local: u64,
    /// Lost by clients of the other instance (delivered through Redis).
    pub(crate) cross: u64,
    /// Messages expected of clients in the window.
    pub(crate) expected: u64,
}

/// The whole run's accounting.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) clients: usize,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) lost_outside: u64,
    /// Messages lost outside the windows: (instance that published it, kind, sequence
    /// number) -> (clients that lost it, when its publish request started).
    pub(crate) outside: BTreeMap<(usize, usize, u32), (u64, Instant)>,
    pub(crate) windows: Vec<WindowLoss>,
    pub(crate) duplicates: u64,
    pub(crate) out_of_order: u64,
    pub(crate) misrouted: u64,
    pub(crate) decrypt_failures: u64,
    pub(crate) plaintext: u64,
    pub(crate) disconnects: u64,
    pub(crate) server_errors: u64,
}

impl Tally {
    pub(crate) fn lost_in_windows(&self) -> u64 {
        self.windows.iter().map(|w| w.local + w.cross).sum()
    }
}

/// Counts expected, delivered and lost messages of every client against the publish log.
pub(crate) fn tally(log: &PublishLog, lives: &[Life], windows: &[Window], m: Margins) -> Tally {
    let mut t = Tally {
        clients: lives.len(),
        windows: vec![WindowLoss::default(); windows.len()],
        ..Tally::default()
    };
    let window_of = |p: &Publish| {
        windows
            .iter()
            .position(|w| p.end + m.before >= w.kill && p.start <= w.recovered + m.after)
    };
    for life in lives {
        let r = &life.received;
        t.duplicates += r.duplicates;
        t.out_of_order += r.out_of_order;
        t.misrouted += r.misrouted;
        t.decrypt_failures += r.decrypt_failures;
        t.plaintext += r.plaintext;
        t.disconnects += r.disconnects;
        t.server_errors += r.server_errors;
        let from = life.joined_at + m.grace;
        for (v, ticks) in log.by_via.iter().enumerate() {
            for (s, p) in ticks.iter().enumerate() {
                if !p.ok || p.start < from || p.end + m.grace > life.closed_at {
                    continue;
                }
                let s = u32::try_from(s).unwrap_or(u32::MAX);
                let w = window_of(p);
                for k in 0..KINDS {
                    t.expected += 1;
                    if let Some(i) = w {
                        t.windows[i].expected += 1;
                    }
                    if r.has(v, k, s) {
                        t.delivered += 1;
                        continue;
                    }
                    match w {
                        Some(i) if usize::from(life.instance) == v => t.windows[i].local += 1,
                        Some(i) => t.windows[i].cross += 1,
                        None => {
                            t.lost_outside += 1;
                            t.outside.entry((v, k, s)).or_insert((0, p.start)).0 += 1;
                        }
                    }
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(start: Instant, ms: u64) -> Publish {
        let start = start + Duration::from_millis(ms);
        Publish {
            start,
            end: start + Duration::from_millis(1),
            ok: true,
        }
    }

    #[test]
    fn losses_are_split_by_window_and_instance() {
        let t0 = Instant::now();
        let mut log = PublishLog::default();
        for i in 0..10 {
            log.push(0, publish(t0, 1000 + i * 1000));
        }
        let mut received = Received::default();
        for s in [0, 1, 2, 3, 6, 7, 8] {
            for k in 0..2 {
                received.record(
                    &Payload {
                        v: 0,
                        k,
                        r: (k == 1).then_some(3),
                        s,
                    },
                    3,
                );
            }
        }
        // Seq 9 arrives only as broadcast: a loss outside any window.
        received.record(
            &Payload {
                v: 0,
                k: 0,
                r: None,
                s: 9,
            },
            3,
        );
        let life = Life {
            instance: 1,
            joined_at: t0,
            closed_at: t0 + Duration::from_secs(60),
            received,
        };
        let window = Window {
            kill: t0 + Duration::from_millis(5000),
            restarted: t0 + Duration::from_millis(5500),
            recovered: t0 + Duration::from_millis(6000),
            reconnects: vec![],
        };
        let m = Margins {
            grace: Duration::ZERO,
            before: Duration::from_millis(200),
            after: Duration::from_millis(200),
        };
        let t = tally(&log, &[life], &[window], m);
        assert_eq!(t.expected, 20);
        assert_eq!(t.delivered, 15);
        assert_eq!(t.windows[0].cross, 4, "seqs 4 and 5, both kinds");
        assert_eq!(t.windows[0].local, 0);
        assert_eq!(t.lost_outside, 1);
        assert_eq!(t.duplicates + t.out_of_order + t.misrouted, 0);
    }

    #[test]
    fn duplicates_reordering_and_misrouting_are_counted() {
        let mut r = Received::default();
        r.record(
            &Payload {
                v: 1,
                k: 0,
                r: None,
                s: 5,
            },
            0,
        );
        r.record(
            &Payload {
                v: 1,
                k: 0,
                r: None,
                s: 5,
            },
            0,
        );
        r.record(
            &Payload {
                v: 1,
                k: 0,
                r: None,
                s: 4,
            },
            0,
        );
        r.record(
            &Payload {
                v: 1,
                k: 1,
                r: Some(2),
                s: 4,
            },
            0,
        );
        assert_eq!((r.duplicates, r.out_of_order, r.misrouted), (1, 1, 1));
    }
}
