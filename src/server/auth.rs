//! Ready-made authenticate hooks: HS256 JWTs for production, any-token for development.

use serde::Deserialize;
use serde_json::Value;

use super::hooks::{AuthRequest, Authenticator, BoxFuture, HookError, Identity};

/// Verifies HS256 JWTs: signature, `exp` (required, 30 s leeway) and `nbf` when present.
/// The user id is `sub`; the other claims become the client's metadata.
#[derive(Clone)]
pub struct JwtAuth {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtAuth(..)")
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

impl JwtAuth {
    /// An authenticator for tokens signed with `secret`.
    #[must_use]
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Self {
            key: jsonwebtoken::DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Verifies one token; `None` when it is invalid or expired.
    #[must_use]
    pub fn verify(&self, token: &str) -> Option<Identity> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).ok()?;
        if data.claims.sub.is_empty() {
            return None;
        }
        Some(Identity {
            user_id: data.claims.sub,
            metadata: Value::Object(data.claims.rest),
        })
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
}
