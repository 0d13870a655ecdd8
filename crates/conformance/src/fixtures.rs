//! Tokens, users and connections for the cases.

use latchkey_domain::validation::{ExpirationInput, TokenDraft, validate};
use latchkey_domain::{Connection, Policy, Principal, Provider, Timestamp};
use rand::rngs::SysRng;

use crate::Stores;

pub use latchkey_testkit::{at, connection, principal, token};

/// The connections every case's org has.
pub fn connections() -> Vec<Connection> {
    vec![connection("carto_dw", Provider::CartoDw), connection("pg", Provider::Postgres)]
}

/// A token as a client sends it, from pairs of connection and source.
pub fn draft(apis: &[&str], grants: Vec<(&str, String)>, referers: Vec<String>) -> TokenDraft {
    let grants = grants.into_iter().map(|(connection, source)| latchkey_testkit::grant(connection, &source)).collect();
    let referers: Vec<&str> = referers.iter().map(String::as_str).collect();
    latchkey_testkit::draft(apis, grants, &referers)
}

/// The valid policy of `draft`, expiring at `expiration`.
pub fn policy(draft: &TokenDraft, expiration: Option<Timestamp>) -> Policy {
    let valid = validate(draft, ExpirationInput::Kept(None), &connections()).unwrap();
    valid.policy.with_expiration(expiration)
}

/// A simple maps token.
pub fn simple_policy() -> Policy {
    latchkey_testkit::maps_policy()
}

/// Creates the user (and so its org) and the org's connections.
pub async fn org_with_connections(stores: &Stores, owner: &Principal) {
    let key = latchkey_domain::UserKey::generate(&mut SysRng).unwrap();
    stores.users.create_user(owner, &key.hash()).await.unwrap();
    for connection in connections() {
        stores.catalog.create_connection(&owner.org, &connection).await.unwrap();
    }
}
