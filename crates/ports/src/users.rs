//! Users, their keys, and turning a bearer credential into an identity.

use async_trait::async_trait;
use latchkey_domain::{Identity, Principal, Role, SecretHash};

use crate::BackendError;

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// The org already has a user of that name.
    #[error("the user already exists")]
    UserExists,
    /// See [`BackendError`].
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The built-in users and the hashes of their keys. Keys themselves are
/// never stored.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserDirectory: Send + Sync {
    /// Creates the user with `role`, and the org when it is new, with the
    /// hash of the user's key.
    ///
    /// # Errors
    /// [`CreateUserError`].
    async fn create_user(
        &self,
        principal: &Principal,
        role: Role,
        key_hash: &SecretHash,
    ) -> Result<(), CreateUserError>;

    /// The user whose key has this hash, with their role.
    ///
    /// # Errors
    /// [`BackendError`] when the directory cannot be read.
    async fn find_by_key_hash(&self, key_hash: &SecretHash) -> Result<Option<Identity>, BackendError>;

    /// Whether any user exists (an empty store gets the first-run bootstrap).
    ///
    /// # Errors
    /// [`BackendError`] when the directory cannot be read.
    async fn has_users(&self) -> Result<bool, BackendError>;
}

/// Why a credential was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticationError {
    /// Malformed, unknown, expired or wrongly signed: the client is told
    /// only that it is not a valid credential.
    #[error("invalid credential")]
    Invalid,
    /// The credential could not be checked.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Turns the bearer credential of a management request into the principal
/// it stands for: a built-in user key, or a JWT from an identity provider.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Who `credential` stands for, with their role.
    ///
    /// # Errors
    /// [`AuthenticationError::Invalid`] for any credential that is not
    /// accepted, without saying why; [`AuthenticationError::Backend`] when
    /// it could not be checked.
    async fn authenticate(&self, credential: &str) -> Result<Identity, AuthenticationError>;
}
