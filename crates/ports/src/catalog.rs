//! The catalog of connections to data warehouses.

use async_trait::async_trait;
use latchkey_domain::{Connection, OrgName};

use crate::BackendError;

/// Why a connection could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateConnectionError {
    /// The org already has a connection of that name.
    #[error("the organization already has a connection with that name")]
    NameTaken,
    /// No such org: connections are only added to orgs that exist, so that
    /// a misspelt org name is reported instead of founding a new tenant.
    #[error("no such organization")]
    UnknownOrg,
    /// See [`BackendError`].
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Connections by org. Every user of an org may use every connection of it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ConnectionCatalog: Send + Sync {
    /// The org's connections, ordered by name; empty for an unknown org.
    ///
    /// # Errors
    /// [`BackendError`] when the catalog cannot be read.
    async fn connections(&self, org: &OrgName) -> Result<Vec<Connection>, BackendError>;

    /// Adds a connection to an existing org.
    ///
    /// # Errors
    /// [`CreateConnectionError`].
    async fn create_connection(&self, org: &OrgName, connection: &Connection) -> Result<(), CreateConnectionError>;
}
