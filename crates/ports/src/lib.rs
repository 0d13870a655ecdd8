//! The ports of latchkey: the traits the core needs from the outside world.
//!
//! Architecture invariant: this crate holds traits and the plain types they
//! exchange, nothing that does I/O. Every port is dyn-compatible
//! (`#[async_trait]`, `Send + Sync`) and held as `Arc<dyn Port>`, so adapters
//! are chosen at run time from the database URL. Each operation has its own
//! error enum with the outcomes a caller can act on plus one opaque
//! [`BackendError`]; each adapter translates its driver's errors itself.
//!
//! With the `mocks` feature, mockall mocks of every port (`MockTokenRepository`
//! and so on) are available to other crates' tests.

mod audit;
mod catalog;
mod changes;
mod clock;
mod error;
mod health;
mod tokens;
mod users;

pub use audit::{AuditCursor, AuditLog, AuditPage, AuditScope, OrgPolicies, PolicyWriteError};
pub use catalog::{ConnectionCatalog, CreateConnectionError};
pub use changes::ChangeSink;
pub use clock::Clock;
pub use error::BackendError;
pub use health::StoreHealth;
pub use tokens::{Cursor, DeleteError, GetError, InsertError, Page, TokenRepository, UpdateError};
pub use users::{AuthenticationError, Authenticator, CreateUserError, UserDirectory};

#[cfg(any(test, feature = "mocks"))]
pub use audit::{MockAuditLog, MockOrgPolicies};
#[cfg(any(test, feature = "mocks"))]
pub use catalog::MockConnectionCatalog;
#[cfg(any(test, feature = "mocks"))]
pub use changes::MockChangeSink;
#[cfg(any(test, feature = "mocks"))]
pub use clock::MockClock;
#[cfg(any(test, feature = "mocks"))]
pub use health::MockStoreHealth;
#[cfg(any(test, feature = "mocks"))]
pub use tokens::MockTokenRepository;
#[cfg(any(test, feature = "mocks"))]
pub use users::{MockAuthenticator, MockUserDirectory};
