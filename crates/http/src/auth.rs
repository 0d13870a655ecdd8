//! Who is calling: the bearer credential of a management request.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use latchkey_domain::Principal;

use crate::Services;
use crate::error::ApiError;

/// The longest credential that is looked at. A JWT with many claims is a
/// few kilobytes; anything longer is refused without parsing it.
const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

/// The authenticated caller of a management endpoint.
#[derive(Debug)]
pub struct Caller(pub Principal);

/// The credential of an `Authorization: Bearer …` header.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty() && credential.len() <= MAX_CREDENTIAL_LEN)
        .then_some(credential)
}

impl FromRequestParts<Services> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, Self::Rejection> {
        let credential = bearer(parts).ok_or(ApiError::Unauthorized)?;
        Ok(Caller(services.authenticator.authenticate(credential).await?))
    }
}
