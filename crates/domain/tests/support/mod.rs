//! Helpers shared by the domain's integration tests.
#![allow(dead_code)]

use latchkey_domain::validation::{ExpirationInput, GrantDraft, TokenDraft, validate};
use latchkey_domain::{Connection, ConnectionName, Policy, Provider, Timestamp};

/// The org's connections in every test: one per interesting provider.
pub fn connections() -> Vec<Connection> {
    [
        ("carto_dw", Provider::CartoDw),
        ("bq", Provider::Bigquery),
        ("pg", Provider::Postgres),
        ("snow", Provider::Snowflake),
        ("rs", Provider::Redshift),
        ("dbx", Provider::Databricks),
    ]
    .into_iter()
    .map(|(name, provider)| Connection { name: ConnectionName::new(name).unwrap(), provider })
    .collect()
}

pub fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-27T10:00:00Z").unwrap()
}

pub fn grant(connection: &str, source: &str) -> GrantDraft {
    GrantDraft { connection_name: connection.into(), source: source.into() }
}

pub fn draft(apis: &[&str], grants: Vec<GrantDraft>, referers: &[&str]) -> TokenDraft {
    TokenDraft {
        name: None,
        allowed_apis: apis.iter().map(|s| (*s).to_owned()).collect(),
        grants,
        referers: referers.iter().map(|s| (*s).to_owned()).collect(),
        unknown_fields: vec![],
    }
}

/// A valid policy, or a panic that shows why not.
pub fn policy(apis: &[&str], grants: Vec<GrantDraft>, referers: &[&str], expiration: Option<&str>) -> Policy {
    let draft = draft(apis, grants, referers);
    match validate(&draft, ExpirationInput::Requested { date: expiration, now: now() }, &connections()) {
        Ok(valid) => valid.policy,
        Err(issues) => panic!("invalid test policy: {issues:#?}"),
    }
}
