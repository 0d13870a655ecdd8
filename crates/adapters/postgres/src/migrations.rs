//! The schema, as numbered migrations embedded in the binary.

use sqlx::{PgPool, Row};

/// Each entry is applied once, in order. Never edit an entry that has been
/// released: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: orgs, users, connections and tokens.
    r#"
    CREATE TABLE orgs (
        name text COLLATE "C" PRIMARY KEY
    );

    CREATE TABLE users (
        org text COLLATE "C" NOT NULL REFERENCES orgs (name),
        name text COLLATE "C" NOT NULL,
        key_hash bytea NOT NULL CONSTRAINT users_key_hash_key UNIQUE,
        PRIMARY KEY (org, name)
    );

    CREATE TABLE connections (
        org text COLLATE "C" NOT NULL REFERENCES orgs (name),
        name text COLLATE "C" NOT NULL,
        provider text NOT NULL,
        PRIMARY KEY (org, name)
    );

    -- Grants and referers are JSON arrays in the row (see latchkey-rows):
    -- the authorize lookup reads one row. Text columns use the "C"
    -- collation: bytewise comparison, the order every adapter lists in,
    -- whatever the server's locale.
    CREATE TABLE tokens (
        id text COLLATE "C" CONSTRAINT tokens_pkey PRIMARY KEY,
        org text COLLATE "C" NOT NULL,
        owner text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        secret_hash bytea NOT NULL CONSTRAINT tokens_secret_hash_key UNIQUE,
        sealed_secret bytea NOT NULL,
        allowed_apis text NOT NULL,
        grants jsonb NOT NULL,
        referers jsonb NOT NULL,
        expiration_date timestamptz,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        last_used_at timestamptz,
        version bigint NOT NULL,
        CONSTRAINT tokens_owner_name_key UNIQUE (org, owner, name)
    );

    -- Lists: one owner's tokens, newest first.
    CREATE INDEX tokens_by_owner ON tokens (org, owner, created_at DESC, id DESC);
    "#,
    // 2: tell every instance when a token changes or goes, so that their
    // authorize caches evict it. NOTIFY is sent when the transaction
    // commits, and for any writer, latchkey or not. Recording a use does not
    // change the version, so it notifies nobody.
    r#"
    CREATE FUNCTION latchkey_notify_token_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('latchkey_token_changes', encode(OLD.secret_hash, 'hex'));
        RETURN NULL;
    END
    $$;

    CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens
        FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash)
        EXECUTE FUNCTION latchkey_notify_token_change();

    CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
        FOR EACH ROW EXECUTE FUNCTION latchkey_notify_token_change();
    "#,
    // 3: roles, client address restrictions, rolls with a grace period,
    // the audit log and org policies (SPEC §13).
    r#"
    ALTER TABLE users ADD COLUMN admin boolean NOT NULL DEFAULT false;
    -- The first-run bootstrap user is an org admin (SPEC §13); databases
    -- made before roles existed get that too.
    UPDATE users SET admin = true WHERE org = 'default' AND name = 'admin';

    ALTER TABLE tokens ADD COLUMN allowed_ips jsonb NOT NULL DEFAULT '[]';
    ALTER TABLE tokens ADD COLUMN previous_secret_hash bytea;
    ALTER TABLE tokens ADD COLUMN previous_expires_at timestamptz;
    ALTER TABLE tokens ADD CONSTRAINT tokens_previous_both
        CHECK ((previous_secret_hash IS NULL) = (previous_expires_at IS NULL));
    CREATE UNIQUE INDEX tokens_previous_secret_hash_key ON tokens (previous_secret_hash)
        WHERE previous_secret_hash IS NOT NULL;
    CREATE INDEX tokens_by_org ON tokens (org, created_at DESC, id DESC);

    -- A roll replaces the value: caches must forget the token under both
    -- of the hashes it could be found by before.
    CREATE OR REPLACE FUNCTION latchkey_notify_token_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('latchkey_token_changes', encode(OLD.secret_hash, 'hex'));
        IF OLD.previous_secret_hash IS NOT NULL THEN
            PERFORM pg_notify('latchkey_token_changes', encode(OLD.previous_secret_hash, 'hex'));
        END IF;
        RETURN NULL;
    END
    $$;

    CREATE TABLE audit_events (
        id text COLLATE "C" PRIMARY KEY,
        org text COLLATE "C" NOT NULL,
        at timestamptz NOT NULL,
        actor text COLLATE "C" NOT NULL,
        action text NOT NULL,
        token_id text COLLATE "C",
        token_name text,
        token_owner text COLLATE "C",
        changes jsonb NOT NULL
    );
    CREATE INDEX audit_by_org ON audit_events (org, at DESC, id DESC);
    CREATE INDEX audit_by_owner ON audit_events (org, token_owner, at DESC, id DESC);
    CREATE INDEX audit_by_token ON audit_events (org, token_id, at DESC, id DESC);

    CREATE TABLE org_policies (
        org text COLLATE "C" PRIMARY KEY REFERENCES orgs (name),
        max_lifetime_days integer,
        require_referers boolean NOT NULL,
        allowed_apis text
    );
    "#,
];

/// An arbitrary constant naming latchkey's advisory lock, held while
/// migrating so that instances starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x6c61_7463_686b_6579; // "latchkey"

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A newer latchkey migrated this database.
    #[error("the database is at schema version {found}, newer than this latchkey knows ({known})")]
    TooNew {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: usize,
    },
}

/// Applies the migrations the database has not seen yet.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *transaction).await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS latchkey_schema (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *transaction)
    .await?;
    let applied: i64 = sqlx::query("SELECT coalesce(max(version), 0)::bigint FROM latchkey_schema")
        .fetch_one(&mut *transaction)
        .await?
        .try_get(0)?;
    if usize::try_from(applied).map_or(true, |applied| applied > MIGRATIONS.len()) {
        return Err(MigrateError::TooNew { found: applied, known: MIGRATIONS.len() });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(applied).unwrap_or(0)) {
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        sqlx::raw_sql(*sql).execute(&mut *transaction).await?;
        sqlx::query("INSERT INTO latchkey_schema (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *transaction)
            .await?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    transaction.commit().await?;
    Ok(())
}
