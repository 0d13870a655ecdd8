//! Users and connections: what the command line manages, and the first-run
//! bootstrap.

use std::sync::Arc;

use latchkey_domain::names::NameError;
use latchkey_domain::{Connection, ConnectionName, OrgName, Principal, Provider, Role, UserKey, UserName};
use latchkey_ports::{BackendError, ConnectionCatalog, CreateConnectionError, CreateUserError, UserDirectory};

use crate::random::{RandomError, with_os_rng};

/// The org the bootstrap creates.
pub const BOOTSTRAP_ORG: &str = "default";
/// The user the bootstrap creates.
pub const BOOTSTRAP_USER: &str = "admin";
/// The connection the bootstrap creates (provider `carto_dw`).
pub const BOOTSTRAP_CONNECTION: &str = "carto_dw";

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// See [`CreateUserError`].
    #[error(transparent)]
    Create(#[from] CreateUserError),
    /// See [`RandomError`].
    #[error(transparent)]
    Random(#[from] RandomError),
    /// See [`CreateConnectionError`].
    #[error(transparent)]
    Connection(#[from] CreateConnectionError),
    /// See [`BackendError`].
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A name that breaks its rules.
    #[error("invalid name: {0}")]
    Name(#[from] NameError),
}

/// Users and connections.
pub struct UserService {
    users: Arc<dyn UserDirectory>,
    catalog: Arc<dyn ConnectionCatalog>,
}

impl UserService {
    /// Wires the service to its ports.
    #[must_use]
    pub fn new(users: Arc<dyn UserDirectory>, catalog: Arc<dyn ConnectionCatalog>) -> Self {
        Self { users, catalog }
    }

    /// Creates a user with `role` (and the org when new) and returns the
    /// user's key, which exists nowhere else: only its hash is stored.
    ///
    /// # Errors
    /// [`UserError`], e.g. when the user exists.
    pub async fn create_user(&self, principal: &Principal, role: Role) -> Result<UserKey, UserError> {
        let key = with_os_rng(UserKey::generate)?;
        self.users.create_user(principal, role, &key.hash()).await?;
        tracing::info!(org = %principal.org, user = %principal.user, admin = role.is_admin(), "user created");
        Ok(key)
    }

    /// Adds a connection to an existing org.
    ///
    /// # Errors
    /// [`CreateConnectionError`].
    pub async fn create_connection(&self, org: &OrgName, connection: &Connection) -> Result<(), CreateConnectionError> {
        self.catalog.create_connection(org, connection).await?;
        tracing::info!(%org, connection = %connection.name, provider = %connection.provider, "connection created");
        Ok(())
    }

    /// On a store without users, creates org `default`, user `admin` (an
    /// org admin) and connection `carto_dw`, and returns the admin's key;
    /// otherwise `None`.
    ///
    /// Several instances starting at once on one empty database race here;
    /// the one that loses finds the user taken and returns `None`.
    ///
    /// # Errors
    /// [`UserError`] when the store fails.
    pub async fn bootstrap(&self) -> Result<Option<UserKey>, UserError> {
        if self.users.has_users().await? {
            return Ok(None);
        }
        let org = OrgName::new(BOOTSTRAP_ORG)?;
        let user = UserName::new(BOOTSTRAP_USER)?;
        let connection = ConnectionName::new(BOOTSTRAP_CONNECTION)?;
        let principal = Principal { org: org.clone(), user };
        let key = match self.create_user(&principal, Role::Admin).await {
            Ok(key) => key,
            Err(UserError::Create(CreateUserError::UserExists)) => return Ok(None),
            Err(e) => return Err(e),
        };
        match self.create_connection(&org, &Connection { name: connection, provider: Provider::CartoDw }).await {
            Ok(()) | Err(CreateConnectionError::NameTaken) => Ok(Some(key)),
            Err(e) => Err(e.into()),
        }
    }
}
