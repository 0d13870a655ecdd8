//! A fresh PostgreSQL database for each test, so tests run in parallel and
//! never see each other's rows.
//!
//! The server is the one named by `LATCHKEY_TEST_POSTGRES_URL` (any URL of
//! a role that may create databases), or, when that is not set, a
//! PostgreSQL 16 container started with testcontainers for the test. With
//! neither, the test fails and says how to provide a server: PostgreSQL
//! tests are never skipped silently.
//!
//! Only tests use this crate.

#![allow(clippy::panic, clippy::expect_used)]

use rand::TryRng;
// Database names cannot be bound as parameters; the names spliced into
// statements here are generated (`latchkey_test_` and hex) or read back from
// pg_database under that pattern.
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use url::Url;

/// The variable that names the test server.
pub const URL_VARIABLE: &str = "LATCHKEY_TEST_POSTGRES_URL";

const HOW_TO: &str = "PostgreSQL tests need a server: set LATCHKEY_TEST_POSTGRES_URL to a URL of a role that may \
     create databases (e.g. postgres://postgres@127.0.0.1:5432/postgres; `cargo xtask test` does this when a \
     server answers on 127.0.0.1:5432), or run a Docker engine so that a PostgreSQL 16 container can be started";

/// A database created for one test. Call [`TestDatabase::drop_database`]
/// at the end of the test; a database left behind by a failed test has a
/// `latchkey_test_` name and is removed by [`TestDatabase::create`] once it
/// is an hour old.
pub struct TestDatabase {
    url: String,
    admin_url: String,
    name: String,
    // Held so the container lives as long as the database.
    _container: Option<ContainerAsync<Postgres>>,
}

impl std::fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDatabase").field("name", &self.name).finish()
    }
}

async fn admin_connection(admin_url: &str) -> PgConnection {
    PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}\n{HOW_TO}"))
}

fn random_name() -> String {
    let mut bytes = [0u8; 8];
    rand::rngs::SysRng.try_fill_bytes(&mut bytes).expect("the OS random generator works");
    let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("latchkey_test_{suffix}")
}

impl TestDatabase {
    /// Creates an empty database with a random name.
    ///
    /// # Panics
    /// When no server can be reached, with a message saying how to provide
    /// one.
    pub async fn create() -> Self {
        let (admin_url, container) = match std::env::var(URL_VARIABLE) {
            Ok(url) => (url, None),
            Err(_) => {
                let container = Postgres::default().with_tag("16-alpine").start().await.unwrap_or_else(|e| {
                    panic!("{URL_VARIABLE} is not set and no container could start: {e}\n{HOW_TO}")
                });
                let port = container.get_host_port_ipv4(5432).await.expect("the container exposes 5432");
                (format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"), Some(container))
            }
        };
        let name = random_name();
        let mut admin = admin_connection(&admin_url).await;
        sweep_stale(&mut admin).await;
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}\n{HOW_TO}"));
        let _ = admin.close().await;
        let mut url = Url::parse(&admin_url).unwrap_or_else(|e| panic!("{URL_VARIABLE} is not a URL: {e}"));
        url.set_path(&format!("/{name}"));
        Self { url: url.to_string(), admin_url, name, _container: container }
    }

    /// The database's URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, closing whatever connections remain to it.
    pub async fn drop_database(self) {
        let mut admin = admin_connection(&self.admin_url).await;
        if let Err(e) =
            admin.execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))).await
        {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
        let _ = admin.close().await;
    }
}

/// Drops test databases older than an hour: what failed tests left behind.
async fn sweep_stale(admin: &mut PgConnection) {
    let stale: Vec<(String,)> = sqlx::query_as(
        "SELECT datname FROM pg_database
         WHERE datname LIKE 'latchkey\\_test\\_%'
           AND (pg_stat_file('base/' || oid || '/PG_VERSION', true)).modification < now() - interval '1 hour'",
    )
    .fetch_all(&mut *admin)
    .await
    .unwrap_or_default();
    for (name,) in stale {
        let _ = admin
            .execute(AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", name.replace('"', "\"\""))))
            .await;
    }
}
