//! Hearing token changes from every instance through LISTEN/NOTIFY.
//!
//! A trigger (migration 2) notifies the `latchkey_token_changes` channel
//! with the hash of a token's value whenever the token is updated or
//! deleted. Each instance keeps one connection listening and passes what it
//! hears to its [`ChangeSink`]. When that connection drops, the sink is told
//! at once (and stops trusting its cache), and the listener reconnects with
//! backoff; the sink is told again once it is subscribed.

use std::sync::Arc;
use std::time::Duration;

use latchkey_domain::SecretHash;
use latchkey_ports::ChangeSink;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

/// The channel the trigger notifies.
pub const CHANNEL: &str = "latchkey_token_changes";

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

async fn subscribe(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Listens for token changes on the database at `url` and tells `sink`,
/// forever. Spawn it; it never returns.
///
/// # Errors
/// Only when `url` is not a PostgreSQL URL; connection failures are retried.
pub async fn follow_changes(url: String, sink: Arc<dyn ChangeSink>) -> Result<(), sqlx::Error> {
    let name = format!("{APPLICATION_NAME}-{}", std::process::id());
    let options: PgConnectOptions = url.parse::<PgConnectOptions>()?.application_name(&name);
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut listener = match subscribe(&options).await {
            Ok(listener) => listener,
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
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match hash_of(notification.payload()) {
                    Some(hash) => sink.token_changed(&hash),
                    None => {
                        // Not ours to read: trust nothing cached rather
                        // than miss a change.
                        tracing::warn!("unreadable token change notification; emptying the cache");
                        sink.feed_lost();
                        sink.feed_restored();
                    }
                },
                Ok(None) | Err(_) => {
                    sink.feed_lost();
                    tracing::warn!("lost the connection that listens for token changes; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hash_of;

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
