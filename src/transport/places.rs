//! Places of the connections still speaking HTTP (before an upgrade, admin calls, health
//! checks): one under the listener-wide `max_tcp_connections` and, with
//! `max_tcp_connections_per_ip`, one under the cap of the peer's address. A [`Place`] is
//! held from the accept until the connection upgrades (then `ServerConfig::max_connections`
//! bounds it) or ends.
//!
//! The listener-wide cap makes further connections wait in the kernel's accept queue. The
//! per-address cap cannot: the address is known only once a connection is accepted, so one
//! past it is answered 429 at once (best effort, without reading the request) and closed,
//! and holds no place. One address then cannot take the whole HTTP budget with idle
//! connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedSemaphorePermit;

/// What a connection over its address's cap is sent before it is closed.
pub(super) const OVER_CAP_RESPONSE: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
content-type: application/json\r\ncontent-length: 115\r\nconnection: close\r\n\r\n\
{\"error\":\"Too many connections from one address\",\"success\":false,\"message\":\"Too many connections from one address\"}";

/// A connection's place: released when dropped.
#[cfg(test)]
#[test]
fn the_over_cap_answer_is_the_apis_json_error_shape() {
    let text = std::str::from_utf8(OVER_CAP_RESPONSE).expect("ascii");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(v["success"], false);
    assert_eq!(v["error"], v["message"]);
}

#[derive(Debug)]
pub(super) struct Place {
    _listener: OwnedSemaphorePermit,
    _address: Option<AddressPlace>,
}

impl Place {
    /// A place under the listener-wide cap, and under `per_ip` when there is one; `None`
    /// when the address of `ip` holds all of its places already.
    pub(super) fn take(
        listener: OwnedSemaphorePermit,
        per_ip: Option<&Arc<PerAddress>>,
        ip: IpAddr,
    ) -> Option<Self> {
        let address = match per_ip {
            Some(table) => Some(table.take(ip)?),
            None => None,
        };
        Some(Self {
            _listener: listener,
            _address: address,
        })
    }
}

/// Connections per peer address, each address at most `max`.
#[derive(Debug)]
pub(super) struct PerAddress {
    max: usize,
    /// Only addresses with a connection; an address leaves with its last one.
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// A table that allows `max` connections per address.
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::default(),
        })
    }

    /// One place for `ip` (an IPv4 address mapped into IPv6 counts as the IPv4 one), or
    /// `None` at the cap.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressPlace> {
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressPlace {
            table: Arc::clone(self),
            ip,
        })
    }

    /// Connections held by `ip` now.
    #[cfg(test)]
    fn held(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

/// One connection's place under its address's cap.
#[derive(Debug)]
struct AddressPlace {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut counts = self
            .table
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[test]
    fn an_address_holds_at_most_its_cap_and_frees_places_as_connections_end() {
        let listener = Arc::new(Semaphore::new(100));
        let per_ip = PerAddress::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let permit = || Arc::clone(&listener).try_acquire_owned().expect("permit");
        let first = Place::take(permit(), Some(&per_ip), a).expect("first");
        let second = Place::take(permit(), Some(&per_ip), mapped).expect("second");
        assert!(
            Place::take(permit(), Some(&per_ip), a).is_none(),
            "a third from the same address (mapped or not)"
        );
        assert_eq!(
            listener.available_permits(),
            98,
            "a refused one holds nothing"
        );
        let other = Place::take(permit(), Some(&per_ip), b).expect("another address");
        drop(first);
        assert_eq!(per_ip.held(a), 1);
        let again = Place::take(permit(), Some(&per_ip), a).expect("a freed place");
        drop((second, again, other));
        assert_eq!(per_ip.held(a), 0);
        assert!(
            per_ip.counts.lock().expect("lock").is_empty(),
            "no address left behind"
        );
        assert_eq!(listener.available_permits(), 100);
    }

    #[test]
    fn without_a_per_address_cap_only_the_listener_cap_counts() {
        let listener = Arc::new(Semaphore::new(3));
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let places: Vec<Place> = (0..3)
            .map(|_| {
                let permit = Arc::clone(&listener).try_acquire_owned().expect("permit");
                Place::take(permit, None, ip).expect("place")
            })
            .collect();
        assert_eq!(places.len(), 3);
        assert_eq!(listener.available_permits(), 0);
    }
}
