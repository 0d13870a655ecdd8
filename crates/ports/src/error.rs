//! The opaque failure of a storage backend.

use std::error::Error;
use std::fmt;

/// A failure of the backend behind a port (a lost connection, a full disk,
/// corrupt data) that the caller cannot act on beyond reporting it.
///
/// The message is for logs only: it may name tables or hosts and is never
/// sent to clients.
#[derive(Debug)]
pub struct BackendError {
    source: Box<dyn Error + Send + Sync>,
    corrupt: bool,
}

impl BackendError {
    /// Wraps a driver's error: the backend did not answer as it should, and
    /// trying again later may work.
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self { source: source.into(), corrupt: false }
    }

    /// An inconsistency the adapter detected itself (a stored row that no
    /// longer satisfies the domain's rules): trying again will not help.
    #[must_use]
    pub fn corrupt(what: impl fmt::Display) -> Self {
        Self { source: format!("corrupt stored data: {what}").into(), corrupt: true }
    }

    /// Whether the stored data itself is wrong, rather than the backend
    /// being unreachable.
    #[must_use]
    pub fn is_corrupt(&self) -> bool {
        self.corrupt
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "storage backend error: {}", self.source)
    }
}

impl Error for BackendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}
