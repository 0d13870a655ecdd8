//! What the PostgreSQL adapter promises beyond the port contract:
//! instances starting together migrate once, data survives reconnecting,
//! and a newer schema is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_domain::{OrgName, Principal, UserKey, UserName};
use latchkey_ports::UserDirectory;
use latchkey_postgres::PostgresStore;
use latchkey_test_postgres::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_migrate_once() {
    let database = TestDatabase::create().await;
    let url = database.url().to_owned();
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url, 2).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap().expect("every instance starts"));
    }
    let ana = Principal { org: OrgName::new("acme").unwrap(), user: UserName::new("ana").unwrap() };
    let key = UserKey::generate(&mut rand::rngs::SysRng).unwrap();
    stores[0].create_user(&ana, latchkey_domain::Role::Admin, &key.hash()).await.unwrap();
    assert_eq!(
        stores[5].find_by_key_hash(&key.hash()).await.unwrap().map(|i| i.principal),
        Some(ana.clone()),
        "one database"
    );
    for store in &stores {
        store.close().await;
    }

    let again = PostgresStore::connect(&url, 2).await.unwrap();
    assert_eq!(again.find_by_key_hash(&key.hash()).await.unwrap().map(|i| i.principal), Some(ana));
    sqlx::query("INSERT INTO latchkey_schema (version) VALUES (999)").execute(again.pool()).await.unwrap();
    again.close().await;
    let error = PostgresStore::connect(&url, 2).await.unwrap_err().to_string();
    assert!(error.contains("newer than this latchkey knows"), "{error}");
    database.drop_database().await;
}
