//! Managing tokens on behalf of a user: create, list, get, update, delete.

use std::sync::Arc;

use latchkey_domain::validation::{self, ExpirationInput, FieldIssue, GrantDraft, TokenDraft, UpdateDraft};
use latchkey_domain::{Principal, Token, TokenId, TokenName, TokenValue};
use latchkey_ports::{
    Clock, ConnectionCatalog, Cursor, DeleteError, GetError, InsertError, TokenRepository, UpdateError,
};

use crate::cache::TokenCache;
use crate::error::TokenError;
use crate::random::with_os_rng;
use crate::sealing::Sealer;

/// How many times a write is retried when it loses a race it can recover
/// from (a random collision, or a concurrent update without `If-Match`).
const ATTEMPTS: usize = 5;

/// How a request names a token: by id or by value (SPEC §7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenRef {
    /// A token id.
    Id(TokenId),
    /// A token value.
    Value(TokenValue),
    /// Neither: no token can have it, so it is answered "not found".
    Unknown,
}

impl TokenRef {
    /// Tells an id from a value by its shape; no lookup is made.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        if let Ok(value) = TokenValue::parse(text) {
            TokenRef::Value(value)
        } else if let Ok(id) = TokenId::parse(text) {
            TokenRef::Id(id)
        } else {
            TokenRef::Unknown
        }
    }
}

/// A token as its owner sees it.
#[derive(Clone, Debug)]
pub struct TokenView {
    /// The stored token.
    pub token: Token,
    /// The value, or `None` when it cannot be opened with the current server
    /// key (the key was replaced since the token was made).
    pub value: Option<TokenValue>,
    /// Warnings about the token's policy.
    pub warnings: Vec<FieldIssue>,
}

/// A token to create.
#[derive(Clone, Debug, Default)]
pub struct NewToken {
    /// The editable fields.
    pub draft: TokenDraft,
    /// The submitted `expiration_date`, unparsed.
    pub expiration_date: Option<String>,
}

/// Changes to a token: each present field replaces the whole field.
#[derive(Clone, Debug, Default)]
pub struct TokenPatch {
    /// `Some(None)` resets the name to the generated `tk_…` one.
    pub name: Option<Option<String>>,
    /// New allowed APIs.
    pub allowed_apis: Option<Vec<String>>,
    /// New grants.
    pub grants: Option<Vec<GrantDraft>>,
    /// New referers.
    pub referers: Option<Vec<String>>,
    /// Whether the request named `expiration_date`, which cannot change.
    pub names_expiration: bool,
    /// Fields of the request that a token does not have: violations.
    pub unknown_fields: Vec<String>,
}

impl TokenPatch {
    /// The fields the patch replaces; the others stay as they are, typed.
    fn update_draft(self) -> UpdateDraft {
        UpdateDraft {
            name: self.name,
            allowed_apis: self.allowed_apis,
            grants: self.grants,
            referers: self.referers,
            unknown_fields: self.unknown_fields,
        }
    }
}

/// The token use cases.
pub struct TokenService {
    tokens: Arc<dyn TokenRepository>,
    cache: Arc<TokenCache>,
    catalog: Arc<dyn ConnectionCatalog>,
    clock: Arc<dyn Clock>,
    sealer: Arc<Sealer>,
    max_tokens_per_owner: Option<u64>,
}

impl TokenService {
    /// Wires the use cases to their ports.
    #[must_use]
    pub fn new(
        tokens: Arc<dyn TokenRepository>,
        cache: Arc<TokenCache>,
        catalog: Arc<dyn ConnectionCatalog>,
        clock: Arc<dyn Clock>,
        sealer: Arc<Sealer>,
    ) -> Self {
        Self { tokens, cache, catalog, clock, sealer, max_tokens_per_owner: None }
    }

    /// Limits how many tokens one owner may have.
    #[must_use]
    pub fn with_max_tokens_per_owner(mut self, limit: Option<u64>) -> Self {
        self.max_tokens_per_owner = limit;
        self
    }

    fn view(&self, token: Token) -> TokenView {
        let value = match self.sealer.open(&token.id, &token.sealed_secret) {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::warn!(token_id = %token.id, %error, "cannot open a stored token value");
                None
            }
        };
        let warnings = validation::warnings(&token.policy);
        TokenView { token, value, warnings }
    }

    /// Creates a token for `owner`.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] with every violation, [`TokenError::NameTaken`],
    /// [`TokenError::TooManyTokens`], or a backend failure.
    pub async fn create(&self, owner: &Principal, new: NewToken) -> Result<TokenView, TokenError> {
        let now = self.clock.now();
        let connections = self.catalog.connections(&owner.org).await?;
        let expiration = ExpirationInput::Requested { date: new.expiration_date.as_deref(), now };
        let valid = validation::validate(&new.draft, expiration, &connections).map_err(TokenError::Invalid)?;
        for _ in 0..ATTEMPTS {
            let id = with_os_rng(TokenId::generate)?;
            let value = with_os_rng(TokenValue::generate)?;
            let sealed_secret = self.sealer.seal(&id, &value)?;
            let generated_name = valid.name.is_none();
            let token = Token {
                name: valid.name.clone().unwrap_or_else(|| TokenName::default_for(&id)),
                id,
                owner: owner.clone(),
                policy: valid.policy.clone(),
                secret_hash: value.hash(),
                sealed_secret,
                created_at: now,
                updated_at: now,
                last_used_at: None,
                version: 1,
            };
            // The store counts and inserts in one step: creates racing at
            // the limit cannot overshoot it.
            let inserted = self.tokens.insert(&token, self.max_tokens_per_owner).await;
            match inserted {
                Ok(()) => {
                    tracing::info!(token_id = %token.id, org = %owner.org, user = %owner.user, "token created");
                    return Ok(TokenView { token, value: Some(value), warnings: validation::warnings(&valid.policy) });
                }
                // A fresh id and value make both collisions vanish; a chosen
                // name that is taken stays taken.
                Err(InsertError::Duplicate) => continue,
                Err(InsertError::NameTaken) if generated_name => continue,
                Err(InsertError::NameTaken) => return Err(TokenError::NameTaken),
                Err(InsertError::LimitReached) => {
                    return Err(TokenError::TooManyTokens { limit: self.max_tokens_per_owner.unwrap_or(0) });
                }
                Err(InsertError::Backend(e)) => return Err(e.into()),
            }
        }
        Err(TokenError::Contended)
    }

    /// Up to `limit` of the owner's tokens after `after`, newest first, and
    /// where the next page starts.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn list(
        &self,
        owner: &Principal,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<(Vec<TokenView>, Option<Cursor>), TokenError> {
        let page = self.tokens.list(owner, after, limit).await?;
        Ok((page.tokens.into_iter().map(|t| self.view(t)).collect(), page.next))
    }

    /// Finds the caller's token; anybody else's is [`TokenError::NotFound`].
    async fn find_owned(&self, owner: &Principal, reference: &TokenRef) -> Result<Token, TokenError> {
        let token = match reference {
            TokenRef::Id(id) => match self.tokens.get(id, owner).await {
                Ok(token) => token,
                Err(GetError::NotFound) => return Err(TokenError::NotFound),
                Err(GetError::Backend(e)) => return Err(e.into()),
            },
            TokenRef::Value(value) => {
                self.tokens.find_by_secret_hash(&value.hash()).await?.ok_or(TokenError::NotFound)?
            }
            TokenRef::Unknown => return Err(TokenError::NotFound),
        };
        if token.owner == *owner { Ok(token) } else { Err(TokenError::NotFound) }
    }

    /// The caller's token.
    ///
    /// # Errors
    /// [`TokenError::NotFound`] for a missing token or anybody else's.
    pub async fn get(&self, owner: &Principal, reference: &TokenRef) -> Result<TokenView, TokenError> {
        self.find_owned(owner, reference).await.map(|t| self.view(t))
    }

    /// Applies `patch` to the caller's token. With `if_match`, only if the
    /// token is still at that version; without, the patch is applied to
    /// whatever version is current (re-read and re-validated when a
    /// concurrent update wins the race).
    ///
    /// # Errors
    /// [`TokenError::ExpirationImmutable`], [`TokenError::NotFound`],
    /// [`TokenError::PreconditionFailed`], [`TokenError::Invalid`],
    /// [`TokenError::NameTaken`], or a backend failure.
    pub async fn update(
        &self,
        owner: &Principal,
        reference: &TokenRef,
        patch: TokenPatch,
        if_match: Option<u64>,
    ) -> Result<TokenView, TokenError> {
        if patch.names_expiration {
            return Err(TokenError::ExpirationImmutable);
        }
        let connections = self.catalog.connections(&owner.org).await?;
        let update = patch.update_draft();
        for _ in 0..ATTEMPTS {
            let current = self.find_owned(owner, reference).await?;
            // The request is checked before the precondition: a client
            // whose change is invalid learns that first, whatever version
            // it read.
            let valid = validation::validate_update(&current.name, &current.policy, &update, &connections)
                .map_err(TokenError::Invalid)?;
            if if_match.is_some_and(|expected| expected != current.version) {
                return Err(TokenError::PreconditionFailed);
            }
            let updated = Token {
                name: valid.name.unwrap_or_else(|| TokenName::default_for(&current.id)),
                policy: valid.policy,
                updated_at: self.clock.now().max(current.updated_at),
                version: current.version + 1,
                ..current.clone()
            };
            match self.tokens.update(&updated, current.version).await {
                Ok(()) => {
                    // After the write, never before: a lookup between an
                    // early eviction and the write could cache the old row.
                    self.cache.evict(&updated.secret_hash);
                    tracing::info!(token_id = %updated.id, version = updated.version, "token updated");
                    return Ok(self.view(updated));
                }
                Err(UpdateError::Conflict) if if_match.is_some() => return Err(TokenError::PreconditionFailed),
                Err(UpdateError::Conflict) => continue,
                Err(UpdateError::NotFound) => return Err(TokenError::NotFound),
                Err(UpdateError::NameTaken) => return Err(TokenError::NameTaken),
                Err(UpdateError::Backend(e)) => return Err(e.into()),
            }
        }
        Err(TokenError::Contended)
    }

    /// Deletes the caller's token; it stops authorizing at once. With
    /// `if_match`, only if the token is still at that version.
    ///
    /// # Errors
    /// [`TokenError::NotFound`], [`TokenError::PreconditionFailed`], or a
    /// backend failure.
    pub async fn delete(
        &self,
        owner: &Principal,
        reference: &TokenRef,
        if_match: Option<u64>,
    ) -> Result<Token, TokenError> {
        let current = self.find_owned(owner, reference).await?;
        if if_match.is_some_and(|expected| expected != current.version) {
            return Err(TokenError::PreconditionFailed);
        }
        match self.tokens.delete(&current.id, if_match).await {
            Ok(()) => {
                self.cache.evict(&current.secret_hash);
                tracing::info!(token_id = %current.id, "token deleted");
                Ok(current)
            }
            Err(DeleteError::NotFound) => Err(TokenError::NotFound),
            Err(DeleteError::Conflict) => Err(TokenError::PreconditionFailed),
            Err(DeleteError::Backend(e)) => Err(e.into()),
        }
    }
}
