//! Token storage.

use async_trait::async_trait;
use latchkey_domain::audit::AuditEvent;
use latchkey_domain::{OrgName, Principal, SealedSecret, SecretHash, Timestamp, Token, TokenId, UserName};

use crate::BackendError;

/// A position in an owner's list of tokens, which is ordered newest first:
/// by `created_at` descending, then `id` descending. A page continues with
/// the tokens strictly after the cursor in that order, so tokens created
/// while a client pages through the list never shift what it sees next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The creation time of the last token of the previous page.
    pub created_at: Timestamp,
    /// Its id, which breaks ties between tokens created in the same
    /// microsecond.
    pub id: TokenId,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// At most the number asked for, newest first.
    pub tokens: Vec<Token>,
    /// Where the next page starts, or `None` when this page is the last.
    pub next: Option<Cursor>,
}

impl Page {
    /// How many rows a store reads for a page of `limit`: one more than
    /// asked, so that whether another page follows is known without
    /// counting.
    #[must_use]
    pub fn rows_to_read(limit: usize) -> usize {
        limit.saturating_add(1)
    }

    /// The page of `limit` out of `tokens`, read in list order with
    /// [`Page::rows_to_read`]: the extra row, when present, only says that
    /// another page follows, which starts after this page's last token.
    #[must_use]
    pub fn from_rows(mut tokens: Vec<Token>, limit: usize) -> Self {
        if tokens.len() <= limit {
            return Self { tokens, next: None };
        }
        tokens.truncate(limit);
        let next = tokens.last().map(|last| Cursor { created_at: last.created_at, id: last.id.clone() });
        Self { tokens, next }
    }
}

/// Why a token could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// The owner already has a token of that name.
    #[error("the owner already has a token with this name")]
    NameTaken,
    /// A token with this id or secret hash exists (a collision of random
    /// values; the caller may retry with new ones).
    #[error("a token with this id or secret already exists")]
    Duplicate,
    /// The owner already has as many tokens as the limit allows
    /// (only when [`TokenRepository::insert`] is given a limit).
    #[error("the owner has reached the token limit")]
    LimitReached,
    /// See [`BackendError`].
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a token could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// No token has this id.
    #[error("no such token")]
    NotFound,
    /// See [`BackendError`].
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a token could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No token has this id.
    #[error("no such token")]
    NotFound,
    /// Another of the owner's tokens has the new name.
    #[error("the owner already has a token with this name")]
    NameTaken,
    /// The stored version is not the expected one: someone else changed
    /// the token since it was read.
    #[error("the token was changed concurrently")]
    Conflict,
    /// See [`BackendError`].
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a token could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// No token has this id.
    #[error("no such token")]
    NotFound,
    /// The stored version is not the expected one.
    #[error("the token was changed concurrently")]
    Conflict,
    /// See [`BackendError`].
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Where tokens are kept.
///
/// Ownership is not checked here: the application layer compares a token's
/// owner with the caller and answers "not found" for anybody else's. The
/// store guarantees, atomically and under concurrency, that names are
/// unique per owner and that updates apply only to the version they were
/// made from.
///
/// Every change takes the [`AuditEvent`] that records it and stores both in
/// one atomic step: when the change is refused or fails, the event is not
/// stored; when the event cannot be stored, the change is not made.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TokenRepository: Send + Sync {
    /// Stores a new token, unless `limit` is given and its owner already
    /// has that many. Every field is kept exactly, timestamps to the
    /// microsecond. Counting and inserting are one atomic step with respect
    /// to every other limited insert for the same owner, from any process
    /// sharing the store: creates racing at the limit cannot overshoot it.
    ///
    /// # Errors
    /// [`InsertError::NameTaken`] when the owner has a token of that name;
    /// [`InsertError::Duplicate`] when the id or secret hash exists;
    /// [`InsertError::LimitReached`] at the limit.
    async fn insert(&self, token: &Token, limit: Option<u64>, event: &AuditEvent) -> Result<(), InsertError>;

    /// The token with this id, if `owner` owns it. Id and owner are looked
    /// up in one step, so that another owner's token costs what a missing
    /// one does: its existence shows neither in the answer nor in the time
    /// it takes.
    ///
    /// # Errors
    /// [`GetError::NotFound`] when there is none, or `owner` does not own it.
    async fn get(&self, id: &TokenId, owner: &Principal) -> Result<Token, GetError>;

    /// The token of the org `org` with this id, whoever owns it: what an
    /// org admin reaches. A token of another org is not found.
    ///
    /// # Errors
    /// [`GetError::NotFound`] when there is none in that org.
    async fn get_in_org(&self, id: &TokenId, org: &OrgName) -> Result<Token, GetError>;

    /// The token whose value, or whose previous value (while stored, see
    /// [`Token::previous`]), has this hash: the lookup of every authorize.
    /// Whether a previous value still works is the caller's to decide.
    ///
    /// # Errors
    /// [`BackendError`] when the store cannot be read.
    async fn find_by_secret_hash(&self, hash: &SecretHash) -> Result<Option<Token>, BackendError>;

    /// Up to `limit` of the owner's tokens after `after` (from the newest
    /// when `None`), newest first. `next` is set when more tokens follow.
    ///
    /// # Errors
    /// [`BackendError`] when the store cannot be read.
    async fn list(&self, owner: &Principal, after: Option<Cursor>, limit: usize) -> Result<Page, BackendError>;

    /// Like [`TokenRepository::list`], over every token of `org`, or of
    /// one of its users when `owner` is given: what an org admin lists.
    ///
    /// # Errors
    /// [`BackendError`] when the store cannot be read.
    async fn list_org(
        &self,
        org: &OrgName,
        owner: Option<UserName>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, BackendError>;

    /// Replaces the name, policy (but its expiration, which never changes),
    /// `updated_at` and `version` of the stored token with `token.id`,
    /// provided its stored version is `expected_version`. The caller sets
    /// `token.version` to `expected_version + 1`. Other fields are not
    /// touched.
    ///
    /// # Errors
    /// [`UpdateError::NotFound`], [`UpdateError::Conflict`] when the stored
    /// version differs, [`UpdateError::NameTaken`] when another of the
    /// owner's tokens has the new name.
    async fn update(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError>;

    /// Gives the stored token with `token.id` a new value: replaces its
    /// `secret_hash`, `sealed_secret`, `previous`, `updated_at` and
    /// `version`, provided its stored version is `expected_version`. Other
    /// fields are not touched. Once this returns, a lookup by the hash of a
    /// value that is neither the new one nor `token.previous`'s finds
    /// nothing.
    ///
    /// # Errors
    /// [`UpdateError::NotFound`], [`UpdateError::Conflict`] when the stored
    /// version differs.
    async fn roll(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError>;

    /// Deletes the token, when `expected_version` is `None` or matches.
    /// Once this returns, lookups by id and by hash find nothing.
    ///
    /// # Errors
    /// [`DeleteError::NotFound`], or [`DeleteError::Conflict`] when the
    /// stored version differs from the expected one.
    async fn delete(&self, id: &TokenId, expected_version: Option<u64>, event: &AuditEvent) -> Result<(), DeleteError>;

    /// Records that tokens were used, each at the given time. A token's
    /// `last_used_at` only moves forward; ids of deleted tokens are skipped.
    /// `version` and `updated_at` are not touched: use is not a change.
    ///
    /// # Errors
    /// [`BackendError`] when the store cannot be written.
    async fn record_last_use(&self, uses: &[(TokenId, Timestamp)]) -> Result<(), BackendError>;

    /// Up to `limit` tokens' sealed values, in ascending id order (bytewise),
    /// starting after `after`: what re-sealing under a new server key walks.
    ///
    /// # Errors
    /// [`BackendError`] when the store cannot be read.
    async fn sealed_secrets(
        &self,
        after: Option<TokenId>,
        limit: usize,
    ) -> Result<Vec<(TokenId, SealedSecret)>, BackendError>;

    /// Replaces sealed values, each `(id, expected, new)` only where the
    /// token still holds `expected`, all in one atomic step; answers how
    /// many were replaced (a token deleted or re-sealed meanwhile is
    /// skipped). `version` and `updated_at` are not touched: each value is
    /// the same, sealed anew.
    ///
    /// # Errors
    /// [`BackendError`] when the store cannot be written; then none is
    /// replaced.
    async fn replace_sealed_secrets(
        &self,
        replacements: &[(TokenId, SealedSecret, SealedSecret)],
    ) -> Result<u64, BackendError>;
}
