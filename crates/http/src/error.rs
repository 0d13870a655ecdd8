//! The one error type of the HTTP API, and the error body of SPEC §7.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_app::TokenError;
use latchkey_domain::validation::FieldIssue;
use latchkey_ports::{AuthenticationError, BackendError};
use serde::Serialize;
use utoipa::ToSchema;

/// An error as clients receive it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "the token is not valid", "code": "validation_failed",
    "details": [{"field": "grants[0].source", "code": "pattern_too_broad",
    "message": "a pattern needs at least two complete segments before the wildcard, as in project.dataset.*"}]}))]
pub struct ErrorBody {
    /// A sentence for people.
    pub error: String,
    /// A stable code for programs.
    #[schema(value_type = crate::dto::ErrorCodeName)]
    pub code: String,
    /// For validation errors: every problem, each with its field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<Detail>>,
}

/// One problem with one field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Detail {
    /// The field's path in the request body, e.g. `grants[2].source`.
    pub field: String,
    /// A stable code.
    #[schema(value_type = crate::dto::DetailCodeName)]
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl Detail {
    pub(crate) fn new(field: impl Into<String>, issue: InputIssue, message: impl Into<String>) -> Self {
        Self { field: field.into(), code: issue.as_str().to_owned(), message: message.into() }
    }
}

impl From<FieldIssue> for Detail {
    fn from(issue: FieldIssue) -> Self {
        Self { field: issue.field, code: issue.code.as_str().to_owned(), message: issue.message }
    }
}

/// The code of every error [`ApiError`] answers, and of the gateway's own
/// answers when the data API does not: with the decision's reasons and
/// [`latchkey_app::Verdict::UNMAPPABLE_CODES`] (the refusals of the gateway
/// and forward-auth), every `code` an error body can hold. A test checks
/// each variant's code against it.
pub const ERROR_CODES: [&str; 19] = [
    "invalid_request",
    "validation_failed",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "timeout",
    "name_taken",
    "too_many_tokens",
    "expiration_immutable",
    "precondition_failed",
    "payload_too_large",
    "unsupported_media_type",
    "rate_limited",
    "headers_too_large",
    "internal",
    "unavailable",
    BAD_GATEWAY,
    GATEWAY_TIMEOUT,
];

/// The gateway's code when the data API does not answer.
pub const BAD_GATEWAY: &str = "bad_gateway";
/// The gateway's code when the data API answers too late.
pub const GATEWAY_TIMEOUT: &str = "gateway_timeout";

/// Every `code` an error body can hold.
pub fn all_error_codes() -> impl Iterator<Item = &'static str> {
    ERROR_CODES
        .into_iter()
        .chain(latchkey_domain::DenyReason::ALL.map(latchkey_domain::DenyReason::as_str))
        .chain(latchkey_app::Verdict::UNMAPPABLE_CODES)
}

/// The codes of a [`Detail`] besides the validation rules' own
/// ([`latchkey_domain::validation::IssueCode`]): what reading a body or a
/// query string can find wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputIssue {
    /// A field that must be there is not.
    Required,
    /// A value of the wrong JSON type.
    InvalidType,
    /// A value of the right type that is not allowed.
    InvalidValue,
    /// A field the request should not have.
    UnknownField,
}

impl InputIssue {
    /// Every input issue.
    pub const ALL: [InputIssue; 4] =
        [InputIssue::Required, InputIssue::InvalidType, InputIssue::InvalidValue, InputIssue::UnknownField];

    /// The code on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            InputIssue::Required => "required",
            InputIssue::InvalidType => "invalid_type",
            InputIssue::InvalidValue => "invalid_value",
            InputIssue::UnknownField => "unknown_field",
        }
    }
}

/// Every `code` a [`Detail`] can hold, each once.
pub fn all_detail_codes() -> Vec<&'static str> {
    let mut codes: Vec<&'static str> = latchkey_domain::validation::IssueCode::ALL
        .map(latchkey_domain::validation::IssueCode::as_str)
        .into_iter()
        .chain(InputIssue::ALL.map(InputIssue::as_str))
        .collect();
    let mut seen = std::collections::HashSet::new();
    codes.retain(|code| seen.insert(*code));
    codes
}

/// Everything a request can fail with. Each variant has one status and
/// code; internal causes are logged, never sent.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_request`: the request cannot be read at all.
    InvalidRequest(String),
    /// 400 `validation_failed`: fields are wrong; each is listed.
    Validation(Vec<Detail>),
    /// 401 `unauthorized`.
    Unauthorized,
    /// 404 `not_found`.
    NotFound,
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 408 `timeout`.
    Timeout,
    /// A token use case's refusal: its status and code are chosen here,
    /// its message is the use case's own (one sentence per code, written
    /// once, in `latchkey_app::TokenError`).
    Token(TokenError),
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType,
    /// 429 `rate_limited`: too many failed authentications from this
    /// address; try again after the duration.
    RateLimited(std::time::Duration),
    /// 431 `headers_too_large`.
    HeadersTooLarge,
    /// 500 `internal`.
    Internal(String),
    /// 404 `not_found`, with a message: a feature this server was not
    /// started with.
    NotEnabled(&'static str),
    /// 503 `unavailable`: storage does not answer. Callers that ask
    /// whether a request may proceed must treat it as "no".
    Unavailable(BackendError),
}

impl ApiError {
    /// The status and code of this error.
    #[must_use]
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Validation(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "timeout"),
            ApiError::Token(error) => match error {
                TokenError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                TokenError::NameTaken => (StatusCode::CONFLICT, "name_taken"),
                TokenError::TooManyTokens { .. } => (StatusCode::CONFLICT, "too_many_tokens"),
                TokenError::ExpirationImmutable => (StatusCode::BAD_REQUEST, "expiration_immutable"),
                TokenError::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
                TokenError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
                // Retryable: other writers kept winning the race.
                TokenError::Contended => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                // Made into other variants by `From<TokenError>`.
                TokenError::Invalid(_) => (StatusCode::BAD_REQUEST, "validation_failed"),
                TokenError::Backend(_) | TokenError::Random(_) | TokenError::Seal(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "internal")
                }
            },
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::HeadersTooLarge => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::NotEnabled(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::InvalidRequest(message) => message.clone(),
            ApiError::Validation(_) => "the request has invalid fields; see details".into(),
            ApiError::Unauthorized => "a valid bearer credential is required".into(),
            ApiError::NotFound => "not found".into(),
            ApiError::MethodNotAllowed => "this method is not allowed on this path".into(),
            ApiError::Timeout => "the request took too long".into(),
            ApiError::Token(error) => error.to_string(),
            ApiError::PayloadTooLarge => "the request body is too large".into(),
            ApiError::UnsupportedMediaType => "the request body must be JSON (Content-Type: application/json)".into(),
            ApiError::RateLimited(_) => "too many failed authentications from your address; wait and try again".into(),
            ApiError::HeadersTooLarge => {
                format!("the request headers exceed {} bytes", crate::guard::MAX_HEADER_BYTES)
            }
            ApiError::Internal(_) => "internal error".into(),
            ApiError::NotEnabled(message) => (*message).to_owned(),
            ApiError::Unavailable(_) => "storage is unavailable; try again".into(),
        }
    }

    /// The error body for a status that some layer produced without one.
    pub(crate) fn for_status(status: StatusCode) -> Option<Self> {
        Some(match status {
            StatusCode::NOT_FOUND => ApiError::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => ApiError::Timeout,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::HeadersTooLarge,
            StatusCode::BAD_REQUEST => ApiError::InvalidRequest("bad request".into()),
            s if s.is_server_error() => ApiError::Internal(format!("a layer answered {s}")),
            _ => return None,
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        match &self {
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::error!(%cause, "storage unavailable"),
            _ => {}
        }
        let details = match &self {
            ApiError::Validation(details) => Some(details.clone()),
            _ => None,
        };
        let body = ErrorBody { error: self.message(), code: code.to_owned(), details };
        let mut response = (status, Json(body)).into_response();
        match &self {
            ApiError::Unauthorized => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response.extensions_mut().insert(crate::guard::AuthFailure);
            }
            ApiError::RateLimited(wait) => {
                // Whole seconds, rounded up: a client that waits that long
                // is let through.
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        response
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Invalid(issues) => ApiError::Validation(issues.into_iter().map(Detail::from).collect()),
            TokenError::Backend(e) => e.into(),
            TokenError::Random(_) | TokenError::Seal(_) => ApiError::Internal(error.to_string()),
            refusal @ (TokenError::NotFound
            | TokenError::NameTaken
            | TokenError::ExpirationImmutable
            | TokenError::PreconditionFailed
            | TokenError::Forbidden
            | TokenError::TooManyTokens { .. }
            | TokenError::Contended) => ApiError::Token(refusal),
        }
    }
}

impl From<BackendError> for ApiError {
    /// An unreachable store is 503 (try again); data that breaks the rules
    /// is 500 (trying again will not help). Both refuse.
    fn from(error: BackendError) -> Self {
        if error.is_corrupt() { ApiError::Internal(error.to_string()) } else { ApiError::Unavailable(error) }
    }
}

impl From<AuthenticationError> for ApiError {
    fn from(error: AuthenticationError) -> Self {
        match error {
            AuthenticationError::Invalid => ApiError::Unauthorized,
            AuthenticationError::Backend(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod codes {
    use latchkey_app::{Ambiguity, Unmappable, Verdict};
    use latchkey_domain::DenyReason;

    use super::*;

    /// One of every error, so that a new variant's code must be listed in
    /// [`ERROR_CODES`] (the match in `status_and_code` is exhaustive; this
    /// list is checked against it by building each).
    fn every_error() -> Vec<ApiError> {
        vec![
            ApiError::InvalidRequest(String::new()),
            ApiError::Validation(Vec::new()),
            ApiError::Unauthorized,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::Timeout,
            ApiError::Token(TokenError::NotFound),
            ApiError::Token(TokenError::NameTaken),
            ApiError::Token(TokenError::TooManyTokens { limit: 1 }),
            ApiError::Token(TokenError::ExpirationImmutable),
            ApiError::Token(TokenError::PreconditionFailed),
            ApiError::Token(TokenError::Forbidden),
            ApiError::Token(TokenError::Contended),
            ApiError::Token(TokenError::Invalid(Vec::new())),
            ApiError::Token(TokenError::Backend(BackendError::new("x"))),
            ApiError::PayloadTooLarge,
            ApiError::UnsupportedMediaType,
            ApiError::RateLimited(std::time::Duration::ZERO),
            ApiError::HeadersTooLarge,
            ApiError::Internal(String::new()),
            ApiError::NotEnabled(""),
            ApiError::Unavailable(BackendError::new("x")),
        ]
    }

    #[test]
    fn every_code_an_error_body_can_hold_is_in_the_schema() {
        let listed: Vec<&str> = all_error_codes().collect();
        for error in every_error() {
            let (_, code) = error.status_and_code();
            assert!(listed.contains(&code), "{code} is not in ERROR_CODES");
        }
        let verdicts = [
            Verdict::Denied(DenyReason::TokenUnknown),
            Verdict::Unmappable(Unmappable::UnknownRequest),
            Verdict::Unmappable(Unmappable::MissingParameter("q")),
            Verdict::Unmappable(Unmappable::Ambiguous(Ambiguity::Fragment)),
        ];
        for verdict in verdicts {
            assert!(listed.contains(&verdict.code()), "{}", verdict.code());
        }
        let unique: std::collections::HashSet<&&str> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "each code once");
    }

    #[test]
    fn the_check_notices_a_code_missing_from_the_list() {
        let listed: Vec<&str> = all_error_codes().filter(|code| *code != "precondition_failed").collect();
        let missing = every_error().into_iter().map(|e| e.status_and_code().1).find(|code| !listed.contains(code));
        assert_eq!(missing, Some("precondition_failed"));
    }
}
