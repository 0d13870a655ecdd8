//! Recording when tokens are used without a storage write per request.
//!
//! Authorize is the hot path: every request to a data API pays for it.
//! Uses are noted in memory, coalesced per token (only the latest time
//! matters), and written in one batch by [`UsageRecorder::flush`], which the
//! server calls on a timer and once more on a clean shutdown. A crash loses
//! at most one interval of `last_used_at` updates, never a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use latchkey_domain::{Timestamp, TokenId};
use latchkey_ports::{BackendError, TokenRepository};

/// Coalesces token uses and writes them in batches.
pub struct UsageRecorder {
    tokens: Arc<dyn TokenRepository>,
    pending: Mutex<HashMap<TokenId, Timestamp>>,
}

impl UsageRecorder {
    /// A recorder that writes to `tokens`.
    #[must_use]
    pub fn new(tokens: Arc<dyn TokenRepository>) -> Self {
        Self { tokens, pending: Mutex::new(HashMap::new()) }
    }

    /// Notes that token `id` was used at `at`. Costs a map insert; never
    /// waits for storage.
    pub fn note(&self, id: &TokenId, at: Timestamp) {
        // A poisoned lock only means another thread panicked mid-insert; the
        // map is still a valid map, so keep going rather than lose uses.
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.get_mut(id) {
            Some(latest) => *latest = (*latest).max(at),
            None => {
                pending.insert(id.clone(), at);
            }
        }
    }

    /// How many tokens have uses waiting to be written.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Writes every noted use in one batch and returns how many tokens it
    /// covered. When the write fails the uses are kept for the next flush.
    ///
    /// # Errors
    /// [`BackendError`] from the store.
    pub async fn flush(&self) -> Result<usize, BackendError> {
        let batch: Vec<(TokenId, Timestamp)> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match self.tokens.record_last_use(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(error) => {
                for (id, at) in batch {
                    self.note(&id, at);
                }
                Err(error)
            }
        }
    }
}
