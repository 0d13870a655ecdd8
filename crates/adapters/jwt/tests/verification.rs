//! JWT verification: what is accepted, and every way a token is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use latchkey_jwt::{JwtAuthenticator, JwtConfigError, JwtSettings};
use latchkey_ports::{AuthenticationError, Authenticator};
use serde_json::{Value, json};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-only";
const RSA_PEM: &[u8] = include_bytes!("fixtures/rsa-private.pem");
const EC_PEM: &[u8] = include_bytes!("fixtures/ec-private.pem");

fn settings() -> JwtSettings {
    JwtSettings {
        issuer: "https://idp.example.com/".into(),
        audience: "latchkey".into(),
        user_claim: "sub".into(),
        org_claim: "org".into(),
        leeway_seconds: 0,
        admin_claim: None,
    }
}

fn claims() -> Value {
    json!({
        "iss": "https://idp.example.com/",
        "aud": "latchkey",
        "sub": "auth0|ana",
        "org": "acme",
        "exp": get_current_timestamp() + 600,
    })
}

fn with(changes: Value) -> Value {
    latchkey_testkit::changed(&claims(), &changes)
}

fn hs256(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn jwks() -> String {
    let rsa = EncodingKey::from_rsa_pem(RSA_PEM).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PEM).unwrap();
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
    rsa_jwk.common.key_id = Some("rsa-1".into());
    let mut ec_jwk = Jwk::from_encoding_key(&ec, Algorithm::ES256).unwrap();
    ec_jwk.common.key_id = Some("ec-1".into());
    serde_json::to_string(&JwkSet { keys: vec![rsa_jwk, ec_jwk] }).unwrap()
}

fn signed(algorithm: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PEM).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PEM).unwrap(),
        _ => EncodingKey::from_secret(SECRET),
    };
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key).unwrap()
}

async fn accepted(authenticator: &JwtAuthenticator, token: &str) -> Option<(String, String)> {
    match authenticator.authenticate(token).await {
        Ok(identity) => Some((identity.principal.org.to_string(), identity.principal.user.to_string())),
        Err(AuthenticationError::Invalid) => None,
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn hs256_tokens_with_the_right_claims_are_accepted() {
    let authenticator = JwtAuthenticator::hs256(SECRET, settings()).unwrap();
    assert_eq!(accepted(&authenticator, &hs256(&claims())).await, Some(("acme".into(), "auth0|ana".into())));
    let several_audiences = with(json!({"aud": ["other", "latchkey"]}));
    assert!(accepted(&authenticator, &hs256(&several_audiences)).await.is_some());
}

#[tokio::test]
async fn the_admin_claim_makes_an_org_admin_and_nothing_else_does() {
    use latchkey_domain::Role;
    let role_of = |settings: JwtSettings, claims: Value| async move {
        let authenticator = JwtAuthenticator::hs256(SECRET, settings).unwrap();
        authenticator.authenticate(&hs256(&claims)).await.unwrap().role
    };
    let flag = || JwtSettings { admin_claim: Some("latchkey_admin".parse().unwrap()), ..settings() };
    let roles = || JwtSettings { admin_claim: Some("roles=latchkey-admin".parse().unwrap()), ..settings() };
    let cases = [
        ("flag true", flag(), with(json!({"latchkey_admin": true})), Role::Admin),
        ("flag as a string", flag(), with(json!({"latchkey_admin": "true"})), Role::Member),
        ("flag false", flag(), with(json!({"latchkey_admin": false})), Role::Member),
        ("flag missing", flag(), claims(), Role::Member),
        ("role alone", roles(), with(json!({"roles": "latchkey-admin"})), Role::Admin),
        ("role in a list", roles(), with(json!({"roles": ["dev", "latchkey-admin"]})), Role::Admin),
        ("another role", roles(), with(json!({"roles": ["dev", "latchkey-admin-2"]})), Role::Member),
        ("role in another claim", roles(), with(json!({"groups": ["latchkey-admin"]})), Role::Member),
        ("role as a flag", roles(), with(json!({"roles": true})), Role::Member),
        ("no admin claim configured", settings(), with(json!({"latchkey_admin": true})), Role::Member),
    ];
    for (what, settings, claims, expected) in cases {
        assert_eq!(role_of(settings, claims).await, expected, "{what}");
    }
    for bad in ["", "=admin", "roles="] {
        assert!(bad.parse::<latchkey_jwt::AdminClaim>().is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn every_broken_claim_is_refused() {
    let authenticator = JwtAuthenticator::hs256(SECRET, settings()).unwrap();
    let now = get_current_timestamp();
    let cases = [
        ("expired", with(json!({"exp": now - 1}))),
        ("no expiry", with(json!({"exp": null}))),
        ("not yet valid", with(json!({"nbf": now + 600}))),
        ("other issuer", with(json!({"iss": "https://evil.example.com/"}))),
        ("no issuer", with(json!({"iss": null}))),
        ("other audience", with(json!({"aud": "someone-else"}))),
        ("no audience", with(json!({"aud": null}))),
        ("no user", with(json!({"sub": null}))),
        ("no org", with(json!({"org": null}))),
        ("org not a string", with(json!({"org": 42}))),
        ("org not a valid name", with(json!({"org": "acme corp"}))),
        ("user with whitespace", with(json!({"sub": "ana lopez"}))),
    ];
    for (what, claims) in cases {
        assert_eq!(accepted(&authenticator, &hs256(&claims)).await, None, "{what}");
    }
}

#[tokio::test]
async fn signatures_and_algorithms_are_checked() {
    let authenticator = JwtAuthenticator::hs256(SECRET, settings()).unwrap();
    let other_secret = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(b"another secret that is long enough...."),
    )
    .unwrap();
    assert_eq!(accepted(&authenticator, &other_secret).await, None, "wrong secret");
    let hs512 = encode(&Header::new(Algorithm::HS512), &claims(), &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(accepted(&authenticator, &hs512).await, None, "algorithm not configured");
    // An unsigned token: header {"alg":"none"}.
    let token = hs256(&claims());
    let mut parts = token.split('.');
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts.nth(1).unwrap());
    assert_eq!(accepted(&authenticator, &unsigned).await, None, "alg none");
    let mut tampered: Vec<String> = token.split('.').map(str::to_owned).collect();
    tampered[1] = hs256(&with(json!({"sub": "mallory"}))).split('.').nth(1).unwrap().to_owned();
    assert_eq!(accepted(&authenticator, &tampered.join(".")).await, None, "payload swapped");
    for garbage in ["", "a.b.c", "not a jwt", "latchkey_uk_something"] {
        assert_eq!(accepted(&authenticator, garbage).await, None, "{garbage:?}");
    }
}

#[tokio::test]
async fn jwks_keys_accept_rs256_and_es256_and_nothing_else() {
    let authenticator = JwtAuthenticator::from_jwks(&jwks(), settings()).unwrap();
    let expected = Some(("acme".to_owned(), "auth0|ana".to_owned()));
    assert_eq!(accepted(&authenticator, &signed(Algorithm::RS256, Some("rsa-1"), &claims())).await, expected);
    assert_eq!(accepted(&authenticator, &signed(Algorithm::ES256, Some("ec-1"), &claims())).await, expected);
    assert_eq!(accepted(&authenticator, &signed(Algorithm::RS256, None, &claims())).await, expected, "no kid");
    assert_eq!(accepted(&authenticator, &signed(Algorithm::RS256, Some("ec-1"), &claims())).await, None, "wrong kid");
    assert_eq!(accepted(&authenticator, &signed(Algorithm::HS256, None, &claims())).await, None, "HS256 refused");
    let expired = with(json!({"exp": get_current_timestamp() - 5}));
    assert_eq!(accepted(&authenticator, &signed(Algorithm::ES256, Some("ec-1"), &expired)).await, None);
}

#[test]
fn unusable_configurations_are_refused() {
    assert!(matches!(JwtAuthenticator::hs256(b"short", settings()), Err(JwtConfigError::WeakSecret)));
    let no_issuer = JwtSettings { issuer: String::new(), ..settings() };
    assert!(matches!(JwtAuthenticator::hs256(SECRET, no_issuer), Err(JwtConfigError::MissingClaims)));
    assert!(matches!(JwtAuthenticator::from_jwks("{", settings()), Err(JwtConfigError::Jwks(_))));
    assert!(matches!(JwtAuthenticator::from_jwks(r#"{"keys": []}"#, settings()), Err(JwtConfigError::NoUsableKey)));
}
