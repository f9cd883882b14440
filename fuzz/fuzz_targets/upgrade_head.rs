//! The accept loop's hand-written upgrade parsing (`transport::front_door::inspect_head`) on
//! arbitrary bytes. Oracles: no panic; a complete head lies within the input; an accepted
//! upgrade has a well-formed `Sec-WebSocket-Accept`; and the same head seen through an
//! `http::HeaderMap`, as the hyper path sees it, gets the same decision from `decide` (the
//! line-ending check aside, which only the accept loop can make).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealwire::transport::front_door::{
    Head, MAX_HEADERS, Refusal, UpgradeRequest, decide, inspect_head,
};

fuzz_target!(|data: &[u8]| {
    let listed = ["https://app.example".to_owned(), "null".to_owned()];
    for origins in [&[][..], &listed[..]] {
        let Head::Complete {
            path,
            len,
            decision,
        } = inspect_head(data, origins)
        else {
            continue;
        };
        assert!(len <= data.len());
        assert!(!path.contains('?'));
        if let Ok(accept) = &decision {
            assert_eq!(accept.accept_key.len(), 28);
        }
        if decision == Err(Refusal::LineEndings) {
            continue;
        }
        // The hyper path's view of the same head.
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(matches!(req.parse(data), Ok(httparse::Status::Complete(n)) if n == len));
        let Ok(method) = http::Method::from_bytes(req.method.unwrap_or("").as_bytes()) else {
            continue;
        };
        let version = if req.version == Some(0) {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        };
        let mut map = http::HeaderMap::new();
        for h in req.headers.iter() {
            let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(h.name.as_bytes()),
                http::HeaderValue::from_bytes(h.value),
            ) else {
                return;
            };
            map.append(name, value);
        }
        let view = UpgradeRequest::from_http(&method, version, &map);
        assert_eq!(
            decide(&view, origins),
            decision,
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
});
