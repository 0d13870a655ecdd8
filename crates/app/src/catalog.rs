//! What the caller may see of its org and of the service: its org's
//! connections, and whether storage answers.

use std::sync::Arc;

use latchkey_domain::{Connection, Principal};
use latchkey_ports::{BackendError, ConnectionCatalog, StoreHealth};

/// The connections a caller may use: every connection of its org.
pub struct ConnectionService {
    catalog: Arc<dyn ConnectionCatalog>,
}

impl ConnectionService {
    /// Wires the service to its port.
    #[must_use]
    pub fn new(catalog: Arc<dyn ConnectionCatalog>) -> Self {
        Self { catalog }
    }

    /// The connections of `caller`'s org.
    ///
    /// # Errors
    /// [`BackendError`] when the catalog cannot be read.
    pub async fn list(&self, caller: &Principal) -> Result<Vec<Connection>, BackendError> {
        self.catalog.connections(&caller.org).await
    }
}

/// Whether the service can answer: its storage does.
pub struct Readiness {
    health: Arc<dyn StoreHealth>,
}

impl Readiness {
    /// Wires the check to its port.
    #[must_use]
    pub fn new(health: Arc<dyn StoreHealth>) -> Self {
        Self { health }
    }

    /// Ready when storage answers.
    ///
    /// # Errors
    /// [`BackendError`] when it does not.
    pub async fn check(&self) -> Result<(), BackendError> {
        self.health.ping().await
    }
}
