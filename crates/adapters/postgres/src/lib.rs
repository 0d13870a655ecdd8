//! latchkey's PostgreSQL adapter: every port over a PostgreSQL database
//! through a sqlx pool. Several latchkey instances may share one database;
//! that is how latchkey scales past one machine.
//!
//! Uniqueness and versions hold under concurrency because the database
//! enforces them: names through a unique constraint (a violation becomes
//! `NameTaken`), versions through `UPDATE … WHERE version = $expected`.
//! Nothing is checked first and inserted after. Queries are checked at run
//! time (no database is needed to build). The schema is migrated at start
//! under an advisory lock, so instances starting together do not race.
//!
//! Architecture invariant: an adapter depends on ports and domain only.

mod changes;
mod migrations;
mod store;

pub use changes::{
    APPLICATION_NAME, CHANNEL, HEARTBEAT_CHANNEL, HEARTBEAT_EVERY, follow_changes, follow_changes_every,
};
pub use store::{ConnectError, PostgresStore};
