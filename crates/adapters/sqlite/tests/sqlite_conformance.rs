//! The SQLite adapter against the storage contract suite, each case on a
//! new file in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use latchkey_conformance::{Stores, conformance_suite};
use latchkey_sqlite::SqliteStore;

async fn fresh() -> Stores {
    let dir = std::env::temp_dir().join(format!("latchkey-sqlite-{}-{}", std::process::id(), unique()));
    let store = SqliteStore::open(dir.join("test.db")).await.expect("open a fresh SQLite file");
    Stores::from_one(Arc::new(store)).with_teardown(Box::new(move || {
        Box::pin(async move {
            let _ = std::fs::remove_dir_all(dir);
        })
    }))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

conformance_suite!(fresh);
