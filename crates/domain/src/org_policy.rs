//! An org's token policy: the bounds its admins set on every token of the
//! org, checked when a token is created, updated or rolled.
//!
//! A token made before a stricter policy keeps working: the policy is a rule
//! of changes, and what an older token breaks is shown as a warning on it.

use std::fmt::Write as _;

use crate::api::{AllowedApis, Api, ApiSet};
use crate::timestamp::Timestamp;
use crate::validation::{FieldIssue, IssueCode};

/// The longest `max_lifetime_days` an org may set: a hundred years.
pub const MAX_LIFETIME_DAYS: u32 = 36_500;

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// Why a policy cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgPolicyError {
    /// `max_lifetime_days` out of 1 to [`MAX_LIFETIME_DAYS`].
    #[error("max_lifetime_days must be a whole number from 1 to {MAX_LIFETIME_DAYS}, or null")]
    LifetimeOutOfRange,
    /// `allowed_apis` given but empty: no token could be made.
    #[error("allowed_apis must name at least one API, or be null for every API")]
    NoApis,
}

/// The bounds of an org's tokens.
///
/// Invariant: the lifetime, when set, is 1 to [`MAX_LIFETIME_DAYS`] days;
/// the API list, when set, is not empty. The default allows everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrgPolicy {
    max_lifetime_days: Option<u32>,
    require_referers: bool,
    allowed_apis: Option<ApiSet>,
}

/// Which parts of a token a check looks at: every part at create and roll,
/// only the parts it replaces at an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedParts {
    /// `allowed_apis`.
    pub apis: bool,
    /// `referers`.
    pub referers: bool,
    /// `expiration_date` (its distance from the creation).
    pub lifetime: bool,
}

impl CheckedParts {
    /// Every part.
    pub const ALL: CheckedParts = CheckedParts { apis: true, referers: true, lifetime: true };
}

/// The parts of a token a policy bounds.
#[derive(Clone, Copy, Debug)]
pub struct PolicySubject {
    /// Its APIs.
    pub apis: AllowedApis,
    /// Whether it is restricted to websites.
    pub has_referers: bool,
    /// When it was (or is being) made.
    pub created_at: Timestamp,
    /// When it expires, if ever.
    pub expiration: Option<Timestamp>,
}

/// The APIs a browser calls, for which a referer restriction means
/// something. `imports` writes data from servers, which send whatever
/// `Referer` they like, so a policy requiring referers does not apply to it.
const BROWSER_APIS: [Api; 3] = [Api::Sql, Api::Maps, Api::Lds];

impl OrgPolicy {
    /// A policy.
    ///
    /// # Errors
    /// [`OrgPolicyError`] when a bound breaks the invariant.
    pub fn new(
        max_lifetime_days: Option<u32>,
        require_referers: bool,
        allowed_apis: Option<ApiSet>,
    ) -> Result<Self, OrgPolicyError> {
        if max_lifetime_days.is_some_and(|days| !(1..=MAX_LIFETIME_DAYS).contains(&days)) {
            return Err(OrgPolicyError::LifetimeOutOfRange);
        }
        if allowed_apis.is_some_and(ApiSet::is_empty) {
            return Err(OrgPolicyError::NoApis);
        }
        Ok(Self { max_lifetime_days, require_referers, allowed_apis })
    }

    /// The longest a token may live, in days from its creation.
    #[must_use]
    pub fn max_lifetime_days(&self) -> Option<u32> {
        self.max_lifetime_days
    }

    /// Whether tokens for browser APIs must name their websites.
    #[must_use]
    pub fn require_referers(&self) -> bool {
        self.require_referers
    }

    /// The APIs tokens may allow; `None` for all.
    #[must_use]
    pub fn allowed_apis(&self) -> Option<ApiSet> {
        self.allowed_apis
    }

    /// The latest expiration a token made at `created_at` may have.
    #[must_use]
    pub fn latest_expiration(&self, created_at: Timestamp) -> Option<Timestamp> {
        let days = self.max_lifetime_days?;
        let micros = created_at.unix_micros().saturating_add(i64::from(days) * MICROS_PER_DAY);
        Some(Timestamp::from_unix_micros(micros).unwrap_or(created_at))
    }

    /// What `subject` breaks of this policy, in the `parts` looked at, each
    /// as a `policy_violation` on its field: errors on a change, warnings on
    /// a token that is only read.
    #[must_use]
    pub fn check(&self, subject: &PolicySubject, parts: CheckedParts) -> Vec<FieldIssue> {
        let mut issues = Vec::new();
        if parts.apis
            && let Some(allowed) = self.allowed_apis
        {
            let refused: Vec<&str> =
                subject.apis.iter().filter(|api| !allowed.contains(*api)).map(Api::as_str).collect();
            if !refused.is_empty() {
                let allowed: Vec<&str> = allowed.iter().map(Api::as_str).collect();
                issues.push(FieldIssue::new(
                    "allowed_apis",
                    IssueCode::PolicyViolation,
                    format!("the organization's policy allows only {}; not {}", allowed.join(", "), refused.join(", ")),
                ));
            }
        }
        if parts.referers
            && self.require_referers
            && !subject.has_referers
            && BROWSER_APIS.iter().any(|api| subject.apis.contains(*api))
        {
            issues.push(FieldIssue::new(
                "referers",
                IssueCode::PolicyViolation,
                "the organization's policy requires at least one referer for the sql, maps and lds APIs",
            ));
        }
        if parts.lifetime
            && let (Some(days), Some(latest)) = (self.max_lifetime_days, self.latest_expiration(subject.created_at))
            && subject.expiration.is_none_or(|expiration| expiration > latest)
        {
            let mut message =
                format!("the organization's policy requires an expiration date at most {days} days after creation");
            let _ = write!(message, " (at the latest {latest})");
            issues.push(FieldIssue::new("expiration_date", IssueCode::PolicyViolation, message));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_micros(seconds * 1_000_000).unwrap()
    }

    fn apis(names: &[Api]) -> ApiSet {
        let mut set = ApiSet::empty();
        for api in names {
            set.insert(*api);
        }
        set
    }

    fn subject(names: &[Api], has_referers: bool, expiration: Option<Timestamp>) -> PolicySubject {
        PolicySubject {
            apis: AllowedApis::new(apis(names)).unwrap(),
            has_referers,
            created_at: at(1_000_000),
            expiration,
        }
    }

    fn fields(issues: &[FieldIssue]) -> Vec<&str> {
        issues.iter().map(|issue| issue.field.as_str()).collect()
    }

    #[test]
    fn the_default_allows_everything() {
        let policy = OrgPolicy::default();
        assert!(policy.check(&subject(&[Api::Maps], false, None), CheckedParts::ALL).is_empty());
    }

    #[test]
    fn bounds_are_checked_when_made() {
        assert_eq!(OrgPolicy::new(Some(0), false, None), Err(OrgPolicyError::LifetimeOutOfRange));
        assert_eq!(OrgPolicy::new(Some(MAX_LIFETIME_DAYS + 1), false, None), Err(OrgPolicyError::LifetimeOutOfRange));
        assert!(OrgPolicy::new(Some(MAX_LIFETIME_DAYS), false, None).is_ok());
        assert_eq!(OrgPolicy::new(None, false, Some(ApiSet::empty())), Err(OrgPolicyError::NoApis));
    }

    #[test]
    fn apis_outside_the_list_are_refused() {
        let policy = OrgPolicy::new(None, false, Some(apis(&[Api::Maps]))).unwrap();
        let issues = policy.check(&subject(&[Api::Maps, Api::Sql], false, None), CheckedParts::ALL);
        assert_eq!(fields(&issues), ["allowed_apis"]);
        assert_eq!(issues[0].code, IssueCode::PolicyViolation);
        assert!(issues[0].message.contains("not sql"), "{}", issues[0].message);
        assert!(policy.check(&subject(&[Api::Maps], false, None), CheckedParts::ALL).is_empty());
    }

    #[test]
    fn referers_are_required_for_browser_apis_only() {
        let policy = OrgPolicy::new(None, true, None).unwrap();
        for api in [Api::Sql, Api::Maps, Api::Lds] {
            assert_eq!(fields(&policy.check(&subject(&[api], false, None), CheckedParts::ALL)), ["referers"], "{api}");
            assert!(policy.check(&subject(&[api], true, None), CheckedParts::ALL).is_empty());
        }
        assert!(policy.check(&subject(&[Api::Imports], false, None), CheckedParts::ALL).is_empty());
    }

    #[test]
    fn the_lifetime_counts_from_creation() {
        let policy = OrgPolicy::new(Some(30), false, None).unwrap();
        let day = 86_400;
        let created = 1_000_000;
        assert_eq!(fields(&policy.check(&subject(&[Api::Lds], false, None), CheckedParts::ALL)), ["expiration_date"]);
        let exactly = Some(at(created + 30 * day));
        assert!(policy.check(&subject(&[Api::Lds], false, exactly), CheckedParts::ALL).is_empty());
        let too_late = Some(at(created + 30 * day + 1));
        assert_eq!(
            fields(&policy.check(&subject(&[Api::Lds], false, too_late), CheckedParts::ALL)),
            ["expiration_date"]
        );
    }

    #[test]
    fn only_the_parts_looked_at_are_checked() {
        let policy = OrgPolicy::new(Some(1), true, Some(apis(&[Api::Maps]))).unwrap();
        let token = subject(&[Api::Sql], false, None);
        assert_eq!(policy.check(&token, CheckedParts::ALL).len(), 3);
        let names_only = CheckedParts { apis: false, referers: false, lifetime: false };
        assert!(policy.check(&token, names_only).is_empty());
        let referers_only = CheckedParts { apis: false, referers: true, lifetime: false };
        assert_eq!(fields(&policy.check(&token, referers_only)), ["referers"]);
    }
}
