//! Hearing token changes made by other processes on the same file.
//!
//! A trigger (migration 3) appends to `token_changes` the hash of every
//! token value a change or a delete makes stale, in commit order. Each
//! process follows that log on a connection of its own: every `every` it
//! asks SQLite whether any connection committed since it last looked
//! (`PRAGMA data_version`, which reads no page), and only then reads the
//! entries after the last one it saw and passes them to its
//! [`ChangeSink`]. So an idle file costs one pragma a tick, and a change
//! is heard within one tick and a read.
//!
//! Fail closed: until the first read the sink is not told the feed works;
//! a failed read tells it the feed is lost (the cache empties and is
//! bypassed) until a read works again; and a follower that fell behind the
//! entries the log keeps, or finds the log rewritten, starts over with an
//! empty cache rather than guess what it missed.

use std::path::Path;
use std::sync::Weak;
use std::time::Duration;

use latchkey_domain::SecretHash;
use latchkey_ports::ChangeSink;
use rusqlite::{Connection, OpenFlags};

use crate::pool;

/// How often a follower looks, by default: the bound on how late another
/// process hears a change, plus one read.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(20);

/// Where a follower stands in the log.
struct Follower {
    connection: Connection,
    /// `PRAGMA data_version` when last read: it changes when another
    /// connection commits.
    data_version: i64,
    /// The last entry passed on.
    last: i64,
}

/// What one look found.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    /// Nothing committed elsewhere.
    Quiet,
    /// These hashes changed, in order.
    Changed(Vec<SecretHash>),
    /// Entries were dropped before they were read: what changed is not
    /// known.
    Gap,
}

impl Follower {
    /// Opens a connection of its own and starts after the newest entry:
    /// what changed before is already in the store that lookups read.
    fn start(path: &Path) -> rusqlite::Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let connection = Connection::open_with_flags(path, flags)?;
        pool::configure(&connection)?;
        let data_version = connection.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let last = connection.query_row("SELECT coalesce(max(seq), 0) FROM token_changes", [], |r| r.get(0))?;
        Ok(Self { connection, data_version, last })
    }

    fn look(&mut self) -> rusqlite::Result<Look> {
        let data_version: i64 = self.connection.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if data_version == self.data_version {
            return Ok(Look::Quiet);
        }
        // One read transaction, so the oldest entry and the new ones are
        // of the same commit.
        let transaction = self.connection.unchecked_transaction()?;
        let oldest: Option<i64> = transaction.query_row("SELECT min(seq) FROM token_changes", [], |r| r.get(0))?;
        let rows: Vec<(i64, Vec<u8>)> = transaction
            .prepare_cached("SELECT seq, secret_hash FROM token_changes WHERE seq > ?1 ORDER BY seq")?
            .query_map([self.last], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        transaction.finish()?;
        self.data_version = data_version;
        // Entries after `last` that are gone were trimmed unread.
        if oldest.is_some_and(|oldest| oldest > self.last + 1) {
            self.last = rows.last().map_or(self.last, |(seq, _)| *seq);
            return Ok(Look::Gap);
        }
        let mut hashes = Vec::with_capacity(rows.len());
        for (seq, hash) in rows {
            self.last = seq;
            match SecretHash::from_slice(&hash) {
                Ok(hash) => hashes.push(hash),
                // A row not written by the trigger: what it names is not
                // known, so nothing cached can be trusted.
                Err(_) => return Ok(Look::Gap),
            }
        }
        Ok(Look::Changed(hashes))
    }
}

/// Follows the log of the file at `path` every `every` on a thread of its
/// own, telling `sink` what changed, until `sink` is dropped.
pub(crate) fn follow(path: &Path, sink: Weak<dyn ChangeSink>, every: Duration) -> std::io::Result<()> {
    let path = path.to_owned();
    std::thread::Builder::new().name("latchkey-sqlite-changes".into()).spawn(move || {
        let mut follower: Option<Follower> = None;
        let mut trusted = false;
        loop {
            let Some(sink) = sink.upgrade() else { return };
            let outcome = match follower.as_mut() {
                Some(follower) => follower.look(),
                None => Follower::start(&path).map(|started| {
                    follower = Some(started);
                    Look::Changed(Vec::new())
                }),
            };
            match outcome {
                Ok(Look::Quiet) => {}
                Ok(Look::Changed(hashes)) => {
                    for hash in &hashes {
                        sink.token_changed(hash);
                    }
                    if !trusted {
                        trusted = true;
                        tracing::info!(path = %path.display(), "following token changes on the SQLite file");
                        sink.feed_restored();
                    }
                }
                Ok(Look::Gap) => {
                    tracing::warn!("fell behind the SQLite change log; the authorize cache starts over");
                    sink.feed_lost();
                    sink.feed_restored();
                }
                Err(error) => {
                    if trusted {
                        tracing::warn!(%error, "cannot read the SQLite change log; the authorize cache is off");
                        sink.feed_lost();
                        trusted = false;
                    }
                    // Start over: a new connection, after the newest entry,
                    // with an empty cache.
                    follower = None;
                }
            }
            drop(sink);
            std::thread::sleep(every);
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_reads_only_what_was_committed_after_it_started() {
        let dir = std::env::temp_dir().join(format!("latchkey-changes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.db");
        let _ = std::fs::remove_file(&path);
        let pool = crate::pool::Pool::open(&path).unwrap();
        drop(pool);
        let writer = Connection::open(&path).unwrap();
        writer.execute("INSERT INTO token_changes (secret_hash) VALUES (zeroblob(32))", []).unwrap();
        let mut follower = Follower::start(&path).unwrap();
        assert_eq!(follower.look().unwrap(), Look::Quiet, "what was there before is not news");
        writer.execute("INSERT INTO token_changes (secret_hash) VALUES (randomblob(32))", []).unwrap();
        let Look::Changed(hashes) = follower.look().unwrap() else { panic!("a change") };
        assert_eq!(hashes.len(), 1);
        assert_eq!(follower.look().unwrap(), Look::Quiet);
        // Entries trimmed before they were read are a gap, never skipped.
        writer.execute("INSERT INTO token_changes (secret_hash) VALUES (randomblob(32))", []).unwrap();
        writer.execute("INSERT INTO token_changes (secret_hash) VALUES (randomblob(32))", []).unwrap();
        writer.execute("DELETE FROM token_changes WHERE seq < (SELECT max(seq) FROM token_changes)", []).unwrap();
        assert_eq!(follower.look().unwrap(), Look::Gap);
        // A row that is no hash is a gap too.
        writer.execute("INSERT INTO token_changes (secret_hash) VALUES (x'00')", []).unwrap();
        assert_eq!(follower.look().unwrap(), Look::Gap);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
