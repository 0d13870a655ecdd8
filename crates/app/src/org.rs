//! What belongs to an org rather than to one token: its audit log and its
//! token policy.

use std::sync::Arc;

use latchkey_domain::audit::{AuditAction, AuditEvent, policy_changes};
use latchkey_domain::org_policy::OrgPolicy;
use latchkey_domain::{AuditEventId, Identity, TokenId};
use latchkey_ports::{AuditCursor, AuditLog, AuditPage, AuditScope, Clock, OrgPolicies, PolicyWriteError};

use crate::error::TokenError;
use crate::random::with_os_rng;

/// How many times a policy write is retried when another admin's wins the
/// race.
const ATTEMPTS: usize = 5;

/// The org use cases.
pub struct OrgService {
    audit: Arc<dyn AuditLog>,
    policies: Arc<dyn OrgPolicies>,
    clock: Arc<dyn Clock>,
}

impl OrgService {
    /// Wires the use cases to their ports.
    #[must_use]
    pub fn new(audit: Arc<dyn AuditLog>, policies: Arc<dyn OrgPolicies>, clock: Arc<dyn Clock>) -> Self {
        Self { audit, policies, clock }
    }

    /// Up to `limit` events after `after`, newest first: an admin's whole
    /// org, a member's own tokens (an admin's revocation of one included).
    /// With `token`, only the events about that token.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn events(
        &self,
        caller: &Identity,
        token: Option<TokenId>,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage, TokenError> {
        let scope = if caller.role.is_admin() {
            AuditScope::Org(caller.principal.org.clone())
        } else {
            AuditScope::Owner(caller.principal.clone())
        };
        Ok(self.audit.events(scope, token, after, limit).await?)
    }

    /// The caller's org's policy: every member may read it.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn policy(&self, caller: &Identity) -> Result<OrgPolicy, TokenError> {
        Ok(self.policies.policy(&caller.principal.org).await?)
    }

    /// Replaces the org's policy, recording what changed. Tokens made
    /// before keep working; what they break shows as a warning on them.
    ///
    /// # Errors
    /// [`TokenError::Forbidden`] for a caller who is not an org admin, or a
    /// backend failure.
    pub async fn replace_policy(&self, caller: &Identity, new: OrgPolicy) -> Result<OrgPolicy, TokenError> {
        if !caller.role.is_admin() {
            return Err(TokenError::Forbidden);
        }
        let org = &caller.principal.org;
        for _ in 0..ATTEMPTS {
            let current = self.policies.policy(org).await?;
            let event = AuditEvent {
                id: with_os_rng(AuditEventId::generate)?,
                at: self.clock.now(),
                actor: caller.principal.clone(),
                action: AuditAction::PolicyUpdated,
                token: None,
                changes: policy_changes(&current, &new),
            };
            match self.policies.replace_policy(org, &current, &new, &event).await {
                Ok(()) => {
                    tracing::info!(%org, admin = %caller.principal.user, "org policy replaced");
                    return Ok(new);
                }
                Err(PolicyWriteError::Conflict) => continue,
                Err(PolicyWriteError::Backend(error)) => return Err(error.into()),
            }
        }
        Err(TokenError::Contended)
    }
}
