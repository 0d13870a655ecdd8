//! Enforcement where the data APIs run, over HTTP: the forward-auth
//! endpoint that reverse proxies ask before forwarding (nginx
//! `auth_request`, Caddy `forward_auth`, Traefik ForwardAuth, Envoy
//! `ext_authz`), and the answers the gateway gives when it refuses.
//!
//! The decision itself is `latchkey_app::Enforcer`'s. This module reads
//! what the proxy says about the original request, from exactly one
//! configured header set (a header the proxy does not always overwrite could
//! come from the client), and turns a [`Verdict`] into a response: 200
//! with the bearer's identity, 401 for a token that does not work, 403 for
//! anything else refused, each with the reason in `X-Latchkey-Reason`.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use latchkey_app::{
    Ambiguity, Bearer, BodyPresence, BodyView, DecidingHeaders, Enforcer, RequestHead, Unmappable, Verdict,
};

use crate::Shared;
use crate::error::{ApiError, ErrorBody};
use crate::guard::AuthFailure;

/// The header that carries the reason of a refusal.
pub const REASON_HEADER: HeaderName = HeaderName::from_static("x-latchkey-reason");
/// The org of the token that allowed a request.
pub const ORG_HEADER: HeaderName = HeaderName::from_static("x-latchkey-org");
/// The owner of the token that allowed a request.
pub const USER_HEADER: HeaderName = HeaderName::from_static("x-latchkey-user");
/// The id of the token that allowed a request.
pub const TOKEN_ID_HEADER: HeaderName = HeaderName::from_static("x-latchkey-token-id");

/// Which proxy asks, and so which headers describe the original request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderSet {
    /// nginx `auth_request`: `X-Original-Method`, `X-Original-URI` and
    /// `X-Original-Body`, set by the documented configuration.
    Nginx,
    /// Caddy `forward_auth`: `X-Forwarded-Method` and `X-Forwarded-Uri`,
    /// which Caddy sets, and `X-Original-Body` from the configuration.
    Caddy,
    /// Traefik ForwardAuth: `X-Forwarded-Method` and `X-Forwarded-Uri`.
    Traefik,
    /// Envoy `ext_authz` with `path_prefix`: the check's own method, and the
    /// original path and query after `/v3/forward-auth`.
    Envoy,
}

impl FromStr for HeaderSet {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "nginx" => Ok(HeaderSet::Nginx),
            "caddy" => Ok(HeaderSet::Caddy),
            "traefik" => Ok(HeaderSet::Traefik),
            "envoy" => Ok(HeaderSet::Envoy),
            _ => Err(format!("{name:?} is not one of nginx, caddy, traefik, envoy")),
        }
    }
}

/// Forward-auth's configuration: whom it serves and whom it listens to.
pub struct ForwardAuth {
    /// Decides for one org.
    pub enforcer: Arc<Enforcer>,
    /// The one header set read.
    pub headers: HeaderSet,
}

/// The original request, as the proxy describes it.
struct Original {
    method: String,
    target: String,
    body: BodyPresence,
}

/// Why the proxy's description cannot be used: the proxy is not
/// configured as documented, so nothing it forwards can be decided.
#[derive(Debug)]
struct Misconfigured(&'static str);

/// Exactly one copy of header `name`.
fn one<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, Misconfigured> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().map_err(|_| Misconfigured(name)),
        _ => Err(Misconfigured(name)),
    }
}

/// `X-Original-Body`, written by the proxy as `LENGTH/TRANSFER-ENCODING`
/// from the original request's `Content-Length` and `Transfer-Encoding`
/// (`/` for a request without a body). Absent, nothing is known.
fn body_presence(headers: &HeaderMap) -> Result<BodyPresence, Misconfigured> {
    let mut values = headers.get_all("x-original-body").iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Ok(BodyPresence::Unknown),
        (Some(value), None) => value.to_str().map_err(|_| Misconfigured("X-Original-Body"))?,
        (Some(_), Some(_)) => return Err(Misconfigured("X-Original-Body")),
    };
    let (length, encoding) = value.split_once('/').ok_or(Misconfigured("X-Original-Body"))?;
    let (length, encoding) = (length.trim(), encoding.trim());
    Ok(if encoding.is_empty() && (length.is_empty() || length == "0") {
        BodyPresence::Absent
    } else {
        BodyPresence::Present
    })
}

impl HeaderSet {
    fn original(self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Original, Misconfigured> {
        match self {
            HeaderSet::Nginx => Ok(Original {
                method: one(headers, "x-original-method")?.to_owned(),
                target: one(headers, "x-original-uri")?.to_owned(),
                body: body_presence(headers)?,
            }),
            HeaderSet::Caddy => Ok(Original {
                method: one(headers, "x-forwarded-method")?.to_owned(),
                target: one(headers, "x-forwarded-uri")?.to_owned(),
                // Caddy can report Content-Length but not chunked bodies;
                // the documented configuration stops bodies on GET before
                // they reach the data API, and a POST without a length may
                // still have a body.
                body: match body_presence(headers)? {
                    BodyPresence::Absent if method_has_body(one(headers, "x-forwarded-method")?) => {
                        BodyPresence::Unknown
                    }
                    other => other,
                },
            }),
            // Traefik and Envoy are documented but not tested here; they
            // cannot say whether a request has a body.
            HeaderSet::Traefik => Ok(Original {
                method: one(headers, "x-forwarded-method")?.to_owned(),
                target: one(headers, "x-forwarded-uri")?.to_owned(),
                body: BodyPresence::Unknown,
            }),
            HeaderSet::Envoy => {
                let path = uri.path().strip_prefix("/v3/forward-auth").unwrap_or("");
                let target = match uri.query() {
                    Some(query) => format!("{path}?{query}"),
                    None => path.to_owned(),
                };
                Ok(Original { method: method.as_str().to_owned(), target, body: BodyPresence::Unknown })
            }
        }
    }
}

fn method_has_body(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
}

/// Every copy of the headers that decide a request.
#[must_use]
pub fn deciding_headers(headers: &HeaderMap) -> DecidingHeaders<'_> {
    let all = |name: HeaderName| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    DecidingHeaders {
        authorization: all(header::AUTHORIZATION),
        content_type: all(header::CONTENT_TYPE),
        referer: all(header::REFERER),
        origin: all(header::ORIGIN),
        method_override: ["x-http-method-override", "x-http-method", "x-method-override"]
            .iter()
            .any(|name| headers.contains_key(*name)),
    }
}

/// Whether a header name is one of latchkey's identity headers, in any
/// case and with `_` for `-` (PHP and CGI read `X_Latchkey_Org` as
/// `X-Latchkey-Org`).
#[must_use]
pub fn is_identity_header(name: &str) -> bool {
    let prefix = "x-latchkey-";
    name.len() > prefix.len()
        && name.as_bytes()[..prefix.len()]
            .iter()
            .zip(prefix.as_bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == *b || (*a == b'_' && *b == b'-'))
}

fn refusal_message(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Allowed(_) => String::new(),
        Verdict::Denied(reason) => reason.message().to_owned(),
        Verdict::Unmappable(Unmappable::UnknownRequest) => "not a data API request that latchkey knows".into(),
        Verdict::Unmappable(Unmappable::MissingParameter(name)) => {
            format!("the request does not name its source (no {name} parameter)")
        }
        Verdict::Unmappable(Unmappable::Ambiguous(ambiguity)) => {
            format!("the request could be read in more than one way: {ambiguity}")
        }
    }
}

/// The answer for a verdict: 200 with the bearer's identity headers, or
/// the error body with the reason header (and `WWW-Authenticate` for 401).
#[must_use]
pub fn verdict_response(verdict: &Verdict) -> Response {
    if let Verdict::Allowed(bearer) = verdict {
        let mut response = StatusCode::OK.into_response();
        add_identity(response.headers_mut(), bearer);
        return response;
    }
    let credential = matches!(verdict, Verdict::Denied(reason) if reason.is_credential_failure());
    let status = if credential { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
    let code = verdict.code();
    let body = ErrorBody { error: refusal_message(verdict), code: code.to_owned(), details: None };
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(REASON_HEADER, HeaderValue::from_static(code));
    if credential {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        // Counted by the limiter of failed authentication.
        response.extensions_mut().insert(AuthFailure);
    }
    response
}

/// Adds the identity headers of an allowed request.
pub fn add_identity(headers: &mut HeaderMap, bearer: &Bearer) {
    for (name, value) in [
        (ORG_HEADER, bearer.org.as_str()),
        (USER_HEADER, bearer.user.as_str()),
        (TOKEN_ID_HEADER, bearer.token_id.as_str()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
}

fn forward_auth_off() -> Response {
    ApiError::NotEnabled(
        "forward-auth is off: start latchkey serve with --org ORG and --forward-auth-headers nginx|caddy|traefik|envoy",
    )
    .into_response()
}

/// Asks whether a request a reverse proxy is about to forward may proceed.
/// The proxy sends headers only: a source that a body may name (an SQL
/// query posted as JSON, an import's destination) cannot be seen, and only
/// a token whose grant on that connection is `*` allows it.
#[utoipa::path(
    method(get, post, put, patch, delete, options), path = "/v3/forward-auth", tag = "enforcement",
    params(
        ("X-Original-URI" = Option<String>, Header, description = "nginx: the original request's URI"),
        ("X-Original-Method" = Option<String>, Header, description = "nginx: the original request's method"),
        ("X-Original-Body" = Option<String>, Header, description = "nginx, Caddy: the original Content-Length and Transfer-Encoding, as LENGTH/ENCODING"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "Caddy, Traefik: the original request's URI"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "Caddy, Traefik: the original request's method"),
    ),
    responses(
        (status = 200, description = "The original request may proceed; the bearer is in X-Latchkey-Org, X-Latchkey-User and X-Latchkey-Token-Id"),
        (status = 401, description = "No usable token; the reason is in X-Latchkey-Reason", body = ErrorBody,
            headers(("X-Latchkey-Reason" = String, description = "token_malformed, token_unknown or token_expired"))),
        (status = 403, description = "Refused; the reason is in X-Latchkey-Reason", body = ErrorBody,
            headers(("X-Latchkey-Reason" = String, description = "A decision reason, unknown_request, missing_parameter, ambiguous_request or rate_limited"))),
        (status = 400, description = "The proxy does not send its header set (`--forward-auth-headers`) exactly once", body = ErrorBody),
        (status = 404, description = "Forward-auth is off: the server was started without --org and --forward-auth-headers", body = ErrorBody),
        (status = 503, description = "Storage unavailable: refuse", body = ErrorBody),
    )
)]
pub async fn forward_auth(
    State(services): State<Shared>,
    client: Option<axum::Extension<crate::guard::ClientIp>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // The client as the guard read it: the proxy's X-Forwarded-For, when
    // the proxy is trusted; unknown (so refused by tokens restricted to
    // addresses) without it.
    let client_ip = client.and_then(|axum::Extension(crate::guard::ClientIp(ip))| ip);
    let Some(forward_auth) = services.forward_auth.as_deref() else {
        return Ok(forward_auth_off());
    };
    let original = forward_auth.headers.original(&method, &uri, &headers).map_err(|Misconfigured(name)| {
        tracing::warn!(header = name, "the proxy in front does not send its header set as configured");
        ApiError::InvalidRequest(format!(
            "the proxy must send exactly one {name} header (see docs/deploy.md for its configuration)"
        ))
    })?;
    // The proxy copies the client's headers to this request: one of
    // latchkey's own would reach the data API too, unless the proxy strips
    // it, and then only some readers would see it.
    let parsed = if headers.keys().any(|name| is_identity_header(name.as_str())) {
        Err(Ambiguity::IdentityHeader)
    } else {
        RequestHead::parse(&original.method, &original.target, &deciding_headers(&headers), original.body)
            .map(|head| head.from_client(client_ip))
    };
    let verdict = match parsed {
        Ok(head) => forward_auth.enforcer.check(head, BodyView::Unseen).await?,
        Err(ambiguity) => {
            let verdict = Verdict::Unmappable(Unmappable::Ambiguous(ambiguity));
            forward_auth.enforcer.refused(&verdict);
            verdict
        }
    };
    if !matches!(verdict, Verdict::Allowed(_)) {
        tracing::info!(reason = verdict.code(), method = %original.method, "forward-auth refused a request");
    }
    Ok(verdict_response(&verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_in_every_spelling() {
        for name in ["x-latchkey-org", "X-Latchkey-User", "X_Latchkey_Token-Id", "x_latchkey_anything"] {
            assert!(is_identity_header(name), "{name}");
        }
        for name in ["x-latchkey-", "x-latchkeyorg", "x-original-uri", "latchkey-org"] {
            assert!(!is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn the_body_as_the_proxy_reports_it() {
        let with = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert("x-original-body", HeaderValue::from_str(value).unwrap());
            }
            body_presence(&headers)
        };
        assert_eq!(with(None).unwrap(), BodyPresence::Unknown);
        assert_eq!(with(Some("/")).unwrap(), BodyPresence::Absent);
        assert_eq!(with(Some("0/")).unwrap(), BodyPresence::Absent);
        assert_eq!(with(Some("12/")).unwrap(), BodyPresence::Present);
        assert_eq!(with(Some("/chunked")).unwrap(), BodyPresence::Present);
        assert!(with(Some("12")).is_err());
    }
}
