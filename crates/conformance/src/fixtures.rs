//! Tokens, users and connections for the cases.

use latchkey_domain::audit::AuditAction;
use latchkey_domain::validation::{ExpirationInput, TokenDraft, validate};
use latchkey_domain::{Connection, Policy, Principal, Provider, Timestamp, Token, TokenId};
use latchkey_ports::{DeleteError, InsertError, TokenRepository, UpdateError};
use rand::rngs::SysRng;

use crate::Stores;

pub use latchkey_testkit::{at, connection, event, principal, token};

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
    stores.users.create_user(owner, latchkey_domain::Role::Member, &key.hash()).await.unwrap();
    for connection in connections() {
        stores.catalog.create_connection(&owner.org, &connection).await.unwrap();
    }
}

/// The token writes with an audit event made up for the case, for the
/// cases about something else than the log.
#[async_trait::async_trait]
pub trait Logged {
    /// `insert`, with a `token.created` event.
    async fn insert_logged(&self, token: &Token, limit: Option<u64>) -> Result<(), InsertError>;
    /// `update`, with a `token.updated` event.
    async fn update_logged(&self, token: &Token, expected_version: u64) -> Result<(), UpdateError>;
    /// `delete`, with a `token.deleted` event naming only the id.
    async fn delete_logged(&self, id: &TokenId, expected_version: Option<u64>) -> Result<(), DeleteError>;
}

#[async_trait::async_trait]
impl Logged for std::sync::Arc<dyn TokenRepository> {
    async fn insert_logged(&self, token: &Token, limit: Option<u64>) -> Result<(), InsertError> {
        self.insert(token, limit, &event(AuditAction::TokenCreated, None, token)).await
    }

    async fn update_logged(&self, token: &Token, expected_version: u64) -> Result<(), UpdateError> {
        self.update(token, expected_version, &event(AuditAction::TokenUpdated, None, token)).await
    }

    async fn delete_logged(&self, id: &TokenId, expected_version: Option<u64>) -> Result<(), DeleteError> {
        let mut stand_in = token(&principal("acme", "ana@example.com"), "deleted", at(0));
        stand_in.id = id.clone();
        self.delete(id, expected_version, &event(AuditAction::TokenDeleted, None, &stand_in)).await
    }
}
