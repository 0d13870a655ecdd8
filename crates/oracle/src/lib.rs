//! Differential tests of query keys against the warehouses' own parsers.
//!
//! The crate is empty; its tests (`tests/`) check that whenever latchkey
//! gives two queries the same key, PostgreSQL's parser (libpg_query, through
//! the `pg_query` crate) reads them as the same statement. See
//! `docs/sql-lexicon.md`.
