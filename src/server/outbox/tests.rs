use std::future::poll_fn;

use super::*;
use serde_json::value::RawValue;

fn frame(n: usize) -> Arc<Frame> {
    Frame::new(
        "e",
        RawValue::from_string(format!("\"{}\"", "x".repeat(n))).expect("raw"),
    )
}

fn message(out: Option<Outbound>) -> Arc<Frame> {
    match out {
        Some(Outbound::Message(f)) => f,
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test]
async fn full_queue_closes_as_slow_consumer() {
    let h = ClientHandle::new("c".into(), 2, 1 << 20, Instant::now());
    let f = frame(1);
    assert!(h.push(&f));
    assert!(h.push(&f));
    assert!(!h.is_closing());
    assert!(!h.push(&f));
    assert!(h.is_closing());
    assert_eq!(h.close_code(), CloseCode::SlowConsumer);
    // The close wins over the queued messages.
    let wake = poll_fn(|cx| h.poll_wake(cx)).await;
    assert_eq!(wake, Wake::Close(CloseCode::SlowConsumer));
}

#[test]
fn byte_budget_closes_as_slow_consumer() {
    let h = ClientHandle::new("c".into(), 100, 100, Instant::now());
    let f = frame(60);
    assert!(h.push(&f));
    assert!(!h.push(&f));
    assert_eq!(h.close_code(), CloseCode::SlowConsumer);
}

#[test]
fn byte_budget_is_returned_when_messages_leave() {
    let h = ClientHandle::new("c".into(), 100, 100, Instant::now());
    let f = frame(60);
    for _ in 0..5 {
        assert!(h.push(&f));
        message(h.pop());
    }
    assert!(!h.is_closing());
}

#[test]
fn first_close_code_wins() {
    let h = ClientHandle::new("c".into(), 1, 100, Instant::now());
    h.close(CloseCode::HeartbeatTimeout);
    h.close(CloseCode::SlowConsumer);
    assert_eq!(h.close_code(), CloseCode::HeartbeatTimeout);
}

#[tokio::test]
async fn messages_keep_their_order_and_a_ping_goes_first() {
    let h = ClientHandle::new("c".into(), 8, 1 << 20, Instant::now());
    let (a, b) = (frame(1), frame(2));
    assert!(h.push(&a));
    assert!(h.push(&b));
    h.ping();
    h.ping();
    assert_eq!(poll_fn(|cx| h.poll_wake(cx)).await, Wake::Ready);
    assert!(matches!(h.pop(), Some(Outbound::Ping)));
    assert!(Arc::ptr_eq(&message(h.pop()), &a));
    assert!(Arc::ptr_eq(&message(h.pop()), &b));
    assert!(h.pop().is_none());
}

#[tokio::test]
async fn a_push_wakes_the_waiting_task() {
    let h = ClientHandle::new("c".into(), 8, 1 << 20, Instant::now());
    let waiter = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { poll_fn(|cx| h.poll_wake(cx)).await })
    };
    tokio::task::yield_now().await;
    assert!(h.push(&frame(3)));
    assert_eq!(waiter.await.expect("join"), Wake::Ready);
}

#[tokio::test]
async fn a_close_wakes_a_task_waiting_on_a_write() {
    let h = ClientHandle::new("c".into(), 8, 1 << 20, Instant::now());
    let waiter = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { poll_fn(|cx| h.poll_close(cx)).await })
    };
    tokio::task::yield_now().await;
    h.close(CloseCode::HeartbeatTimeout);
    assert_eq!(waiter.await.expect("join"), CloseCode::HeartbeatTimeout);
}

#[test]
fn a_detached_handle_refuses_messages_and_frees_its_queue() {
    let h = ClientHandle::new("c".into(), 8, 1 << 20, Instant::now());
    let f = frame(1);
    assert!(h.push(&f));
    h.detach();
    assert_eq!(Arc::strong_count(&f), 1);
    assert!(!h.push(&f));
    assert!(h.pop().is_none());
}

/// A handle that was sent a burst of 200 copies of `f` and wrote them all.
fn after_a_burst(f: &Arc<Frame>) -> Arc<ClientHandle> {
    let h = ClientHandle::new("c".into(), 1000, 1 << 20, Instant::now());
    for _ in 0..200 {
        assert!(h.push(f));
    }
    while h.pop().is_some() {}
    h
}

#[test]
fn drained_burst_storage_is_released() {
    let h = after_a_burst(&frame(1));
    assert!(h.lock().frames.capacity() <= RETAINED_SLOTS);
}

#[test]
fn a_queue_refills_at_the_size_it_last_reached() {
    let f = frame(1);
    let h = after_a_burst(&f);
    assert!(h.push(&f));
    assert!(
        h.lock().frames.capacity() >= 200,
        "one allocation for the refill"
    );
    // A quiet turn (one message) forgets the burst's size.
    while h.pop().is_some() {}
    assert!(h.lock().frames.capacity() <= RETAINED_SLOTS);
    assert!(h.push(&f));
    while h.pop().is_some() {}
    assert!(h.lock().frames.capacity() <= RETAINED_SLOTS);
}

#[test]
fn what_was_taken_and_put_back_comes_next_in_its_order_and_counts_again() {
    let h = ClientHandle::new("c".into(), 100, 1 << 20, Instant::now());
    let frames: Vec<_> = (1..=6).map(frame).collect();
    for f in &frames {
        assert!(h.push(f));
    }
    h.ping();
    let before = h.queued();
    let mut taken: [Option<Outbound>; 4] = Default::default();
    assert_eq!(h.take(&mut taken), 4);
    assert!(matches!(taken[0], Some(Outbound::Ping)), "the ping first");
    assert_eq!(h.queued().0, 3);
    // The first message was sent; the ping and the other two go back, and a message queued
    // meanwhile stays behind them.
    let sent = taken[1].take();
    assert!(Arc::ptr_eq(&message(sent), &frames[0]));
    let late = frame(7);
    assert!(h.push(&late));
    h.put_back(&mut taken);
    assert!(taken.iter().all(Option::is_none), "everything put back");
    assert_eq!(h.queued().0, before.0 - 1 + 1);
    assert_eq!(
        h.queued().1,
        before.1 - frames[0].json.len() + late.json.len()
    );
    assert!(matches!(h.pop(), Some(Outbound::Ping)));
    for f in frames.iter().skip(1).chain([&late]) {
        assert!(Arc::ptr_eq(&message(h.pop()), f));
    }
    assert!(h.pop().is_none());
}

#[test]
fn nothing_is_put_back_once_detached() {
    let h = ClientHandle::new("c".into(), 100, 1 << 20, Instant::now());
    assert!(h.push(&frame(1)));
    let mut taken: [Option<Outbound>; 2] = Default::default();
    assert_eq!(h.take(&mut taken), 1);
    h.detach();
    h.put_back(&mut taken);
    assert_eq!(h.queued(), (0, 0));
}
