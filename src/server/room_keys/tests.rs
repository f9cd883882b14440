use super::*;
use crate::server::outbox::{ClientHandle, Outbound};
use serde_json::value::RawValue;

fn handle(id: &str, holds: bool) -> Arc<ClientHandle> {
    let h = ClientHandle::new(Arc::from(id), 64, 1 << 20, Instant::now());
    if holds {
        h.take_room_keys();
    }
    h
}

fn frame(n: u32) -> Arc<Frame> {
    let data = RawValue::from_string(n.to_string()).expect("json");
    Frame::new("e", data)
}

fn keys(max_messages: u64) -> RoomKeys {
    let config = RoomKeyConfig {
        rooms: vec!["r*".to_owned()],
        max_messages,
        ..RoomKeyConfig::default()
    };
    RoomKeys::new(&config).expect("glob").expect("enabled")
}

fn snapshot(generation: u64, members: &[Arc<ClientHandle>]) -> impl Fn(bool) -> RoomSnapshot {
    move |holders| RoomSnapshot {
        generation,
        recipients: members.to_vec().into(),
        holders: if holders {
            members
                .iter()
                .filter(|m| m.holds_room_keys())
                .cloned()
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// What a handle's queue holds: `Some(epoch)` for a grant, the record's epoch (or `None`)
/// for a message, in order.
fn drain(h: &ClientHandle) -> Vec<(&'static str, Option<u64>)> {
    std::iter::from_fn(|| h.pop())
        .map(|out| match out {
            Outbound::RoomKey(g) => ("grant", Some(g.epoch)),
            Outbound::Message(f) => ("message", f.room.as_ref().map(|r| r.epoch)),
            Outbound::Ping => ("ping", None),
        })
        .collect()
}

#[test]
fn config_off_and_globs() {
    assert!(
        RoomKeys::new(&RoomKeyConfig::default())
            .expect("ok")
            .is_none()
    );
    let k = keys(10);
    assert!(k.covers("room"));
    assert!(!k.covers("other"));
    let bad = RoomKeyConfig {
        rooms: vec!["[".to_owned()],
        ..RoomKeyConfig::default()
    };
    assert!(RoomKeys::new(&bad).is_err());
}

#[test]
fn the_grant_precedes_the_first_record_and_only_holders_get_it() {
    let k = keys(10);
    let (a, b, plain) = (handle("a", true), handle("b", true), handle("p", false));
    let members = [a.clone(), b.clone(), plain.clone()];
    assert_eq!(
        k.deliver("room", &frame(1), snapshot(1, &members), |_| ()),
        3
    );
    assert_eq!(
        k.deliver("room", &frame(2), snapshot(1, &members), |_| ()),
        3
    );
    let got = drain(&a);
    let epoch = got[0].1;
    assert_eq!(
        got,
        vec![("grant", epoch), ("message", epoch), ("message", epoch)]
    );
    assert_eq!(drain(&b), got);
    // The plaintext member gets the same publications (its connection sends the plaintext)
    // and no grant.
    assert_eq!(drain(&plain), vec![("message", epoch), ("message", epoch)]);
}

#[test]
fn membership_changes_and_budgets_start_new_epochs() {
    let k = keys(2);
    let a = handle("a", true);
    let members = [a.clone()];
    k.deliver("room", &frame(1), snapshot(1, &members), |_| ());
    // Same membership: same epoch.
    k.deliver("room", &frame(2), snapshot(1, &members), |_| ());
    // Message budget (2) spent: a new epoch.
    k.deliver("room", &frame(3), snapshot(1, &members), |_| ());
    // A join or leave elsewhere in the room (the generation moved): a new epoch.
    k.deliver("room", &frame(4), snapshot(2, &members), |_| ());
    let got = drain(&a);
    let epochs: Vec<u64> = got.iter().filter_map(|(_, e)| *e).collect();
    let (e1, e2, e3) = (epochs[0], epochs[3], epochs[5]);
    assert!(e1 < e2 && e2 < e3, "{got:?}");
    assert_eq!(
        got,
        vec![
            ("grant", Some(e1)),
            ("message", Some(e1)),
            ("message", Some(e1)),
            ("grant", Some(e2)),
            ("message", Some(e2)),
            ("grant", Some(e3)),
            ("message", Some(e3)),
        ]
    );
}

#[test]
fn an_excluded_holder_still_gets_the_grant() {
    let k = keys(10);
    let (a, b) = (handle("a", true), handle("b", true));
    let both = [a.clone(), b.clone()];
    // `b` is excluded from this publication, but holds the key for the next one.
    let snap = |holders: bool| {
        let mut s = snapshot(1, &both)(holders);
        s.recipients = s
            .recipients
            .iter()
            .filter(|r| &*r.id == "a")
            .cloned()
            .collect();
        s
    };
    assert_eq!(k.deliver("room", &frame(1), snap, |_| ()), 1);
    let epoch = drain(&a)[0].1;
    assert_eq!(drain(&b), vec![("grant", epoch)]);
    k.deliver("room", &frame(2), snapshot(1, &both), |_| ());
    assert_eq!(drain(&b), vec![("message", epoch)]);
}

#[test]
fn without_holders_nothing_is_sealed_and_a_forgotten_room_starts_over() {
    let k = keys(10);
    let plain = handle("p", false);
    k.deliver(
        "room",
        &frame(1),
        snapshot(1, std::slice::from_ref(&plain)),
        |_| (),
    );
    assert_eq!(drain(&plain), vec![("message", None)]);
    let a = handle("a", true);
    let members = [a.clone()];
    k.deliver("room", &frame(2), snapshot(2, &members), |_| ());
    let first = drain(&a)[0].1;
    k.forget("room");
    k.deliver("room", &frame(3), snapshot(2, &members), |_| ());
    let got = drain(&a);
    assert_eq!(got[0].0, "grant");
    assert!(got[0].1 > first, "{got:?}");
}

#[test]
fn rooms_without_members_here_keep_no_state() {
    let k = keys(10);
    for i in 0..100 {
        k.deliver(&format!("room-{i}"), &frame(1), snapshot(0, &[]), |_| ());
    }
    assert!(lock(&k.rooms).is_empty());
}

#[test]
fn a_room_without_key_holders_loses_its_secret_at_the_sweep() {
    let k = keys(1_000);
    let holder = handle("h", true);
    let plain = handle("p", false);
    let members = [Arc::clone(&holder), Arc::clone(&plain)];
    k.deliver("r1", &frame(1), snapshot(1, &members), |_| {});
    assert_eq!(
        drain(&holder),
        vec![("grant", Some(1)), ("message", Some(1))]
    );
    // Holders remain: the sweep keeps the epoch.
    k.wipe_unheld(|_| true);
    k.deliver("r1", &frame(2), snapshot(1, &members), |_| {});
    assert_eq!(drain(&holder), vec![("message", Some(1))]);
    // The holder left (the plaintext member stays): the sweep wipes the secret ...
    k.wipe_unheld(|_| false);
    let room = Arc::clone(lock(&k.rooms).get("r1").expect("room state"));
    assert!(lock(&room).epoch.is_none(), "the secret is gone");
    // ... and a holder back in the room gets a new epoch, never the wiped one.
    k.deliver("r1", &frame(3), snapshot(2, &members), |_| {});
    assert_eq!(
        drain(&holder),
        vec![("grant", Some(2)), ("message", Some(2))]
    );
}
