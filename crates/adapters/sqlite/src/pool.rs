//! Connections to one SQLite file, used off the async runtime.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use latchkey_ports::BackendError;
use rusqlite::{Connection, OpenFlags};

use crate::migrations;

/// How many connections serve reads. WAL lets them read while the writer
/// writes; more than the machine's cores would only wait for each other.
const READERS: usize = 4;

/// How long a connection waits for a lock held by another process before
/// giving up with "database is busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a SQLite file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file or its directory could not be created or opened.
    #[error("cannot open {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused the file or a migration failed.
    #[error("cannot open {path}: {source}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
}

pub(crate) struct Pool {
    /// The file, for what opens a connection of its own (the change feed).
    pub(crate) path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

pub(crate) fn configure(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: a transaction is on disk, WAL included, when COMMIT returns.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Creates the file with owner-only permissions when it does not exist:
/// it holds hashed keys and sealed token values. SQLite gives the WAL and
/// shared-memory files the same permissions.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

impl Pool {
    /// Opens (creating when needed) and migrates the file. Blocking.
    pub(crate) fn open(path: &Path) -> Result<Self, OpenError> {
        let sqlite = |source| OpenError::Sqlite { path: path.to_owned(), source };
        create_private(path).map_err(|source| OpenError::Io { path: path.to_owned(), source })?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let mut writer = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        configure(&writer).map_err(sqlite)?;
        let mode: String = writer.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "SQLite did not switch to WAL mode");
        }
        migrations::migrate(&mut writer).map_err(sqlite)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(path, flags)?;
                configure(&reader)?;
                Ok(Mutex::new(reader))
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(sqlite)?;
        Ok(Self { path: path.to_owned(), writer: Mutex::new(writer), readers, next_reader: AtomicUsize::new(0) })
    }
}

/// Runs `work` with a reader connection on a blocking thread.
pub(crate) async fn read<T, F>(pool: &Arc<Pool>, work: F) -> Result<T, BackendError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let index = pool.next_reader.fetch_add(1, Ordering::Relaxed) % pool.readers.len();
        let connection = pool.readers[index].lock().unwrap_or_else(PoisonError::into_inner);
        work(&connection).map_err(BackendError::new)
    })
    .await
    .map_err(BackendError::new)?
}

/// Runs `work` with the writer connection on a blocking thread. Writes are
/// serialised here rather than by SQLite's busy loop, which would make
/// concurrent writers poll.
pub(crate) async fn write<T, E, F>(pool: &Arc<Pool>, work: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<BackendError> + Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        // A panic while the lock was held left no transaction open: the
        // transaction guard rolled back as the panic unwound.
        let mut connection = pool.writer.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut connection)
    })
    .await
    .map_err(|e| E::from(BackendError::new(e)))?
}
