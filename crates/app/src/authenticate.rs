//! Authenticating management requests: built-in user keys, and the choice
//! between them and an identity provider's JWTs.

use std::sync::Arc;

use async_trait::async_trait;
use latchkey_domain::{Identity, UserKey};
use latchkey_ports::{AuthenticationError, Authenticator, UserDirectory};

/// Accepts the built-in user keys made by `latchkey users create`.
pub struct UserKeyAuthenticator {
    users: Arc<dyn UserDirectory>,
}

impl UserKeyAuthenticator {
    /// An authenticator backed by `users`.
    #[must_use]
    pub fn new(users: Arc<dyn UserDirectory>) -> Self {
        Self { users }
    }
}

#[async_trait]
impl Authenticator for UserKeyAuthenticator {
    /// Keys are found by the SHA-256 of their value, so the comparison is an
    /// index lookup on a hash the caller cannot steer; a malformed key is
    /// refused before any lookup.
    async fn authenticate(&self, credential: &str) -> Result<Identity, AuthenticationError> {
        let key = UserKey::parse(credential).map_err(|_| AuthenticationError::Invalid)?;
        self.users.find_by_key_hash(&key.hash()).await?.ok_or(AuthenticationError::Invalid)
    }
}

/// Sends a credential to the authenticator for its kind: a user key (by its
/// `latchkey_uk_` prefix) to the built-in keys, anything else to the
/// identity provider when one is configured.
pub struct CredentialRouter {
    keys: Arc<dyn Authenticator>,
    identity_provider: Option<Arc<dyn Authenticator>>,
}

impl CredentialRouter {
    /// A router over built-in `keys` and an optional identity provider.
    #[must_use]
    pub fn new(keys: Arc<dyn Authenticator>, identity_provider: Option<Arc<dyn Authenticator>>) -> Self {
        Self { keys, identity_provider }
    }
}

#[async_trait]
impl Authenticator for CredentialRouter {
    async fn authenticate(&self, credential: &str) -> Result<Identity, AuthenticationError> {
        if UserKey::has_prefix(credential) {
            self.keys.authenticate(credential).await
        } else if let Some(identity_provider) = &self.identity_provider {
            identity_provider.authenticate(credential).await
        } else {
            Err(AuthenticationError::Invalid)
        }
    }
}
