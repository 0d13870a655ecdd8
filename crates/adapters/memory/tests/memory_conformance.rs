//! The memory adapter against the storage contract suite.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use latchkey_conformance::{Stores, conformance_suite};
use latchkey_memory::MemoryStore;

conformance_suite!(|| async { Stores::from_one(Arc::new(MemoryStore::new())) });
