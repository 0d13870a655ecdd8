//! Tokens, users and connections for the cases.

use latchkey_domain::validation::{ExpirationInput, GrantDraft, TokenDraft, validate};
use latchkey_domain::{
    Connection, ConnectionName, OrgName, Policy, Principal, Provider, SealedSecret, Timestamp, Token, TokenId,
    TokenName, TokenValue, UserName,
};
use rand::rngs::SysRng;

use crate::Stores;

pub fn principal(org: &str, user: &str) -> Principal {
    Principal { org: OrgName::new(org).unwrap(), user: UserName::new(user).unwrap() }
}

pub fn connection(name: &str, provider: Provider) -> Connection {
    Connection { name: ConnectionName::new(name).unwrap(), provider }
}

/// The connections every case's org has.
pub fn connections() -> Vec<Connection> {
    vec![connection("carto_dw", Provider::CartoDw), connection("pg", Provider::Postgres)]
}

/// A base time with microseconds, so that truncation to milliseconds or
/// seconds by a store would show.
pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(1_795_780_800_123_456 + seconds * 1_000_000).unwrap()
}

pub fn draft(apis: &[&str], grants: Vec<(&str, String)>, referers: Vec<String>) -> TokenDraft {
    TokenDraft {
        name: None,
        allowed_apis: apis.iter().map(|a| (*a).to_owned()).collect(),
        grants: grants
            .into_iter()
            .map(|(connection_name, source)| GrantDraft { connection_name: connection_name.into(), source })
            .collect(),
        referers,
        unknown_fields: vec![],
    }
}

pub fn policy(draft: &TokenDraft, expiration: Option<Timestamp>) -> Policy {
    let valid = validate(draft, ExpirationInput::Kept(None), &connections()).unwrap();
    valid.policy.with_expiration(expiration)
}

/// A simple maps token.
pub fn simple_policy() -> Policy {
    policy(&draft(&["maps"], vec![("carto_dw", "p.d.t".into())], vec![]), None)
}

/// A token with fresh random id and value; its name, owner and creation
/// time as given.
pub fn token(owner: &Principal, name: &str, created: Timestamp) -> Token {
    let id = TokenId::generate(&mut SysRng).unwrap();
    let value = TokenValue::generate(&mut SysRng).unwrap();
    Token {
        id,
        owner: owner.clone(),
        name: TokenName::new(name).unwrap(),
        policy: simple_policy(),
        secret_hash: value.hash(),
        // Bytes a cipher would make: every value 0..=255, a NUL among them.
        sealed_secret: SealedSecret::new((0..=255u8).rev().chain(0..=255).collect()),
        created_at: created,
        updated_at: created,
        last_used_at: None,
        version: 1,
    }
}

/// Creates the user (and so its org) and the org's connections.
pub async fn org_with_connections(stores: &Stores, owner: &Principal) {
    let key = latchkey_domain::UserKey::generate(&mut SysRng).unwrap();
    stores.users.create_user(owner, &key.hash()).await.unwrap();
    for connection in connections() {
        stores.catalog.create_connection(&owner.org, &connection).await.unwrap();
    }
}
