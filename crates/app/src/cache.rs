//! The authorize cache: tokens by the hash of their value, so that the hot
//! path usually decides without a storage round trip.
//!
//! Correctness rests on eviction, not on expiry. A change or delete made
//! through this instance evicts at once; one made through another instance
//! arrives through a [`ChangeSink`] feed (PostgreSQL LISTEN/NOTIFY) and
//! evicts here within that feed's delay. While the feed is down the cache
//! is emptied and bypassed, since changes would go unheard. The time to live
//! only bounds the damage of a feed that fails silently.
//!
//! Only tokens that exist are cached: a value unknown now may be created in
//! the next second, and must then authorize at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use latchkey_domain::{SecretHash, Token};
use latchkey_metrics::{EvictionCause, Metrics};
use latchkey_ports::ChangeSink;
use moka::notification::RemovalCause;
use moka::sync::Cache;

/// How the cache is sized.
#[derive(Clone, Copy, Debug)]
pub struct CacheSettings {
    /// The most tokens kept; 0 turns caching off.
    pub capacity: u64,
    /// How long an entry may live without being evicted by a change.
    pub time_to_live: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { capacity: 100_000, time_to_live: Duration::from_secs(300) }
    }
}

/// Tokens by secret hash, kept true by eviction.
pub struct TokenCache {
    entries: Option<Cache<SecretHash, Arc<Token>>>,
    /// Whether changes made elsewhere are being heard.
    trusted: AtomicBool,
    /// Counts evictions. A lookup that started before an eviction must not
    /// cache what it read: the row may be the one the eviction was about.
    epoch: AtomicU64,
    metrics: Arc<Metrics>,
}

/// A lookup in progress: remembers the epoch it started in.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl TokenCache {
    /// A cache whose change feed starts `trusted` (true for a store with no
    /// other writers, such as memory or a SQLite file; false for PostgreSQL
    /// until its listener has subscribed), counting what it does nowhere
    /// anyone reads.
    #[must_use]
    pub fn new(settings: CacheSettings, trusted: bool) -> Self {
        Self::build(settings, trusted, Arc::new(Metrics::new()))
    }

    /// [`TokenCache::new`], counting hits, misses, evictions, its size and
    /// its feed's state into `metrics` (the size and state are read at each
    /// scrape).
    #[must_use]
    pub fn observed(settings: CacheSettings, trusted: bool, metrics: Arc<Metrics>) -> Arc<Self> {
        let cache = Arc::new(Self::build(settings, trusted, metrics.clone()));
        let weak = Arc::downgrade(&cache);
        metrics.before_render(move |metrics| {
            let Some(cache) = weak.upgrade() else { return };
            if let Some(entries) = &cache.entries {
                // Applies pending removals, so that the count is exact and
                // expired entries are reported as evicted.
                entries.run_pending_tasks();
                metrics.set_cache_entries(entries.entry_count());
            }
            metrics.set_cache_serving(cache.is_serving());
        });
        cache
    }

    fn build(settings: CacheSettings, trusted: bool, metrics: Arc<Metrics>) -> Self {
        let entries = (settings.capacity > 0).then(|| {
            let counted = metrics.clone();
            Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.time_to_live)
                .eviction_listener(move |_, _, cause| {
                    let cause = match cause {
                        RemovalCause::Explicit => EvictionCause::Invalidated,
                        RemovalCause::Expired => EvictionCause::Expired,
                        RemovalCause::Size => EvictionCause::Capacity,
                        // A newer copy of the same token took its place.
                        RemovalCause::Replaced => return,
                    };
                    counted.cache_evicted(cause);
                })
                .build()
        });
        Self { entries, trusted: AtomicBool::new(trusted), epoch: AtomicU64::new(0), metrics }
    }

    /// A cache that caches nothing.
    #[must_use]
    pub fn disabled() -> Self {
        Self::new(CacheSettings { capacity: 0, time_to_live: Duration::ZERO }, false)
    }

    /// The cached token for `hash`, if any, and a ticket for storing what a
    /// lookup finds otherwise.
    pub fn get(&self, hash: &SecretHash) -> (Option<Arc<Token>>, Ticket) {
        let ticket = Ticket(self.epoch.load(Ordering::Acquire));
        let hit = match &self.entries {
            Some(entries) if self.trusted.load(Ordering::Acquire) => {
                let hit = entries.get(hash);
                if hit.is_some() {
                    self.metrics.cache_hit();
                } else {
                    self.metrics.cache_miss();
                }
                hit
            }
            _ => {
                self.metrics.cache_bypass();
                None
            }
        };
        (hit, ticket)
    }

    /// Keeps `token`, found in storage by `hash` under `ticket`, unless
    /// something was evicted since the ticket was taken or the feed is
    /// down. `hash` is the one looked up, which for a rolled token's
    /// previous value is not the token's own: a change evicts both.
    pub fn put(&self, ticket: Ticket, hash: SecretHash, token: Arc<Token>) {
        let Some(entries) = &self.entries else { return };
        if !self.trusted.load(Ordering::Acquire) || self.epoch.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        entries.insert(hash, token);
        // An eviction that raced with the insert above may have run before
        // it; undo the insert in that case rather than serve a stale token.
        if self.epoch.load(Ordering::Acquire) != ticket.0 || !self.trusted.load(Ordering::Acquire) {
            entries.invalidate(&hash);
        }
    }

    /// Forgets the token with this hash.
    pub fn evict(&self, hash: &SecretHash) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.invalidate(hash);
        }
    }

    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }

    /// Whether cached answers are being used (the feed is up and the cache
    /// is on).
    #[must_use]
    pub fn is_serving(&self) -> bool {
        self.entries.is_some() && self.trusted.load(Ordering::Acquire)
    }
}

impl ChangeSink for TokenCache {
    fn token_changed(&self, secret_hash: &SecretHash) {
        self.metrics.feed_change();
        self.evict(secret_hash);
    }

    fn feed_lost(&self) {
        self.trusted.store(false, Ordering::Release);
        self.clear();
        self.metrics.feed_lost();
    }

    fn feed_restored(&self) {
        self.clear();
        self.trusted.store(true, Ordering::Release);
        self.metrics.feed_restored();
    }

    fn heartbeat(&self, round_trip: Duration) {
        self.metrics.set_feed_lag(round_trip);
    }
}
