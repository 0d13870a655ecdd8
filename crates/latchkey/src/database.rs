//! The database URL, and the adapters it selects.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use latchkey_memory::MemoryStore;
use latchkey_ports::{AuditLog, ConnectionCatalog, OrgPolicies, StoreHealth, TokenRepository, UserDirectory};
use latchkey_postgres::PostgresStore;
use latchkey_sqlite::SqliteStore;

/// Where data lives (SPEC §10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: relative, or absolute with a third slash.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, passed to the driver as written.
    Postgres(String),
    /// `memory://`: nothing survives the process.
    Memory,
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a path, e.g. sqlite://latchkey.db or sqlite:///var/lib/latchkey.db".into());
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else if url == "memory://" {
            Ok(DatabaseUrl::Memory)
        } else {
            Err("expected sqlite://PATH, postgres://…, postgresql://… or memory://".into())
        }
    }
}

/// The store behind every port.
#[derive(Clone)]
pub struct Storage {
    pub tokens: Arc<dyn TokenRepository>,
    pub catalog: Arc<dyn ConnectionCatalog>,
    pub users: Arc<dyn UserDirectory>,
    pub audit: Arc<dyn AuditLog>,
    pub policies: Arc<dyn OrgPolicies>,
    pub health: Arc<dyn StoreHealth>,
    /// The PostgreSQL store, when that is the one.
    pub postgres: Option<PostgresStore>,
    /// The SQLite store, when that is the one.
    pub sqlite: Option<SqliteStore>,
}

impl Storage {
    /// The same store, with every failure counted in `metrics`.
    pub fn observed(self, metrics: &Arc<latchkey_app::Metrics>) -> Self {
        use latchkey_app::Observed;
        Self {
            tokens: Observed::new(self.tokens, metrics.clone()),
            catalog: Observed::new(self.catalog, metrics.clone()),
            users: Observed::new(self.users, metrics.clone()),
            audit: Observed::new(self.audit, metrics.clone()),
            policies: Observed::new(self.policies, metrics.clone()),
            health: Observed::new(self.health, metrics.clone()),
            postgres: self.postgres,
            sqlite: self.sqlite,
        }
    }

    fn of<S>(store: Arc<S>) -> Self
    where
        S: TokenRepository + ConnectionCatalog + UserDirectory + AuditLog + OrgPolicies + StoreHealth + 'static,
    {
        Self {
            tokens: store.clone(),
            catalog: store.clone(),
            users: store.clone(),
            audit: store.clone(),
            policies: store.clone(),
            health: store,
            postgres: None,
            sqlite: None,
        }
    }
}

impl DatabaseUrl {
    /// Opens the store, migrating its schema.
    pub async fn open(&self, postgres_pool_size: u32) -> Result<Storage> {
        Ok(match self {
            DatabaseUrl::Sqlite(path) => {
                let store = SqliteStore::open(path).await?;
                Storage { sqlite: Some(store.clone()), ..Storage::of(Arc::new(store)) }
            }
            DatabaseUrl::Postgres(url) => {
                let store = PostgresStore::connect(url, postgres_pool_size).await.context("opening PostgreSQL")?;
                Storage { postgres: Some(store.clone()), ..Storage::of(Arc::new(store)) }
            }
            DatabaseUrl::Memory => Storage::of(Arc::new(MemoryStore::new())),
        })
    }

    /// Fails, naming the file's absolute path, when this is a SQLite file
    /// that does not exist; `hint` says what to do instead.
    pub fn must_exist(&self, hint: &str) -> Result<()> {
        if let DatabaseUrl::Sqlite(path) = self
            && !path.exists()
        {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            anyhow::bail!(
                "there is no database at {} (from --database or LATCHKEY_DATABASE_URL, default \
                 sqlite://latchkey.db in the current directory); name the one `latchkey serve` uses, or {hint}",
                absolute.display()
            );
        }
        Ok(())
    }

    /// The URL with any password hidden, for messages.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Memory => "memory://".into(),
            DatabaseUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &url[..scheme + 3], &url[at..]),
                _ => url.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_adapter() {
        let cases: &[(&str, Option<DatabaseUrl>)] = &[
            ("sqlite://latchkey.db", Some(DatabaseUrl::Sqlite("latchkey.db".into()))),
            ("sqlite://data/x.db", Some(DatabaseUrl::Sqlite("data/x.db".into()))),
            ("sqlite:///var/lib/x.db", Some(DatabaseUrl::Sqlite("/var/lib/x.db".into()))),
            ("postgres://u:p@h/db", Some(DatabaseUrl::Postgres("postgres://u:p@h/db".into()))),
            (
                "postgresql://h/db?sslmode=require",
                Some(DatabaseUrl::Postgres("postgresql://h/db?sslmode=require".into())),
            ),
            ("memory://", Some(DatabaseUrl::Memory)),
            ("sqlite://", None),
            ("mysql://h/db", None),
            ("latchkey.db", None),
            ("memory://x", None),
        ];
        for (text, expected) in cases {
            assert_eq!(&text.parse::<DatabaseUrl>().ok(), expected, "{text}");
        }
    }

    #[test]
    fn passwords_are_hidden() {
        let url: DatabaseUrl = "postgres://user:secret@db.example.com:5432/latchkey".parse().unwrap();
        assert_eq!(url.redacted(), "postgres://***@db.example.com:5432/latchkey");
    }
}
