//! latchkey's SQLite adapter, the embedded default store: every port over
//! one SQLite file, with bundled SQLite through rusqlite.
//!
//! The file runs in WAL mode with `synchronous=FULL`, so a write that
//! returned survives a `kill -9` and a power cut, and readers never wait for
//! the writer. One connection writes, several read; each unit of work,
//! transaction included, runs in one closure on a blocking thread, never on
//! the async runtime. The schema is migrated when the store is opened.
//!
//! Architecture invariant: an adapter depends on ports and domain only.

mod changes;
mod migrations;
mod pool;
mod store;

pub use changes::FOLLOW_EVERY;
pub use pool::OpenError;
pub use store::SqliteStore;
