//! The in-memory adapter: every port, behind one lock, for `memory://`.
//!
//! It is a complete store, not a test double: names are unique per owner,
//! updates check versions, and lists page by keyset, all atomically under
//! the lock. Nothing survives the process.
//!
//! Architecture invariant: an adapter depends on the ports and the domain,
//! never on the application layer or on another adapter.

mod store;

pub use store::MemoryStore;
