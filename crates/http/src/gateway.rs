//! The gateway: latchkey as the reverse proxy in front of a data API, so
//! that an unchanged data API is protected by its tokens (SPEC §12).
//!
//! Every request is read canonically and decided before anything reaches
//! the upstream. The token is checked before a body is read, so a request
//! without a usable token costs no body; a body is read only when it may
//! name the source, within the body limit. An allowed request is forwarded
//! rebuilt from what was decided: the path from its decoded segments, the
//! query string re-encoded without `access_token`, a JSON body as it was
//! checked, a form re-encoded; client-sent `X-Latchkey-…` headers are
//! dropped and the bearer's org, user and token id added. The answer
//! streams back unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use latchkey_app::{
    Ambiguity, BodyFormat, BodyPresence, BodyView, CanonicalRequest, Enforcer, Readiness, RequestHead, Unmappable,
    Verdict,
};

use crate::enforce::{add_identity, deciding_headers, is_identity_header, verdict_response};
use crate::error::{ApiError, ErrorBody};
use crate::guard::{self, FailureLimiter, Surface};
use crate::layers::{self, Proxied};
use crate::{Limits, RateLimits};

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the gateway needs besides the enforcer.
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// The data API: `http://host:port`, with an optional base path.
    pub upstream: Uri,
    /// The largest body read to find a request's source.
    pub body_limit: usize,
    /// How long a whole request may take, body upload included.
    pub request_timeout: Duration,
    /// How long the upstream may take to start answering.
    pub upstream_timeout: Duration,
    /// Rate limiting of failed tokens.
    pub rate: RateLimits,
}

struct Gateway {
    enforcer: Arc<Enforcer>,
    readiness: Arc<Readiness>,
    client: Client<HttpConnector, Body>,
    settings: Arc<GatewaySettings>,
}

/// The gateway's application: `/healthz` and `/readyz` of its own, and
/// every other request decided and forwarded, with the layers `serve` has
/// (request ids, tracing without secrets, a timeout, panic catching, a
/// header limit and rate limiting of failed tokens).
pub fn app(enforcer: Arc<Enforcer>, readiness: Arc<Readiness>, settings: GatewaySettings) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    connector.set_nodelay(true);
    // A pool of keep-alive connections to the upstream.
    let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
    let limits = Limits {
        body_bytes: settings.body_limit,
        request_timeout: settings.request_timeout,
        rate: settings.rate.clone(),
    };
    let limiter = Arc::new(FailureLimiter::new(&limits.rate));
    let counting = layers::Counting { metrics: enforcer.metrics().clone(), unmatched: "proxy" };
    let gateway = Gateway { enforcer, readiness, client, settings: Arc::new(settings) };
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(proxy)
        // One reference count to clone per request (see `crate::Shared`).
        .with_state(Arc::new(gateway))
        .layer(axum::middleware::from_fn_with_state((limiter, Some(Surface::Gateway)), guard::limit_failures))
        .layer(axum::middleware::from_fn(guard::limit_headers));
    layers::wrap(router, &limits, counting)
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.readiness.check().await {
        Ok(()) => "ok".into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody { error: message.to_owned(), code: code.to_owned(), details: None };
    (status, axum::Json(body)).into_response()
}

impl Gateway {
    /// Refuses a request found ambiguous before the enforcer saw it, and
    /// counts the refusal with the enforcer's.
    fn refuse(&self, ambiguity: Ambiguity) -> Response {
        let verdict = Verdict::Unmappable(Unmappable::Ambiguous(ambiguity));
        self.enforcer.refused(&verdict);
        verdict_response(&verdict)
    }
}

/// Whether a request has a body, from its framing.
fn presence(headers: &HeaderMap) -> BodyPresence {
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).map(str::trim);
    if chunked || length.is_some_and(|l| l != "0") { BodyPresence::Present } else { BodyPresence::Absent }
}

async fn proxy(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    // The client as the guard read it (see `forward_auth`).
    let client_ip = request.extensions().get::<crate::guard::ClientIp>().and_then(|client| client.0);
    let (parts, body) = request.into_parts();
    // An absolute-form target names a host of its own.
    if parts.uri.scheme().is_some() {
        return gateway.refuse(Ambiguity::NotAPath);
    }
    let target = parts.uri.path_and_query().map_or("/", |target| target.as_str());
    let presence = presence(&parts.headers);
    let head = match RequestHead::parse(parts.method.as_str(), target, &deciding_headers(&parts.headers), presence) {
        Ok(head) => head.from_client(client_ip),
        Err(ambiguity) => return gateway.refuse(ambiguity),
    };
    // The token first: a request without a usable one costs no body.
    let pending = match gateway.enforcer.begin(head).await {
        Ok(Ok(pending)) => pending,
        Ok(Err(verdict)) => return verdict_response(&verdict),
        Err(failure) => return ApiError::from(failure).into_response(),
    };
    let (read, passthrough) = if pending.reads_body() {
        match axum::body::to_bytes(body, gateway.settings.body_limit).await {
            Ok(bytes) => (bytes, None),
            Err(_) => return ApiError::PayloadTooLarge.into_response(),
        }
    } else if presence == BodyPresence::Present {
        // Only an `lds` request gets here with a body (elsewhere a body on
        // a method without one is ambiguous): it names no source, and
        // streams through.
        (axum::body::Bytes::new(), Some(body))
    } else {
        (axum::body::Bytes::new(), None)
    };
    let (verdict, canonical) = gateway.enforcer.finish(pending, BodyView::Read(&read));
    let (Verdict::Allowed(bearer), Some(canonical)) = (&verdict, canonical) else {
        return verdict_response(&verdict);
    };
    let upstream = match upstream_request(
        &gateway.settings.upstream,
        &parts.headers,
        peer,
        &gateway.settings.rate.trusted_proxies,
        bearer,
        &canonical,
        passthrough,
    ) {
        Ok(upstream) => upstream,
        Err(response) => return *response,
    };
    let metrics = gateway.enforcer.metrics();
    let started = Instant::now();
    match tokio::time::timeout(gateway.settings.upstream_timeout, gateway.client.request(upstream)).await {
        Ok(Ok(response)) => {
            metrics.upstream_answered(started.elapsed());
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            parts.extensions.insert(Proxied);
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(failure)) => {
            metrics.upstream_failed("unreachable");
            tracing::warn!(error = %failure, "the upstream did not answer");
            error(StatusCode::BAD_GATEWAY, crate::error::BAD_GATEWAY, "the upstream data API did not answer")
        }
        Err(_) => {
            metrics.upstream_failed("timeout");
            error(
                StatusCode::GATEWAY_TIMEOUT,
                crate::error::GATEWAY_TIMEOUT,
                "the upstream data API took too long to answer",
            )
        }
    }
}

/// The request to forward, rebuilt from `canonical`.
fn upstream_request(
    upstream: &Uri,
    client_headers: &HeaderMap,
    peer: SocketAddr,
    trusted_proxies: &latchkey_domain::ip::TrustedProxies,
    bearer: &latchkey_app::Bearer,
    canonical: &CanonicalRequest,
    passthrough: Option<Body>,
) -> Result<axum::http::Request<Body>, Box<Response>> {
    let base = upstream.path().trim_end_matches('/');
    let mut target = format!(
        "{}://{}{base}{}",
        upstream.scheme_str().unwrap_or("http"),
        upstream.authority().map_or("", |a| a.as_str()),
        canonical.path()
    );
    if let Some(query) = canonical.query() {
        target.push('?');
        target.push_str(&query);
    }
    let uri: Uri = target.parse().map_err(|_| {
        Box::new(error(StatusCode::BAD_REQUEST, "invalid_request", "the request URI cannot be forwarded"))
    })?;
    // Headers the client named in `Connection` are hop-by-hop too.
    let declared: Vec<String> = client_headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let rebuilt_body = canonical.body();
    let mut headers = HeaderMap::new();
    for (name, value) in client_headers {
        let lower = name.as_str();
        let dropped = HOP_BY_HOP.contains(&lower)
            || declared.iter().any(|d| d == lower)
            || lower == "host"
            || lower == "content-length"
            || (lower == "content-type" && rebuilt_body.is_some())
            || lower == "x-forwarded-host"
            || lower == "x-forwarded-proto"
            || lower == "x-forwarded-for"
            || is_identity_header(lower);
        if !dropped {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(host) = client_headers.get(header::HOST) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    // The chain the data API sees is the one latchkey read the client
    // from: from a trusted proxy, every line it sent, in order, and the
    // proxy; from anyone else, the peer alone (what a client writes about
    // itself is not passed on, as Caddy does). A line that is not text
    // cannot be passed on faithfully, so the chain is not either.
    let peer_ip = latchkey_domain::ip::canonical_address(peer.ip());
    let lines: Option<Vec<&str>> =
        client_headers.get_all("x-forwarded-for").iter().map(|value| value.to_str().ok()).collect();
    let forwarded_for = match lines {
        Some(lines) if trusted_proxies.is_trusted(peer_ip) && !lines.is_empty() => {
            format!("{}, {peer_ip}", lines.join(", "))
        }
        _ => peer_ip.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
    add_identity(&mut headers, bearer);
    let body = match (rebuilt_body, passthrough) {
        (Some((format, bytes)), _) => {
            let content_type = match format {
                BodyFormat::Json => "application/json",
                BodyFormat::Form => "application/x-www-form-urlencoded",
            };
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            Body::from(bytes)
        }
        (None, Some(stream)) => stream,
        (None, None) => Body::empty(),
    };
    let mut request = axum::http::Request::new(body);
    *request.method_mut() = canonical.method().parse().map_err(|_| {
        Box::new(error(StatusCode::BAD_REQUEST, "invalid_request", "the request method cannot be forwarded"))
    })?;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(request)
}
