//! Whether the store answers, for readiness checks.

use async_trait::async_trait;

use crate::BackendError;

/// Answers whether the store can serve requests right now.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait StoreHealth: Send + Sync {
    /// Runs the cheapest round trip the store has.
    ///
    /// # Errors
    /// [`BackendError`] when the store does not answer.
    async fn ping(&self) -> Result<(), BackendError>;
}
