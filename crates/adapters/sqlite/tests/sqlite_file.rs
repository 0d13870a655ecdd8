//! What the SQLite adapter promises beyond the port contract: durable
//! settings, a private file, migrations that run once and refuse a newer
//! schema.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_domain::{OrgName, Principal, UserKey, UserName};
use latchkey_ports::UserDirectory;
use latchkey_sqlite::SqliteStore;

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("latchkey-sqlite-file-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn durable_settings_on_every_connection() {
    let dir = temp_dir("settings");
    let store = SqliteStore::open(dir.join("nested/dirs/l.db")).await.unwrap();
    // Reads rotate over the readers; ask each of them.
    for _ in 0..8 {
        assert_eq!(store.settings().await.unwrap(), ("wal".to_owned(), 2, 1));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn the_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("private");
    let path = dir.join("l.db");
    let _store = SqliteStore::open(&path).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn reopening_keeps_data_and_a_newer_schema_is_refused() {
    let dir = temp_dir("reopen");
    let path = dir.join("l.db");
    let ana = Principal { org: OrgName::new("acme").unwrap(), user: UserName::new("ana").unwrap() };
    let key = UserKey::generate(&mut rand::rngs::SysRng).unwrap();
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.create_user(&ana, latchkey_domain::Role::Admin, &key.hash()).await.unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.find_by_key_hash(&key.hash()).await.unwrap().map(|i| i.principal), Some(ana));
    drop(store);

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", 999).unwrap();
    drop(raw);
    let error = SqliteStore::open(&path).await.unwrap_err().to_string();
    assert!(error.contains("newer than this latchkey knows"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = temp_dir("garbage");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l.db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    assert!(SqliteStore::open(&path).await.is_err());
    std::fs::remove_dir_all(dir).unwrap();
}
