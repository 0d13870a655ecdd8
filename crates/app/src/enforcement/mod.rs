//! Enforcement in front of a data API (SPEC §12): deciding a request in
//! CARTO's URL shapes, for forward-auth (a proxy asks before forwarding)
//! and for the gateway (latchkey is the proxy).
//!
//! The invariant: what latchkey authorizes is exactly what the data API
//! receives. The request is read once, canonically ([`request`]); anything
//! two readers could read differently is refused as ambiguous; the request
//! is mapped to the decision's question ([`mapping`]); and the gateway
//! forwards the canonical request it decided, rebuilt, never the bytes it
//! was sent. Both serve one org: a token of another org is unknown there,
//! since connection names are unique only within an org.

pub mod mapping;
pub mod request;

use std::sync::Arc;

use latchkey_domain::{DenyReason, OrgName, TokenId, UserName};
use latchkey_ports::BackendError;

use crate::authorize::{Admitted, Authorizer, Decision};
use mapping::{Route, Unmappable};
use request::{BodyView, CanonicalRequest, RequestHead};

/// Who made an allowed request: what the gateway tells the data API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bearer {
    /// The token owner's org.
    pub org: OrgName,
    /// The token's owner.
    pub user: UserName,
    /// The token's id.
    pub token_id: TokenId,
}

/// The answer for a data API request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It may proceed.
    Allowed(Bearer),
    /// The token does not allow it.
    Denied(DenyReason),
    /// It is not a request latchkey can decide.
    Unmappable(Unmappable),
}

impl From<Unmappable> for Verdict {
    fn from(unmappable: Unmappable) -> Self {
        Verdict::Unmappable(unmappable)
    }
}

impl From<request::Ambiguity> for Verdict {
    fn from(ambiguity: request::Ambiguity) -> Self {
        Verdict::Unmappable(Unmappable::Ambiguous(ambiguity))
    }
}

/// A request whose shape and token passed, waiting for its body.
#[derive(Debug)]
pub struct Pending {
    head: RequestHead,
    route: Route,
    admitted: Admitted,
    token: String,
}

impl Pending {
    /// Whether the body must be read to decide.
    #[must_use]
    pub fn reads_body(&self) -> bool {
        self.route.reads_body()
    }
}

/// Decides data API requests for one org.
pub struct Enforcer {
    authorizer: Arc<Authorizer>,
    org: OrgName,
}

impl Enforcer {
    /// An enforcer for the data APIs of `org`.
    #[must_use]
    pub fn new(authorizer: Arc<Authorizer>, org: OrgName) -> Self {
        Self { authorizer, org }
    }

    /// The org whose data APIs this enforcer protects.
    #[must_use]
    pub fn org(&self) -> &OrgName {
        &self.org
    }

    /// The first step: the request's shape and its token, before any body
    /// is read (so that a request without a usable token costs no body).
    ///
    /// # Errors
    /// [`BackendError`] when the token cannot be looked up: refuse.
    pub async fn begin(&self, head: RequestHead) -> Result<Result<Pending, Verdict>, BackendError> {
        let route = match Route::of(head.method(), head.segments()) {
            Ok(route) => route,
            Err(unmappable) => return Ok(Err(unmappable.into())),
        };
        let token = match head.token() {
            Ok(token) => token.unwrap_or("").to_owned(),
            Err(ambiguity) => return Ok(Err(ambiguity.into())),
        };
        match self.authorizer.admit(&token, Some(&self.org)).await? {
            Ok(admitted) => Ok(Ok(Pending { head, route, admitted, token })),
            Err(reason) => Ok(Err(Verdict::Denied(reason))),
        }
    }

    /// The second step: the whole request, decided. The canonical request
    /// is what the gateway forwards when the verdict allows it.
    #[must_use]
    pub fn finish(&self, pending: Pending, body: BodyView<'_>) -> (Verdict, Option<CanonicalRequest>) {
        let canonical = match pending.head.with_body(body) {
            Ok(canonical) => canonical,
            Err(ambiguity) => return (ambiguity.into(), None),
        };
        // The token that was admitted is the request's only token.
        if canonical.token() != Some(pending.token.as_str()) {
            return (request::Ambiguity::TwoTokens.into(), None);
        }
        let mapped = match pending.route.map(&canonical) {
            Ok(mapped) => mapped,
            Err(unmappable) => return (unmappable.into(), None),
        };
        let verdict = match self.authorizer.decide(&pending.admitted, &mapped.access_request()) {
            Decision::Allowed => Verdict::Allowed(Bearer {
                org: pending.admitted.owner().org.clone(),
                user: pending.admitted.owner().user.clone(),
                token_id: pending.admitted.token_id().clone(),
            }),
            Decision::Denied(reason) => Verdict::Denied(reason),
        };
        (verdict, Some(canonical))
    }

    /// Both steps, for a reader that has the body already or never will
    /// (forward-auth).
    ///
    /// # Errors
    /// [`BackendError`] when the token cannot be looked up: refuse.
    pub async fn check(&self, head: RequestHead, body: BodyView<'_>) -> Result<Verdict, BackendError> {
        Ok(match self.begin(head).await? {
            Ok(pending) => self.finish(pending, body).0,
            Err(verdict) => verdict,
        })
    }
}

#[cfg(test)]
mod tests;
