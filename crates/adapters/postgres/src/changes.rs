//! Hearing token changes from every instance through LISTEN/NOTIFY.
//!
//! A trigger (migration 2) notifies the `latchkey_token_changes` channel
//! with the hash of a token's value whenever the token is updated or
//! deleted. Each instance keeps one connection listening and passes what it
//! hears to its [`ChangeSink`]. When that connection drops, the sink is told
//! at once (and stops trusting its cache), and the listener reconnects with
//! backoff; the sink is told again once it is subscribed.
//!
//! A connection can also fail silently (a proxy or a firewall that drops
//! the idle TCP connection without a reset): then nothing arrives and
//! nothing says so. So each listener sends itself a heartbeat through the
//! database every few seconds, on a channel of its own, from a second
//! connection. Its round trip is the feed's lag, reported to the sink; and
//! when nothing at all has arrived for three heartbeats, the feed is
//! treated as lost and the connection replaced.

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_domain::SecretHash;
use latchkey_ports::ChangeSink;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

/// The channel the trigger notifies.
pub const CHANNEL: &str = "latchkey_token_changes";

/// The channel each listener sends its heartbeats on.
pub const HEARTBEAT_CHANNEL: &str = "latchkey_feed_heartbeat";

/// How often a listener sends itself a heartbeat, by default.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// The `application_name` of listening connections, followed by `-` and
/// the process id, so that operators (and tests) can find each instance's
/// listener in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "latchkey-listener";

fn hash_of(payload: &str) -> Option<SecretHash> {
    if payload.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(payload.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(SecretHash::from_bytes(bytes))
}

async fn subscribe(options: &PgConnectOptions) -> Result<(PgListener, PgPool), sqlx::Error> {
    // One connection listens; the other sends the heartbeats.
    let pool = PgPoolOptions::new().max_connections(2).connect_with(options.clone()).await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen_all([CHANNEL, HEARTBEAT_CHANNEL]).await?;
    Ok((listener, pool))
}

/// Who sent a heartbeat, and when: `INSTANCE:MICROS`, the micros counted
/// from the sender's own start, so that only the sender reads its time.
struct Heartbeats {
    instance: String,
    start: Instant,
}

impl Heartbeats {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // Unique per listener across hosts: the process id and a random
        // number (the standard library seeds RandomState from the OS).
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Self { instance: format!("{}-{random:016x}", std::process::id()), start: Instant::now() }
    }

    fn payload(&self) -> String {
        format!("{}:{}", self.instance, self.start.elapsed().as_micros())
    }

    /// The round trip of one of our own heartbeats; `None` for another
    /// listener's.
    fn round_trip(&self, payload: &str) -> Option<Duration> {
        let (instance, micros) = payload.split_once(':')?;
        let sent = Duration::from_micros(micros.parse().ok()?);
        (instance == self.instance).then(|| self.start.elapsed().saturating_sub(sent))
    }
}

async fn send_heartbeats(pool: PgPool, heartbeats: Arc<Heartbeats>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(HEARTBEAT_CHANNEL)
            .bind(heartbeats.payload())
            .execute(&pool)
            .await;
        if let Err(error) = sent {
            // The listener notices the silence and reconnects.
            tracing::debug!(%error, "could not send a change feed heartbeat");
        }
    }
}

/// Listens for token changes on the database at `url` and tells `sink`,
/// forever, with a heartbeat every [`HEARTBEAT_EVERY`]. Spawn it; it never
/// returns.
///
/// # Errors
/// Only when `url` is not a PostgreSQL URL; connection failures are retried.
pub async fn follow_changes(url: String, sink: Arc<dyn ChangeSink>) -> Result<(), sqlx::Error> {
    follow_changes_every(url, sink, HEARTBEAT_EVERY).await
}

/// [`follow_changes`] with heartbeats every `heartbeat`: the feed counts as
/// lost after three of them pass without anything arriving.
///
/// # Errors
/// Only when `url` is not a PostgreSQL URL; connection failures are retried.
pub async fn follow_changes_every(
    url: String,
    sink: Arc<dyn ChangeSink>,
    heartbeat: Duration,
) -> Result<(), sqlx::Error> {
    let name = format!("{APPLICATION_NAME}-{}", std::process::id());
    let options: PgConnectOptions = url.parse::<PgConnectOptions>()?.application_name(&name);
    let heartbeats = Arc::new(Heartbeats::new());
    let silence_limit = heartbeat * 3;
    let mut backoff = Duration::from_millis(50);
    loop {
        let (mut listener, pool) = match subscribe(&options).await {
            Ok(subscribed) => subscribed,
            Err(error) => {
                sink.feed_lost();
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cannot listen for token changes");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        sink.feed_restored();
        backoff = Duration::from_millis(50);
        tracing::info!(channel = CHANNEL, "listening for token changes");
        let sender = tokio::spawn(send_heartbeats(pool.clone(), heartbeats.clone(), heartbeat));
        loop {
            // Dropping a receive cut short by the deadline loses nothing:
            // the connection is replaced right after.
            match tokio::time::timeout(silence_limit, listener.try_recv()).await {
                Ok(Ok(Some(notification))) if notification.channel() == HEARTBEAT_CHANNEL => {
                    if let Some(round_trip) = heartbeats.round_trip(notification.payload()) {
                        sink.heartbeat(round_trip);
                    }
                }
                Ok(Ok(Some(notification))) => match hash_of(notification.payload()) {
                    Some(hash) => sink.token_changed(&hash),
                    None => {
                        // Not ours to read: trust nothing cached rather
                        // than miss a change.
                        tracing::warn!("unreadable token change notification; emptying the cache");
                        sink.feed_lost();
                        sink.feed_restored();
                    }
                },
                Ok(Ok(None) | Err(_)) => {
                    sink.feed_lost();
                    tracing::warn!("lost the connection that listens for token changes; reconnecting");
                    break;
                }
                Err(_) => {
                    sink.feed_lost();
                    tracing::warn!(
                        silent_for_ms = silence_limit.as_millis() as u64,
                        "the change feed went silent (no heartbeat came back); reconnecting"
                    );
                    break;
                }
            }
        }
        // Dropped, not closed: closing waits for every connection to come
        // back, and a stalled one never would.
        sender.abort();
        drop(listener);
        drop(pool);
    }
}

#[cfg(test)]
mod tests {
    use super::{Heartbeats, hash_of};

    #[test]
    fn only_our_own_heartbeats_have_a_round_trip() {
        let ours = Heartbeats::new();
        let theirs = Heartbeats::new();
        assert!(ours.round_trip(&ours.payload()).is_some());
        assert!(ours.round_trip(&theirs.payload()).is_none());
        assert!(ours.round_trip("garbage").is_none());
        assert!(ours.round_trip(&format!("{}:x", ours.instance)).is_none());
    }

    #[test]
    fn payloads_are_hex_hashes() {
        let hex = "00ff".repeat(16);
        let hash = hash_of(&hex).unwrap();
        assert_eq!(hash.as_bytes()[0..2], [0x00, 0xff]);
        assert!(hash_of("abc").is_none());
        assert!(hash_of(&"zz".repeat(32)).is_none());
        assert!(hash_of(&"é".repeat(32)).is_none());
    }
}
