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
    // 2: roles, client address restrictions, rolls with a grace period,
    // the audit log and org policies (SPEC §13).
    "
    ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1));
    -- The first-run bootstrap user is an org admin (SPEC §13); stores made
    -- before roles existed get that too.
    UPDATE users SET admin = 1 WHERE org = 'default' AND name = 'admin';

    ALTER TABLE tokens ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(allowed_ips));
    -- The value before the last roll, while kept: both or neither.
    ALTER TABLE tokens ADD COLUMN previous_secret_hash BLOB;
    ALTER TABLE tokens ADD COLUMN previous_expires_at INTEGER
        CHECK ((previous_secret_hash IS NULL) = (previous_expires_at IS NULL));
    CREATE UNIQUE INDEX tokens_previous_secret_hash ON tokens (previous_secret_hash)
        WHERE previous_secret_hash IS NOT NULL;
    -- Org admins' lists: every token of an org, newest first.
    CREATE INDEX tokens_by_org ON tokens (org, created_at DESC, id DESC);

    CREATE TABLE audit_events (
        id TEXT PRIMARY KEY NOT NULL,
        org TEXT NOT NULL,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        token_id TEXT,
        token_name TEXT,
        token_owner TEXT,
        changes TEXT NOT NULL CHECK (json_valid(changes))
    ) STRICT;
    CREATE INDEX audit_by_org ON audit_events (org, at DESC, id DESC);
    CREATE INDEX audit_by_owner ON audit_events (org, token_owner, at DESC, id DESC);
    CREATE INDEX audit_by_token ON audit_events (org, token_id, at DESC, id DESC);

    CREATE TABLE org_policies (
        org TEXT PRIMARY KEY NOT NULL REFERENCES orgs (name),
        max_lifetime_days INTEGER,
        require_referers INTEGER NOT NULL CHECK (require_referers IN (0, 1)),
        allowed_apis TEXT
    ) STRICT;
    ",
    // 3: the change feed for other processes on the file (see
    // changes.rs): the hash of every token value a change or delete made
    // stale, in commit order, as PostgreSQL's trigger notifies. Recording a
    // use changes no version and writes nothing here. The newest 100 000
    // entries are kept; a follower that falls further behind starts over.
    "
    CREATE TABLE token_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        secret_hash BLOB NOT NULL
    ) STRICT;

    CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
        WHEN OLD.version IS NOT NEW.version OR OLD.secret_hash IS NOT NEW.secret_hash
    BEGIN
        INSERT INTO token_changes (secret_hash) VALUES (OLD.secret_hash);
        INSERT INTO token_changes (secret_hash)
            SELECT OLD.previous_secret_hash WHERE OLD.previous_secret_hash IS NOT NULL;
        DELETE FROM token_changes WHERE seq <= (SELECT max(seq) FROM token_changes) - 100000;
    END;

    CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
    BEGIN
        INSERT INTO token_changes (secret_hash) VALUES (OLD.secret_hash);
        INSERT INTO token_changes (secret_hash)
            SELECT OLD.previous_secret_hash WHERE OLD.previous_secret_hash IS NOT NULL;
        DELETE FROM token_changes WHERE seq <= (SELECT max(seq) FROM token_changes) - 100000;
    END;
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
