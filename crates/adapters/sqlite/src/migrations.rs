//! The schema, as numbered migrations embedded in the binary.
//!
//! `PRAGMA user_version` holds the number of migrations applied. They run
//! in one `IMMEDIATE` transaction, so two processes opening a new file at
//! once cannot both apply them.

use rusqlite::{Connection, TransactionBehavior};

/// Each entry is applied once, in order. Never edit an entry that has been
/// released: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: orgs, users, connections and tokens.
    "
    CREATE TABLE orgs (
        name TEXT PRIMARY KEY NOT NULL
    ) STRICT;

    CREATE TABLE users (
        org TEXT NOT NULL REFERENCES orgs (name),
        name TEXT NOT NULL,
        key_hash BLOB NOT NULL UNIQUE,
        PRIMARY KEY (org, name)
    ) STRICT;

    CREATE TABLE connections (
        org TEXT NOT NULL REFERENCES orgs (name),
        name TEXT NOT NULL,
        provider TEXT NOT NULL,
        PRIMARY KEY (org, name)
    ) STRICT;

    -- Grants and referers are JSON arrays in the row (see latchkey-rows):
    -- the authorize lookup reads one row. Times are microseconds since the
    -- Unix epoch. Text compares bytewise (SQLite's BINARY collation), which
    -- is the order every adapter lists in.
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY NOT NULL,
        org TEXT NOT NULL,
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        secret_hash BLOB NOT NULL UNIQUE,
        sealed_secret BLOB NOT NULL,
        allowed_apis TEXT NOT NULL,
        grants TEXT NOT NULL CHECK (json_valid(grants)),
        referers TEXT NOT NULL CHECK (json_valid(referers)),
        expiration_date INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_used_at INTEGER,
        version INTEGER NOT NULL,
        CONSTRAINT tokens_owner_name UNIQUE (org, owner, name)
    ) STRICT;

    -- Lists: one owner's tokens, newest first.
    CREATE INDEX tokens_by_owner ON tokens (org, owner, created_at DESC, id DESC);
    ",
];

/// Applies the migrations this file has not seen yet.
pub(crate) fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied: i64 = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        // A newer latchkey wrote this file; running on it could corrupt it.
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database is at schema version {applied}, newer than this latchkey knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        transaction.execute_batch(sql)?;
        transaction.pragma_update(None, "user_version", i64::try_from(index + 1).unwrap_or(i64::MAX))?;
        tracing::info!(version = index + 1, "applied SQLite migration");
    }
    transaction.commit()
}
