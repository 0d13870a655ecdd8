//! The ports over SQLite.

use std::path::Path;
use std::sync::Arc;

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
    AuditRow, TokenRow, encode_allowed_ips, encode_apis, encode_grants, encode_referers, policy_columns,
    policy_from_columns, sealed_row, version_to_column,
};
use rusqlite::{ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::pool::{self, OpenError, Pool};

/// Every port over one SQLite file. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

impl SqliteStore {
    /// Opens the file at `path`, creating it (owner-only) and its directory
    /// when missing, and brings its schema up to date.
    ///
    /// # Errors
    /// [`OpenError`] when the file cannot be created, opened or migrated.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref().to_owned();
        let pool = tokio::task::spawn_blocking(move || Pool::open(&path))
            .await
            .map_err(|e| OpenError::Io { path: Default::default(), source: std::io::Error::other(e) })??;
        Ok(Self { pool: Arc::new(pool) })
    }

    /// Follows the changes that any process commits to the file, telling
    /// `sink` every `every` (see [`crate::FOLLOW_EVERY`]) until the sink is
    /// dropped. The sink is told the feed works after the first read, and
    /// lost while the file cannot be read.
    ///
    /// # Errors
    /// When the thread that follows cannot be started.
    pub fn follow_changes(
        &self,
        sink: std::sync::Weak<dyn latchkey_ports::ChangeSink>,
        every: std::time::Duration,
    ) -> std::io::Result<()> {
        crate::changes::follow(&self.pool.path, sink, every)
    }

    /// The durability settings in force on the store's connections:
    /// `(journal_mode, synchronous, foreign_keys)`, for diagnostics and the
    /// tests that hold the adapter to them (`wal`, 2 = FULL, 1 = on).
    ///
    /// # Errors
    /// [`BackendError`] when the file does not answer.
    pub async fn settings(&self) -> Result<(String, i64, i64), BackendError> {
        pool::read(&self.pool, |c| {
            let journal: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            let synchronous: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            let foreign_keys: i64 = c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
            Ok((journal, synchronous, foreign_keys))
        })
        .await
    }
}

const TOKEN_COLUMNS: &str = "id, org, owner, name, secret_hash, sealed_secret, allowed_apis, grants, referers, \
     expiration_date, created_at, updated_at, last_used_at, version, allowed_ips, previous_secret_hash, \
     previous_expires_at";

const AUDIT_COLUMNS: &str = "id, org, at, actor, action, token_id, token_name, token_owner, changes";

fn timestamp(micros: i64) -> rusqlite::Result<Timestamp> {
    Timestamp::from_unix_micros(micros).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn optional_timestamp(micros: Option<i64>) -> rusqlite::Result<Option<Timestamp>> {
    micros.map(timestamp).transpose()
}

/// Reads a row of [`TOKEN_COLUMNS`].
fn token_row(row: &Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        id: row.get(0)?,
        org: row.get(1)?,
        owner: row.get(2)?,
        name: row.get(3)?,
        secret_hash: row.get(4)?,
        sealed_secret: row.get(5)?,
        allowed_apis: row.get(6)?,
        grants: row.get(7)?,
        referers: row.get(8)?,
        expiration: optional_timestamp(row.get(9)?)?,
        created_at: timestamp(row.get(10)?)?,
        updated_at: timestamp(row.get(11)?)?,
        last_used_at: optional_timestamp(row.get(12)?)?,
        version: row.get(13)?,
        allowed_ips: row.get(14)?,
        previous_secret_hash: row.get(15)?,
        previous_expires_at: optional_timestamp(row.get(16)?)?,
    })
}

/// Reads a row of [`AUDIT_COLUMNS`].
fn audit_row(row: &Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: row.get(0)?,
        org: row.get(1)?,
        at: timestamp(row.get(2)?)?,
        actor: row.get(3)?,
        action: row.get(4)?,
        token_id: row.get(5)?,
        token_name: row.get(6)?,
        token_owner: row.get(7)?,
        changes: row.get(8)?,
    })
}

/// Stores an event inside the transaction of the change it records.
fn record(transaction: &Transaction<'_>, event: &AuditRow) -> Result<(), BackendError> {
    transaction
        .prepare_cached(&format!(
            "INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ))
        .and_then(|mut statement| {
            statement.execute(params![
                event.id,
                event.org,
                micros(event.at),
                event.actor,
                event.action,
                event.token_id,
                event.token_name,
                event.token_owner,
                event.changes,
            ])
        })
        .map(drop)
        .map_err(backend)
}

/// Which unique constraint a failed statement broke, if that is why it
/// failed. SQLite names the columns in the message
/// ("UNIQUE constraint failed: tokens.org, tokens.owner, tokens.name").
fn unique_violation(error: &rusqlite::Error) -> Option<&str> {
    match error {
        rusqlite::Error::SqliteFailure(failure, Some(message)) if failure.code == ErrorCode::ConstraintViolation => {
            message.strip_prefix("UNIQUE constraint failed: ")
        }
        _ => None,
    }
}

fn backend(error: rusqlite::Error) -> BackendError {
    BackendError::new(error)
}

fn micros(t: Timestamp) -> i64 {
    t.unix_micros()
}

/// Why a conditional write changed no row: the token is gone, or at
/// another version.
fn missing_or_changed(transaction: &Transaction<'_>, id: &str) -> Result<UpdateError, BackendError> {
    let exists: bool = transaction
        .query_row("SELECT EXISTS (SELECT 1 FROM tokens WHERE id = ?1)", [id], |r| r.get(0))
        .map_err(backend)?;
    Ok(if exists { UpdateError::Conflict } else { UpdateError::NotFound })
}

impl SqliteStore {
    /// Inserts in one immediate transaction, which holds SQLite's write
    /// lock from the count to the insert, for every process on the file.
    async fn insert_within(&self, token: &Token, limit: Option<u64>, event: &AuditEvent) -> Result<(), InsertError> {
        let row = TokenRow::from_token(token)?;
        let event = AuditRow::from_event(event);
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            if let Some(limit) = limit {
                let owned: i64 = transaction
                    .prepare_cached("SELECT count(*) FROM tokens WHERE org = ?1 AND owner = ?2")
                    .and_then(|mut statement| statement.query_row([&row.org, &row.owner], |r| r.get(0)))
                    .map_err(backend)?;
                if u64::try_from(owned).unwrap_or(0) >= limit {
                    return Err(InsertError::LimitReached);
                }
            }
            let inserted = transaction.execute(
                &format!(
                    "INSERT INTO tokens ({TOKEN_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
                ),
                params![
                    row.id,
                    row.org,
                    row.owner,
                    row.name,
                    row.secret_hash,
                    row.sealed_secret,
                    row.allowed_apis,
                    row.grants,
                    row.referers,
                    row.expiration.map(micros),
                    micros(row.created_at),
                    micros(row.updated_at),
                    row.last_used_at.map(micros),
                    row.version,
                    row.allowed_ips,
                    row.previous_secret_hash,
                    row.previous_expires_at.map(micros),
                ],
            );
            match inserted {
                Ok(_) => {
                    record(&transaction, &event)?;
                    transaction.commit().map_err(|e| InsertError::Backend(backend(e)))
                }
                Err(e) => Err(match unique_violation(&e) {
                    Some(columns) if columns.contains("tokens.name") => InsertError::NameTaken,
                    Some(_) => InsertError::Duplicate,
                    None => InsertError::Backend(backend(e)),
                }),
            }
        })
        .await
    }
}

#[async_trait]
impl TokenRepository for SqliteStore {
    async fn insert(&self, token: &Token, limit: Option<u64>, event: &AuditEvent) -> Result<(), InsertError> {
        self.insert_within(token, limit, event).await
    }

    async fn get_in_org(&self, id: &TokenId, org: &OrgName) -> Result<Token, GetError> {
        let keys = [id.to_string(), org.to_string()];
        let row = pool::read(&self.pool, move |c| {
            c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1 AND org = ?2"))?
                .query_row(keys, token_row)
                .optional()
        })
        .await?;
        row.ok_or(GetError::NotFound)?.into_token().map_err(GetError::Backend)
    }

    async fn get(&self, id: &TokenId, owner: &Principal) -> Result<Token, GetError> {
        let keys = [id.to_string(), owner.org.to_string(), owner.user.to_string()];
        let row = pool::read(&self.pool, move |c| {
            c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1 AND org = ?2 AND owner = ?3"))?
                .query_row(keys, token_row)
                .optional()
        })
        .await?;
        row.ok_or(GetError::NotFound)?.into_token().map_err(GetError::Backend)
    }

    async fn find_by_secret_hash(&self, hash: &SecretHash) -> Result<Option<Token>, BackendError> {
        let hash = hash.as_bytes().to_vec();
        let row = pool::read(&self.pool, move |c| {
            // Two indexed lookups (SQLite's OR optimisation uses both
            // unique indexes).
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ?1 OR previous_secret_hash = ?1"
            ))?
            .query_row([hash], token_row)
            .optional()
        })
        .await?;
        row.map(TokenRow::into_token).transpose()
    }

    async fn list(&self, owner: &Principal, after: Option<Cursor>, limit: usize) -> Result<Page, BackendError> {
        let (org, user) = (owner.org.to_string(), owner.user.to_string());
        let (after_created, after_id) = match after {
            Some(cursor) => (Some(micros(cursor.created_at)), Some(cursor.id.to_string())),
            None => (None, None),
        };
        let fetch = i64::try_from(Page::rows_to_read(limit)).unwrap_or(i64::MAX);
        let rows = pool::read(&self.pool, move |c| {
            let mut statement = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens
                 WHERE org = ?1 AND owner = ?2
                   AND (?3 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id < ?4))
                 ORDER BY created_at DESC, id DESC
                 LIMIT ?5"
            ))?;
            statement
                .query_map(params![org, user, after_created, after_id, fetch], token_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
        let tokens = rows.into_iter().map(TokenRow::into_token).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(tokens, limit))
    }

    async fn list_org(
        &self,
        org: &OrgName,
        owner: Option<UserName>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, BackendError> {
        let (org, owner) = (org.to_string(), owner.map(|user| user.to_string()));
        let (after_created, after_id) = match after {
            Some(cursor) => (Some(micros(cursor.created_at)), Some(cursor.id.to_string())),
            None => (None, None),
        };
        let fetch = i64::try_from(Page::rows_to_read(limit)).unwrap_or(i64::MAX);
        let rows = pool::read(&self.pool, move |c| {
            let mut statement = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens
                 WHERE org = ?1 AND (?2 IS NULL OR owner = ?2)
                   AND (?3 IS NULL OR created_at < ?3 OR (created_at = ?3 AND id < ?4))
                 ORDER BY created_at DESC, id DESC
                 LIMIT ?5"
            ))?;
            statement
                .query_map(params![org, owner, after_created, after_id, fetch], token_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
        let tokens = rows.into_iter().map(TokenRow::into_token).collect::<Result<Vec<_>, _>>()?;
        Ok(Page::from_rows(tokens, limit))
    }

    async fn update(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError> {
        let id = token.id.to_string();
        let name = token.name.to_string();
        let apis = encode_apis(token.policy.apis());
        let grants = encode_grants(token.policy.grants());
        let referers = encode_referers(token.policy.referers());
        let allowed_ips = encode_allowed_ips(token.policy.allowed_ips());
        let updated_at = micros(token.updated_at);
        let version = version_to_column(token.version)?;
        let expected = version_to_column(expected_version)?;
        let event = AuditRow::from_event(event);
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let changed = transaction.execute(
                "UPDATE tokens SET name = ?1, allowed_apis = ?2, grants = ?3, referers = ?4, allowed_ips = ?5,
                        updated_at = ?6, version = ?7
                 WHERE id = ?8 AND version = ?9",
                params![name, apis, grants, referers, allowed_ips, updated_at, version, id, expected],
            );
            match changed {
                Ok(1) => {}
                Ok(_) => return Err(missing_or_changed(&transaction, &id)?),
                Err(e) if unique_violation(&e).is_some() => return Err(UpdateError::NameTaken),
                Err(e) => return Err(UpdateError::Backend(backend(e))),
            }
            record(&transaction, &event)?;
            transaction.commit().map_err(|e| UpdateError::Backend(backend(e)))
        })
        .await
    }

    async fn roll(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError> {
        let row = TokenRow::from_token(token)?;
        let expected = version_to_column(expected_version)?;
        let event = AuditRow::from_event(event);
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let changed = transaction
                .execute(
                    "UPDATE tokens SET secret_hash = ?1, sealed_secret = ?2, previous_secret_hash = ?3,
                            previous_expires_at = ?4, updated_at = ?5, version = ?6
                     WHERE id = ?7 AND version = ?8",
                    params![
                        row.secret_hash,
                        row.sealed_secret,
                        row.previous_secret_hash,
                        row.previous_expires_at.map(micros),
                        micros(row.updated_at),
                        row.version,
                        row.id,
                        expected,
                    ],
                )
                .map_err(backend)?;
            if changed != 1 {
                return Err(missing_or_changed(&transaction, &row.id)?);
            }
            record(&transaction, &event)?;
            transaction.commit().map_err(|e| UpdateError::Backend(backend(e)))
        })
        .await
    }

    async fn delete(&self, id: &TokenId, expected_version: Option<u64>, event: &AuditEvent) -> Result<(), DeleteError> {
        let id = id.to_string();
        let expected = expected_version.map(version_to_column).transpose()?;
        let event = AuditRow::from_event(event);
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let deleted = transaction
                .execute("DELETE FROM tokens WHERE id = ?1 AND (?2 IS NULL OR version = ?2)", params![id, expected])
                .map_err(backend)?;
            if deleted == 0 {
                let exists: bool = transaction
                    .query_row("SELECT EXISTS (SELECT 1 FROM tokens WHERE id = ?1)", [&id], |r| r.get(0))
                    .map_err(backend)?;
                return Err(if exists { DeleteError::Conflict } else { DeleteError::NotFound });
            }
            record(&transaction, &event)?;
            transaction.commit().map_err(|e| DeleteError::Backend(backend(e)))
        })
        .await
    }

    async fn record_last_use(&self, uses: &[(TokenId, Timestamp)]) -> Result<(), BackendError> {
        if uses.is_empty() {
            return Ok(());
        }
        let uses: Vec<(String, i64)> = uses.iter().map(|(id, at)| (id.to_string(), micros(*at))).collect();
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            {
                let mut statement = transaction
                    .prepare_cached(
                        "UPDATE tokens SET last_used_at = max(coalesce(last_used_at, ?2), ?2) WHERE id = ?1",
                    )
                    .map_err(backend)?;
                for (id, at) in &uses {
                    statement.execute(params![id, at]).map_err(backend)?;
                }
            }
            transaction.commit().map_err(backend)
        })
        .await
    }

    async fn sealed_secrets(
        &self,
        after: Option<TokenId>,
        limit: usize,
    ) -> Result<Vec<(TokenId, SealedSecret)>, BackendError> {
        let after = after.as_ref().map(TokenId::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(String, Vec<u8>)> = pool::read(&self.pool, move |c| {
            // TEXT compares bytewise (BINARY collation), as the port asks.
            c.prepare_cached("SELECT id, sealed_secret FROM tokens WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2")?
                .query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .await?;
        rows.into_iter().map(|(id, sealed)| sealed_row(&id, sealed)).collect()
    }

    async fn replace_sealed_secrets(
        &self,
        replacements: &[(TokenId, SealedSecret, SealedSecret)],
    ) -> Result<u64, BackendError> {
        let replacements: Vec<(String, Vec<u8>, Vec<u8>)> = replacements
            .iter()
            .map(|(id, expected, new)| (id.to_string(), expected.as_bytes().to_vec(), new.as_bytes().to_vec()))
            .collect();
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let mut replaced = 0;
            {
                let mut statement = transaction
                    .prepare_cached("UPDATE tokens SET sealed_secret = ?3 WHERE id = ?1 AND sealed_secret = ?2")
                    .map_err(backend)?;
                for (id, expected, new) in &replacements {
                    replaced += statement.execute(params![id, expected, new]).map_err(backend)? as u64;
                }
            }
            transaction.commit().map_err(backend)?;
            Ok(replaced)
        })
        .await
    }
}

#[async_trait]
impl ConnectionCatalog for SqliteStore {
    async fn connections(&self, org: &OrgName) -> Result<Vec<Connection>, BackendError> {
        let org = org.to_string();
        let rows: Vec<(String, String)> = pool::read(&self.pool, move |c| {
            c.prepare_cached("SELECT name, provider FROM connections WHERE org = ?1 ORDER BY name")?
                .query_map([org], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .await?;
        rows.into_iter()
            .map(|(name, provider)| {
                Ok(Connection {
                    name: ConnectionName::new(&name).map_err(|_| BackendError::corrupt("connection name"))?,
                    provider: provider.parse().map_err(|_| BackendError::corrupt("connection provider"))?,
                })
            })
            .collect()
    }

    async fn create_connection(&self, org: &OrgName, connection: &Connection) -> Result<(), CreateConnectionError> {
        let org = org.to_string();
        let name = connection.name.to_string();
        let provider = connection.provider.as_str();
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let org_exists: bool = transaction
                .query_row("SELECT EXISTS (SELECT 1 FROM orgs WHERE name = ?1)", [&org], |r| r.get(0))
                .map_err(backend)?;
            if !org_exists {
                return Err(CreateConnectionError::UnknownOrg);
            }
            match transaction.execute(
                "INSERT INTO connections (org, name, provider) VALUES (?1, ?2, ?3)",
                params![org, name, provider],
            ) {
                Ok(_) => {}
                Err(e) if unique_violation(&e).is_some() => return Err(CreateConnectionError::NameTaken),
                Err(e) => return Err(CreateConnectionError::Backend(backend(e))),
            }
            transaction.commit().map_err(|e| CreateConnectionError::Backend(backend(e)))
        })
        .await
    }
}

#[async_trait]
impl UserDirectory for SqliteStore {
    async fn create_user(
        &self,
        principal: &Principal,
        role: Role,
        key_hash: &SecretHash,
    ) -> Result<(), CreateUserError> {
        let admin = role.is_admin();
        let org = principal.org.to_string();
        let user = principal.user.to_string();
        let hash = key_hash.as_bytes().to_vec();
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            transaction.execute("INSERT OR IGNORE INTO orgs (name) VALUES (?1)", [&org]).map_err(backend)?;
            match transaction.execute(
                "INSERT INTO users (org, name, key_hash, admin) VALUES (?1, ?2, ?3, ?4)",
                params![org, user, hash, admin],
            ) {
                Ok(_) => {}
                Err(e) => {
                    return Err(match unique_violation(&e) {
                        Some(columns) if columns.contains("users.key_hash") => {
                            CreateUserError::Backend(BackendError::corrupt("two users with one key hash"))
                        }
                        Some(_) => CreateUserError::UserExists,
                        None => CreateUserError::Backend(backend(e)),
                    });
                }
            }
            transaction.commit().map_err(|e| CreateUserError::Backend(backend(e)))
        })
        .await
    }

    async fn find_by_key_hash(&self, key_hash: &SecretHash) -> Result<Option<Identity>, BackendError> {
        let hash = key_hash.as_bytes().to_vec();
        let row: Option<(String, String, bool)> = pool::read(&self.pool, move |c| {
            c.prepare_cached("SELECT org, name, admin FROM users WHERE key_hash = ?1")?
                .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .await?;
        row.map(|(org, user, admin)| {
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
        pool::read(&self.pool, |c| c.query_row("SELECT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))).await
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
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
        let token = token.map(|id| id.to_string());
        let (after_at, after_id) = match after {
            Some(cursor) => (Some(micros(cursor.at)), Some(cursor.id.to_string())),
            None => (None, None),
        };
        let fetch = i64::try_from(Page::rows_to_read(limit)).unwrap_or(i64::MAX);
        let rows = pool::read(&self.pool, move |c| {
            let mut statement = c.prepare_cached(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events
                 WHERE org = ?1 AND (?2 IS NULL OR token_owner = ?2) AND (?3 IS NULL OR token_id = ?3)
                   AND (?4 IS NULL OR at < ?4 OR (at = ?4 AND id < ?5))
                 ORDER BY at DESC, id DESC
                 LIMIT ?6"
            ))?;
            statement
                .query_map(params![org, owner, token, after_at, after_id, fetch], audit_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
        let events = rows.into_iter().map(AuditRow::into_event).collect::<Result<Vec<_>, _>>()?;
        Ok(AuditPage::from_rows(events, limit))
    }
}

#[async_trait]
impl OrgPolicies for SqliteStore {
    async fn policy(&self, org: &OrgName) -> Result<OrgPolicy, BackendError> {
        let org = org.to_string();
        let columns = pool::read(&self.pool, move |c| {
            c.prepare_cached(
                "SELECT max_lifetime_days, require_referers, allowed_apis FROM org_policies WHERE org = ?1",
            )?
            .query_row([org], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
        })
        .await?;
        columns.map_or_else(|| Ok(OrgPolicy::default()), policy_from_columns)
    }

    async fn replace_policy(
        &self,
        org: &OrgName,
        expected: &OrgPolicy,
        new: &OrgPolicy,
        event: &AuditEvent,
    ) -> Result<(), PolicyWriteError> {
        let org = org.to_string();
        let (expected, new) = (*expected, policy_columns(new));
        let event = AuditRow::from_event(event);
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let stored = transaction
                .query_row(
                    "SELECT max_lifetime_days, require_referers, allowed_apis FROM org_policies WHERE org = ?1",
                    [&org],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(backend)?;
            let current = stored.map_or_else(|| Ok(OrgPolicy::default()), policy_from_columns)?;
            if current != expected {
                return Err(PolicyWriteError::Conflict);
            }
            let (days, require_referers, apis) = new;
            transaction
                .execute(
                    "INSERT INTO org_policies (org, max_lifetime_days, require_referers, allowed_apis)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (org) DO UPDATE SET max_lifetime_days = ?2, require_referers = ?3, allowed_apis = ?4",
                    params![org, days, require_referers, apis],
                )
                .map_err(backend)?;
            record(&transaction, &event)?;
            transaction.commit().map_err(|e| PolicyWriteError::Backend(backend(e)))
        })
        .await
    }
}

#[async_trait]
impl StoreHealth for SqliteStore {
    async fn ping(&self) -> Result<(), BackendError> {
        pool::read(&self.pool, |c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}
