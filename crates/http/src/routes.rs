//! The handlers of SPEC §7.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_app::{Decision, NewToken, TokenPatch, TokenRef, TokenView, Use};
use latchkey_domain::audit::{AuditEvent, AuditValue};
use latchkey_domain::org_policy::OrgPolicy;
use latchkey_domain::token::{GracePeriod, MAX_GRACE_SECONDS};
use latchkey_domain::validation::TokenDraft;
use latchkey_domain::{
    AccessRequest, Api, ApiSet, AuditEventId, DenyReason, SourceType, Target, Timestamp, TokenId, UserName,
};
use latchkey_ports::{AuditCursor, Cursor};

use crate::Shared;
use crate::auth::{Caller, Identified};
use crate::body::JsonBody;
use crate::dto::{
    ActorBody, AuditEventBody, AuditPageBody, AuthorizeRequest, AuthorizeResponse, ConnectionBody, ConnectionList,
    CreateTokenRequest, OrgTokenBody, OrgTokenPage, PolicyBody, RollRequest, Status, TokenBody, TokenPage,
    UpdateTokenRequest,
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
    let (at, id) = decode_position(text)?;
    Some(Cursor { created_at: at, id: TokenId::parse(&id).ok()? })
}

/// A cursor's time and id, as [`encode_cursor`] and [`encode_audit_cursor`]
/// write them.
fn decode_position(text: &str) -> Option<(Timestamp, String)> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (micros, id) = text.split_once(':')?;
    Some((Timestamp::from_unix_micros(micros.parse().ok()?).ok()?, id.to_owned()))
}

fn encode_audit_cursor(cursor: &AuditCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", cursor.at.unix_micros(), cursor.id))
}

fn decode_audit_cursor(text: &str) -> Option<AuditCursor> {
    let (at, id) = decode_position(text)?;
    Some(AuditCursor { at, id: AuditEventId::parse(&id).ok()? })
}

/// What a list's query string asks for.
struct Paging<C> {
    limit: usize,
    cursor: Option<C>,
    /// The other parameters read, by name.
    extra: Vec<(String, String)>,
}

impl<C> Paging<C> {
    /// The value of the parameter `name`, when given.
    fn extra(&self, name: &str) -> Option<&str> {
        self.extra.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// The paging parameters of a list, and the others it reads: `limit`
/// (1–500, default 50), `cursor` (decoded by `cursor`), and each name of
/// `extra` with its value. Every problem is reported at once.
fn paging<C>(query: Option<&str>, cursor: impl Fn(&str) -> Option<C>, extra: &[&str]) -> Result<Paging<C>, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let mut position = None;
    let mut others = Vec::new();
    let mut problems = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => limit = n,
                _ => problems.push(Detail::new(
                    "limit",
                    InputIssue::InvalidValue,
                    "limit must be a whole number from 1 to 500",
                )),
            },
            "cursor" => match cursor(&value) {
                Some(c) => position = Some(c),
                None => {
                    problems.push(Detail::new("cursor", InputIssue::InvalidValue, "not a cursor this server issued"))
                }
            },
            name if extra.contains(&name) => others.push((key.into_owned(), value.into_owned())),
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(Paging { limit, cursor: position, extra: others })
    } else {
        Err(ApiError::Validation(problems))
    }
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
    State(services): State<Shared>,
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
            allowed_ips: request.allowed_ips.unwrap_or_default(),
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
    State(services): State<Shared>,
    Caller(caller): Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<TokenPage>, ApiError> {
    let paging = paging(query.as_deref(), decode_cursor, &[])?;
    let (views, next) = services.tokens.list(&caller, paging.cursor, paging.limit).await?;
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
    State(services): State<Shared>,
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
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|"[0-9]{1,19}")?$"#, description = "Apply only if the token's ETag still matches (`*`: whatever its version)"),
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
    State(services): State<Shared>,
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
        allowed_ips: request.allowed_ips,
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
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|"[0-9]{1,19}")?$"#, description = "Delete only if the token's ETag still matches (`*`: whatever its version)"),
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
    State(services): State<Shared>,
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
pub async fn authorize(State(services): State<Shared>, body: JsonBody<AuthorizeRequest>) -> Result<Response, ApiError> {
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
    let client_ip = match request.client_ip.as_deref().map(str::parse::<std::net::IpAddr>) {
        Some(Ok(address)) => Some(address),
        Some(Err(_)) => {
            problems.push(Detail::new(
                "client_ip",
                InputIssue::InvalidValue,
                "client_ip must be an IPv4 or IPv6 address, such as 203.0.113.7 or 2001:db8::7",
            ));
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
    let access = AccessRequest::new(api, target, request.referer.as_deref(), request.origin.as_deref())
        .map_err(|e| {
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
        })?
        .from_client(client_ip);
    let usage = if request.dry_run == Some(true) { Use::DryRun } else { Use::Record };
    let decision = services.authorizer.authorize(&request.token, &access, usage).await?;
    let mut response = decision_response(&decision);
    // A value that is not a token, or no token at all, may be a guess: the
    // rate limiter counts it. (An expired token or a refused source is not.)
    if matches!(decision, Decision::Denied(DenyReason::TokenMalformed | DenyReason::TokenUnknown)) {
        response.extensions_mut().insert(crate::guard::AuthFailure);
    }
    Ok(response)
}

/// The body of an authorize answer: [`AuthorizeResponse`] as serde would
/// write it (a test holds the two together), without serializing on the
/// hot path: the allowed answer is a constant, and a refusal one `format!`.
fn decision_body(decision: &Decision) -> axum::body::Bytes {
    match decision {
        Decision::Allowed => axum::body::Bytes::from_static(br#"{"allowed":true,"reason":null}"#),
        // Reason codes are fixed snake_case words: nothing to escape.
        Decision::Denied(reason) => format!(r#"{{"allowed":false,"reason":"{}"}}"#, reason.as_str()).into(),
    }
}

fn decision_response(decision: &Decision) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], decision_body(decision)).into_response()
}

/// Gives the caller's token a new value. The previous value keeps working
/// for `grace_seconds`, then is unknown everywhere; a previous value from an
/// earlier roll stops at once. The answer holds the new value, which is
/// also the one shown from now on.
#[utoipa::path(
    post, path = "/v3/tokens/{token}/roll", tag = "tokens",
    params(
        ("token" = String, Path, description = "The token's id or its value (the previous value works during its grace period)"),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|"[0-9]{1,19}")?$"#, description = "Roll only if the token's ETag still matches"),
    ),
    request_body(content = Option<RollRequest>, description = "Optional: an empty body is a roll without grace period"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token with its new value", body = TokenBody,
            headers(("ETag" = String, description = "The token's new version"))),
        (status = 400, description = "`invalid_request`, or `validation_failed`: a bad `grace_seconds`, or the token breaks the org's policy (`policy_violation`)", body = ErrorBody),
        (status = 404, description = "No such token of the caller's", body = ErrorBody),
        (status = 412, description = "`If-Match` does not match the current version", body = ErrorBody),
    )
)]
pub async fn roll_token(
    State(services): State<Shared>,
    Caller(caller): Caller,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    // A roll needs no parameter, so an empty body is one with defaults.
    let request = if body.trim_ascii().is_empty() {
        RollRequest::default()
    } else {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !crate::body::is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType);
        }
        crate::body::decode::<RollRequest>(&body)?.strict()?
    };
    let seconds = request.grace_seconds.unwrap_or(0);
    let grace = GracePeriod::from_seconds(seconds).ok_or_else(|| {
        ApiError::Validation(vec![Detail::new(
            "grace_seconds",
            InputIssue::InvalidValue,
            format!("grace_seconds must be a whole number from 0 to {MAX_GRACE_SECONDS} (a week)"),
        )])
    })?;
    let view = services.tokens.roll(&caller, &TokenRef::parse(&token), grace, expected).await?;
    Ok(token_response(StatusCode::OK, view))
}

/// Every token of the caller's org, for an org admin: with its owner,
/// never with its value.
#[utoipa::path(
    get, path = "/v3/org/tokens", tag = "org",
    params(
        ("owner" = Option<String>, Query, description = "Only this user's tokens"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1–500 (default 50)"),
        ("cursor" = Option<String>, Query, min_length = 1, pattern = "^[A-Za-z0-9_-]+$", description = "`next_cursor` of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the org's tokens", body = OrgTokenPage),
        (status = 400, description = "Bad `limit`, `cursor` or `owner`", body = ErrorBody),
        (status = 403, description = "The caller is not an org admin (`forbidden`)", body = ErrorBody),
    )
)]
pub async fn list_org_tokens(
    State(services): State<Shared>,
    Identified(caller): Identified,
    RawQuery(query): RawQuery,
) -> Result<Json<OrgTokenPage>, ApiError> {
    let paging = paging(query.as_deref(), decode_cursor, &["owner"])?;
    let owner = match paging.extra("owner") {
        None => None,
        Some(name) => Some(UserName::new(name).map_err(|e| {
            ApiError::Validation(vec![Detail::new("owner", InputIssue::InvalidValue, format!("the owner {e}"))])
        })?),
    };
    let (views, next) = services.tokens.list_org(&caller, owner, paging.cursor, paging.limit).await?;
    Ok(Json(OrgTokenPage {
        data: views
            .into_iter()
            .map(|view| OrgTokenBody { owner: view.token.owner.user.to_string(), token: TokenBody::from(view) })
            .collect(),
        next_cursor: next.as_ref().map(encode_cursor),
    }))
}

/// Revokes any token of the caller's org, for an org admin: it stops
/// working at once, and its owner sees a `token.revoked` event.
#[utoipa::path(
    delete, path = "/v3/org/tokens/{id}", tag = "org",
    params(("id" = String, Path, description = "The token's id (12 letters and digits; anything else is not found)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "The caller is not an org admin (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such token in the caller's org", body = ErrorBody),
    )
)]
pub async fn revoke_org_token(
    State(services): State<Shared>,
    Identified(caller): Identified,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Whether the caller may revoke is told before whether the token
    // exists, so that members learn nothing of other members' tokens.
    if !caller.role.is_admin() {
        return Err(latchkey_app::TokenError::Forbidden.into());
    }
    let id = TokenId::parse(&id).map_err(|_| ApiError::Token(latchkey_app::TokenError::NotFound))?;
    services.tokens.revoke(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn audit_body(event: AuditEvent) -> AuditEventBody {
    AuditEventBody {
        id: event.id.to_string(),
        at: event.at.to_rfc3339(),
        actor: ActorBody { user: event.actor.user.to_string(), org: event.actor.org.to_string() },
        action: event.action.as_str().to_owned(),
        token_id: event.token.as_ref().map(|t| t.id.to_string()),
        token_name: event.token.as_ref().map(|t| t.name.to_string()),
        changes: serde_json::Value::Object(
            event
                .changes
                .iter()
                .map(|(field, change)| {
                    (field.clone(), serde_json::json!({"from": wire(&change.from), "to": wire(&change.to)}))
                })
                .collect(),
        ),
    }
}

/// A value of an audit event on the wire.
fn wire(value: &AuditValue) -> serde_json::Value {
    match value {
        AuditValue::Null => serde_json::Value::Null,
        AuditValue::Bool(flag) => (*flag).into(),
        AuditValue::Int(number) => (*number).into(),
        AuditValue::Text(text) => text.as_str().into(),
        AuditValue::List(items) => items.iter().map(wire).collect(),
        AuditValue::Map(fields) => {
            serde_json::Value::Object(fields.iter().map(|(name, value)| (name.clone(), wire(value))).collect())
        }
    }
}

/// The audit log, newest first: the changes to the caller's own tokens
/// (an admin's revocation included), or for an org admin every change in
/// the org, policy changes included.
#[utoipa::path(
    get, path = "/v3/audit", tag = "org",
    params(
        ("token" = Option<String>, Query, pattern = "^[A-Za-z0-9]{12}$", description = "Only the events of this token (its id)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Page size, 1–500 (default 50)"),
        ("cursor" = Option<String>, Query, min_length = 1, pattern = "^[A-Za-z0-9_-]+$", description = "`next_cursor` of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of events", body = AuditPageBody),
        (status = 400, description = "Bad `limit`, `cursor` or `token`", body = ErrorBody),
    )
)]
pub async fn audit(
    State(services): State<Shared>,
    Identified(caller): Identified,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditPageBody>, ApiError> {
    let paging = paging(query.as_deref(), decode_audit_cursor, &["token"])?;
    let token = match paging.extra("token") {
        None => None,
        Some(id) => Some(TokenId::parse(id).map_err(|_| {
            ApiError::Validation(vec![Detail::new("token", InputIssue::InvalidValue, "token must be a token id")])
        })?),
    };
    let page = services.org.events(&caller, token, paging.cursor, paging.limit).await?;
    Ok(Json(AuditPageBody {
        data: page.events.into_iter().map(audit_body).collect(),
        next_cursor: page.next.as_ref().map(encode_audit_cursor),
    }))
}

fn policy_body(policy: &OrgPolicy) -> PolicyBody {
    PolicyBody {
        max_lifetime_days: Some(policy.max_lifetime_days()),
        require_referers: policy.require_referers(),
        allowed_apis: Some(policy.allowed_apis().map(|apis| apis.iter().map(|a| a.as_str().to_owned()).collect())),
    }
}

/// The org's token policy: every member may read it.
#[utoipa::path(
    get, path = "/v3/org/policy", tag = "org",
    security(("bearer" = [])),
    responses((status = 200, description = "The policy", body = PolicyBody)),
)]
pub async fn get_policy(
    State(services): State<Shared>,
    Identified(caller): Identified,
) -> Result<Json<PolicyBody>, ApiError> {
    Ok(Json(policy_body(&services.org.policy(&caller).await?)))
}

/// Replaces the org's token policy, for an org admin. Every later create,
/// update and roll must meet it; tokens made before keep working and show
/// a `policy_violation` warning.
#[utoipa::path(
    put, path = "/v3/org/policy", tag = "org",
    request_body = PolicyBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new policy", body = PolicyBody),
        (status = 400, description = "`invalid_request` or `validation_failed`", body = ErrorBody),
        (status = 403, description = "The caller is not an org admin (`forbidden`)", body = ErrorBody),
    )
)]
pub async fn put_policy(
    State(services): State<Shared>,
    Identified(caller): Identified,
    body: JsonBody<PolicyBody>,
) -> Result<Json<PolicyBody>, ApiError> {
    if !caller.role.is_admin() {
        return Err(latchkey_app::TokenError::Forbidden.into());
    }
    let request = body.strict()?;
    let mut problems = Vec::new();
    let (Some(days), Some(apis)) = (request.max_lifetime_days, request.allowed_apis) else {
        return Err(ApiError::Validation(vec![Detail::new(
            "max_lifetime_days",
            InputIssue::Required,
            "max_lifetime_days and allowed_apis are required (null for no bound)",
        )]));
    };
    let apis = match apis {
        None => None,
        Some(names) => {
            let mut set = ApiSet::empty();
            for (index, name) in names.iter().enumerate() {
                match name.parse::<Api>() {
                    Ok(api) => set.insert(api),
                    Err(e) => problems.push(Detail::new(
                        format!("allowed_apis[{index}]"),
                        InputIssue::InvalidValue,
                        format!("{name:?}: {e}"),
                    )),
                }
            }
            Some(set)
        }
    };
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let policy = OrgPolicy::new(days, request.require_referers, apis).map_err(|e| {
        let field = match e {
            latchkey_domain::org_policy::OrgPolicyError::LifetimeOutOfRange => "max_lifetime_days",
            latchkey_domain::org_policy::OrgPolicyError::NoApis => "allowed_apis",
        };
        ApiError::Validation(vec![Detail::new(field, InputIssue::InvalidValue, e.to_string())])
    })?;
    Ok(Json(policy_body(&services.org.replace_policy(&caller, policy).await?)))
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
    State(services): State<Shared>,
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
pub async fn metrics(State(services): State<Shared>) -> Response {
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
pub async fn readyz(State(services): State<Shared>) -> Result<Json<Status>, ApiError> {
    services.readiness.check().await?;
    Ok(Json(Status { status: "ok".into() }))
}

#[cfg(test)]
mod tests {
    use latchkey_app::Decision;
    use latchkey_domain::DenyReason;

    use super::decision_body;
    use crate::dto::AuthorizeResponse;

    /// The hand-written answers are byte for byte what serde writes for the
    /// schema type, for the allowed answer and every reason.
    #[test]
    fn decision_bodies_are_the_serialized_schema() {
        let serialized = |allowed: bool, reason: Option<&str>| {
            serde_json::to_vec(&AuthorizeResponse { allowed, reason: reason.map(str::to_owned) }).unwrap()
        };
        assert_eq!(decision_body(&Decision::Allowed).as_ref(), serialized(true, None));
        for reason in DenyReason::ALL {
            assert_eq!(
                decision_body(&Decision::Denied(reason)).as_ref(),
                serialized(false, Some(reason.as_str())),
                "{reason:?}"
            );
        }
    }
}
