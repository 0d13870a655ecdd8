//! An OpenID Connect provider that rotates its keys mid-test: latchkey
//! finds the keys through discovery, picks up the new key when a token
//! names it (no restart), drops the withdrawn one, and lets a flood of
//! made-up key ids cost the provider one fetch per interval.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use latchkey_jwt::{JwtAuthenticator, JwtConfigError, JwtSettings, OidcSettings};
use latchkey_ports::{AuthenticationError, Authenticator};
use serde_json::{Value, json};

const RSA_PEM: &[u8] = include_bytes!("fixtures/rsa-private.pem");
const EC_PEM: &[u8] = include_bytes!("fixtures/ec-private.pem");

/// The provider: its discovery document, and a JWKS that the test swaps.
#[derive(Clone)]
struct Provider {
    issuer: Arc<Mutex<String>>,
    advertised_issuer: Arc<Mutex<Option<String>>>,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn discovery(State(provider): State<Provider>) -> Json<Value> {
    let issuer = provider.issuer.lock().unwrap().clone();
    let advertised = provider.advertised_issuer.lock().unwrap().clone().unwrap_or_else(|| issuer.clone());
    Json(
        json!({"issuer": advertised, "jwks_uri": format!("{issuer}/keys"), "id_token_signing_alg_values_supported": ["RS256", "ES256"]}),
    )
}

async fn keys(State(provider): State<Provider>) -> Json<Value> {
    provider.fetches.fetch_add(1, Ordering::SeqCst);
    Json(provider.jwks.lock().unwrap().clone())
}

fn jwk(pem: &[u8], algorithm: Algorithm, kid: &str) -> Jwk {
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
        _ => EncodingKey::from_ec_pem(pem).unwrap(),
    };
    let mut jwk = Jwk::from_encoding_key(&key, algorithm).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

fn set(keys: Vec<Jwk>) -> Value {
    serde_json::to_value(JwkSet { keys }).unwrap()
}

impl Provider {
    async fn start(jwks: Value) -> Provider {
        let provider = Provider {
            issuer: Arc::new(Mutex::new(String::new())),
            advertised_issuer: Arc::new(Mutex::new(None)),
            jwks: Arc::new(Mutex::new(jwks)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(keys))
            .with_state(provider.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *provider.issuer.lock().unwrap() = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        provider
    }

    fn issuer(&self) -> String {
        self.issuer.lock().unwrap().clone()
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn settings(issuer: &str) -> JwtSettings {
    JwtSettings {
        issuer: issuer.into(),
        audience: "latchkey".into(),
        user_claim: "sub".into(),
        org_claim: "org".into(),
        leeway_seconds: 0,
        admin_claim: None,
    }
}

fn sign(issuer: &str, pem: &[u8], algorithm: Algorithm, kid: &str) -> String {
    let claims =
        json!({"iss": issuer, "aud": "latchkey", "sub": "ana", "org": "acme", "exp": get_current_timestamp() + 600});
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem).unwrap(),
        _ => EncodingKey::from_ec_pem(pem).unwrap(),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.into());
    encode(&header, &claims, &key).unwrap()
}

async fn discover(provider: &Provider, refetch_interval: Duration) -> JwtAuthenticator {
    let oidc = OidcSettings { refetch_interval, ..OidcSettings::new(provider.issuer()) };
    JwtAuthenticator::discover(oidc, settings(&provider.issuer())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_picked_up_without_a_restart_and_the_old_one_dropped() {
    let provider = Provider::start(set(vec![jwk(RSA_PEM, Algorithm::RS256, "2026-a")])).await;
    let authenticator = discover(&provider, Duration::ZERO).await;
    assert_eq!(provider.fetches(), 1);
    let issuer = provider.issuer();
    let old = sign(&issuer, RSA_PEM, Algorithm::RS256, "2026-a");
    assert_eq!(authenticator.authenticate(&old).await.unwrap().principal.user.as_str(), "ana");
    assert_eq!(provider.fetches(), 1, "a known key needs no fetch");

    // The provider rotates: the new key replaces the old one.
    *provider.jwks.lock().unwrap() = set(vec![jwk(EC_PEM, Algorithm::ES256, "2026-b")]);
    let new = sign(&issuer, EC_PEM, Algorithm::ES256, "2026-b");
    assert_eq!(authenticator.authenticate(&new).await.unwrap().principal.org.as_str(), "acme");
    assert_eq!(provider.fetches(), 2, "the unknown key id caused one fetch");
    assert_eq!(authenticator.authenticate(&new).await.unwrap().principal.user.as_str(), "ana");
    assert_eq!(provider.fetches(), 2);
    assert!(matches!(authenticator.authenticate(&old).await, Err(AuthenticationError::Invalid)), "withdrawn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_key_ids_cost_one_fetch_per_interval() {
    let provider = Provider::start(set(vec![jwk(RSA_PEM, Algorithm::RS256, "real")])).await;
    let authenticator = Arc::new(discover(&provider, Duration::from_secs(60)).await);
    let issuer = provider.issuer();
    let mut attempts = Vec::new();
    for n in 0..50 {
        let forged = sign(&issuer, EC_PEM, Algorithm::ES256, &format!("made-up-{n}"));
        let authenticator = authenticator.clone();
        attempts.push(tokio::spawn(async move { authenticator.authenticate(&forged).await }));
    }
    for attempt in attempts {
        assert!(matches!(attempt.await.unwrap(), Err(AuthenticationError::Invalid)));
    }
    assert_eq!(provider.fetches(), 2, "discovery's fetch and one for the first unknown key id");
    // A token with the real key id and a bad signature is refused by the
    // signature, with no fetch at all.
    let genuine = sign(&issuer, RSA_PEM, Algorithm::RS256, "real");
    assert!(authenticator.authenticate(&genuine).await.is_ok());
    let (signed, signature) = genuine.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{signed}.{flipped}{}", &signature[1..]);
    assert!(matches!(authenticator.authenticate(&tampered).await, Err(AuthenticationError::Invalid)));
    assert_eq!(provider.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_names_another_issuer_is_refused() {
    let provider = Provider::start(set(vec![jwk(RSA_PEM, Algorithm::RS256, "k")])).await;
    *provider.advertised_issuer.lock().unwrap() = Some("https://someone-else.example/".into());
    let oidc = OidcSettings::new(provider.issuer());
    let error = JwtAuthenticator::discover(oidc, settings(&provider.issuer())).await.unwrap_err();
    assert!(matches!(&error, JwtConfigError::Oidc(why) if why.contains("someone-else")), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_fails_clearly() {
    let unreachable = "http://127.0.0.1:9";
    let error = JwtAuthenticator::discover(OidcSettings::new(unreachable), settings(unreachable)).await.unwrap_err();
    assert!(error.to_string().contains("127.0.0.1:9/.well-known/openid-configuration"), "{error}");
    let plain = "http://idp.example.com";
    let error = JwtAuthenticator::discover(OidcSettings::new(plain), settings(plain)).await.unwrap_err();
    assert!(error.to_string().contains("must be https"), "{error}");
    let provider = Provider::start(set(vec![jwk(RSA_PEM, Algorithm::RS256, "k")])).await;
    let error = JwtAuthenticator::discover(OidcSettings::new(provider.issuer()), settings("https://other.example/"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("is not the provider's"), "{error}");
}
