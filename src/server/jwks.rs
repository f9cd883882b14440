//! JWTs signed by an identity provider: keys from a JWKS URL (RS256/384/512, PS256/384/512,
//! ES256/384, EdDSA), cached, refetched on an unknown `kid` at most once per
//! `min_refetch`, refreshed when older than `max_age`.
//!
//! # Security
//! - The algorithm comes from the key (its `alg`, or its type), never from the token: a token
//!   whose header names another algorithm is refused, so an RSA public key can never be used
//!   as an HMAC secret. Symmetric (`oct`) keys in the set are ignored.
//! - The set is fetched over HTTPS (system-independent Mozilla roots); plain `http://` is
//!   accepted only for loopback addresses (tests, sidecars).
//! - A refetch triggered by tokens with unknown key ids is rate limited, so forged tokens
//!   cannot make the server hammer the identity provider.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;

use super::auth::JwtRules;
use super::hooks::{AuthRequest, Authenticator, BoxFuture, HookError, Identity};

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Why the key set could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The URL is not `https://` (or `http://` to a loopback address).
    #[error("JWKS URL must be https:// (or http:// to a loopback address): {0}")]
    InsecureUrl(String),
    /// The request failed or the server did not answer 200.
    #[error("fetching the JWKS from {url} failed: {reason}")]
    Fetch {
        /// The JWKS URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The document is not a JWKS, or holds no usable key.
    #[error("the JWKS from {url} is unusable: {reason}")]
    Invalid {
        /// The JWKS URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Timing knobs of a [`JwksAuth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksOptions {
    /// Least time between two fetches caused by unknown key ids. Defaults to 30 s.
    pub min_refetch: Duration,
    /// Keys older than this are refetched on the next authentication (the old ones stay in
    /// use if that fails). Defaults to 10 minutes.
    pub max_age: Duration,
    /// Timeout of one fetch. Defaults to 10 s.
    pub timeout: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            min_refetch: Duration::from_secs(30),
            max_age: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
        }
    }
}

impl JwksOptions {
    /// Sets `min_refetch`.
    #[must_use]
    pub fn min_refetch(mut self, d: Duration) -> Self {
        self.min_refetch = d;
        self
    }

    /// Sets `max_age`.
    #[must_use]
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }

    /// Sets `timeout`.
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
}

/// One usable key of the set.
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

struct Cache {
    keys: Vec<Key>,
    fetched: Instant,
}

/// The HTTP(S) client that fetches the set.
type Http = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

struct Inner {
    url: String,
    rules: JwtRules,
    options: JwksOptions,
    http: Http,
    cache: RwLock<Cache>,
    /// Serializes fetches and remembers when the last one started.
    last_fetch: tokio::sync::Mutex<Instant>,
}

/// Verifies JWTs against the keys of an identity provider's JWKS, under [`JwtRules`].
/// Cheap to clone.
#[derive(Clone)]
pub struct JwksAuth(Arc<Inner>);

impl std::fmt::Debug for JwksAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksAuth")
            .field("url", &self.0.url)
            .field("rules", &self.0.rules)
            .finish_non_exhaustive()
    }
}

impl JwksAuth {
    /// Fetches the key set once; the server should not start without it.
    ///
    /// # Errors
    /// [`JwksError`] when the URL is not HTTPS (or loopback HTTP), the fetch fails, or the
    /// set holds no usable key.
    pub async fn load(url: &str, rules: JwtRules, options: JwksOptions) -> Result<Self, JwksError> {
        check_url(url)?;
        let http = client().map_err(|reason| JwksError::Fetch {
            url: url.to_owned(),
            reason,
        })?;
        let keys = fetch(&http, url, options.timeout).await?;
        let now = Instant::now();
        Ok(Self(Arc::new(Inner {
            url: url.to_owned(),
            rules,
            options,
            http,
            cache: RwLock::new(Cache { keys, fetched: now }),
            last_fetch: tokio::sync::Mutex::new(now),
        })))
    }

    /// The key ids currently cached (keys without one are listed as `""`).
    #[must_use]
    pub fn key_ids(&self) -> Vec<String> {
        self.cache()
            .keys
            .iter()
            .map(|k| k.kid.clone().unwrap_or_default())
            .collect()
    }

    fn cache(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.0
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Verifies `token` against the cached keys; `Err(())` when no cached key matches its
    /// `kid` (a refetch may help), `Ok(None)` when a key matched and the token is invalid.
    fn verify_cached(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
    ) -> Result<Option<Identity>, ()> {
        let cache = self.cache();
        let candidates: Vec<&Key> = cache
            .keys
            .iter()
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(());
        }
        // The algorithm is the key's: a header naming another one fails here.
        Ok(candidates
            .into_iter()
            .filter(|k| k.alg == header.alg)
            .find_map(|k| self.0.rules.verify(token, &k.key, k.alg)))
    }

    /// Refetches the set if the last fetch is older than `at_least` ago. Returns whether it
    /// fetched.
    async fn refetch(&self, at_least: Duration) -> bool {
        let mut last = self.0.last_fetch.lock().await;
        if last.elapsed() < at_least {
            return false;
        }
        *last = Instant::now();
        match fetch(&self.0.http, &self.0.url, self.0.options.timeout).await {
            Ok(keys) => {
                let mut cache = self
                    .0
                    .cache
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *cache = Cache {
                    keys,
                    fetched: Instant::now(),
                };
                tracing::debug!(url = %self.0.url, "JWKS refetched");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refetch failed; keeping the cached keys");
                false
            }
        }
    }

    /// Verifies one token, refetching the set when it is stale or the token's key id is
    /// unknown (rate limited).
    pub async fn verify(&self, token: &str) -> Option<Identity> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let stale = self.cache().fetched.elapsed() >= self.0.options.max_age;
        if stale {
            self.refetch(self.0.options.min_refetch).await;
        }
        match self.verify_cached(token, &header) {
            Ok(identity) => identity,
            Err(()) => {
                if self.refetch(self.0.options.min_refetch).await {
                    self.verify_cached(token, &header).ok().flatten()
                } else {
                    None
                }
            }
        }
    }
}

impl Authenticator for JwksAuth {
    fn authenticate(
        &self,
        request: AuthRequest,
    ) -> BoxFuture<'static, Result<Option<Identity>, HookError>> {
        let this = self.clone();
        Box::pin(async move {
            let identity = match request.token.as_deref() {
                Some(token) => this.verify(token).await,
                None => None,
            };
            if identity.is_none() {
                tracing::debug!(client = %request.client_id, "JWT rejected");
            }
            Ok(identity)
        })
    }
}

fn check_url(url: &str) -> Result<(), JwksError> {
    let parsed = url::Url::parse(url).map_err(|_| JwksError::InsecureUrl(url.to_owned()))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(JwksError::InsecureUrl(url.to_owned())),
    }
}

/// An HTTP(S) client whose TLS trusts the Mozilla roots, on the aws-lc provider.
fn client() -> Result<Http, String> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

async fn fetch(http: &Http, url: &str, timeout: Duration) -> Result<Vec<Key>, JwksError> {
    use http_body_util::BodyExt as _;
    let fail = |reason: String| JwksError::Fetch {
        url: url.to_owned(),
        reason,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| fail(e.to_string()))?;
    let get = async {
        let response = http.get(uri).await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES);
        body.collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| fail(e.to_string()))
    };
    let body = tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| fail("timed out".into()))??;
    let invalid = |reason: String| JwksError::Invalid {
        url: url.to_owned(),
        reason,
    };
    let set: JwkSet = serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
    let keys: Vec<Key> = set.keys.iter().filter_map(usable).collect();
    if keys.is_empty() {
        return Err(invalid("no RSA, EC or OKP signing key".into()));
    }
    Ok(keys)
}

/// A key we can verify with, and the one algorithm it is used with.
fn usable(jwk: &Jwk) -> Option<Key> {
    let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::OctetKey(_), _) => return None,
        (_, Some(alg)) => signing_algorithm(alg)?,
        (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (AlgorithmParameters::OctetKeyPair(_), None) => Algorithm::EdDSA,
    };
    let family_ok = matches!(
        (&jwk.algorithm, alg),
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) | (
            AlgorithmParameters::EllipticCurve(_),
            Algorithm::ES256 | Algorithm::ES384
        ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
    );
    if !family_ok {
        return None;
    }
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

fn signing_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http() {
        assert!(check_url("https://idp.example/.well-known/jwks.json").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://[::1]:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        for bad in ["http://idp.example/jwks", "ftp://127.0.0.1/x", "not a url"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn symmetric_and_mismatched_keys_are_ignored() {
        let oct: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "oct", "k": "c2VjcmV0", "alg": "HS256", "kid": "h"
        }))
        .expect("jwk");
        assert!(usable(&oct).is_none());
        let ec_as_rsa: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "alg": "RS256", "kid": "x",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .expect("jwk");
        assert!(usable(&ec_as_rsa).is_none());
        let ec: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "e",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .expect("jwk");
        assert_eq!(usable(&ec).map(|k| k.alg), Some(Algorithm::ES256));
    }
}
