//! What can go wrong when managing tokens.

use latchkey_domain::validation::FieldIssue;
use latchkey_ports::BackendError;

use crate::random::RandomError;
use crate::sealing::SealError;

/// The outcome of a token use case that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The request breaks SPEC §4; every violation is listed.
    #[error("the token is not valid")]
    Invalid(Vec<FieldIssue>),
    /// No token of the caller's has this id or value. Also the answer for
    /// another user's token, so that its existence is not revealed.
    #[error("not found")]
    NotFound,
    /// The caller has another token of this name (V7).
    #[error("you already have a token with this name")]
    NameTaken,
    /// An update named `expiration_date` (V9).
    #[error("the expiration date can only be set when a token is created")]
    ExpirationImmutable,
    /// The version the caller read (`If-Match`) is no longer current.
    #[error("the token changed since you read it (If-Match does not match)")]
    PreconditionFailed,
    /// The caller has as many tokens as an owner may have.
    #[error("you have {limit} tokens, the most allowed; delete one first")]
    TooManyTokens {
        /// The limit.
        limit: u64,
    },
    /// The caller is not an org admin, and the operation is for admins.
    #[error("only an organization admin may do this")]
    Forbidden,
    /// Storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A secret could not be made.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// A token value could not be sealed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Concurrent writers kept changing the token; the update gave up.
    #[error("the token is being changed by others; try again")]
    Contended,
}
