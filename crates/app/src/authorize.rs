//! Authorizing a request by token value: the hot path.

use std::sync::Arc;
use std::time::Instant;

use latchkey_domain::decision::decide;
use latchkey_domain::{AccessRequest, DenyReason, OrgName, Principal, Token, TokenId, TokenValue, ValueState};
use latchkey_metrics::{Metrics, Surface};
use latchkey_ports::{BackendError, Clock, TokenRepository};

use crate::cache::TokenCache;
use crate::usage::UsageRecorder;

/// The answer to "may this request proceed?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It may.
    Allowed,
    /// It may not, for this reason.
    Denied(DenyReason),
}

/// Decides requests by token value.
pub struct Authorizer {
    tokens: Arc<dyn TokenRepository>,
    cache: Arc<TokenCache>,
    clock: Arc<dyn Clock>,
    usage: Arc<UsageRecorder>,
    metrics: Arc<Metrics>,
}

/// Whether an allowed request counts as a use of its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// It does: `last_used_at` moves (a request to a data API).
    Record,
    /// It does not: the same answer, nothing recorded (a dry run, such as
    /// the web page's request tester).
    DryRun,
}

/// The outcome label of a decision that could not be made because the
/// store did not answer (and was therefore refused).
pub const STORAGE_ERROR: &str = "storage_error";

impl Authorizer {
    /// Wires the authorizer to its ports.
    #[must_use]
    pub fn new(
        tokens: Arc<dyn TokenRepository>,
        cache: Arc<TokenCache>,
        clock: Arc<dyn Clock>,
        usage: Arc<UsageRecorder>,
    ) -> Self {
        Self { tokens, cache, clock, usage, metrics: Arc::new(Metrics::new()) }
    }

    /// Counts decisions into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where decisions are counted.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Decides `request` made with the token value `token`.
    ///
    /// A value that is not in the token format is refused before any
    /// lookup, so that guessing costs the store nothing. An allowed request
    /// notes the use in memory; it adds no storage write.
    ///
    /// # Errors
    /// [`BackendError`] when the token cannot be looked up. The caller must
    /// then refuse the request: doubt never allows.
    pub async fn authorize(
        &self,
        token: &str,
        request: &AccessRequest<'_>,
        usage: Use,
    ) -> Result<Decision, BackendError> {
        let started = Instant::now();
        let decision = match self.admit(token, None).await {
            Ok(Ok(admitted)) => Ok(self.decide_with(&admitted, request, usage)),
            Ok(Err(reason)) => Ok(Decision::Denied(reason)),
            Err(error) => Err(error),
        };
        let outcome = match &decision {
            Ok(Decision::Allowed) => "allowed",
            Ok(Decision::Denied(reason)) => reason.as_str(),
            Err(_) => STORAGE_ERROR,
        };
        self.metrics.decision(Surface::Authorize, request.api().as_str(), outcome);
        self.metrics.decision_time(Surface::Authorize, started.elapsed());
        decision
    }

    /// Looks up the token value `token` and checks what can be checked
    /// before knowing the request: its format, its existence (a rolled
    /// token's previous value exists only until its grace period ends), its
    /// org (a token of another org is unknown here: connection names are
    /// unique only within an org), its expiration. A gateway calls this
    /// before it reads a request's body.
    ///
    /// # Errors
    /// [`BackendError`] when the token cannot be looked up; the caller must
    /// refuse.
    pub async fn admit(
        &self,
        token: &str,
        org: Option<&OrgName>,
    ) -> Result<Result<Admitted, DenyReason>, BackendError> {
        let Ok(value) = TokenValue::parse(token) else {
            return Ok(Err(DenyReason::TokenMalformed));
        };
        let hash = value.hash();
        let stored = match self.cache.get(&hash) {
            (Some(cached), _) => cached,
            (None, ticket) => match self.tokens.find_by_secret_hash(&hash).await? {
                Some(found) => {
                    let found = Arc::new(found);
                    self.cache.put(ticket, hash, found.clone());
                    found
                }
                None => return Ok(Err(DenyReason::TokenUnknown)),
            },
        };
        if org.is_some_and(|org| *org != stored.owner.org) {
            return Ok(Err(DenyReason::TokenUnknown));
        }
        let now = self.clock.now();
        // The cache holds the token under whichever hash found it, so the
        // grace period is checked here on every request, not when cached.
        if stored.value_state(&hash, now) == ValueState::Ended {
            return Ok(Err(DenyReason::TokenUnknown));
        }
        if stored.policy.expiration().is_some_and(|expiration| now >= expiration) {
            return Ok(Err(DenyReason::TokenExpired));
        }
        Ok(Ok(Admitted(stored)))
    }

    /// Decides `request` for an admitted token, and notes the use when it
    /// is allowed.
    #[must_use]
    pub fn decide(&self, admitted: &Admitted, request: &AccessRequest<'_>) -> Decision {
        self.decide_with(admitted, request, Use::Record)
    }

    fn decide_with(&self, admitted: &Admitted, request: &AccessRequest<'_>, usage: Use) -> Decision {
        let now = self.clock.now();
        match decide(&admitted.0.policy, request, now) {
            Ok(()) => {
                if usage == Use::Record {
                    self.usage.note(&admitted.0.id, now);
                }
                Decision::Allowed
            }
            Err(reason) => Decision::Denied(reason),
        }
    }
}

/// A token that exists, belongs to the expected org and has not expired:
/// what remains is to decide a request with it.
#[derive(Clone, Debug)]
pub struct Admitted(Arc<Token>);

impl Admitted {
    /// The token's owner.
    #[must_use]
    pub fn owner(&self) -> &Principal {
        &self.0.owner
    }

    /// The token's id.
    #[must_use]
    pub fn token_id(&self) -> &TokenId {
        &self.0.id
    }
}
