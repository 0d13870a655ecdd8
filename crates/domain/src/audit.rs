//! The audit log: one event for every change to a token or to an org's
//! policy, saying who changed which fields from what to what.
//!
//! Invariant: an event never holds a token value, a value's hash or a key.
//! Events are built only from the fields listed in [`TokenField`] and from
//! an org policy, none of which is secret; the value of a token is not a
//! field here, so a roll is recorded by its action and by when the previous
//! value stops working.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::names::{AuditEventId, Principal, TokenId, TokenName, UserName};
use crate::org_policy::OrgPolicy;
use crate::timestamp::Timestamp;
use crate::token::Token;

/// What an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A token was made.
    TokenCreated,
    /// A token's name or restrictions changed.
    TokenUpdated,
    /// A token got a new value.
    TokenRolled,
    /// Its owner deleted a token.
    TokenDeleted,
    /// An org admin deleted someone's token.
    TokenRevoked,
    /// An org admin replaced the org's token policy.
    PolicyUpdated,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [AuditAction; 6] = [
        AuditAction::TokenCreated,
        AuditAction::TokenUpdated,
        AuditAction::TokenRolled,
        AuditAction::TokenDeleted,
        AuditAction::TokenRevoked,
        AuditAction::PolicyUpdated,
    ];

    /// The action's name on the wire and in storage.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::TokenCreated => "token.created",
            AuditAction::TokenUpdated => "token.updated",
            AuditAction::TokenRolled => "token.rolled",
            AuditAction::TokenDeleted => "token.deleted",
            AuditAction::TokenRevoked => "token.revoked",
            AuditAction::PolicyUpdated => "policy.updated",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not an audit action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action")]
pub struct UnknownAuditAction;

impl FromStr for AuditAction {
    type Err = UnknownAuditAction;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL.into_iter().find(|action| action.as_str() == name).ok_or(UnknownAuditAction)
    }
}

/// A field's value in an event: the shape of JSON, without a serialiser in
/// the domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditValue {
    /// No value (an unset field, or a field that did not exist).
    Null,
    /// A flag.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A text.
    Text(String),
    /// A list.
    List(Vec<AuditValue>),
    /// Named values, in a fixed order.
    Map(Vec<(String, AuditValue)>),
}

impl AuditValue {
    fn texts<T: ToString>(items: impl IntoIterator<Item = T>) -> Self {
        AuditValue::List(items.into_iter().map(|item| AuditValue::Text(item.to_string())).collect())
    }

    fn time(at: Option<Timestamp>) -> Self {
        at.map_or(AuditValue::Null, |at| AuditValue::Text(at.to_rfc3339()))
    }
}

/// A field's value before and after a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// Before.
    pub from: AuditValue,
    /// After.
    pub to: AuditValue,
}

/// The changed fields of an event, by name.
pub type Changes = BTreeMap<String, FieldChange>;

/// The token an event is about, as it was named at the time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditedToken {
    /// Its id.
    pub id: TokenId,
    /// Its name when the event happened.
    pub name: TokenName,
    /// Its owner (in the actor's org): who sees the event besides admins.
    pub owner: UserName,
}

/// One change, recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unique.
    pub id: AuditEventId,
    /// When it happened.
    pub at: Timestamp,
    /// Who made the change; the event belongs to the actor's org.
    pub actor: Principal,
    /// What happened.
    pub action: AuditAction,
    /// The token changed, for every action but `policy.updated`.
    pub token: Option<AuditedToken>,
    /// Each changed field, from and to.
    pub changes: Changes,
}

/// The fields of a token that an event may record. Its value and its hash
/// are not among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenField {
    /// `name`.
    Name,
    /// `allowed_apis`.
    AllowedApis,
    /// `grants`.
    Grants,
    /// `referers`.
    Referers,
    /// `allowed_ips`.
    AllowedIps,
    /// `expiration_date`.
    ExpirationDate,
    /// `previous_value_expires_at`.
    PreviousValueExpiresAt,
}

impl TokenField {
    /// Every field, in the order of the token object.
    pub const ALL: [TokenField; 7] = [
        TokenField::Name,
        TokenField::AllowedApis,
        TokenField::Grants,
        TokenField::Referers,
        TokenField::AllowedIps,
        TokenField::ExpirationDate,
        TokenField::PreviousValueExpiresAt,
    ];

    /// The field's name in the token object.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenField::Name => "name",
            TokenField::AllowedApis => "allowed_apis",
            TokenField::Grants => "grants",
            TokenField::Referers => "referers",
            TokenField::AllowedIps => "allowed_ips",
            TokenField::ExpirationDate => "expiration_date",
            TokenField::PreviousValueExpiresAt => "previous_value_expires_at",
        }
    }

    /// The field's value in `token` (`previous_value_expires_at` as stored,
    /// whether or not the grace period has ended).
    #[must_use]
    pub fn value(self, token: &Token) -> AuditValue {
        let policy = &token.policy;
        match self {
            TokenField::Name => AuditValue::Text(token.name.to_string()),
            TokenField::AllowedApis => AuditValue::texts(policy.apis().iter().map(|api| api.as_str())),
            TokenField::Grants => AuditValue::List(
                policy
                    .grants()
                    .iter()
                    .map(|grant| {
                        AuditValue::Map(vec![
                            ("connection_name".to_owned(), AuditValue::Text(grant.connection().to_string())),
                            ("source".to_owned(), AuditValue::Text(grant.source().text().to_owned())),
                        ])
                    })
                    .collect(),
            ),
            TokenField::Referers => AuditValue::texts(policy.referers().iter().map(|referer| referer.text())),
            TokenField::AllowedIps => AuditValue::texts(policy.allowed_ips().iter()),
            TokenField::ExpirationDate => AuditValue::time(policy.expiration()),
            TokenField::PreviousValueExpiresAt => AuditValue::time(token.previous.map(|previous| previous.expires_at)),
        }
    }
}

/// Each field that differs between `before` and `after`. Either may be
/// absent: a token that is created has no `before`, a deleted one no
/// `after`; the missing side is null.
#[must_use]
pub fn token_changes(before: Option<&Token>, after: Option<&Token>) -> Changes {
    let value = |token: Option<&Token>, field: TokenField| token.map_or(AuditValue::Null, |token| field.value(token));
    TokenField::ALL
        .into_iter()
        .filter_map(|field| {
            let (from, to) = (value(before, field), value(after, field));
            (from != to).then(|| (field.as_str().to_owned(), FieldChange { from, to }))
        })
        .collect()
}

/// Each field of the org policy that differs between `before` and `after`.
#[must_use]
pub fn policy_changes(before: &OrgPolicy, after: &OrgPolicy) -> Changes {
    let fields = |policy: &OrgPolicy| {
        [
            (
                "max_lifetime_days",
                policy.max_lifetime_days().map_or(AuditValue::Null, |days| AuditValue::Int(i64::from(days))),
            ),
            ("require_referers", AuditValue::Bool(policy.require_referers())),
            (
                "allowed_apis",
                policy
                    .allowed_apis()
                    .map_or(AuditValue::Null, |apis| AuditValue::texts(apis.iter().map(|api| api.as_str()))),
            ),
        ]
    };
    fields(before)
        .into_iter()
        .zip(fields(after))
        .filter(|((_, from), (_, to))| from != to)
        .map(|((name, from), (_, to))| (name.to_owned(), FieldChange { from, to }))
        .collect()
}

impl AuditEvent {
    /// An event about `token` (as it is after the change, or before a
    /// deletion), made by `actor`.
    #[must_use]
    pub fn about_token(
        id: AuditEventId,
        at: Timestamp,
        actor: &Principal,
        action: AuditAction,
        token: &Token,
        changes: Changes,
    ) -> Self {
        Self {
            id,
            at,
            actor: actor.clone(),
            action,
            token: Some(AuditedToken {
                id: token.id.clone(),
                name: token.name.clone(),
                owner: token.owner.user.clone(),
            }),
            changes,
        }
    }
}
