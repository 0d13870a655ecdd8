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
use std::time::{Duration, Instant};

use latchkey_domain::{Api, DenyReason, OrgName, TokenId, UserName};
pub use latchkey_metrics::Surface;
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

impl Verdict {
    /// The codes of requests that could not be decided, besides the denial
    /// reasons: every [`Verdict::code`] of [`Verdict::Unmappable`].
    pub const UNMAPPABLE_CODES: [&'static str; 3] = ["unknown_request", "missing_parameter", "ambiguous_request"];

    /// The verdict's code: `allowed`, a denial reason, or why the request
    /// could not be decided. The refusal's code on the wire, and the
    /// outcome in the metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Verdict::Allowed(_) => "allowed",
            Verdict::Denied(reason) => reason.as_str(),
            Verdict::Unmappable(Unmappable::UnknownRequest) => Self::UNMAPPABLE_CODES[0],
            Verdict::Unmappable(Unmappable::MissingParameter(_)) => Self::UNMAPPABLE_CODES[1],
            Verdict::Unmappable(Unmappable::Ambiguous(_)) => Self::UNMAPPABLE_CODES[2],
        }
    }
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
    /// Time spent deciding so far (not counting the wait for the body).
    spent: Duration,
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
    surface: Surface,
}

impl Enforcer {
    /// An enforcer for the data APIs of `org`, counting its decisions in
    /// the authorizer's metrics under `surface`.
    #[must_use]
    pub fn new(authorizer: Arc<Authorizer>, org: OrgName, surface: Surface) -> Self {
        Self { authorizer, org, surface }
    }

    /// Where this enforcer counts its decisions.
    #[must_use]
    pub fn metrics(&self) -> &Arc<latchkey_metrics::Metrics> {
        self.authorizer.metrics()
    }

    /// Counts a refusal made before the enforcer saw the request (a request
    /// the HTTP layer already found ambiguous).
    pub fn refused(&self, verdict: &Verdict) {
        self.authorizer.metrics().decision(self.surface, "none", verdict.code());
    }

    /// Counts a verdict on a request for `api` (`None` when the request has
    /// no known shape) that took `took` to reach.
    fn count(&self, api: Option<Api>, verdict: &Verdict, took: Duration) {
        let api = api.map_or("none", Api::as_str);
        let metrics = self.authorizer.metrics();
        metrics.decision(self.surface, api, verdict.code());
        metrics.decision_time(self.surface, took);
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
        let started = Instant::now();
        let route = match Route::of(head.method(), head.segments()) {
            Ok(route) => route,
            Err(unmappable) => {
                let verdict = unmappable.into();
                self.count(None, &verdict, started.elapsed());
                return Ok(Err(verdict));
            }
        };
        let refused = match head.token() {
            Ok(token) => {
                let token = token.unwrap_or("").to_owned();
                match self.authorizer.admit(&token, Some(&self.org)).await {
                    Ok(Ok(admitted)) => {
                        let spent = started.elapsed();
                        return Ok(Ok(Pending { head, route, admitted, token, spent }));
                    }
                    Ok(Err(reason)) => Verdict::Denied(reason),
                    Err(error) => {
                        let metrics = self.authorizer.metrics();
                        metrics.decision(self.surface, route.api().as_str(), crate::authorize::STORAGE_ERROR);
                        metrics.decision_time(self.surface, started.elapsed());
                        return Err(error);
                    }
                }
            }
            Err(ambiguity) => ambiguity.into(),
        };
        self.count(Some(route.api()), &refused, started.elapsed());
        Ok(Err(refused))
    }

    /// The second step: the whole request, decided. The canonical request
    /// is what the gateway forwards when the verdict allows it.
    #[must_use]
    pub fn finish(&self, pending: Pending, body: BodyView<'_>) -> (Verdict, Option<CanonicalRequest>) {
        let started = Instant::now();
        let (api, spent) = (pending.route.api(), pending.spent);
        let (verdict, canonical) = self.conclude(pending, body);
        self.count(Some(api), &verdict, spent + started.elapsed());
        (verdict, canonical)
    }

    fn conclude(&self, pending: Pending, body: BodyView<'_>) -> (Verdict, Option<CanonicalRequest>) {
        let client_ip = pending.head.client_ip();
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
        let verdict = match self.authorizer.decide(&pending.admitted, &mapped.access_request().from_client(client_ip)) {
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
