//! Authorizing a request by token value: the hot path.

use std::sync::Arc;

use latchkey_domain::decision::decide;
use latchkey_domain::{AccessRequest, DenyReason, TokenValue};
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
}

impl Authorizer {
    /// Wires the authorizer to its ports.
    #[must_use]
    pub fn new(
        tokens: Arc<dyn TokenRepository>,
        cache: Arc<TokenCache>,
        clock: Arc<dyn Clock>,
        usage: Arc<UsageRecorder>,
    ) -> Self {
        Self { tokens, cache, clock, usage }
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
    pub async fn authorize(&self, token: &str, request: &AccessRequest<'_>) -> Result<Decision, BackendError> {
        let Ok(value) = TokenValue::parse(token) else {
            return Ok(Decision::Denied(DenyReason::TokenMalformed));
        };
        let hash = value.hash();
        let stored = match self.cache.get(&hash) {
            (Some(cached), _) => cached,
            (None, ticket) => match self.tokens.find_by_secret_hash(&hash).await? {
                Some(found) => {
                    let found = Arc::new(found);
                    self.cache.put(ticket, found.clone());
                    found
                }
                None => return Ok(Decision::Denied(DenyReason::TokenUnknown)),
            },
        };
        let now = self.clock.now();
        match decide(&stored.policy, request, now) {
            Ok(()) => {
                self.usage.note(&stored.id, now);
                Ok(Decision::Allowed)
            }
            Err(reason) => Ok(Decision::Denied(reason)),
        }
    }
}
