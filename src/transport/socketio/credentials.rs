//! Credentials of a Socket.IO socket: they come from its handshake (the CONNECT packet's
//! `auth`, the `Authorization` header, or the `token` query parameter), never from the
//! `authenticate` event, whose arguments IGNIS ignores too.

use serde_json::{Map, Value};

/// The token of a handshake: `auth.token`, else `Authorization: Bearer <token>`, else the
/// `token` query parameter; the first non-empty one wins.
pub(super) fn token(
    auth: Option<&Value>,
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Option<String> {
    let from_auth = auth
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    from_auth
        .or_else(|| bearer(headers))
        .or_else(|| query.and_then(query_token))
}

fn bearer(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            let token = rest.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
        })
}

fn query_token(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k == "token" && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

/// The core's `authenticate` data for a handshake: its `auth` object (so the authenticate
/// hook sees every field, `publicKey` and `profile` included, and a client that offers key
/// material gets encryption or is refused) with `token` set to the handshake's token.
pub(super) fn authenticate_data(auth: Option<&Value>, token: Option<String>) -> Value {
    let mut data = match auth {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    match token {
        Some(t) => {
            data.insert("token".to_owned(), Value::String(t));
        }
        None => {
            data.remove("token");
        }
    }
    Value::Object(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn auth_token_then_bearer_then_query() {
        let auth = json!({"token": "a"});
        let h = headers(&[("authorization", "Bearer b")]);
        assert_eq!(
            token(Some(&auth), &h, Some("token=c")).as_deref(),
            Some("a")
        );
        assert_eq!(
            token(Some(&json!({"token": ""})), &h, Some("token=c")).as_deref(),
            Some("b")
        );
        assert_eq!(
            token(None, &headers(&[]), Some("x=1&token=c%20d")).as_deref(),
            Some("c d")
        );
        assert_eq!(
            token(None, &headers(&[("authorization", "Basic Zm9v")]), None),
            None
        );
        assert_eq!(
            token(Some(&json!({"token": 5})), &headers(&[]), Some("token=")),
            None
        );
    }

    #[test]
    fn authenticate_data_keeps_the_auth_fields() {
        let auth = json!({"token": "ignored", "publicKey": "pk", "type": "x"});
        let data = authenticate_data(Some(&auth), Some("t".to_owned()));
        assert_eq!(data, json!({"token": "t", "publicKey": "pk", "type": "x"}));
        assert_eq!(authenticate_data(Some(&json!("str")), None), json!({}));
        assert_eq!(
            authenticate_data(Some(&json!({"token": "x"})), None),
            json!({})
        );
    }
}
