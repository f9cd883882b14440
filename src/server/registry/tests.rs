use super::*;
use std::time::{Instant, SystemTime};

fn info(id: &str, user: &str) -> Arc<ClientInfo> {
    Arc::new(ClientInfo {
        id: id.into(),
        user_id: user.into(),
        metadata: serde_json::Value::Null,
        encrypted: false,
        remote_addr: None,
        connected_at: SystemTime::now(),
        expires_at: None,
    })
}

fn add(reg: &mut Registry, id: &str) -> Arc<ClientHandle> {
    let h = ClientHandle::new(id.into(), 8, 1 << 20, Instant::now());
    reg.insert(Arc::clone(&h));
    h
}

#[test]
fn indexes_are_pruned_on_remove() {
    let mut reg = Registry::default();
    let mut out = Vec::new();
    let _a = add(&mut reg, "a");
    let _b = add(&mut reg, "b");
    reg.authenticate("a", info("a", "u"), &["r".into(), "a".into()], &mut out);
    reg.authenticate("b", info("b", "u"), &["r".into()], &mut out);
    assert_eq!(reg.counts().users, 1);
    assert_eq!(reg.recipients(&BusTarget::Room("r".into()), &[]).len(), 2);
    assert_eq!(
        reg.recipients(&BusTarget::Room("r".into()), &["a".into()])
            .len(),
        1
    );
    assert_eq!(reg.recipients(&BusTarget::User("u".into()), &[]).len(), 2);
    out.clear();
    reg.remove("a", &mut out);
    assert!(reg.recipients(&BusTarget::Room("a".into()), &[]).is_empty());
    assert!(out.contains(&Interest::Lost(BusTarget::Room("a".into()))));
    assert!(!out.contains(&Interest::Lost(BusTarget::User("u".into()))));
    reg.remove("b", &mut out);
    assert_eq!(reg.counts(), Counts::default());
    assert!(out.contains(&Interest::Lost(BusTarget::User("u".into()))));
}

#[test]
fn unauthenticated_clients_receive_nothing() {
    let mut reg = Registry::default();
    let _a = add(&mut reg, "a");
    assert!(reg.recipients(&BusTarget::Broadcast, &[]).is_empty());
    assert!(
        reg.recipients(&BusTarget::Client("a".into()), &[])
            .is_empty()
    );
}

#[test]
fn join_respects_limit_and_leave_only_joined() {
    let mut reg = Registry::default();
    let mut out = Vec::new();
    let _a = add(&mut reg, "a");
    reg.authenticate("a", info("a", "u"), &[], &mut out);
    let joined = reg.join("a", ["x".into(), "y".into(), "z".into()], 2, &mut out);
    assert_eq!(joined, vec!["x".to_string(), "y".to_string()]);
    let left = reg.leave("a", ["z".into(), "x".into()], &mut out);
    assert_eq!(left, vec!["x".to_string()]);
}

#[test]
fn room_names() {
    assert!(valid_room_name("a"));
    assert!(valid_room_name(&"é".repeat(256)));
    assert!(!valid_room_name(&"a".repeat(257)));
    assert!(!valid_room_name(""));
    assert!(!valid_room_name("ws:internal"));
}

#[test]
fn client_id_shaped_rooms_are_not_joinable() {
    let id = uuid::Uuid::new_v4();
    let hyphenated = id.hyphenated().to_string();
    assert!(valid_room_name(&hyphenated));
    for name in [
        hyphenated.clone(),
        hyphenated.to_uppercase(),
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
    ] {
        assert!(is_client_id_shaped(&name), "{name}");
        assert!(!joinable_room_name(&name), "{name}");
    }
    assert!(joinable_room_name("orders:42"));
    assert!(!joinable_room_name("ws:x"));
    assert!(joinable_room_name(&format!("{hyphenated}x")));
}

/// The ids in a recipient list, sorted.
fn ids(list: &[Arc<ClientHandle>]) -> Vec<String> {
    let mut ids: Vec<String> = list.iter().map(|h| h.id.to_string()).collect();
    ids.sort();
    ids
}

#[test]
fn the_kept_recipient_list_follows_every_change_of_who_receives_what() {
    let mut reg = Registry::default();
    let mut out = Vec::new();
    let room = BusTarget::Room("r".into());
    let _a = add(&mut reg, "a");
    let _b = add(&mut reg, "b");
    reg.authenticate("a", info("a", "u"), &["r".into()], &mut out);
    let first = reg.recipients_of(&BusTarget::Broadcast);
    assert_eq!(ids(&first), ["a"]);
    // Asked again with nothing changed: the same list, not a new one.
    assert!(Arc::ptr_eq(
        &first,
        &reg.recipients_of(&BusTarget::Broadcast)
    ));
    // Authentication.
    reg.authenticate("b", info("b", "v"), &[], &mut out);
    assert_eq!(ids(&reg.recipients_of(&BusTarget::Broadcast)), ["a", "b"]);
    // Another target replaces the kept one, and is right.
    assert_eq!(ids(&reg.recipients_of(&room)), ["a"]);
    // A join.
    reg.join("b", ["r".to_owned()], 10, &mut out);
    assert_eq!(ids(&reg.recipients_of(&room)), ["a", "b"]);
    // A leave.
    reg.leave("a", ["r".to_owned()], &mut out);
    assert_eq!(ids(&reg.recipients_of(&room)), ["b"]);
    // A state change away from authenticated.
    assert_eq!(ids(&reg.recipients_of(&BusTarget::Broadcast)), ["a", "b"]);
    reg.set_state("a", ClientState::Unauthorized);
    assert_eq!(ids(&reg.recipients_of(&BusTarget::Broadcast)), ["b"]);
    // A removal, which also lets go of the kept handles.
    let kept = reg.recipients_of(&BusTarget::User("v".into()));
    assert_eq!(ids(&kept), ["b"]);
    drop(kept);
    reg.remove("b", &mut out);
    assert!(reg.recipients_of(&BusTarget::User("v".into())).is_empty());
    assert!(reg.recipients_of(&BusTarget::Broadcast).is_empty());
    // One client's list is never kept.
    let _c = add(&mut reg, "c");
    reg.authenticate("c", info("c", "w"), &[], &mut out);
    let one = reg.recipients_of(&BusTarget::Client("c".into()));
    assert!(!Arc::ptr_eq(
        &one,
        &reg.recipients_of(&BusTarget::Client("c".into()))
    ));
}

#[test]
fn a_room_snapshot_shares_the_kept_list_and_follows_the_membership() {
    let mut reg = Registry::default();
    let mut out = Vec::new();
    let a = add(&mut reg, "a");
    let _b = add(&mut reg, "b");
    a.take_room_keys();
    reg.authenticate("a", info("a", "u"), &["r".into()], &mut out);
    reg.authenticate("b", info("b", "v"), &["r".into()], &mut out);
    let first = reg.room_snapshot("r", &[], true);
    assert_eq!(ids(&first.recipients), ["a", "b"]);
    assert_eq!(ids(&first.holders), ["a"]);
    // A burst to the room: the same list every time, and the same generation.
    let again = reg.room_snapshot("r", &[], false);
    assert!(Arc::ptr_eq(&first.recipients, &again.recipients));
    assert_eq!(first.generation, again.generation);
    assert!(again.holders.is_empty(), "holders only when asked for");
    // Exclusions make a list of their own and leave the kept one alone.
    let excluding = reg.room_snapshot("r", &["b".to_owned()], false);
    assert_eq!(ids(&excluding.recipients), ["a"]);
    assert!(Arc::ptr_eq(
        &first.recipients,
        &reg.room_snapshot("r", &[], false).recipients
    ));
    // A leave changes both the list and the generation.
    reg.leave("b", ["r".to_owned()], &mut out);
    let after = reg.room_snapshot("r", &[], false);
    assert_eq!(ids(&after.recipients), ["a"]);
    assert_ne!(after.generation, first.generation);
    // Another target kept in between does not stand in for the room.
    assert_eq!(ids(&reg.recipients_of(&BusTarget::Broadcast)), ["a", "b"]);
    assert_eq!(ids(&reg.room_snapshot("r", &[], false).recipients), ["a"]);
}

#[test]
fn an_alias_names_its_client_until_it_goes() {
    let mut reg = Registry::default();
    let mut out = Vec::new();
    let _a = add(&mut reg, "a");
    let _b = add(&mut reg, "b");
    reg.authenticate("a", info("a", "u"), &["a".into()], &mut out);
    reg.authenticate("b", info("b", "v"), &["b".into(), "taken".into()], &mut out);
    out.clear();
    // Names in use are refused: a client id, a room with members, an unknown client.
    assert!(!reg.add_alias("a", "b", &mut out));
    assert!(!reg.add_alias("a", "taken", &mut out));
    assert!(!reg.add_alias("nobody", "x", &mut out));
    assert!(out.is_empty());
    assert!(reg.add_alias("a", "sid-a", &mut out));
    assert!(
        !reg.add_alias("a", "second", &mut out),
        "one alias per client"
    );
    assert!(
        !reg.add_alias("b", "sid-a", &mut out),
        "one client per alias"
    );
    assert!(out.contains(&Interest::Gained(BusTarget::Client("sid-a".into()))));
    assert_eq!(reg.canonical("sid-a").as_deref(), Some("a"));
    assert_eq!(reg.canonical("a").as_deref(), Some("a"));
    assert!(reg.has_client("sid-a"));
    let to_alias = reg.recipients(&BusTarget::Client("sid-a".into()), &[]);
    assert_eq!(to_alias.len(), 1);
    assert_eq!(&*to_alias[0].id, "a");
    assert_eq!(
        reg.recipients(&BusTarget::Room("sid-a".into()), &[]).len(),
        1
    );
    // An exclusion may name the client by its alias.
    reg.join("b", ["r".into()], 256, &mut out);
    reg.join("a", ["r".into()], 256, &mut out);
    let others = reg.recipients(&BusTarget::Room("r".into()), &["sid-a".into()]);
    assert_eq!(others.len(), 1);
    assert_eq!(&*others[0].id, "b");
    // Nobody else joins the alias's room; its client cannot leave it.
    assert!(reg.join("b", ["sid-a".into()], 256, &mut out).is_empty());
    assert!(reg.leave("a", ["sid-a".into()], &mut out).is_empty());
    out.clear();
    reg.remove("a", &mut out);
    assert!(out.contains(&Interest::Lost(BusTarget::Client("sid-a".into()))));
    assert!(out.contains(&Interest::Lost(BusTarget::Room("sid-a".into()))));
    assert!(reg.canonical("sid-a").is_none());
    assert!(
        reg.recipients(&BusTarget::Client("sid-a".into()), &[])
            .is_empty()
    );
}
