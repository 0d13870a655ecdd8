//! Tokens and their policy: what a token allows, whom it belongs to, and
//! the bookkeeping the stores keep about it.

use std::collections::HashSet;
use std::hash::Hash;

use crate::api::{AllowedApis, Api};
use crate::grant::Grant;
use crate::index::GrantIndex;
use crate::ip::IpRanges;
use crate::names::{ConnectionName, Principal, TokenId, TokenName};
use crate::provider::Provider;
use crate::referer::RefererPattern;
use crate::secret::{SealedSecret, SecretHash};
use crate::timestamp::Timestamp;

/// The most grants a token may have (V10).
pub const MAX_GRANTS: usize = 100;
/// The most referer patterns a token may have (V8).
pub const MAX_REFERERS: usize = 50;

/// A connection to a data warehouse, as the catalog knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Connection {
    /// Unique within the org.
    pub name: ConnectionName,
    /// The warehouse behind it.
    pub provider: Provider,
}

/// A broken rule of a policy's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// V3: an allowed API (other than `lds`) that no grant serves.
    #[error("no grant serves the {0} API")]
    ApiWithoutGrant(Api),
    /// V4: the grant at this index serves none of the allowed APIs.
    #[error("grant {0} serves none of the allowed APIs")]
    GrantUnused(usize),
    /// V10.
    #[error("{0} grants; at most {MAX_GRANTS} are allowed")]
    TooManyGrants(usize),
    /// V8.
    #[error("{0} referers; at most {MAX_REFERERS} are allowed")]
    TooManyReferers(usize),
}

/// What a token allows.
///
/// Invariant: the allowed APIs hold V1 and V2; every allowed API but `lds`
/// is served by a grant (V3) and every grant serves an allowed API (V4);
/// grants and referers have no duplicates and are within V10 and V8. (The
/// connection rule V5 needs the catalog and V9 the clock; they are checked
/// by [`crate::validation`] when a policy is made from a request.)
#[derive(Clone)]
pub struct Policy {
    apis: AllowedApis,
    grants: Vec<Grant>,
    referers: Vec<RefererPattern>,
    /// The client addresses the token may be used from; empty means any.
    allowed_ips: IpRanges,
    expiration: Option<Timestamp>,
    /// Derived from `grants`, for the decision.
    index: GrantIndex,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        // The index is derived from the grants: equal grants, equal index.
        (self.apis, &self.grants, &self.referers, &self.allowed_ips, self.expiration)
            == (other.apis, &other.grants, &other.referers, &other.allowed_ips, other.expiration)
    }
}

impl Eq for Policy {}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("apis", &self.apis)
            .field("grants", &self.grants)
            .field("referers", &self.referers)
            .field("allowed_ips", &self.allowed_ips)
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// Removes later copies of equal items, keeping the first in place, and
/// returns the kept items with their original indices.
pub(crate) fn fold_duplicates<T: Eq + Hash>(items: Vec<T>) -> (Vec<T>, Vec<usize>) {
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(items.len());
        items.iter().map(|item| seen.insert(item)).collect()
    };
    items.into_iter().zip(keep).enumerate().filter_map(|(index, (item, kept))| kept.then_some((item, index))).unzip()
}

impl Policy {
    /// Builds a policy, folding duplicate grants and referers.
    ///
    /// # Errors
    /// Every [`PolicyError`] that applies; `GrantUnused` indices refer to
    /// `grants` as given.
    pub fn new(
        apis: AllowedApis,
        grants: Vec<Grant>,
        referers: Vec<RefererPattern>,
        expiration: Option<Timestamp>,
    ) -> Result<Self, Vec<PolicyError>> {
        let (grants, original_index) = fold_duplicates(grants);
        let (referers, _) = fold_duplicates(referers);
        let mut errors = Vec::new();
        for api in apis.iter().filter(|api| *api != Api::Lds) {
            if !grants.iter().any(|grant| grant.serves(api)) {
                errors.push(PolicyError::ApiWithoutGrant(api));
            }
        }
        for (grant, index) in grants.iter().zip(&original_index) {
            if !apis.iter().any(|api| grant.serves(api)) {
                errors.push(PolicyError::GrantUnused(*index));
            }
        }
        if grants.len() > MAX_GRANTS {
            errors.push(PolicyError::TooManyGrants(grants.len()));
        }
        if referers.len() > MAX_REFERERS {
            errors.push(PolicyError::TooManyReferers(referers.len()));
        }
        if errors.is_empty() {
            let index = GrantIndex::new(&grants);
            Ok(Self { apis, grants, referers, allowed_ips: IpRanges::default(), expiration, index })
        } else {
            Err(errors)
        }
    }

    /// The APIs the token may call.
    #[must_use]
    pub fn apis(&self) -> AllowedApis {
        self.apis
    }

    /// The grants, without duplicates, in the order given.
    #[must_use]
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// The allowed websites; empty means any.
    #[must_use]
    pub fn referers(&self) -> &[RefererPattern] {
        &self.referers
    }

    /// The client addresses the token may be used from; empty means any.
    #[must_use]
    pub fn allowed_ips(&self) -> &IpRanges {
        &self.allowed_ips
    }

    /// The same policy restricted to `allowed_ips` instead (no rule of a
    /// policy relates addresses to other fields).
    #[must_use]
    pub fn with_allowed_ips(mut self, allowed_ips: IpRanges) -> Self {
        self.allowed_ips = allowed_ips;
        self
    }

    /// When the token stops working, if ever.
    #[must_use]
    pub fn expiration(&self) -> Option<Timestamp> {
        self.expiration
    }

    /// The same policy with another expiration. V9's "in the future" is a
    /// rule of requests, not of policies, so no other invariant is touched.
    #[must_use]
    pub fn with_expiration(mut self, expiration: Option<Timestamp>) -> Self {
        self.expiration = expiration;
        self
    }

    pub(crate) fn index(&self) -> &GrantIndex {
        &self.index
    }
}

/// A token as stored.
///
/// Every field's type holds its own invariant. `version` grows by one with
/// each update, for optimistic concurrency control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The public identifier.
    pub id: TokenId,
    /// The user who made the token; nobody else sees it.
    pub owner: Principal,
    /// Unique among the owner's tokens.
    pub name: TokenName,
    /// What the token allows.
    pub policy: Policy,
    /// The hash of the token's value, for lookups.
    pub secret_hash: SecretHash,
    /// The value, encrypted under the server key.
    pub sealed_secret: SealedSecret,
    /// When the token was made.
    pub created_at: Timestamp,
    /// When the token was last changed.
    pub updated_at: Timestamp,
    /// When the token last authorized a request, as far as recorded.
    pub last_used_at: Option<Timestamp>,
    /// Starts at 1; each update or roll adds one.
    pub version: u64,
    /// The value the token had before its last roll, while that roll's
    /// grace period runs (and until the next roll, which ends it at once).
    pub previous: Option<PreviousValue>,
}

/// A token's value before a roll, which keeps working for a grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreviousValue {
    /// The hash of the previous value, for lookups.
    pub secret_hash: SecretHash,
    /// When the previous value stops working.
    pub expires_at: Timestamp,
}

/// Which of a token's values a request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueState {
    /// The current value.
    Current,
    /// The value before the last roll, within its grace period.
    Previous,
    /// The value before the last roll, past its grace period, or a value the
    /// token never had: it does not work.
    Ended,
}

/// The longest grace period of a roll: a week.
pub const MAX_GRACE_SECONDS: u32 = 604_800;

/// How long a rolled token's previous value keeps working.
///
/// Invariant: 0 to [`MAX_GRACE_SECONDS`] seconds; 0 ends the previous value
/// with the roll.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GracePeriod(u32);

impl GracePeriod {
    /// A grace period of `seconds`, if within the bounds.
    #[must_use]
    pub fn from_seconds(seconds: u64) -> Option<Self> {
        u32::try_from(seconds).ok().filter(|s| *s <= MAX_GRACE_SECONDS).map(Self)
    }

    /// Its length in seconds.
    #[must_use]
    pub fn seconds(self) -> u32 {
        self.0
    }

    /// When a previous value rolled at `now` stops working; `None` when it
    /// stops at once.
    #[must_use]
    pub fn ends(self, now: Timestamp) -> Option<Timestamp> {
        if self.0 == 0 {
            return None;
        }
        let micros = now.unix_micros().saturating_add(i64::from(self.0) * 1_000_000);
        Timestamp::from_unix_micros(micros).ok()
    }
}

impl Token {
    /// Whether the value whose hash is `hash` works for this token at `now`.
    #[must_use]
    pub fn value_state(&self, hash: &SecretHash, now: Timestamp) -> ValueState {
        if self.secret_hash == *hash {
            return ValueState::Current;
        }
        match self.previous {
            Some(previous) if previous.secret_hash == *hash && now < previous.expires_at => ValueState::Previous,
            _ => ValueState::Ended,
        }
    }

    /// When the previous value stops working, while it still works at `now`.
    #[must_use]
    pub fn previous_value_expires_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.previous.filter(|previous| now < previous.expires_at).map(|previous| previous.expires_at)
    }

    /// The hashes under which the token may be found: its value's and, while
    /// stored, its previous value's. A cache evicts both when it changes.
    pub fn secret_hashes(&self) -> impl Iterator<Item = &SecretHash> {
        std::iter::once(&self.secret_hash).chain(self.previous.as_ref().map(|previous| &previous.secret_hash))
    }
}
