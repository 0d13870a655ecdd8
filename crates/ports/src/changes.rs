//! Hearing about token changes made elsewhere, so that cached answers do
//! not outlive them.

use latchkey_domain::SecretHash;

/// Receives the changes to tokens that other instances (or anyone with
/// access to the database) make. Implemented by the authorize cache; fed by
/// whatever the store offers (PostgreSQL's LISTEN/NOTIFY).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ChangeSink: Send + Sync {
    /// The token whose value has this hash was updated or deleted.
    fn token_changed(&self, secret_hash: &SecretHash);

    /// The feed of changes broke: changes may now go unheard, so nothing
    /// cached can be trusted until [`ChangeSink::feed_restored`].
    fn feed_lost(&self);

    /// The feed works (again). Changes made while it was lost were not
    /// heard; the sink must not trust anything it learnt before.
    fn feed_restored(&self);

    /// A probe sent through the feed came back after `round_trip`: how late
    /// a change made elsewhere is heard, at least. For monitoring only.
    fn heartbeat(&self, round_trip: std::time::Duration) {
        let _ = round_trip;
    }
}
