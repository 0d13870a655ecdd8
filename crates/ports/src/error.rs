//! The opaque failure of a storage backend.

use std::error::Error;
use std::fmt;

/// A failure of the backend behind a port (a lost connection, a full disk,
/// corrupt data) that the caller cannot act on beyond reporting it.
///
/// The message is for logs only: it may name tables or hosts and is never
/// sent to clients.
#[derive(Debug)]
pub struct BackendError(Box<dyn Error + Send + Sync>);

impl BackendError {
    /// Wraps a driver's error.
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self(source.into())
    }

    /// A backend error described by a message, for inconsistencies the
    /// adapter detects itself (a stored row that no longer validates).
    #[must_use]
    pub fn corrupt(what: impl fmt::Display) -> Self {
        Self(format!("corrupt stored data: {what}").into())
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage backend error: {}", self.0)
    }
}

impl Error for BackendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.0.as_ref())
    }
}
