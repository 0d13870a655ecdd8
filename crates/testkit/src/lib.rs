//! Fixtures shared by the test suites, written once: the principals,
//! connections, drafts, policies and tokens that the domain's, the use
//! cases', the storage contract's, the benchmarks' and the fuzz targets'
//! tests are built from, the one JSON helper the HTTP-level suites share
//! ([`changed`]), and nginx configured as docs/deploy.md says ([`nginx`]).
//!
//! Architecture invariant: a dev-dependency only (the storage contract
//! suite, itself only a dev-dependency, aside); of the workspace it knows
//! the domain and nothing else. Every helper panics on a fixture that is not valid: a
//! fixture that breaks a rule is a broken test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod nginx;

use latchkey_domain::audit::{AuditAction, AuditEvent, token_changes};
use latchkey_domain::validation::{ExpirationInput, GrantDraft, TokenDraft, validate};
use latchkey_domain::{
    AuditEventId, Connection, ConnectionName, OrgName, Policy, Principal, Provider, SealedSecret, Timestamp, Token,
    TokenId, TokenName, TokenValue, UserName,
};
use rand::rngs::SysRng;

/// A user of an org.
#[must_use]
pub fn principal(org: &str, user: &str) -> Principal {
    Principal { org: OrgName::new(org).unwrap(), user: UserName::new(user).unwrap() }
}

/// A connection.
#[must_use]
pub fn connection(name: &str, provider: Provider) -> Connection {
    Connection { name: ConnectionName::new(name).unwrap(), provider }
}

/// One connection per provider, named as the suites name them: `carto_dw`,
/// `bq`, `pg`, `snow`, `rs` and `dbx`.
#[must_use]
pub fn every_provider() -> Vec<Connection> {
    [
        ("carto_dw", Provider::CartoDw),
        ("bq", Provider::Bigquery),
        ("pg", Provider::Postgres),
        ("snow", Provider::Snowflake),
        ("rs", Provider::Redshift),
        ("dbx", Provider::Databricks),
    ]
    .into_iter()
    .map(|(name, provider)| connection(name, provider))
    .collect()
}

/// The suites' "now": 2026-11-27T10:00:00Z.
#[must_use]
pub fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-27T10:00:00Z").unwrap()
}

/// A time `seconds` after a base with microseconds, so that a store that
/// truncated to milliseconds or seconds would show.
#[must_use]
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_795_780_800_123_456 + seconds * 1_000_000).unwrap()
}

/// A grant as a client sends it.
#[must_use]
pub fn grant(connection: &str, source: &str) -> GrantDraft {
    GrantDraft { connection_name: connection.into(), source: source.into() }
}

/// A token as a client sends it, without a name.
#[must_use]
pub fn draft(apis: &[&str], grants: Vec<GrantDraft>, referers: &[&str]) -> TokenDraft {
    TokenDraft {
        name: None,
        allowed_apis: apis.iter().map(|s| (*s).to_owned()).collect(),
        grants,
        referers: referers.iter().map(|s| (*s).to_owned()).collect(),
        allowed_ips: vec![],
        unknown_fields: vec![],
    }
}

/// The valid policy of `draft` with `connections`, expiring at
/// `expiration` (RFC 3339, after [`now`]); a panic that shows why when it
/// is not valid.
#[must_use]
pub fn policy_of(draft: &TokenDraft, expiration: Option<&str>, connections: &[Connection]) -> Policy {
    match validate(draft, ExpirationInput::Requested { date: expiration, now: now() }, connections) {
        Ok(valid) => valid.policy,
        Err(issues) => panic!("invalid test policy: {issues:#?}"),
    }
}

/// A valid policy over [`every_provider`].
#[must_use]
pub fn policy(apis: &[&str], grants: Vec<GrantDraft>, referers: &[&str], expiration: Option<&str>) -> Policy {
    policy_of(&draft(apis, grants, referers), expiration, &every_provider())
}

/// A Maps token's policy: one table on `carto_dw`.
#[must_use]
pub fn maps_policy() -> Policy {
    policy(&["maps"], vec![grant("carto_dw", "p.d.t")], &[], None)
}

/// A token with a fresh random id and value, a Maps policy, and the name,
/// owner and creation time given; its sealed value is every byte value,
/// NUL included, as a cipher would make.
#[must_use]
pub fn token(owner: &Principal, name: &str, created: Timestamp) -> Token {
    let value = TokenValue::generate(&mut SysRng).unwrap();
    Token {
        id: TokenId::generate(&mut SysRng).unwrap(),
        owner: owner.clone(),
        name: TokenName::new(name).unwrap(),
        policy: maps_policy(),
        secret_hash: value.hash(),
        sealed_secret: SealedSecret::new((0..=255u8).rev().chain(0..=255).collect()),
        created_at: created,
        updated_at: created,
        last_used_at: None,
        version: 1,
        previous: None,
    }
}

/// An audit event by the token's owner recording `action` on `token`, with
/// the changes from `before` (none when the token is new) to `token`.
#[must_use]
pub fn event(action: AuditAction, before: Option<&Token>, token: &Token) -> AuditEvent {
    let after = match action {
        AuditAction::TokenDeleted | AuditAction::TokenRevoked => None,
        _ => Some(token),
    };
    let before =
        if action == AuditAction::TokenDeleted || action == AuditAction::TokenRevoked { Some(token) } else { before };
    AuditEvent::about_token(
        AuditEventId::generate(&mut SysRng).unwrap(),
        token.updated_at,
        &token.owner,
        action,
        token,
        token_changes(before, after),
    )
}

/// `base` with `changes` applied as a JSON merge patch of one level: each
/// key of `changes` replaces the same key of `base`, and a `null` removes
/// it. For tables of requests or claims that differ from a valid one in
/// one field.
#[must_use]
pub fn changed(base: &serde_json::Value, changes: &serde_json::Value) -> serde_json::Value {
    let mut result = base.clone();
    let fields = result.as_object_mut().expect("the base is a JSON object");
    for (key, value) in changes.as_object().expect("the changes are a JSON object") {
        if value.is_null() {
            fields.remove(key);
        } else {
            fields.insert(key.clone(), value.clone());
        }
    }
    result
}
