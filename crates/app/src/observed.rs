//! Counting storage failures for the metrics, whatever the adapter: a
//! decorator that implements every storage port by calling the real store
//! and counting each [`BackendError`] under the operation's name.
//!
//! Only failures of the store count (`storage_errors`); the outcomes a
//! caller acts on (a taken name, a stale version, nothing found) are
//! answers, not errors.

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_domain::audit::AuditEvent;
use latchkey_domain::org_policy::OrgPolicy;
use latchkey_domain::{
    Connection, Identity, OrgName, Principal, Role, SealedSecret, SecretHash, Timestamp, Token, TokenId, UserName,
};
use latchkey_metrics::Metrics;
use latchkey_ports::{
    AuditCursor, AuditLog, AuditPage, AuditScope, BackendError, ConnectionCatalog, CreateConnectionError,
    CreateUserError, Cursor, DeleteError, GetError, InsertError, OrgPolicies, Page, PolicyWriteError, StoreHealth,
    TokenRepository, UpdateError, UserDirectory,
};

/// A store whose failures are counted.
pub struct Observed<S: ?Sized> {
    inner: Arc<S>,
    metrics: Arc<Metrics>,
}

impl<S: ?Sized> Observed<S> {
    /// Counts the failures of `inner` into `metrics`.
    #[must_use]
    pub fn new(inner: Arc<S>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { inner, metrics })
    }

    fn watch<T, E: FromBackend>(&self, operation: &'static str, result: Result<T, E>) -> Result<T, E> {
        if let Err(error) = &result
            && error.is_backend()
        {
            self.metrics.storage_error(operation);
        }
        result
    }
}

/// Whether an error is the store's failure rather than an answer.
trait FromBackend {
    fn is_backend(&self) -> bool;
}

impl FromBackend for BackendError {
    fn is_backend(&self) -> bool {
        true
    }
}

macro_rules! backend_variant {
    ($($error:ident),*) => {$(
        impl FromBackend for $error {
            fn is_backend(&self) -> bool {
                matches!(self, $error::Backend(_))
            }
        }
    )*};
}

backend_variant!(
    InsertError,
    GetError,
    UpdateError,
    DeleteError,
    CreateUserError,
    CreateConnectionError,
    PolicyWriteError
);

#[async_trait]
impl<S: TokenRepository + ?Sized> TokenRepository for Observed<S> {
    async fn insert(&self, token: &Token, limit: Option<u64>, event: &AuditEvent) -> Result<(), InsertError> {
        self.watch("insert", self.inner.insert(token, limit, event).await)
    }

    async fn get(&self, id: &TokenId, owner: &Principal) -> Result<Token, GetError> {
        self.watch("get", self.inner.get(id, owner).await)
    }

    async fn get_in_org(&self, id: &TokenId, org: &OrgName) -> Result<Token, GetError> {
        self.watch("get_in_org", self.inner.get_in_org(id, org).await)
    }

    async fn find_by_secret_hash(&self, hash: &SecretHash) -> Result<Option<Token>, BackendError> {
        self.watch("find_by_secret_hash", self.inner.find_by_secret_hash(hash).await)
    }

    async fn list(&self, owner: &Principal, after: Option<Cursor>, limit: usize) -> Result<Page, BackendError> {
        self.watch("list", self.inner.list(owner, after, limit).await)
    }

    async fn list_org(
        &self,
        org: &OrgName,
        owner: Option<UserName>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, BackendError> {
        self.watch("list_org", self.inner.list_org(org, owner, after, limit).await)
    }

    async fn update(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError> {
        self.watch("update", self.inner.update(token, expected_version, event).await)
    }

    async fn roll(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError> {
        self.watch("roll", self.inner.roll(token, expected_version, event).await)
    }

    async fn delete(&self, id: &TokenId, expected_version: Option<u64>, event: &AuditEvent) -> Result<(), DeleteError> {
        self.watch("delete", self.inner.delete(id, expected_version, event).await)
    }

    async fn record_last_use(&self, uses: &[(TokenId, Timestamp)]) -> Result<(), BackendError> {
        self.watch("record_last_use", self.inner.record_last_use(uses).await)
    }

    async fn sealed_secrets(
        &self,
        after: Option<TokenId>,
        limit: usize,
    ) -> Result<Vec<(TokenId, SealedSecret)>, BackendError> {
        self.watch("sealed_secrets", self.inner.sealed_secrets(after, limit).await)
    }

    async fn replace_sealed_secrets(
        &self,
        replacements: &[(TokenId, SealedSecret, SealedSecret)],
    ) -> Result<u64, BackendError> {
        self.watch("replace_sealed_secrets", self.inner.replace_sealed_secrets(replacements).await)
    }
}

#[async_trait]
impl<S: ConnectionCatalog + ?Sized> ConnectionCatalog for Observed<S> {
    async fn connections(&self, org: &OrgName) -> Result<Vec<Connection>, BackendError> {
        self.watch("connections", self.inner.connections(org).await)
    }

    async fn create_connection(&self, org: &OrgName, connection: &Connection) -> Result<(), CreateConnectionError> {
        self.watch("create_connection", self.inner.create_connection(org, connection).await)
    }
}

#[async_trait]
impl<S: UserDirectory + ?Sized> UserDirectory for Observed<S> {
    async fn create_user(
        &self,
        principal: &Principal,
        role: Role,
        key_hash: &SecretHash,
    ) -> Result<(), CreateUserError> {
        self.watch("create_user", self.inner.create_user(principal, role, key_hash).await)
    }

    async fn find_by_key_hash(&self, key_hash: &SecretHash) -> Result<Option<Identity>, BackendError> {
        self.watch("find_by_key_hash", self.inner.find_by_key_hash(key_hash).await)
    }

    async fn has_users(&self) -> Result<bool, BackendError> {
        self.watch("has_users", self.inner.has_users().await)
    }
}

#[async_trait]
impl<S: AuditLog + ?Sized> AuditLog for Observed<S> {
    async fn events(
        &self,
        scope: AuditScope,
        token: Option<TokenId>,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage, BackendError> {
        self.watch("audit_events", self.inner.events(scope, token, after, limit).await)
    }
}

#[async_trait]
impl<S: OrgPolicies + ?Sized> OrgPolicies for Observed<S> {
    async fn policy(&self, org: &OrgName) -> Result<OrgPolicy, BackendError> {
        self.watch("policy", self.inner.policy(org).await)
    }

    async fn replace_policy(
        &self,
        org: &OrgName,
        expected: &OrgPolicy,
        new: &OrgPolicy,
        event: &AuditEvent,
    ) -> Result<(), PolicyWriteError> {
        self.watch("replace_policy", self.inner.replace_policy(org, expected, new, event).await)
    }
}

#[async_trait]
impl<S: StoreHealth + ?Sized> StoreHealth for Observed<S> {
    async fn ping(&self) -> Result<(), BackendError> {
        self.watch("ping", self.inner.ping().await)
    }
}

#[cfg(test)]
mod tests {
    use latchkey_ports::{MockStoreHealth, MockTokenRepository};

    use super::*;

    #[tokio::test]
    async fn failures_of_the_store_count_and_answers_do_not() {
        let metrics = Arc::new(Metrics::new());
        let mut tokens = MockTokenRepository::new();
        tokens.expect_find_by_secret_hash().returning(|_| Err(BackendError::new("down")));
        tokens.expect_delete().returning(|_, _, _| Err(DeleteError::NotFound));
        let observed = Observed::new(Arc::new(tokens) as Arc<dyn TokenRepository>, metrics.clone());
        let hash = SecretHash::from_bytes([0; 32]);
        assert!(observed.find_by_secret_hash(&hash).await.is_err());
        assert!(observed.find_by_secret_hash(&hash).await.is_err());
        let id = TokenId::parse("abcdefABCDEF").unwrap();
        let token = latchkey_testkit::token(&latchkey_testkit::principal("acme", "ana"), "t", latchkey_testkit::now());
        let event = latchkey_testkit::event(latchkey_domain::audit::AuditAction::TokenDeleted, None, &token);
        assert!(matches!(observed.delete(&id, None, &event).await, Err(DeleteError::NotFound)));
        let mut health = MockStoreHealth::new();
        health.expect_ping().returning(|| Ok(()));
        let health = Observed::new(Arc::new(health) as Arc<dyn StoreHealth>, metrics.clone());
        assert!(health.ping().await.is_ok());

        let text = metrics.render();
        assert!(text.contains("latchkey_storage_errors_total{operation=\"find_by_secret_hash\"} 2\n"), "{text}");
        assert!(!text.contains("operation=\"delete\""), "{text}");
        assert!(!text.contains("operation=\"ping\""), "{text}");
    }
}
