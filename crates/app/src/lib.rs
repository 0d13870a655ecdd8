//! latchkey's use cases: the only code that orchestrates ports.
//!
//! Architecture invariant: this crate depends on the domain and the ports,
//! never on an adapter or on the wire format. It decides who may see what
//! (another user's token is "not found", exactly as a missing one), keeps
//! malformed token values away from storage, and seals token values before
//! they are stored.

mod authenticate;
mod authorize;
mod cache;
mod catalog;
mod enforcement;
mod error;
mod observed;
mod org;
mod random;
mod rotation;
mod sealing;
mod tokens;
mod usage;
mod users;

pub use authenticate::{CredentialRouter, UserKeyAuthenticator};
pub use authorize::{Admitted, Authorizer, Decision, Use};
pub use cache::{CacheSettings, TokenCache};
pub use catalog::{ConnectionService, Readiness};
pub use enforcement::mapping::{MappedRequest, MappedSource, Route, Unmappable};
pub use enforcement::request::{
    Ambiguity, BodyFormat, BodyPresence, BodyView, CanonicalRequest, DecidingHeaders, MediaType, RequestHead,
};
pub use enforcement::{Bearer, Enforcer, Pending, Surface, Verdict};
pub use error::TokenError;
pub use latchkey_metrics::Metrics;
pub use observed::Observed;
pub use org::OrgService;
pub use rotation::{KeyRotation, RotationError, RotationReport};
pub use sealing::{Resealed, SealError, Sealer};
pub use tokens::{NewToken, TokenPatch, TokenRef, TokenService, TokenView};
pub use usage::UsageRecorder;
pub use users::{BOOTSTRAP_CONNECTION, BOOTSTRAP_ORG, BOOTSTRAP_USER, UserError, UserService};
