//! What wraps every request: request ids, tracing without secrets, a body
//! limit, a timeout, JSON bodies on every error, and a last line against
//! panics.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state, map_response};
use axum::response::IntoResponse;
use latchkey_app::Metrics;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::Limits;
use crate::error::ApiError;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Marks a response that the gateway relays from the upstream: the layers
/// leave it as the data API wrote it (no JSON error body, no cache header
/// of latchkey's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Proxied;

/// Request ids: a random prefix per process and a counter. Unique across
/// instances and restarts like a UUID, without a system call per request.
#[derive(Clone)]
struct SequentialIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl SequentialIds {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // The standard library seeds each RandomState from the OS once.
        let prefix = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Self { prefix, next: Arc::new(AtomicU64::new(0)) }
    }
}

impl MakeRequestId for SequentialIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        use std::io::Write as _;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Written on the stack: the header value is the one allocation.
        let mut text = [0u8; 33];
        let mut cursor = std::io::Cursor::new(&mut text[..]);
        write!(cursor, "{:016x}-{n:x}", self.prefix).ok()?;
        let length = usize::try_from(cursor.position()).ok()?;
        HeaderValue::from_bytes(&text[..length]).ok().map(RequestId::new)
    }
}

/// The path with every segment that looks like a secret replaced by its
/// prefix, so that `/v3/tokens/{value}` never puts a token in a log line.
/// The query is dropped: it may carry an `access_token`.
pub(crate) fn redact_path(path: &str) -> Cow<'_, str> {
    // Most paths hold nothing to hide: they are logged as they are, without
    // building a copy for every request.
    if !path.contains("latchkey_") && path.split('/').all(|segment| segment.len() <= 64) {
        return Cow::Borrowed(path);
    }
    let redacted = path
        .split('/')
        .map(|segment| match segment.find("latchkey_") {
            Some(at) => {
                let prefix_end = segment[at..].match_indices('_').nth(1).map_or(segment.len(), |(i, _)| at + i + 1);
                format!("{}…", &segment[..prefix_end])
            }
            None if segment.len() > 64 => format!("{}…", segment.chars().take(8).collect::<String>()),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/");
    Cow::Owned(redacted)
}

fn span_for(request: &Request<Body>) -> Span {
    let request_id = request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok());
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %redact_path(request.uri().path()),
        request_id = request_id.unwrap_or(""),
    )
}

/// Gives a JSON error body to error responses that a layer or the router
/// made without one (404 for an unknown path, 405, 408, 413, 500 after a
/// panic), so that every error a client sees has the same shape.
async fn json_errors(response: Response<Body>) -> Response<Body> {
    if response.extensions().get::<Proxied>().is_some() {
        return response;
    }
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.is_success() || status.is_redirection() || is_json {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    match ApiError::for_status(status) {
        Some(error) => {
            let mut replaced = error.into_response();
            if let Some(allow) = allow {
                replaced.headers_mut().insert(header::ALLOW, allow);
            }
            replaced
        }
        None => response,
    }
}

/// Headers of latchkey's own answers: they hold token values, so no cache
/// may keep them, and their types are not to be guessed.
async fn own_headers(mut response: Response<Body>) -> Response<Body> {
    if response.extensions().get::<Proxied>().is_none() {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.entry(header::X_CONTENT_TYPE_OPTIONS).or_insert(HeaderValue::from_static("nosniff"));
    }
    response
}

/// Logs each answer with its status and latency (the path is in the span):
/// failures at info, successes at debug.
#[derive(Clone, Copy)]
struct LogResponse;

impl<B> tower_http::trace::OnResponse<B> for LogResponse {
    fn on_response(self, response: &Response<B>, latency: Duration, _: &Span) {
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let status = response.status().as_u16();
        // Answers that went wrong are worth a line at the default level;
        // successes, most of them authorize calls on the hot path, are
        // logged at debug so that a busy instance does not spend its time
        // writing logs.
        if status >= 400 {
            tracing::info!(status, latency_us, "answered");
        } else {
            tracing::debug!(status, latency_us, "answered");
        }
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    ApiError::Internal("a handler panicked".into()).into_response()
}

/// What the request metrics need: where to count, and the route label of
/// a request no route matched (`unmatched` for `serve`, where that is a
/// 404; `proxy` for the gateway, whose fallback forwards).
#[derive(Clone)]
pub(crate) struct Counting {
    pub metrics: Arc<Metrics>,
    pub unmatched: &'static str,
}

/// Counts each answer by route template, method and status, with its
/// latency to the response head. Outermost, so that it sees the status the
/// client gets (a timeout's 408, a panic's 500).
async fn count_requests(State(counting): State<Counting>, request: Request<Body>, next: Next) -> Response<Body> {
    let started = Instant::now();
    let method = latchkey_metrics::method_label(request.method().as_str());
    // The template (`/v3/tokens/{token}`), never the path itself: a path
    // can hold a token value and takes unbounded values.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or(counting.unmatched, MatchedPath::as_str);
    counting.metrics.http_request(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// Wraps the router in every layer, outermost first.
pub(crate) fn wrap(router: Router, limits: &Limits, counting: Counting) -> Router {
    // Bodies are read by `JsonBody`, which enforces `limits.body_bytes`
    // itself so that it can answer 413 in a way clients can read.
    router.layer(DefaultBodyLimit::disable()).layer(
        ServiceBuilder::new()
            .layer(from_fn_with_state(counting, count_requests))
            .layer(SetRequestIdLayer::new(REQUEST_ID, SequentialIds::new()))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(TraceLayer::new_for_http().make_span_with(span_for).on_request(()).on_response(LogResponse))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(map_response(own_headers))
            .layer(map_response(json_errors))
            .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout)),
    )
}

#[cfg(test)]
mod tests {
    use super::redact_path;

    #[test]
    fn secrets_never_reach_the_log() {
        let value = "latchkey_tk_0123456789abcdefghijABCDEFGHIJxyzw4gfFC3";
        assert_eq!(redact_path(&format!("/v3/tokens/{value}")), "/v3/tokens/latchkey_tk_…");
        assert_eq!(redact_path("/v3/tokens/Hq3xJ7rT2mKa"), "/v3/tokens/Hq3xJ7rT2mKa");
        assert_eq!(redact_path(&format!("/x/abc{value}")), "/x/abclatchkey_tk_…");
        assert_eq!(redact_path("/v3/tokens/latchkey_"), "/v3/tokens/latchkey_…");
        let long = "a".repeat(100);
        assert_eq!(redact_path(&format!("/v3/tokens/{long}")), "/v3/tokens/aaaaaaaa…");
    }
}
