//! JWTs from an identity provider: a real local HTTP JWKS endpoint serving RSA, P-256 and
//! Ed25519 keys generated here, tokens signed with them, key rotation picked up through an
//! unknown `kid` (rate limited), algorithm confusion refused, and a start that fails clearly
//! without the key set.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sealwire::crypto::HandshakeConfig;
use sealwire::server::{JwksAuth, JwksOptions, JwtRules, Server};
use serde_json::{Value, json};

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing key of the test identity provider and its public JWK.
struct IdpKey {
    kid: &'static str,
    alg: Algorithm,
    signing: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &'static str) -> IdpKey {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa");
    let pkcs8 = pair.as_der().expect("pkcs8");
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let public = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
    IdpKey {
        kid,
        alg: Algorithm::RS256,
        signing: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa pem"),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                    "n": b64url(&public.n), "e": b64url(&public.e)}),
    }
}

fn ec_key(kid: &'static str) -> IdpKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("ec");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .expect("ec pair");
    let point = pair.public_key().as_ref().to_vec();
    IdpKey {
        kid,
        alg: Algorithm::ES256,
        signing: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
                    "x": b64url(&point[1..33]), "y": b64url(&point[33..])}),
    }
}

fn ed_key(kid: &'static str) -> IdpKey {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed pair");
    IdpKey {
        kid,
        alg: Algorithm::EdDSA,
        signing: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                    "x": b64url(pair.public_key().as_ref())}),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn token(key: &IdpKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.signing).expect("sign")
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600, "iss": "https://idp.test", "aud": "sealwire"})
}

/// A local JWKS endpoint: serves whatever `keys` holds, counts requests.
struct Idp {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicUsize>,
}

async fn idp(initial: Vec<Value>) -> Idp {
    let keys = Arc::new(Mutex::new(initial));
    let hits = Arc::new(AtomicUsize::new(0));
    let (k, h) = (Arc::clone(&keys), Arc::clone(&hits));
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let (k, h) = (Arc::clone(&k), Arc::clone(&h));
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                let keys = k.lock().expect("keys").clone();
                axum::Json(json!({ "keys": keys }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Idp {
        url: format!("http://{addr}/jwks.json"),
        keys,
        hits,
    }
}

fn rules() -> JwtRules {
    JwtRules::default()
        .issuer("https://idp.test")
        .audience("sealwire")
        .leeway(0)
}

async fn login(server: &TestServer, token: &str) -> Result<Value, Value> {
    let mut c = server.client().await;
    let (hello, hs) = c.hardened_hello(HandshakeConfig::hardened(vec![])).await;
    c.confirm_hello(&hello, hs).await.expect("finish");
    c.emit("authenticate", json!({ "token": token })).await;
    let reply = c.recv_msg().await;
    if reply["event"] == "connected" {
        Ok(reply)
    } else {
        assert_eq!(c.expect_close().await, Some(4003), "{reply}");
        Err(reply)
    }
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_from_a_jwks_authenticate() {
    let (rsa, ec, ed) = (rsa_key("r1"), ec_key("e1"), ed_key("d1"));
    let provider = idp(vec![rsa.jwk.clone(), ec.jwk.clone(), ed.jwk.clone()]).await;
    let auth = JwksAuth::load(&provider.url, rules(), JwksOptions::default())
        .await
        .expect("load");
    let mut ids = auth.key_ids();
    ids.sort();
    assert_eq!(ids, ["d1", "e1", "r1"]);
    let server = start_with(Server::builder().config(base_config()).authenticate(auth)).await;
    for (key, user) in [(&rsa, "rita"), (&ec, "eve"), (&ed, "ed")] {
        let connected = login(&server, &token(key, Some(key.kid), &claims(user)))
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg));
        assert_eq!(connected["data"]["userId"], user);
        assert!(connected["data"]["expiresAt"].is_string());
    }
    // Wrong audience, expired, or signed by a key the provider does not publish.
    let stranger = ec_key("e1");
    for bad in [
        token(
            &rsa,
            Some("r1"),
            &json!({"sub": "x", "exp": now() + 600, "iss": "https://idp.test", "aud": "billing"}),
        ),
        token(
            &rsa,
            Some("r1"),
            &json!({"sub": "x", "exp": now() - 10, "iss": "https://idp.test", "aud": "sealwire"}),
        ),
        token(&stranger, Some("e1"), &claims("mallory")),
    ] {
        login(&server, &bad).await.expect_err("refused");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_new_kid_is_fetched_once_and_unknown_kids_are_rate_limited() {
    let first = rsa_key("k1");
    let provider = idp(vec![first.jwk.clone()]).await;
    let options = JwksOptions::default().min_refetch(Duration::from_secs(60));
    // The load counts as the last fetch: a short window lets the rotation below refetch.
    let quick = JwksOptions::default().min_refetch(Duration::from_millis(1));
    let auth = JwksAuth::load(&provider.url, rules(), quick)
        .await
        .expect("load");
    assert_eq!(provider.hits.load(Ordering::SeqCst), 1);
    let server = start_with(Server::builder().config(base_config()).authenticate(auth)).await;
    // The provider rotates in a new key; a token naming it makes the server refetch once.
    let rotated = ec_key("k2");
    provider
        .keys
        .lock()
        .expect("keys")
        .push(rotated.jwk.clone());
    tokio::time::sleep(Duration::from_millis(5)).await;
    login(&server, &token(&rotated, Some("k2"), &claims("rotated")))
        .await
        .expect("new key accepted after one refetch");
    assert_eq!(provider.hits.load(Ordering::SeqCst), 2);
    server.stop().await;

    // With the default window, tokens with unknown key ids do not trigger a fetch each.
    let auth = JwksAuth::load(&provider.url, rules(), options)
        .await
        .expect("load");
    let server = start_with(Server::builder().config(base_config()).authenticate(auth)).await;
    let before = provider.hits.load(Ordering::SeqCst);
    for _ in 0..5 {
        login(&server, &token(&first, Some("unknown-kid"), &claims("x")))
            .await
            .expect_err("unknown kid");
    }
    assert_eq!(
        provider.hits.load(Ordering::SeqCst),
        before,
        "forged key ids did not reach the identity provider"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_algorithm_comes_from_the_key_not_the_token() {
    let rsa = rsa_key("r1");
    let oct = json!({"kty": "oct", "kid": "h1", "alg": "HS256", "k": b64url(b"shared-secret-shared-secret-32by")});
    let provider = idp(vec![rsa.jwk.clone(), oct]).await;
    let auth = JwksAuth::load(&provider.url, rules(), JwksOptions::default())
        .await
        .expect("load");
    assert_eq!(auth.key_ids(), ["r1"], "symmetric keys are never used");
    let server = start_with(Server::builder().config(base_config()).authenticate(auth)).await;
    // HS256 with the RSA key's public modulus as the secret: the classic confusion attack.
    let n = rsa.jwk["n"].as_str().expect("n").to_owned();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("r1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims("admin"),
        &EncodingKey::from_secret(n.as_bytes()),
    )
    .expect("sign");
    login(&server, &forged).await.expect_err("HS256 refused");
    // HS256 under the published symmetric key is refused too.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("h1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims("admin"),
        &EncodingKey::from_secret(b"shared-secret-shared-secret-32by"),
    )
    .expect("sign");
    login(&server, &forged).await.expect_err("oct key refused");
    server.stop().await;
}

#[tokio::test]
async fn loading_fails_clearly_without_a_usable_key_set() {
    let err = JwksAuth::load(
        "http://127.0.0.1:1/jwks.json",
        rules(),
        JwksOptions::default(),
    )
    .await
    .expect_err("nothing listens there");
    assert!(err.to_string().contains("fetching the JWKS"), "{err}");
    let err = JwksAuth::load(
        "http://idp.example/jwks.json",
        rules(),
        JwksOptions::default(),
    )
    .await
    .expect_err("plain http to a remote host");
    assert!(err.to_string().contains("https://"), "{err}");
    let empty = idp(vec![]).await;
    let err = JwksAuth::load(&empty.url, rules(), JwksOptions::default())
        .await
        .expect_err("no keys");
    assert!(err.to_string().contains("unusable"), "{err}");
}
