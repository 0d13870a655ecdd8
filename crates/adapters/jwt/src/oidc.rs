//! Keys of an OpenID Connect identity provider, found and kept current:
//! discovery (`/.well-known/openid-configuration`) names the JWKS; the keys
//! are cached; a token signed with a key the cache does not hold (a `kid`
//! it has not seen, after the provider rotated its keys) makes the cache
//! fetch the JWKS again, at most once per interval, so rotation needs no
//! restart and a flood of made-up `kid`s costs the provider one request per
//! interval. Keys older than an hour are fetched again on the next use, so
//! that a key the provider withdrew stops working without a restart too.
//!
//! Only `https` is spoken, except to a loopback address (a provider on the
//! same host, and the tests).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::{JwtConfigError, VerifyingKey, parse_jwks};

/// How an identity provider's keys are fetched and kept.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The issuer, exactly as its tokens' `iss` and its discovery document
    /// state it.
    pub issuer: String,
    /// The least time between two fetches of the JWKS caused by unknown
    /// keys.
    pub refetch_interval: Duration,
    /// The longest keys are used before they are fetched again.
    pub max_key_age: Duration,
    /// How long a request to the provider may take.
    pub timeout: Duration,
}

impl OidcSettings {
    /// The defaults for `issuer`: a refetch at most every 30 seconds, keys
    /// at most an hour old, five seconds per request.
    #[must_use]
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            refetch_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Keys as fetched, and when.
struct Fetched {
    keys: Arc<Vec<VerifyingKey>>,
    at: Instant,
}

/// An identity provider's current keys.
pub(crate) struct ProviderKeys {
    jwks_uri: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    settings: OidcSettings,
    current: RwLock<Fetched>,
    /// When the JWKS was last fetched again (not counting discovery's first
    /// fetch, so that a key rotated right after the start is picked up);
    /// held while fetching, so that tokens arriving together cause one
    /// fetch.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKeys").field("jwks_uri", &self.jwks_uri).finish_non_exhaustive()
    }
}

/// Whether `uri` may be fetched: `https`, or `http` to a loopback host.
fn allowed(uri: &Uri) -> bool {
    match uri.scheme_str() {
        Some("https") => true,
        Some("http") => {
            let host = uri.host().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
            host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

fn parse_uri(text: &str, what: &str) -> Result<Uri, JwtConfigError> {
    let uri: Uri = text.parse().map_err(|_| JwtConfigError::Oidc(format!("the {what} {text:?} is not a URL")))?;
    if !allowed(&uri) {
        return Err(JwtConfigError::Oidc(format!(
            "the {what} {text:?} must be https (http only to a loopback address)"
        )));
    }
    Ok(uri)
}

impl ProviderKeys {
    /// Reads the provider's discovery document and its keys.
    pub(crate) async fn discover(settings: OidcSettings) -> Result<Self, JwtConfigError> {
        let issuer = parse_uri(&settings.issuer, "OIDC issuer")?;
        let provider = rustls::crypto::ring::default_provider();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| JwtConfigError::Oidc(format!("no certificate authorities to check the provider with: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let discovery = format!("{}/.well-known/openid-configuration", settings.issuer.trim_end_matches('/'));
        let document = get_json(&client, &parse_uri(&discovery, "discovery URL")?, settings.timeout).await?;
        // OpenID Connect Discovery 1.0, §4.3: the document's issuer must be
        // the one asked about, exactly, or its keys vouch for someone else.
        if document["issuer"].as_str() != Some(settings.issuer.as_str()) {
            return Err(JwtConfigError::Oidc(format!(
                "the discovery document of {issuer} names the issuer {}, not {:?}",
                document["issuer"], settings.issuer
            )));
        }
        let jwks_uri = document["jwks_uri"]
            .as_str()
            .ok_or_else(|| JwtConfigError::Oidc(format!("the discovery document of {issuer} has no jwks_uri")))?;
        let jwks_uri = parse_uri(jwks_uri, "jwks_uri")?;
        let keys = fetch_keys(&client, &jwks_uri, settings.timeout).await?;
        Ok(Self {
            jwks_uri,
            client,
            settings,
            current: RwLock::new(Fetched { keys: Arc::new(keys), at: Instant::now() }),
            last_refetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The keys in use, and whether they are older than allowed.
    pub(crate) fn current(&self) -> (Arc<Vec<VerifyingKey>>, bool) {
        let fetched = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (fetched.keys.clone(), fetched.at.elapsed() >= self.settings.max_key_age)
    }

    /// Fetches the keys again unless that was done less than an interval
    /// ago; answers the keys to use now, or `None` when they did not
    /// change. `seen` is the set the caller found wanting: when another
    /// caller replaced it meanwhile, that newer set is the answer.
    pub(crate) async fn refetch(&self, seen: &Arc<Vec<VerifyingKey>>) -> Option<Arc<Vec<VerifyingKey>>> {
        let mut last_refetch = self.last_refetch.lock().await;
        let (current, _) = self.current();
        if !Arc::ptr_eq(&current, seen) {
            return Some(current);
        }
        if last_refetch.is_some_and(|at| at.elapsed() < self.settings.refetch_interval) {
            return None;
        }
        *last_refetch = Some(Instant::now());
        match fetch_keys(&self.client, &self.jwks_uri, self.settings.timeout).await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                tracing::info!(jwks_uri = %self.jwks_uri, keys = keys.len(), "fetched the identity provider's keys");
                *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Fetched { keys: keys.clone(), at: Instant::now() };
                Some(keys)
            }
            Err(error) => {
                // The keys held stay in use: a provider that is briefly
                // down does not sign anyone out.
                tracing::warn!(jwks_uri = %self.jwks_uri, %error, "could not fetch the identity provider's keys");
                None
            }
        }
    }
}

async fn fetch_keys(
    client: &Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    uri: &Uri,
    timeout: Duration,
) -> Result<Vec<VerifyingKey>, JwtConfigError> {
    let document = get_json(client, uri, timeout).await?;
    parse_jwks(&document.to_string())
}

async fn get_json(
    client: &Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    uri: &Uri,
    timeout: Duration,
) -> Result<Value, JwtConfigError> {
    let failed = |why: String| JwtConfigError::Oidc(format!("GET {uri}: {why}"));
    let exchange = async {
        let response = client.get(uri.clone()).await.map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("answered {}", response.status())));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| failed(format!("reading the answer: {e}")))?
            .to_bytes();
        serde_json::from_slice::<Value>(&body).map_err(|e| failed(format!("not JSON: {e}")))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| failed(format!("no answer within {timeout:?}")))?
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn only_https_or_loopback_http() {
        for (uri, ok) in [
            ("https://idp.example.com/", true),
            ("http://127.0.0.1:8080/", true),
            ("http://[::1]:8080/", true),
            ("http://localhost/", true),
            ("http://idp.example.com/", false),
            ("http://127.0.0.1.evil.example/", false),
            ("ftp://idp.example.com/", false),
        ] {
            assert_eq!(allowed(&uri.parse().unwrap()), ok, "{uri}");
        }
    }
}
