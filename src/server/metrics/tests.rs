//! The metrics page: what it renders from a sample, and that the bus counters are mirrored.

use super::*;

fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn closes_count_by_code_and_failures_only_before_authentication() {
    let m = Metrics::new();
    m.closed(CloseCode::AuthFailed, false);
    m.closed(CloseCode::SlowConsumer, true);
    m.closed(CloseCode::GoingAway, false);
    let page = m.render(&Sample::default());
    assert_eq!(
        sample(&page, "sealwire_auth_failures_total{code=\"4003\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&page, "sealwire_auth_failures_total{code=\"4005\"}"),
        None
    );
    assert_eq!(
        sample(&page, "sealwire_auth_failures_total{code=\"1001\"}"),
        None
    );
    assert_eq!(
        sample(&page, "sealwire_server_closes_total{code=\"1001\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&page, "sealwire_slow_consumer_closes_total"),
        Some(1.0)
    );
}

#[test]
fn profiles_and_bus_counters_follow_the_samples() {
    let m = Metrics::new();
    m.authenticated(ConnProfile::Hardened, None);
    m.authenticated(ConnProfile::Hardened, None);
    m.disconnected(ConnProfile::Hardened);
    let mut s = Sample {
        bus: Some(super::super::BusStats::new(5, 4, 1, 0, 2)),
        ..Sample::default()
    };
    let page = m.render(&s);
    let hardened = "sealwire_connections_by_profile{profile=\"hardened\"}";
    assert_eq!(sample(&page, hardened), Some(1.0));
    assert_eq!(sample(&page, "sealwire_bus_published_total"), Some(5.0));
    // Rendering twice does not count the bus twice; later values are mirrored.
    s.bus = Some(super::super::BusStats::new(7, 4, 1, 0, 2));
    s.outbox = OutboxSample {
        messages: 7,
        bytes: 700,
        deepest: 5,
    };
    let page = m.render(&s);
    assert_eq!(sample(&page, "sealwire_bus_published_total"), Some(7.0));
    assert_eq!(
        sample(&page, "sealwire_outbox{measure=\"deepest_messages\"}"),
        Some(5.0)
    );
    assert_eq!(
        sample(&page, "sealwire_outbox{measure=\"bytes\"}"),
        Some(700.0)
    );
    assert_eq!(sample(&page, "sealwire_bus_reconnects_total"), Some(2.0));
}
