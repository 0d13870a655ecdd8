//! The audit log, and the org policies whose changes it records.

use async_trait::async_trait;
use latchkey_domain::audit::AuditEvent;
use latchkey_domain::org_policy::OrgPolicy;
use latchkey_domain::{AuditEventId, OrgName, Principal, Timestamp, TokenId};

use crate::BackendError;

/// Whose events a reader sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditScope {
    /// Every event of the org: an org admin.
    Org(OrgName),
    /// The events about the tokens this user owns, whoever made them (an
    /// admin's revocation included): a member.
    Owner(Principal),
}

/// A position in the log, which is ordered newest first: by `at`
/// descending, then `id` descending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditCursor {
    /// The time of the last event of the previous page.
    pub at: Timestamp,
    /// Its id.
    pub id: AuditEventId,
}

/// One page of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditPage {
    /// At most the number asked for, newest first.
    pub events: Vec<AuditEvent>,
    /// Where the next page starts, or `None` when this page is the last.
    pub next: Option<AuditCursor>,
}

impl AuditPage {
    /// The page of `limit` out of `events` read in log order, one more than
    /// asked (see `Page::from_rows`).
    #[must_use]
    pub fn from_rows(mut events: Vec<AuditEvent>, limit: usize) -> Self {
        if events.len() <= limit {
            return Self { events, next: None };
        }
        events.truncate(limit);
        let next = events.last().map(|last| AuditCursor { at: last.at, id: last.id.clone() });
        Self { events, next }
    }
}

/// The events written with each change (the writes are on the other
/// ports, each with its event; this port reads them).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Up to `limit` events of `scope` after `after` (from the newest when
    /// `None`), newest first, only about `token` when given. Every field is
    /// kept exactly, times to the microsecond.
    ///
    /// # Errors
    /// [`BackendError`] when the store cannot be read.
    async fn events(
        &self,
        scope: AuditScope,
        token: Option<TokenId>,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage, BackendError>;
}

/// Why an org policy could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum PolicyWriteError {
    /// The stored policy is not the expected one: another admin changed it
    /// since it was read.
    #[error("the policy was changed concurrently")]
    Conflict,
    /// See [`BackendError`].
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Each org's token policy.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait OrgPolicies: Send + Sync {
    /// The org's policy; the default (which allows everything) for an org
    /// that never set one.
    ///
    /// # Errors
    /// [`BackendError`] when the store cannot be read.
    async fn policy(&self, org: &OrgName) -> Result<OrgPolicy, BackendError>;

    /// Replaces the org's policy with `new`, provided it is still
    /// `expected`, and stores `event` in the same atomic step.
    ///
    /// # Errors
    /// [`PolicyWriteError::Conflict`] when the stored policy differs.
    async fn replace_policy(
        &self,
        org: &OrgName,
        expected: &OrgPolicy,
        new: &OrgPolicy,
        event: &AuditEvent,
    ) -> Result<(), PolicyWriteError>;
}
