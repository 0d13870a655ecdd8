//! The ports over PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use latchkey_domain::audit::AuditEvent;
use latchkey_domain::org_policy::OrgPolicy;
use latchkey_domain::{
    Connection, ConnectionName, Identity, OrgName, Principal, Role, SealedSecret, SecretHash, Timestamp, Token,
    TokenId, UserName,
};
use latchkey_ports::{
    AuditCursor, AuditLog, AuditPage, AuditScope, BackendError, ConnectionCatalog, CreateConnectionError,
    CreateUserError, Cursor, DeleteError, GetError, InsertError, OrgPolicies, Page, PolicyWriteError, StoreHealth,
    TokenRepository, UpdateError, UserDirectory,
};
use latchkey_rows::{
    AuditRow, PolicyColumns, TokenRow, encode_allowed_ips, encode_apis, encode_grants, encode_referers, policy_columns,
    policy_from_columns, sealed_row, version_to_column,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;

use crate::migrations::{self, MigrateError};

/// How long the first connection may take before the start fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not one sqlx reads.
    #[error("not a PostgreSQL URL: {0}")]
    Url(#[source] sqlx::Error),
    /// The server could not be reached, or refused the credentials.
    #[error("cannot connect to PostgreSQL at {at}: {cause}")]
    Connect {
        /// `host:port/database`, without credentials.
        at: String,
        /// What went wrong, as the driver says it.
        cause: String,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the PostgreSQL schema: {0}")]
    Migrate(#[from] MigrateError),
}

/// Every port over one PostgreSQL database. Cheap to clone: clones share
/// the pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects with a pool of at most `max_connections` and migrates the
    /// schema.
    ///
    /// # Errors
    /// [`ConnectError`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, ConnectError> {
        let options: PgConnectOptions = url.parse().map_err(ConnectError::Url)?;
        let at = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username())
        );
        // One connection first, with a deadline of its own: a pool retries
        // until its acquire timeout and then only says that it timed out,
        // without the host or the cause.
        let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await;
        match first {
            Ok(Ok(connection)) => drop(connection.close().await),
            Ok(Err(error)) => return Err(ConnectError::Connect { at, cause: error.to_string() }),
            Err(_) => {
                return Err(ConnectError::Connect { at, cause: format!("no answer within {CONNECT_TIMEOUT:?}") });
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|error| ConnectError::Connect { at, cause: error.to_string() })?;
        migrations::migrate(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for what else needs the same database (a listener).
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The columns of a token in [`TokenRow`] order, as a macro so that every
/// statement is a `&'static str` (sqlx refuses strings built at run time,
/// which is where injections come from).
macro_rules! token_columns {
    () => {
        "id, org, owner, name, secret_hash, sealed_secret, allowed_apis, grants::text, referers::text, \
         expiration_date, created_at, updated_at, last_used_at, version, allowed_ips::text, previous_secret_hash, \
         previous_expires_at"
    };
}

/// The columns of an audit event in [`AuditRow`] order.
macro_rules! audit_columns {
    () => {
        "id, org, at, actor, action, token_id, token_name, token_owner, changes::text"
    };
}

fn backend(error: sqlx::Error) -> BackendError {
    BackendError::new(error)
}

/// The name of the unique constraint a failed statement broke, if that is
/// why it failed.
fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(e) if e.is_unique_violation() => Some(e.constraint().unwrap_or("")),
        _ => None,
    }
}

fn timestamp(datetime: OffsetDateTime) -> Result<Timestamp, BackendError> {
    Timestamp::from_datetime(datetime).map_err(|_| BackendError::corrupt("timestamp out of range"))
}

fn token_row(row: &PgRow) -> Result<TokenRow, BackendError> {
    let get_time = |i: usize| -> Result<Option<Timestamp>, BackendError> {
        row.try_get::<Option<OffsetDateTime>, _>(i).map_err(backend)?.map(timestamp).transpose()
    };
    let required = |t: Option<Timestamp>| t.ok_or_else(|| BackendError::corrupt("missing timestamp"));
    Ok(TokenRow {
        id: row.try_get(0).map_err(backend)?,
        org: row.try_get(1).map_err(backend)?,
        owner: row.try_get(2).map_err(backend)?,
        name: row.try_get(3).map_err(backend)?,
        secret_hash: row.try_get(4).map_err(backend)?,
        sealed_secret: row.try_get(5).map_err(backend)?,
        allowed_apis: row.try_get(6).map_err(backend)?,
        grants: row.try_get(7).map_err(backend)?,
        referers: row.try_get(8).map_err(backend)?,
        expiration: get_time(9)?,
        created_at: required(get_time(10)?)?,
        updated_at: required(get_time(11)?)?,
        last_used_at: get_time(12)?,
        version: row.try_get(13).map_err(backend)?,
        allowed_ips: row.try_get(14).map_err(backend)?,
        previous_secret_hash: row.try_get(15).map_err(backend)?,
        previous_expires_at: get_time(16)?,
    })
}

fn audit_row(row: &PgRow) -> Result<AuditRow, BackendError> {
    Ok(AuditRow {
        id: row.try_get(0).map_err(backend)?,
        org: row.try_get(1).map_err(backend)?,
        at: timestamp(row.try_get(2).map_err(backend)?)?,
        actor: row.try_get(3).map_err(backend)?,
        action: row.try_get(4).map_err(backend)?,
        token_id: row.try_get(5).map_err(backend)?,
        token_name: row.try_get(6).map_err(backend)?,
        token_owner: row.try_get(7).map_err(backend)?,
        changes: row.try_get(8).map_err(backend)?,
    })
}

/// Stores an event inside the transaction of the change it records.
async fn record(transaction: &mut Transaction<'_, Postgres>, event: &AuditEvent) -> Result<(), BackendError> {
    let row = AuditRow::from_event(event);
    sqlx::query(
        "INSERT INTO audit_events (id, org, at, actor, action, token_id, token_name, token_owner, changes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)",
    )
    .bind(&row.id)
    .bind(&row.org)
    .bind(row.at.as_datetime())
    .bind(&row.actor)
    .bind(&row.action)
    .bind(&row.token_id)
    .bind(&row.token_name)
    .bind(&row.token_owner)
    .bind(&row.changes)
    .execute(&mut **transaction)
    .await
    .map(drop)
    .map_err(backend)
}

fn policy_row(row: &PgRow) -> Result<PolicyColumns, BackendError> {
    let days: Option<i32> = row.try_get(0).map_err(backend)?;
    Ok((days.map(i64::from), row.try_get(1).map_err(backend)?, row.try_get(2).map_err(backend)?))
}

fn token(row: &PgRow) -> Result<Token, BackendError> {
    token_row(row)?.into_token()
}

impl PostgresStore {
    /// Inserts in one transaction. With a limit, the transaction first
    /// takes an advisory lock on the owner, so that capped inserts for one
    /// owner, from every instance on the database, count and insert one at
    /// a time. (Row locks cannot do this: the rows that would be counted
    /// do not exist yet.)
    async fn insert_within(&self, token: &Token, limit: Option<u64>, event: &AuditEvent) -> Result<(), InsertError> {
        let row = TokenRow::from_token(token)?;
        let mut transaction = self.pool.begin().await.map_err(backend)?;
        if let Some(limit) = limit {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('latchkey.owner:' || $1 || '/' || $2, 0))")
                .bind(&row.org)
                .bind(&row.owner)
                .execute(&mut *transaction)
                .await
                .map_err(backend)?;
            let owned: i64 = sqlx::query("SELECT count(*) FROM tokens WHERE org = $1 AND owner = $2")
                .bind(&row.org)
                .bind(&row.owner)
                .fetch_one(&mut *transaction)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(backend)?;
            if u64::try_from(owned).unwrap_or(0) >= limit {
                return Err(InsertError::LimitReached);
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO tokens (id, org, owner, name, secret_hash, sealed_secret, allowed_apis, grants, referers,
                                 expiration_date, created_at, updated_at, last_used_at, version, allowed_ips,
                                 previous_secret_hash, previous_expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $11, $12, $13, $14, $15::jsonb, $16, $17)",
        )
        .bind(&row.id)
        .bind(&row.org)
        .bind(&row.owner)
        .bind(&row.name)
        .bind(&row.secret_hash)
        .bind(&row.sealed_secret)
        .bind(&row.allowed_apis)
        .bind(&row.grants)
        .bind(&row.referers)
        .bind(row.expiration.map(Timestamp::as_datetime))
        .bind(row.created_at.as_datetime())
        .bind(row.updated_at.as_datetime())
        .bind(row.last_used_at.map(Timestamp::as_datetime))
        .bind(row.version)
        .bind(&row.allowed_ips)
        .bind(&row.previous_secret_hash)
        .bind(row.previous_expires_at.map(Timestamp::as_datetime))
        .execute(&mut *transaction)
        .await;
        match inserted {
            Ok(_) => {
                record(&mut transaction, event).await?;
                transaction.commit().await.map_err(|e| InsertError::Backend(backend(e)))
            }
            Err(e) => Err(match unique_violation(&e) {
                Some("tokens_owner_name_key") => InsertError::NameTaken,
                Some(_) => InsertError::Duplicate,
                None => InsertError::Backend(backend(e)),
            }),
        }
    }

    async fn exists(&self, id: &str) -> Result<bool, BackendError> {
        sqlx::query("SELECT EXISTS (SELECT 1 FROM tokens WHERE id = $1)")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend)
    }

    /// Why a conditional write changed no row: the token is gone, or at
    /// another version. Asked after the transaction ended.
    async fn missing_or_changed(&self, id: &str) -> Result<UpdateError, BackendError> {
        Ok(if self.exists(id).await? { UpdateError::Conflict } else { UpdateError::NotFound })
    }
}

#[async_trait]
impl TokenRepository for PostgresStore {
    async fn insert(&self, token: &Token, limit: Option<u64>, event: &AuditEvent) -> Result<(), InsertError> {
        self.insert_within(token, limit, event).await
    }

    async fn get_in_org(&self, id: &TokenId, org: &OrgName) -> Result<Token, GetError> {
        let row = sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens WHERE id = $1 AND org = $2"))
            .bind(id.as_str())
            .bind(org.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(token(&row.ok_or(GetError::NotFound)?)?)
    }

    async fn get(&self, id: &TokenId, owner: &Principal) -> Result<Token, GetError> {
        let row =
            sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens WHERE id = $1 AND org = $2 AND owner = $3"))
                .bind(id.as_str())
                .bind(owner.org.as_str())
                .bind(owner.user.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(token(&row.ok_or(GetError::NotFound)?)?)
    }

    async fn find_by_secret_hash(&self, hash: &SecretHash) -> Result<Option<Token>, BackendError> {
        // A BitmapOr over the two unique indexes.
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE secret_hash = $1 OR previous_secret_hash = $1"
        ))
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(token).transpose()
    }

    async fn list(&self, owner: &Principal, after: Option<Cursor>, limit: usize) -> Result<Page, BackendError> {
        let (after_created, after_id) = match &after {
            Some(cursor) => (Some(cursor.created_at.as_datetime()), Some(cursor.id.as_str())),
            None => (None, None),
        };
        let fetch = i64::try_from(Page::rows_to_read(limit)).unwrap_or(i64::MAX);
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens
             WHERE org = $1 AND owner = $2
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::text))
             ORDER BY created_at DESC, id DESC
             LIMIT $5"
        ))
        .bind(owner.org.as_str())
        .bind(owner.user.as_str())
        .bind(after_created)
        .bind(after_id)
        .bind(fetch)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let tokens = rows.iter().map(token).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(tokens, limit))
    }

    async fn list_org(
        &self,
        org: &OrgName,
        owner: Option<UserName>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, BackendError> {
        let (after_created, after_id) = match &after {
            Some(cursor) => (Some(cursor.created_at.as_datetime()), Some(cursor.id.as_str())),
            None => (None, None),
        };
        let fetch = i64::try_from(Page::rows_to_read(limit)).unwrap_or(i64::MAX);
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens
             WHERE org = $1 AND ($2::text IS NULL OR owner = $2)
               AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::text))
             ORDER BY created_at DESC, id DESC
             LIMIT $5"
        ))
        .bind(org.as_str())
        .bind(owner.as_ref().map(UserName::as_str))
        .bind(after_created)
        .bind(after_id)
        .bind(fetch)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let tokens = rows.iter().map(token).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(tokens, limit))
    }

    async fn update(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError> {
        let mut transaction = self.pool.begin().await.map_err(backend)?;
        let updated = sqlx::query(
            "UPDATE tokens SET name = $1, allowed_apis = $2, grants = $3::jsonb, referers = $4::jsonb,
                    allowed_ips = $5::jsonb, updated_at = $6, version = $7
             WHERE id = $8 AND version = $9",
        )
        .bind(token.name.as_str())
        .bind(encode_apis(token.policy.apis()))
        .bind(encode_grants(token.policy.grants()))
        .bind(encode_referers(token.policy.referers()))
        .bind(encode_allowed_ips(token.policy.allowed_ips()))
        .bind(token.updated_at.as_datetime())
        .bind(version_to_column(token.version)?)
        .bind(token.id.as_str())
        .bind(version_to_column(expected_version)?)
        .execute(&mut *transaction)
        .await;
        match updated {
            Ok(result) if result.rows_affected() == 1 => {}
            // The row changed or vanished between the caller's read and
            // this write; which one is told by whether it still exists.
            Ok(_) => {
                drop(transaction);
                return Err(self.missing_or_changed(token.id.as_str()).await?);
            }
            Err(e) if unique_violation(&e).is_some() => return Err(UpdateError::NameTaken),
            Err(e) => return Err(UpdateError::Backend(backend(e))),
        }
        record(&mut transaction, event).await?;
        transaction.commit().await.map_err(|e| UpdateError::Backend(backend(e)))
    }

    async fn roll(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError> {
        let row = TokenRow::from_token(token)?;
        let mut transaction = self.pool.begin().await.map_err(backend)?;
        let rolled = sqlx::query(
            "UPDATE tokens SET secret_hash = $1, sealed_secret = $2, previous_secret_hash = $3,
                    previous_expires_at = $4, updated_at = $5, version = $6
             WHERE id = $7 AND version = $8",
        )
        .bind(&row.secret_hash)
        .bind(&row.sealed_secret)
        .bind(&row.previous_secret_hash)
        .bind(row.previous_expires_at.map(Timestamp::as_datetime))
        .bind(row.updated_at.as_datetime())
        .bind(row.version)
        .bind(&row.id)
        .bind(version_to_column(expected_version)?)
        .execute(&mut *transaction)
        .await
        .map_err(backend)?;
        if rolled.rows_affected() != 1 {
            drop(transaction);
            return Err(self.missing_or_changed(&row.id).await?);
        }
        record(&mut transaction, event).await?;
        transaction.commit().await.map_err(|e| UpdateError::Backend(backend(e)))
    }

    async fn delete(&self, id: &TokenId, expected_version: Option<u64>, event: &AuditEvent) -> Result<(), DeleteError> {
        let expected = expected_version.map(version_to_column).transpose()?;
        let mut transaction = self.pool.begin().await.map_err(backend)?;
        let deleted = sqlx::query("DELETE FROM tokens WHERE id = $1 AND ($2::bigint IS NULL OR version = $2)")
            .bind(id.as_str())
            .bind(expected)
            .execute(&mut *transaction)
            .await
            .map_err(backend)?;
        if deleted.rows_affected() == 1 {
            record(&mut transaction, event).await?;
            transaction.commit().await.map_err(|e| DeleteError::Backend(backend(e)))
        } else if self.exists(id.as_str()).await? {
            Err(DeleteError::Conflict)
        } else {
            Err(DeleteError::NotFound)
        }
    }

    async fn record_last_use(&self, uses: &[(TokenId, Timestamp)]) -> Result<(), BackendError> {
        if uses.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = uses.iter().map(|(id, _)| id.as_str()).collect();
        let times: Vec<OffsetDateTime> = uses.iter().map(|(_, at)| at.as_datetime()).collect();
        // One statement for the whole batch; GREATEST ignores NULL, so a
        // first use sets the column and later ones only move it forward.
        sqlx::query(
            "UPDATE tokens AS t SET last_used_at = GREATEST(t.last_used_at, u.at)
             FROM (SELECT id, max(at) AS at FROM unnest($1::text[], $2::timestamptz[]) AS b(id, at) GROUP BY id) AS u
             WHERE t.id = u.id",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(backend)
    }

    async fn sealed_secrets(
        &self,
        after: Option<TokenId>,
        limit: usize,
    ) -> Result<Vec<(TokenId, SealedSecret)>, BackendError> {
        let rows = sqlx::query(
            "SELECT id, sealed_secret FROM tokens
             WHERE $1::text IS NULL OR id COLLATE \"C\" > $1::text COLLATE \"C\"
             ORDER BY id COLLATE \"C\"
             LIMIT $2",
        )
        .bind(after.as_ref().map(TokenId::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0).map_err(backend)?;
                sealed_row(&id, row.try_get(1).map_err(backend)?)
            })
            .collect()
    }

    async fn replace_sealed_secrets(
        &self,
        replacements: &[(TokenId, SealedSecret, SealedSecret)],
    ) -> Result<u64, BackendError> {
        let ids: Vec<&str> = replacements.iter().map(|(id, _, _)| id.as_str()).collect();
        let expected: Vec<&[u8]> = replacements.iter().map(|(_, expected, _)| expected.as_bytes()).collect();
        let new: Vec<&[u8]> = replacements.iter().map(|(_, _, new)| new.as_bytes()).collect();
        // One statement, so one atomic step, whatever the number of rows.
        let changed = sqlx::query(
            "UPDATE tokens SET sealed_secret = r.new
             FROM unnest($1::text[], $2::bytea[], $3::bytea[]) AS r(id, expected, new)
             WHERE tokens.id = r.id AND tokens.sealed_secret = r.expected",
        )
        .bind(&ids)
        .bind(&expected)
        .bind(&new)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(changed.rows_affected())
    }
}

#[async_trait]
impl ConnectionCatalog for PostgresStore {
    async fn connections(&self, org: &OrgName) -> Result<Vec<Connection>, BackendError> {
        let rows = sqlx::query("SELECT name, provider FROM connections WHERE org = $1 ORDER BY name")
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0).map_err(backend)?;
                let provider: String = row.try_get(1).map_err(backend)?;
                Ok(Connection {
                    name: ConnectionName::new(&name).map_err(|_| BackendError::corrupt("connection name"))?,
                    provider: provider.parse().map_err(|_| BackendError::corrupt("connection provider"))?,
                })
            })
            .collect()
    }

    async fn create_connection(&self, org: &OrgName, connection: &Connection) -> Result<(), CreateConnectionError> {
        // The foreign key on org decides atomically whether the org exists.
        let inserted = sqlx::query("INSERT INTO connections (org, name, provider) VALUES ($1, $2, $3)")
            .bind(org.as_str())
            .bind(connection.name.as_str())
            .bind(connection.provider.as_str())
            .execute(&self.pool)
            .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(CreateConnectionError::UnknownOrg),
            Err(e) if unique_violation(&e).is_some() => Err(CreateConnectionError::NameTaken),
            Err(e) => Err(CreateConnectionError::Backend(backend(e))),
        }
    }
}

#[async_trait]
impl UserDirectory for PostgresStore {
    async fn create_user(
        &self,
        principal: &Principal,
        role: Role,
        key_hash: &SecretHash,
    ) -> Result<(), CreateUserError> {
        let mut transaction = self.pool.begin().await.map_err(backend)?;
        sqlx::query("INSERT INTO orgs (name) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(principal.org.as_str())
            .execute(&mut *transaction)
            .await
            .map_err(backend)?;
        let inserted = sqlx::query("INSERT INTO users (org, name, key_hash, admin) VALUES ($1, $2, $3, $4)")
            .bind(principal.org.as_str())
            .bind(principal.user.as_str())
            .bind(key_hash.as_bytes().as_slice())
            .bind(role.is_admin())
            .execute(&mut *transaction)
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) => {
                return Err(match unique_violation(&e) {
                    Some("users_key_hash_key") => {
                        CreateUserError::Backend(BackendError::corrupt("two users with one key hash"))
                    }
                    Some(_) => CreateUserError::UserExists,
                    None => CreateUserError::Backend(backend(e)),
                });
            }
        }
        transaction.commit().await.map_err(|e| CreateUserError::Backend(backend(e)))
    }

    async fn find_by_key_hash(&self, key_hash: &SecretHash) -> Result<Option<Identity>, BackendError> {
        let row = sqlx::query("SELECT org, name, admin FROM users WHERE key_hash = $1")
            .bind(key_hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|row| {
            let org: String = row.try_get(0).map_err(backend)?;
            let user: String = row.try_get(1).map_err(backend)?;
            let admin: bool = row.try_get(2).map_err(backend)?;
            Ok(Identity {
                principal: Principal {
                    org: OrgName::new(&org).map_err(|_| BackendError::corrupt("user org"))?,
                    user: UserName::new(&user).map_err(|_| BackendError::corrupt("user name"))?,
                },
                role: if admin { Role::Admin } else { Role::Member },
            })
        })
        .transpose()
    }

    async fn has_users(&self) -> Result<bool, BackendError> {
        sqlx::query("SELECT EXISTS (SELECT 1 FROM users)")
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend)
    }
}

#[async_trait]
impl AuditLog for PostgresStore {
    async fn events(
        &self,
        scope: AuditScope,
        token: Option<TokenId>,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage, BackendError> {
        let (org, owner) = match scope {
            AuditScope::Org(org) => (org.to_string(), None),
            AuditScope::Owner(owner) => (owner.org.to_string(), Some(owner.user.to_string())),
        };
        let (after_at, after_id) = match &after {
            Some(cursor) => (Some(cursor.at.as_datetime()), Some(cursor.id.as_str())),
            None => (None, None),
        };
        let fetch = i64::try_from(Page::rows_to_read(limit)).unwrap_or(i64::MAX);
        let rows = sqlx::query(concat!(
            "SELECT ",
            audit_columns!(),
            " FROM audit_events
             WHERE org = $1 AND ($2::text IS NULL OR token_owner = $2) AND ($3::text IS NULL OR token_id = $3)
               AND ($4::timestamptz IS NULL OR (at, id) < ($4, $5::text))
             ORDER BY at DESC, id DESC
             LIMIT $6"
        ))
        .bind(org)
        .bind(owner)
        .bind(token.as_ref().map(TokenId::as_str))
        .bind(after_at)
        .bind(after_id)
        .bind(fetch)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let events = rows.iter().map(|row| audit_row(row)?.into_event()).collect::<Result<Vec<_>, _>>()?;
        Ok(AuditPage::from_rows(events, limit))
    }
}

#[async_trait]
impl OrgPolicies for PostgresStore {
    async fn policy(&self, org: &OrgName) -> Result<OrgPolicy, BackendError> {
        let row =
            sqlx::query("SELECT max_lifetime_days, require_referers, allowed_apis FROM org_policies WHERE org = $1")
                .bind(org.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        row.map_or_else(|| Ok(OrgPolicy::default()), |row| policy_from_columns(policy_row(&row)?))
    }

    async fn replace_policy(
        &self,
        org: &OrgName,
        expected: &OrgPolicy,
        new: &OrgPolicy,
        event: &AuditEvent,
    ) -> Result<(), PolicyWriteError> {
        let mut transaction = self.pool.begin().await.map_err(backend)?;
        // Every writer of the org's policy takes this lock first, so the
        // comparison and the write are one step even before the row exists.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('latchkey.policy:' || $1, 0))")
            .bind(org.as_str())
            .execute(&mut *transaction)
            .await
            .map_err(backend)?;
        let row =
            sqlx::query("SELECT max_lifetime_days, require_referers, allowed_apis FROM org_policies WHERE org = $1")
                .bind(org.as_str())
                .fetch_optional(&mut *transaction)
                .await
                .map_err(backend)?;
        let current = row.map_or_else(|| Ok(OrgPolicy::default()), |row| policy_from_columns(policy_row(&row)?))?;
        if current != *expected {
            return Err(PolicyWriteError::Conflict);
        }
        let (days, require_referers, apis) = policy_columns(new);
        sqlx::query(
            "INSERT INTO org_policies (org, max_lifetime_days, require_referers, allowed_apis)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (org) DO UPDATE SET max_lifetime_days = $2, require_referers = $3, allowed_apis = $4",
        )
        .bind(org.as_str())
        .bind(days.map(|days| i32::try_from(days).unwrap_or(i32::MAX)))
        .bind(require_referers)
        .bind(apis)
        .execute(&mut *transaction)
        .await
        .map_err(backend)?;
        record(&mut transaction, event).await?;
        transaction.commit().await.map_err(|e| PolicyWriteError::Backend(backend(e)))
    }
}

#[async_trait]
impl StoreHealth for PostgresStore {
    async fn ping(&self) -> Result<(), BackendError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(backend)
    }
}
