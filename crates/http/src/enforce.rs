//! Enforcement where the data APIs run: the forward-auth endpoint that
//! reverse proxies ask before forwarding (nginx `auth_request`, Traefik
//! ForwardAuth, Envoy `ext_authz`), and the decision the gateway mode makes
//! before it forwards.
//!
//! Both map the original request with `latchkey_app::map_request` and answer
//! 200, 401 (no usable token: malformed, unknown, expired) or 403 (the
//! token does not allow this request), with the reason in the
//! `X-Latchkey-Reason` header and the error body of SPEC §7.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use latchkey_app::{Authorizer, Body, DataRequest, Decision, MappingError, map_request, source_may_be_in_body};
use latchkey_domain::DenyReason;

use crate::Services;
use crate::error::{ApiError, ErrorBody};

/// The header that carries the reason of a refusal.
pub const REASON_HEADER: HeaderName = HeaderName::from_static("x-latchkey-reason");

/// What a request aimed at a data API gets.
#[derive(Debug)]
pub enum Verdict {
    /// It may proceed.
    Allowed,
    /// It may not, for this reason (a decision reason, or `unknown_request`
    /// or `missing_parameter` for a request latchkey cannot map).
    Refused(&'static str),
}

impl Verdict {
    fn status(&self) -> StatusCode {
        match self {
            Verdict::Allowed => StatusCode::OK,
            Verdict::Refused(reason) if credential_failure(reason) => StatusCode::UNAUTHORIZED,
            Verdict::Refused(_) => StatusCode::FORBIDDEN,
        }
    }
}

fn credential_failure(reason: &str) -> bool {
    DenyReason::ALL.iter().any(|r| r.is_credential_failure() && r.as_str() == reason)
}

fn message(reason: &str) -> &'static str {
    match reason {
        "token_malformed" => "the request carries no latchkey token, or not a well-formed one",
        "token_unknown" => "the token does not exist (it may have been deleted)",
        "token_expired" => "the token has expired",
        "api_not_allowed" => "the token does not allow this API",
        "referer_missing" => "the token is restricted to websites and the request names none",
        "referer_not_allowed" => "the token does not allow requests from this website",
        "connection_not_granted" => "the token has no grant on this connection",
        "source_not_granted" => "the token does not grant this source to this API",
        "missing_parameter" => "the request does not name its source",
        _ => "not a data API request that latchkey knows",
    }
}

/// The answer for a verdict: empty for 200; the error body, the reason
/// header (and `WWW-Authenticate` for 401) otherwise.
#[must_use]
pub fn verdict_response(verdict: &Verdict) -> Response {
    let status = verdict.status();
    let Verdict::Refused(reason) = verdict else {
        return status.into_response();
    };
    let body = ErrorBody { error: message(reason).to_owned(), code: (*reason).to_owned(), details: None };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(REASON_HEADER, HeaderValue::from_static(reason));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Decides a data API request.
///
/// # Errors
/// [`ApiError`] when storage fails: the caller must refuse.
pub async fn decide(authorizer: &Authorizer, request: &DataRequest<'_>) -> Result<Verdict, ApiError> {
    let mapped = match map_request(request) {
        Ok(mapped) => mapped,
        Err(MappingError::UnknownRequest) => return Ok(Verdict::Refused("unknown_request")),
        Err(MappingError::MissingParameter(_)) => return Ok(Verdict::Refused("missing_parameter")),
    };
    let token = mapped.token.as_deref().unwrap_or("");
    match authorizer.authorize(token, &mapped.access_request()).await? {
        Decision::Allowed => Ok(Verdict::Allowed),
        Decision::Denied(reason) => Ok(Verdict::Refused(reason.as_str())),
    }
}

/// The original request of a forward-auth check: from the headers nginx
/// (`X-Original-Method`, `X-Original-URI`) or Traefik (`X-Forwarded-Method`,
/// `X-Forwarded-Uri`) set, or, as Envoy's `ext_authz` sends it, the check's
/// own method and the path after `/v3/forward-auth`.
fn original(method: &Method, uri: &Uri, headers: &HeaderMap) -> (String, String) {
    let original_method = header_text(headers, "x-original-method")
        .or_else(|| header_text(headers, "x-forwarded-method"))
        .unwrap_or(method.as_str())
        .to_owned();
    let original_uri = header_text(headers, "x-original-uri")
        .or_else(|| header_text(headers, "x-forwarded-uri"))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let path = uri.path().strip_prefix("/v3/forward-auth").unwrap_or("");
            match uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path.to_owned(),
            }
        });
    (original_method, original_uri)
}

/// Asks whether a request a reverse proxy is about to forward may proceed.
/// The proxy sends headers only: a source that only a POST body names
/// (an SQL query posted as JSON, an import's destination) cannot be seen,
/// and only a token whose grant on that connection is `*` allows it.
#[utoipa::path(
    method(get, post, put, patch, delete, options), path = "/v3/forward-auth", tag = "enforcement",
    params(
        ("X-Original-URI" = Option<String>, Header, description = "The original request's URI (nginx); or X-Forwarded-Uri (Traefik)"),
        ("X-Original-Method" = Option<String>, Header, description = "The original request's method (nginx); or X-Forwarded-Method (Traefik)"),
    ),
    responses(
        (status = 200, description = "The original request may proceed"),
        (status = 401, description = "No usable token; the reason is in X-Latchkey-Reason", body = ErrorBody,
            headers(("X-Latchkey-Reason" = String, description = "token_malformed, token_unknown or token_expired"))),
        (status = 403, description = "The token does not allow the request; the reason is in X-Latchkey-Reason", body = ErrorBody,
            headers(("X-Latchkey-Reason" = String, description = "A decision reason, or unknown_request or missing_parameter"))),
        (status = 503, description = "Storage unavailable: refuse", body = ErrorBody),
    )
)]
pub async fn forward_auth(
    State(services): State<Services>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (original_method, original_uri) = original(&method, &uri, &headers);
    let (path, query) = match original_uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (original_uri.as_str(), None),
    };
    let request = DataRequest {
        method: &original_method,
        path,
        query,
        authorization: header_text(&headers, "authorization"),
        referer: header_text(&headers, "referer"),
        origin: header_text(&headers, "origin"),
        content_type: header_text(&headers, "content-type"),
        body: if source_may_be_in_body(&original_method, path) { Body::Unread } else { Body::Read(b"") },
    };
    let verdict = decide(&services.authorizer, &request).await?;
    if let Verdict::Refused(reason) = &verdict {
        tracing::info!(reason, method = %original_method, "forward-auth refused a request");
    }
    Ok(verdict_response(&verdict))
}
