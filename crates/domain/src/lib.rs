//! The pure core of latchkey: tokens, grants, referer patterns, their
//! validation and the authorization decision.
//!
//! Architecture invariant: this crate performs no I/O and depends on no
//! async, database, serialisation or web crate. Everything here is a
//! deterministic function of its inputs; randomness and the current time are
//! handed in by the caller. Values that exist are valid: every newtype checks
//! its invariant in its constructor, so later code never re-checks it.

pub mod api;
pub mod audit;
mod base62;
pub mod decision;
pub mod grant;
mod index;
pub mod ip;
pub mod names;
pub mod org_policy;
pub mod provider;
pub mod referer;
pub mod secret;
pub mod source;
pub mod sql;
pub mod timestamp;
pub mod token;
pub mod validation;

pub use api::{AllowedApis, Api, ApiSet};
pub use decision::{AccessRequest, DenyReason, SourceType, Target};
pub use grant::Grant;
pub use ip::{IpRange, IpRangeError, IpRanges, TrustedProxies};
pub use names::{AuditEventId, ConnectionName, Identity, OrgName, Principal, Role, TokenId, TokenName, UserName};
pub use provider::Provider;
pub use referer::RefererPattern;
pub use secret::{SealedSecret, SecretHash, TokenValue, UserKey};
pub use source::{Source, SourceKind};
pub use timestamp::Timestamp;
pub use token::{Connection, Policy, PreviousValue, Token, ValueState};
