use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::protocol::BusTarget;

fn envelope(from: &str) -> BusEnvelope {
    BusEnvelope {
        server_id: from.to_owned(),
        target: BusTarget::Broadcast,
        event: "e".to_owned(),
        data: serde_json::value::to_raw_value(&1).expect("raw"),
        exclude: Vec::new(),
        kept: None,
    }
}

fn counting_inbox() -> (BusInbox, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&n);
    let inbox = BusInbox::new(
        move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        },
        Vec::new,
    );
    (inbox, n)
}

/// On a current-thread runtime a spawned task runs only when the delivering task yields.
#[tokio::test(flavor = "current_thread")]
async fn paced_delivery_yields_only_when_the_turn_is_over() {
    for over in [false, true] {
        let inbox = BusInbox::paced(move |_| over, Vec::new);
        let ran = Arc::new(AtomicUsize::new(0));
        let flag = Arc::clone(&ran);
        let other = tokio::spawn(async move {
            flag.fetch_add(1, Ordering::SeqCst);
        });
        inbox.deliver_paced(envelope("other")).await;
        assert_eq!(
            ran.load(Ordering::SeqCst),
            usize::from(over),
            "over: {over}"
        );
        other.await.expect("task");
    }
}

#[tokio::test]
async fn socket_ids_held_by_one_member_are_in_use_for_all() {
    let one = LocalBus::new();
    let two = one.attach();
    let sid = "SPwsz1QaUyyzBleE".to_owned();
    let client_id = "4c31ae3a-cb73-4f6b-aa4f-5ccc4ebecfce".to_owned();
    one.reserve_name(&sid).await.expect("reserved");
    // Interests reserve nothing: a client id, a room.
    one.interest(&Interest::Gained(BusTarget::Client(client_id.clone())));
    one.interest(&Interest::Gained(BusTarget::Room(
        "lobby-room-name1".to_owned(),
    )));
    let asked = vec![sid.clone(), client_id, "lobby-room-name1".to_owned()];
    let in_use = two.names_in_use(asked.clone()).await.expect("answer");
    assert_eq!(in_use, HashSet::from([sid.clone()]));
    // Given up, the socket's id stays in use (retired) for a day: a late send to it reaches
    // nobody rather than whoever would join the room.
    one.release_name(&sid);
    let in_use = two.names_in_use(asked).await.expect("answer");
    assert_eq!(in_use, HashSet::from([sid]));
}

#[tokio::test]
async fn clones_are_separate_members_of_one_hub() {
    let hub = LocalBus::new();
    let (one, two) = (hub.clone(), hub.clone());
    let (inbox1, got1) = counting_inbox();
    let (inbox2, got2) = counting_inbox();
    one.start(inbox1).await.expect("start one");
    two.start(inbox2).await.expect("start two");

    one.publish(envelope("one"));
    assert_eq!(
        (got1.load(Ordering::SeqCst), got2.load(Ordering::SeqCst)),
        (0, 1)
    );
    two.publish(envelope("two"));
    assert_eq!(
        (got1.load(Ordering::SeqCst), got2.load(Ordering::SeqCst)),
        (1, 1)
    );

    // One member leaving does not unregister the other.
    one.shutdown().await;
    hub.publish(envelope("outsider"));
    assert_eq!(
        (got1.load(Ordering::SeqCst), got2.load(Ordering::SeqCst)),
        (1, 2)
    );
}

#[tokio::test]
async fn one_handle_cannot_serve_two_running_servers() {
    let bus = LocalBus::new();
    let (inbox1, _) = counting_inbox();
    let (inbox2, _) = counting_inbox();
    bus.start(inbox1).await.expect("first start");
    assert!(bus.start(inbox2).await.is_err());
    bus.shutdown().await;
    let (inbox3, _) = counting_inbox();
    bus.start(inbox3).await.expect("start after shutdown");
}

#[test]
fn bus_errors_name_the_backend_and_address() {
    let e = BusError::AuthRefused {
        backend: "Redis",
        url: "redis://***@db:6379".to_owned(),
        reason: "WRONGPASS".to_owned(),
    };
    assert_eq!(
        e.to_string(),
        "cannot reach Redis at redis://***@db:6379: WRONGPASS (Redis refused the credentials in the URL; retrying cannot help)"
    );
    let e = BusError::Closed { backend: "Redis" };
    assert_eq!(e.to_string(), "shut down while waiting for Redis");
}
