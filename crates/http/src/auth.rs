//! Who is calling: the bearer credential of a management request.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use latchkey_domain::{Identity, Principal};

use crate::Shared;
use crate::error::ApiError;

/// The longest credential that is looked at. A JWT with many claims is a
/// few kilobytes; anything longer is refused without parsing it.
const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

/// The authenticated caller of a management endpoint.
#[derive(Debug)]
pub struct Caller(pub Principal);

/// The authenticated caller with their role, for the endpoints whose
/// answer depends on it (the org's tokens, the audit log, the policy).
#[derive(Debug)]
pub struct Identified(pub Identity);

/// The credential of an `Authorization: Bearer …` header.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty() && credential.len() <= MAX_CREDENTIAL_LEN)
        .then_some(credential)
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Shared) -> Result<Self, Self::Rejection> {
        let Identified(identity) = Identified::from_request_parts(parts, services).await?;
        Ok(Caller(identity.principal))
    }
}

impl FromRequestParts<Shared> for Identified {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Shared) -> Result<Self, Self::Rejection> {
        let credential = bearer(parts).ok_or(ApiError::Unauthorized)?;
        Ok(Identified(services.authenticator.authenticate(credential).await?))
    }
}
