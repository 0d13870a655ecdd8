//! The ports over SQLite.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use latchkey_domain::{
    Connection, ConnectionName, OrgName, Principal, SealedSecret, SecretHash, Timestamp, Token, TokenId, UserName,
};
use latchkey_ports::{
    BackendError, ConnectionCatalog, CreateConnectionError, CreateUserError, Cursor, DeleteError, GetError,
    InsertError, Page, StoreHealth, TokenRepository, UpdateError, UserDirectory,
};
use latchkey_rows::{TokenRow, encode_apis, encode_grants, encode_referers, sealed_row, version_to_column};
use rusqlite::{ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

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
     expiration_date, created_at, updated_at, last_used_at, version";

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
    })
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

impl SqliteStore {
    /// Inserts in one immediate transaction, which holds SQLite's write
    /// lock from the count to the insert, for every process on the file.
    async fn insert_within(&self, token: &Token, limit: Option<u64>) -> Result<(), InsertError> {
        let row = TokenRow::from_token(token)?;
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
                &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
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
                ],
            );
            match inserted {
                Ok(_) => transaction.commit().map_err(|e| InsertError::Backend(backend(e))),
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
    async fn insert(&self, token: &Token, limit: Option<u64>) -> Result<(), InsertError> {
        self.insert_within(token, limit).await
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
            c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ?1"))?
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

    async fn update(&self, token: &Token, expected_version: u64) -> Result<(), UpdateError> {
        let id = token.id.to_string();
        let name = token.name.to_string();
        let apis = encode_apis(token.policy.apis());
        let grants = encode_grants(token.policy.grants());
        let referers = encode_referers(token.policy.referers());
        let updated_at = micros(token.updated_at);
        let version = version_to_column(token.version)?;
        let expected = version_to_column(expected_version)?;
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            let changed = transaction.execute(
                "UPDATE tokens SET name = ?1, allowed_apis = ?2, grants = ?3, referers = ?4, updated_at = ?5,
                        version = ?6
                 WHERE id = ?7 AND version = ?8",
                params![name, apis, grants, referers, updated_at, version, id, expected],
            );
            match changed {
                Ok(1) => {}
                Ok(_) => {
                    let exists: bool = transaction
                        .query_row("SELECT EXISTS (SELECT 1 FROM tokens WHERE id = ?1)", [&id], |r| r.get(0))
                        .map_err(backend)?;
                    return Err(if exists { UpdateError::Conflict } else { UpdateError::NotFound });
                }
                Err(e) if unique_violation(&e).is_some() => return Err(UpdateError::NameTaken),
                Err(e) => return Err(UpdateError::Backend(backend(e))),
            }
            transaction.commit().map_err(|e| UpdateError::Backend(backend(e)))
        })
        .await
    }

    async fn delete(&self, id: &TokenId, expected_version: Option<u64>) -> Result<(), DeleteError> {
        let id = id.to_string();
        let expected = expected_version.map(version_to_column).transpose()?;
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
    async fn create_user(&self, principal: &Principal, key_hash: &SecretHash) -> Result<(), CreateUserError> {
        let org = principal.org.to_string();
        let user = principal.user.to_string();
        let hash = key_hash.as_bytes().to_vec();
        pool::write(&self.pool, move |c| {
            let transaction = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(backend)?;
            transaction.execute("INSERT OR IGNORE INTO orgs (name) VALUES (?1)", [&org]).map_err(backend)?;
            match transaction
                .execute("INSERT INTO users (org, name, key_hash) VALUES (?1, ?2, ?3)", params![org, user, hash])
            {
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

    async fn find_by_key_hash(&self, key_hash: &SecretHash) -> Result<Option<Principal>, BackendError> {
        let hash = key_hash.as_bytes().to_vec();
        let row: Option<(String, String)> = pool::read(&self.pool, move |c| {
            c.prepare_cached("SELECT org, name FROM users WHERE key_hash = ?1")?
                .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .await?;
        row.map(|(org, user)| {
            Ok(Principal {
                org: OrgName::new(&org).map_err(|_| BackendError::corrupt("user org"))?,
                user: UserName::new(&user).map_err(|_| BackendError::corrupt("user name"))?,
            })
        })
        .transpose()
    }

    async fn has_users(&self) -> Result<bool, BackendError> {
        pool::read(&self.pool, |c| c.query_row("SELECT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))).await
    }
}

#[async_trait]
impl StoreHealth for SqliteStore {
    async fn ping(&self) -> Result<(), BackendError> {
        pool::read(&self.pool, |c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }
}
