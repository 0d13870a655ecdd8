//! The PostgreSQL adapter against the storage contract suite, each case in
//! a database of its own (see latchkey-test-postgres).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use latchkey_conformance::{Stores, conformance_suite};
use latchkey_postgres::PostgresStore;
use latchkey_test_postgres::TestDatabase;

async fn fresh() -> Stores {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(database.url(), 8).await.expect("connect and migrate");
    let closing = store.clone();
    Stores::from_one(Arc::new(store)).with_teardown(Box::new(move || {
        Box::pin(async move {
            closing.close().await;
            database.drop_database().await;
        })
    }))
}

conformance_suite!(fresh);
