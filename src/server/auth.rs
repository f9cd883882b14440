//! Ready-made authenticate hooks: HS256 JWTs with a shared secret, the claim rules every JWT
//! hook shares, and any-token for development. JWKS-backed JWTs are in `jwks.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

use super::hooks::{AuthRequest, Authenticator, BoxFuture, HookError, Identity};

/// The claim checks every JWT authenticator applies: signature algorithm fixed by the key
/// (never by the token), `exp` and `sub` required, `nbf` when present, `iss` / `aud` when
/// configured, and a clock leeway. The user id is `sub`; the other claims become the client's
/// metadata; the session ends at `exp` plus the leeway (close 4006) unless refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

impl Default for JwtRules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            leeway: JwtAuth::DEFAULT_LEEWAY_SECS,
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    /// A NumericDate (RFC 7519 §2): seconds since the epoch, not necessarily an integer
    /// (tokens minted with `time.time() + 3600` carry a fraction).
    exp: f64,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// 9999-12-31T23:59:59Z: the last expiry a token may name (and `expiresAt` can carry).
const LAST_NUMERIC_DATE: f64 = 253_402_300_799.0;

/// Seconds since the epoch, with the fraction.
fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl JwtRules {
    /// Requires the `iss` claim to equal `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Requires the `aud` claim (a string or an array) to contain `audience`.
    #[must_use]
    pub fn audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_owned());
        self
    }

    /// Clock leeway in seconds for `exp` and `nbf`; the session also lasts until `exp` plus
    /// this much. Defaults to [`JwtAuth::DEFAULT_LEEWAY_SECS`].
    #[must_use]
    pub fn leeway(mut self, secs: u64) -> Self {
        self.leeway = secs;
        self
    }

    fn validation(&self, alg: jsonwebtoken::Algorithm) -> jsonwebtoken::Validation {
        let mut v = jsonwebtoken::Validation::new(alg);
        // `exp` and `nbf` are checked in `verify`: the library takes integers only, where
        // a NumericDate may have a fraction.
        v.set_required_spec_claims(&["sub"]);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.leeway = self.leeway;
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            v.required_spec_claims.insert("iss".to_owned());
        }
        if let Some(aud) = &self.audience {
            v.set_audience(&[aud]);
            v.validate_aud = true;
            v.required_spec_claims.insert("aud".to_owned());
        }
        v
    }

    /// Verifies `token` with `key` under `alg`; `None` when anything is off.
    pub(crate) fn verify(
        &self,
        token: &str,
        key: &jsonwebtoken::DecodingKey,
        alg: jsonwebtoken::Algorithm,
    ) -> Option<Identity> {
        let data = match jsonwebtoken::decode::<Claims>(token, key, &self.validation(alg)) {
            Ok(data) => data,
            Err(e) => {
                tracing::debug!(reason = rejection(&e), "JWT not accepted");
                return None;
            }
        };
        if data.claims.sub.is_empty() {
            tracing::debug!(reason = "empty sub", "JWT not accepted");
            return None;
        }
        // Within the leeway either side: not expired, and not before `nbf` (a number, when
        // present).
        let (now, leeway) = (now_secs(), self.leeway as f64);
        // An `exp` past the end of year 9999 is not a date a session could end at: refused,
        // rather than opening a session without an end.
        if data.claims.exp > LAST_NUMERIC_DATE {
            return None;
        }
        let end = (data.claims.exp + leeway).min(LAST_NUMERIC_DATE);
        if end < now {
            tracing::debug!(reason = "expired", "JWT not accepted");
            return None;
        }
        match data.claims.rest.get("nbf") {
            None => {}
            Some(nbf) if nbf.as_f64().is_some_and(|nbf| nbf <= now + leeway) => {}
            Some(_) => {
                tracing::debug!(reason = "not valid yet (nbf)", "JWT not accepted");
                return None;
            }
        }
        let expires_at = Duration::try_from_secs_f64(end)
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d))?;
        Some(Identity {
            user_id: data.claims.sub,
            metadata: Value::Object(data.claims.rest),
            expires_at: Some(expires_at),
        })
    }
}

/// Why a token was not accepted, for the debug log: the kind of failure only, never the
/// token's contents.
fn rejection(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSubject => "wrong subject",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm not allowed",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        ErrorKind::InvalidClaimFormat(_) => "a claim has the wrong type",
        _ => "malformed token",
    }
}

/// Verifies HS256 JWTs with a shared secret, under [`JwtRules`] ([`JwtAuth::issuer`],
/// [`JwtAuth::audience`], [`JwtAuth::leeway`]). For tokens signed by an identity provider
/// with RS256, ES256 or EdDSA keys, see [`JwksAuth`](super::JwksAuth).
///
/// The session a token opens ends at `exp` plus the leeway (close 4006), unless the client
/// sends a `refresh` with a newer token for the same user first. The leeway (default
/// [`JwtAuth::DEFAULT_LEEWAY_SECS`]) absorbs clock differences between the token issuer and
/// this server, for `exp` and `nbf` alike.
#[derive(Clone)]
pub struct JwtAuth {
    key: jsonwebtoken::DecodingKey,
    rules: JwtRules,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl JwtAuth {
    /// Leeway, in seconds, applied to `exp` and `nbf` unless set with [`JwtAuth::leeway`].
    pub const DEFAULT_LEEWAY_SECS: u64 = 30;

    /// An authenticator for tokens signed with `secret`.
    #[must_use]
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            key: jsonwebtoken::DecodingKey::from_secret(secret),
            rules: JwtRules::default(),
        }
    }

    /// Requires the `iss` claim to equal `issuer`. Tokens minted by another issuer sharing
    /// the secret are refused.
    #[must_use]
    pub fn issuer(mut self, issuer: &str) -> Self {
        self.rules = self.rules.issuer(issuer);
        self
    }

    /// Requires the `aud` claim (a string or an array) to contain `audience`. Tokens minted
    /// for another service sharing the secret are refused.
    #[must_use]
    pub fn audience(mut self, audience: &str) -> Self {
        self.rules = self.rules.audience(audience);
        self
    }

    /// Clock leeway in seconds for `exp` and `nbf`; the session also lasts until `exp` plus
    /// this much.
    #[must_use]
    pub fn leeway(mut self, secs: u64) -> Self {
        self.rules = self.rules.leeway(secs);
        self
    }

    /// Sets all claim rules at once.
    #[must_use]
    pub fn rules(mut self, rules: JwtRules) -> Self {
        self.rules = rules;
        self
    }

    /// Verifies one token; `None` when it is invalid or expired.
    #[must_use]
    pub fn verify(&self, token: &str) -> Option<Identity> {
        self.rules
            .verify(token, &self.key, jsonwebtoken::Algorithm::HS256)
    }
}

impl Authenticator for JwtAuth {
    fn authenticate(
        &self,
        request: AuthRequest,
    ) -> BoxFuture<'static, Result<Option<Identity>, HookError>> {
        let identity = request.token.as_deref().and_then(|t| self.verify(t));
        if identity.is_none() {
            tracing::debug!(client = %request.client_id, "JWT rejected");
        }
        Box::pin(std::future::ready(Ok(identity)))
    }
}

/// Development only: any non-empty token is accepted as the user id.
///
/// # Security
/// Anyone can be anyone. The `sealwire` binary only allows it on a loopback address.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevAuth;

impl Authenticator for DevAuth {
    fn authenticate(
        &self,
        request: AuthRequest,
    ) -> BoxFuture<'static, Result<Option<Identity>, HookError>> {
        let identity = request.token.filter(|t| !t.is_empty()).map(Identity::new);
        Box::pin(std::future::ready(Ok(identity)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn token(secret: &[u8], claims: &Value) -> String {
        encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("encode")
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    #[test]
    fn jwt_checks_signature_expiry_and_subject() {
        let auth = JwtAuth::hs256(b"secret");
        let good = token(
            b"secret",
            &serde_json::json!({"sub": "u1", "exp": now() + 60, "role": "x"}),
        );
        let id = auth.verify(&good).expect("valid");
        assert_eq!(id.user_id, "u1");
        assert_eq!(id.metadata["role"], "x");
        let wrong_key = token(
            b"other",
            &serde_json::json!({"sub": "u1", "exp": now() + 60}),
        );
        assert!(auth.verify(&wrong_key).is_none());
        let expired = token(
            b"secret",
            &serde_json::json!({"sub": "u1", "exp": now() - 3600}),
        );
        assert!(auth.verify(&expired).is_none());
        let no_exp = token(b"secret", &serde_json::json!({"sub": "u1"}));
        assert!(auth.verify(&no_exp).is_none());
        assert!(auth.verify("garbage").is_none());
        // alg=none must never pass.
        let none = format!("{}.{}.", "eyJhbGciOiJub25lIn0", "eyJzdWIiOiJ1MSJ9");
        assert!(auth.verify(&none).is_none());
    }

    #[test]
    fn the_session_ends_at_exp_plus_the_leeway() {
        let exp = now() + 600;
        let t = token(b"k", &serde_json::json!({"sub": "u1", "exp": exp}));
        let id = JwtAuth::hs256(b"k").leeway(7).verify(&t).expect("valid");
        assert_eq!(
            id.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(exp + 7))
        );
        // Expired by 20 s: inside the default leeway, outside a zero one.
        let late = token(b"k", &serde_json::json!({"sub": "u1", "exp": now() - 20}));
        assert!(JwtAuth::hs256(b"k").verify(&late).is_some());
        assert!(JwtAuth::hs256(b"k").leeway(0).verify(&late).is_none());
    }

    /// `exp` and `nbf` are NumericDates: numbers of seconds, with or without a fraction.
    #[test]
    fn numeric_dates_may_have_a_fraction() {
        let auth = JwtAuth::hs256(b"k").leeway(0);
        let check = |claims: Value| auth.verify(&token(b"k", &claims));
        let exp = now() as f64 + 600.5;
        let id = check(serde_json::json!({"sub": "u1", "exp": exp})).expect("fractional exp");
        assert_eq!(
            id.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs_f64(exp))
        );
        let whole = now() as f64 + 600.0;
        assert!(check(serde_json::json!({"sub": "u1", "exp": whole})).is_some());
        let past = now() as f64 - 10.5;
        assert!(check(serde_json::json!({"sub": "u1", "exp": past})).is_none());
        assert!(check(serde_json::json!({"sub": "u1", "exp": -1.5})).is_none());
        // No session without an end: an `exp` past year 9999 is refused.
        for huge in [
            serde_json::json!(253_402_300_800u64),
            serde_json::json!(1u64 << 63),
            serde_json::json!(1e30),
        ] {
            assert!(check(serde_json::json!({"sub": "u1", "exp": huge})).is_none());
        }
        let last = check(serde_json::json!({"sub": "u1", "exp": 253_402_300_799u64}));
        assert!(last.is_some_and(|id| id.expires_at.is_some()));
        assert!(check(serde_json::json!({"sub": "u1", "exp": "9999999999"})).is_none());
        let nbf_past = now() as f64 - 5.25;
        let nbf_future = now() as f64 + 60.25;
        let ok = serde_json::json!({"sub": "u1", "exp": exp, "nbf": nbf_past});
        assert!(check(ok).is_some());
        let early = serde_json::json!({"sub": "u1", "exp": exp, "nbf": nbf_future});
        assert!(check(early).is_none());
        let bad_nbf = serde_json::json!({"sub": "u1", "exp": exp, "nbf": "soon"});
        assert!(check(bad_nbf).is_none());
        // Inside the leeway, a future `nbf` passes.
        let early = serde_json::json!({"sub": "u1", "exp": exp, "nbf": nbf_future});
        assert!(
            JwtAuth::hs256(b"k")
                .leeway(120)
                .verify(&token(b"k", &early))
                .is_some()
        );
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let exp = now() + 600;
        let auth = JwtAuth::hs256(b"k").issuer("idp").audience("sealwire");
        let good = token(
            b"k",
            &serde_json::json!({"sub": "u", "exp": exp, "iss": "idp", "aud": ["x", "sealwire"]}),
        );
        assert!(auth.verify(&good).is_some());
        for claims in [
            serde_json::json!({"sub": "u", "exp": exp, "iss": "other", "aud": "sealwire"}),
            serde_json::json!({"sub": "u", "exp": exp, "iss": "idp", "aud": "billing"}),
            serde_json::json!({"sub": "u", "exp": exp, "aud": "sealwire"}),
            serde_json::json!({"sub": "u", "exp": exp, "iss": "idp"}),
        ] {
            assert!(auth.verify(&token(b"k", &claims)).is_none(), "{claims}");
        }
        // Without the settings, neither claim is required.
        let bare = token(
            b"k",
            &serde_json::json!({"sub": "u", "exp": exp, "aud": "billing"}),
        );
        assert!(JwtAuth::hs256(b"k").verify(&bare).is_some());
    }
}
