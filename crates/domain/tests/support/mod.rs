//! Helpers shared by the domain's integration tests: the workspace's
//! fixtures (`latchkey-testkit`), under the names these tests use.
#![allow(dead_code, unused_imports)]

pub use latchkey_testkit::{draft, grant, now, policy};

/// The org's connections in every test: one per provider.
pub fn connections() -> Vec<latchkey_domain::Connection> {
    latchkey_testkit::every_provider()
}
