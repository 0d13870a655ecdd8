//! The handlers of SPEC §7.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_app::{Decision, NewToken, TokenPatch, TokenRef, TokenView};
use latchkey_domain::validation::TokenDraft;
use latchkey_domain::{AccessRequest, Api, DenyReason, SourceType, Target, Timestamp, TokenId};
use latchkey_ports::Cursor;

use crate::Services;
use crate::auth::Caller;
use crate::body::JsonBody;
use crate::dto::{
    AuthorizeRequest, AuthorizeResponse, ConnectionBody, ConnectionList, CreateTokenRequest, Status, TokenBody,
    TokenPage, UpdateTokenRequest,
};
use crate::error::{ApiError, Detail, ErrorBody, InputIssue};

/// The page size when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest page.
pub const MAX_LIMIT: usize = 500;

/// A token response: the body, with its version as the `ETag`.
fn token_response(status: StatusCode, view: TokenView) -> Response {
    let etag = format!("\"{}\"", view.token.version);
    let mut response = (status, Json(TokenBody::from(view))).into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The version an `If-Match` header asks for: `None` without the header or
/// with `*`. A header that names no version this server could have issued
/// asks for version 0, which no token has (versions start at 1): it fails
/// as a precondition, after the request itself was checked.
/// The version `If-Match` asks for: none when it is absent, empty or `*`, the
/// version of an ETag this server gave (`"7"`). Anything else is not a
/// precondition that could ever hold, and is refused as malformed rather
/// than answered 412 as if it were merely stale.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let malformed = || ApiError::InvalidRequest("If-Match must be * or an ETag this server gave, such as \"3\"".into());
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().map_err(|_| malformed())?.trim();
    // An empty field is no field (RFC 9110 §5.6.1: empty list elements are
    // ignored, and here there is nothing else).
    if text == "*" || text.is_empty() {
        return Ok(None);
    }
    let version = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).and_then(|t| t.parse::<u64>().ok());
    version
        .map(Some)
        .ok_or_else(|| ApiError::InvalidRequest("If-Match must be * or an ETag this server gave, such as \"3\"".into()))
}

fn encode_cursor(cursor: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", cursor.created_at.unix_micros(), cursor.id))
}

fn decode_cursor(text: &str) -> Option<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (micros, id) = text.split_once(':')?;
    Some(Cursor { created_at: Timestamp::from_unix_micros(micros.parse().ok()?).ok()?, id: TokenId::parse(id).ok()? })
}

/// Creates a token for the caller.
#[utoipa::path(
    post, path = "/v3/tokens", tag = "tokens",
    request_body = CreateTokenRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = TokenBody,
            headers(("ETag" = String, description = "The token's version, for If-Match"))),
        (status = 400, description = "Invalid JSON or fields (`invalid_request`, `validation_failed`)", body = ErrorBody),
        (status = 409, description = "`name_taken`, or `too_many_tokens`", body = ErrorBody),
    )
)]
pub async fn create_token(
    State(services): State<Services>,
    Caller(caller): Caller,
    body: JsonBody<CreateTokenRequest>,
) -> Result<Response, ApiError> {
    let (request, unknown_fields) = body.with_unknown();
    let new = NewToken {
        draft: TokenDraft {
            name: request.name,
            allowed_apis: request.allowed_apis,
            grants: request.grants.into_iter().map(Into::into).collect(),
            referers: request.referers.unwrap_or_default(),
            unknown_fields,
        },
        expiration_date: request.expiration_date,
    };
    let view = services.tokens.create(&caller, new).await?;
    let location = format!("/v3/tokens/{}", view.token.id);
    let mut response = token_response(StatusCode::CREATED, view);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Lists the caller's tokens, newest first.
#[utoipa::path(
    get, path = "/v3/tokens", tag = "tokens",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1–500 (default 50)"),
        ("cursor" = Option<String>, Query, min_length = 1, pattern = "^[A-Za-z0-9_-]+$", description = "`next_cursor` of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of tokens", body = TokenPage),
        (status = 400, description = "Bad `limit` or `cursor`", body = ErrorBody),
    )
)]
pub async fn list_tokens(
    State(services): State<Services>,
    Caller(caller): Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<TokenPage>, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    let mut problems = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => problems.push(Detail::new(
                    "limit",
                    InputIssue::InvalidValue,
                    "limit must be a whole number from 1 to 500",
                )),
            },
            "cursor" => match decode_cursor(&value) {
                Some(c) => cursor = Some(c),
                None => {
                    problems.push(Detail::new("cursor", InputIssue::InvalidValue, "not a cursor this server issued"))
                }
            },
            _ => {}
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let (views, next) = services.tokens.list(&caller, cursor, limit).await?;
    Ok(Json(TokenPage {
        data: views.into_iter().map(TokenBody::from).collect(),
        next_cursor: next.as_ref().map(encode_cursor),
    }))
}

/// One of the caller's tokens, by id or by value.
#[utoipa::path(
    get, path = "/v3/tokens/{token}", tag = "tokens",
    params(("token" = String, Path, description = "The token's id or its value")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token", body = TokenBody,
            headers(("ETag" = String, description = "The token's version, for If-Match"))),
        (status = 404, description = "No such token of the caller's (another user's token is not found either)", body = ErrorBody),
    )
)]
pub async fn get_token(
    State(services): State<Services>,
    Caller(caller): Caller,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let view = services.tokens.get(&caller, &TokenRef::parse(&token)).await?;
    Ok(token_response(StatusCode::OK, view))
}

/// Changes the caller's token; each field given replaces the whole field.
#[utoipa::path(
    patch, path = "/v3/tokens/{token}", tag = "tokens",
    params(
        ("token" = String, Path, description = "The token's id or its value"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|"[0-9]+")?$"#, description = "Apply only if the token's ETag still matches (`*`: whatever its version)"),
    ),
    request_body = UpdateTokenRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated token", body = TokenBody,
            headers(("ETag" = String, description = "The token's new version"))),
        (status = 400, description = "`invalid_request`, `validation_failed` or `expiration_immutable`", body = ErrorBody),
        (status = 404, description = "No such token of the caller's", body = ErrorBody),
        (status = 409, description = "`name_taken`", body = ErrorBody),
        (status = 412, description = "`If-Match` does not match the current version", body = ErrorBody),
    )
)]
pub async fn update_token(
    State(services): State<Services>,
    Caller(caller): Caller,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: JsonBody<UpdateTokenRequest>,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let (request, unknown_fields) = body.with_unknown();
    let patch = TokenPatch {
        name: request.name,
        allowed_apis: request.allowed_apis,
        grants: request.grants.map(|grants| grants.into_iter().map(Into::into).collect()),
        referers: request.referers,
        names_expiration: request.expiration_date.is_some(),
        unknown_fields,
    };
    let view = services.tokens.update(&caller, &TokenRef::parse(&token), patch, expected).await?;
    Ok(token_response(StatusCode::OK, view))
}

/// Deletes the caller's token; it stops working at once.
#[utoipa::path(
    delete, path = "/v3/tokens/{token}", tag = "tokens",
    params(
        ("token" = String, Path, description = "The token's id or its value"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|"[0-9]+")?$"#, description = "Delete only if the token's ETag still matches (`*`: whatever its version)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A malformed If-Match (`invalid_request`)", body = ErrorBody),
        (status = 404, description = "No such token of the caller's", body = ErrorBody),
        (status = 412, description = "`If-Match` does not match the current version", body = ErrorBody),
    )
)]
pub async fn delete_token(
    State(services): State<Services>,
    Caller(caller): Caller,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let expected = if_match(&headers)?;
    services.tokens.delete(&caller, &TokenRef::parse(&token), expected).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Decides whether a request to a data API, carrying a token, may proceed.
/// A refusal is a 200 answer with `allowed: false` and the reason.
#[utoipa::path(
    post, path = "/v3/authorize", tag = "authorize",
    request_body = AuthorizeRequest,
    responses(
        (status = 200, description = "The decision", body = AuthorizeResponse),
        (status = 400, description = "A malformed request (unknown API, missing source for a data API…)", body = ErrorBody),
        (status = 429, description = "Too many unknown or malformed token values from this address (`rate_limited`): treat as refused; see Retry-After",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Storage unavailable: treat as refused", body = ErrorBody),
    )
)]
pub async fn authorize(
    State(services): State<Services>,
    body: JsonBody<AuthorizeRequest>,
) -> Result<Response, ApiError> {
    let request = body.strict()?;
    let mut problems = Vec::new();
    let api = request
        .api
        .parse::<Api>()
        .map_err(|e| problems.push(Detail::new("api", InputIssue::InvalidValue, e.to_string())))
        .ok();
    let source_type = match request.source_type.as_deref().map(str::parse::<SourceType>) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            problems.push(Detail::new("source_type", InputIssue::InvalidValue, e.to_string()));
            None
        }
        None => None,
    };
    let target = match (request.connection_name.as_deref(), source_type, request.source.as_deref()) {
        (Some(connection), Some(source_type), Some(source)) => Some(Target { connection, source_type, source }),
        _ => None,
    };
    let Some(api) = api else {
        return Err(ApiError::Validation(problems));
    };
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let access =
        AccessRequest::new(api, target, request.referer.as_deref(), request.origin.as_deref()).map_err(|e| {
            let missing = [
                ("connection_name", request.connection_name.is_none()),
                ("source_type", request.source_type.is_none()),
                ("source", request.source.is_none()),
            ];
            ApiError::Validation(
                missing
                    .into_iter()
                    .filter(|(_, absent)| *absent)
                    .map(|(field, _)| Detail::new(field, InputIssue::Required, e.to_string()))
                    .collect(),
            )
        })?;
    let decision = services.authorizer.authorize(&request.token, &access).await?;
    let mut response = Json(match decision {
        Decision::Allowed => AuthorizeResponse { allowed: true, reason: None },
        Decision::Denied(reason) => AuthorizeResponse { allowed: false, reason: Some(reason.as_str().to_owned()) },
    })
    .into_response();
    // A value that is not a token, or no token at all, may be a guess: the
    // rate limiter counts it. (An expired token or a refused source is not.)
    if matches!(decision, Decision::Denied(DenyReason::TokenMalformed | DenyReason::TokenUnknown)) {
        response.extensions_mut().insert(crate::guard::AuthFailure);
    }
    Ok(response)
}

/// The connections of the caller's org.
#[utoipa::path(
    get, path = "/v3/connections", tag = "connections",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The connections", body = ConnectionList),
    )
)]
pub async fn connections(
    State(services): State<Services>,
    Caller(caller): Caller,
) -> Result<Json<ConnectionList>, ApiError> {
    let connections = services.connections.list(&caller).await?;
    Ok(Json(ConnectionList {
        data: connections
            .into_iter()
            .map(|c| ConnectionBody { name: c.name.to_string(), provider: c.provider.as_str().to_owned() })
            .collect(),
    }))
}

/// The Prometheus metrics (SPEC §14); `docs/metrics.md` describes each
/// series. No token, key or source text is in any label.
#[utoipa::path(
    get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Every series, in the OpenMetrics text format",
        content_type = "application/openmetrics-text", body = String)),
)]
pub async fn metrics(State(services): State<Services>) -> Response {
    metrics_text(services.authorizer.metrics())
}

/// The metrics as an answer.
pub(crate) fn metrics_text(metrics: &latchkey_app::Metrics) -> Response {
    ([(header::CONTENT_TYPE, latchkey_metrics::CONTENT_TYPE)], metrics.render()).into_response()
}

/// Answers while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "Alive", body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok".into() })
}

/// Answers when storage answers.
#[utoipa::path(
    get, path = "/readyz", tag = "system",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "Storage does not answer", body = ErrorBody),
    )
)]
pub async fn readyz(State(services): State<Services>) -> Result<Json<Status>, ApiError> {
    services.readiness.check().await?;
    Ok(Json(Status { status: "ok".into() }))
}
