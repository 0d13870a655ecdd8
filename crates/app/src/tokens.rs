//! Managing tokens on behalf of a user: create, list, get, update, roll,
//! delete; and on behalf of an org admin: list and revoke any token of the
//! org. Every change is written with its audit event, in one step.

use std::sync::Arc;

use latchkey_domain::audit::{AuditAction, AuditEvent, Changes, token_changes};
use latchkey_domain::org_policy::{CheckedParts, OrgPolicy, PolicySubject};
use latchkey_domain::token::GracePeriod;
use latchkey_domain::validation::{self, ExpirationInput, FieldIssue, GrantDraft, TokenDraft, UpdateDraft};
use latchkey_domain::{
    AuditEventId, Identity, OrgName, PreviousValue, Principal, Timestamp, Token, TokenId, TokenName, TokenValue,
    UserName,
};
use latchkey_ports::{
    Clock, ConnectionCatalog, Cursor, DeleteError, GetError, InsertError, OrgPolicies, TokenRepository, UpdateError,
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

/// A token as its owner (or an org admin) sees it.
#[derive(Clone, Debug)]
pub struct TokenView {
    /// The stored token.
    pub token: Token,
    /// The value, or `None` when it cannot be opened with the current server
    /// key (the key was replaced since the token was made), and always for
    /// an org admin, who never sees values.
    pub value: Option<TokenValue>,
    /// Warnings about the token's restrictions, and what it breaks of the
    /// org's policy if it was made before that policy.
    pub warnings: Vec<FieldIssue>,
    /// When the value before the last roll stops working, while it works.
    pub previous_value_expires_at: Option<Timestamp>,
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
    /// New client address restrictions.
    pub allowed_ips: Option<Vec<String>>,
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
            allowed_ips: self.allowed_ips,
            unknown_fields: self.unknown_fields,
        }
    }

    /// The parts of the org policy an update touches: the APIs when it
    /// replaces them, the referers when it replaces them or the APIs (which
    /// decide whether referers are required). The expiration never changes.
    fn checked_parts(update: &UpdateDraft) -> CheckedParts {
        CheckedParts {
            apis: update.allowed_apis.is_some(),
            referers: update.referers.is_some() || update.allowed_apis.is_some(),
            lifetime: false,
        }
    }
}

/// What the org policy looks at in a token.
fn subject(token: &Token) -> PolicySubject {
    PolicySubject {
        apis: token.policy.apis(),
        has_referers: !token.policy.referers().is_empty(),
        created_at: token.created_at,
        expiration: token.policy.expiration(),
    }
}

/// Whose token an operation reaches.
enum Reach<'a> {
    /// The caller's own.
    Owner(&'a Principal),
    /// Any of the org's, by id: an org admin.
    Org(&'a OrgName),
}

/// The token use cases.
pub struct TokenService {
    tokens: Arc<dyn TokenRepository>,
    cache: Arc<TokenCache>,
    catalog: Arc<dyn ConnectionCatalog>,
    policies: Arc<dyn OrgPolicies>,
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
        policies: Arc<dyn OrgPolicies>,
        clock: Arc<dyn Clock>,
        sealer: Arc<Sealer>,
    ) -> Self {
        Self { tokens, cache, catalog, policies, clock, sealer, max_tokens_per_owner: None }
    }

    /// Limits how many tokens one owner may have.
    #[must_use]
    pub fn with_max_tokens_per_owner(mut self, limit: Option<u64>) -> Self {
        self.max_tokens_per_owner = limit;
        self
    }

    /// The token as its owner sees it: with its value.
    fn view(&self, token: Token, org_policy: &OrgPolicy) -> TokenView {
        let value = match self.sealer.open(&token.id, &token.sealed_secret) {
            Ok(value) => Some(value),
            Err(error) => {
                tracing::warn!(token_id = %token.id, %error, "cannot open a stored token value");
                None
            }
        };
        TokenView { value, ..self.view_without_value(token, org_policy) }
    }

    /// The token as an org admin sees it: never its value, which is not
    /// even opened.
    fn view_without_value(&self, token: Token, org_policy: &OrgPolicy) -> TokenView {
        let mut warnings = validation::warnings(&token.policy);
        warnings.extend(org_policy.check(&subject(&token), CheckedParts::ALL));
        let previous_value_expires_at = token.previous_value_expires_at(self.clock.now());
        TokenView { token, value: None, warnings, previous_value_expires_at }
    }

    /// An event by `actor`, now.
    fn event(
        actor: &Principal,
        at: Timestamp,
        action: AuditAction,
        token: &Token,
        changes: Changes,
    ) -> Result<AuditEvent, TokenError> {
        let id = with_os_rng(AuditEventId::generate)?;
        Ok(AuditEvent::about_token(id, at, actor, action, token, changes))
    }

    /// The org's policy.
    ///
    /// # Errors
    /// A backend failure.
    pub async fn org_policy(&self, org: &OrgName) -> Result<OrgPolicy, TokenError> {
        Ok(self.policies.policy(org).await?)
    }

    /// Creates a token for `owner`.
    ///
    /// # Errors
    /// [`TokenError::Invalid`] with every violation, [`TokenError::NameTaken`],
    /// [`TokenError::TooManyTokens`], or a backend failure.
    pub async fn create(&self, owner: &Principal, new: NewToken) -> Result<TokenView, TokenError> {
        let now = self.clock.now();
        let connections = self.catalog.connections(&owner.org).await?;
        let org_policy = self.policies.policy(&owner.org).await?;
        let expiration = ExpirationInput::Requested { date: new.expiration_date.as_deref(), now };
        let valid = validation::validate(&new.draft, expiration, &connections).map_err(TokenError::Invalid)?;
        let subject = PolicySubject {
            apis: valid.policy.apis(),
            has_referers: !valid.policy.referers().is_empty(),
            created_at: now,
            expiration: valid.policy.expiration(),
        };
        let violations = org_policy.check(&subject, CheckedParts::ALL);
        if !violations.is_empty() {
            return Err(TokenError::Invalid(violations));
        }
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
                previous: None,
            };
            let changes = token_changes(None, Some(&token));
            let event = Self::event(owner, now, AuditAction::TokenCreated, &token, changes)?;
            // The store counts and inserts in one step: creates racing at
            // the limit cannot overshoot it.
            let inserted = self.tokens.insert(&token, self.max_tokens_per_owner, &event).await;
            match inserted {
                Ok(()) => {
                    tracing::info!(token_id = %token.id, org = %owner.org, user = %owner.user, "token created");
                    return Ok(TokenView { value: Some(value), ..self.view_without_value(token, &org_policy) });
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
        let org_policy = self.policies.policy(&owner.org).await?;
        Ok((page.tokens.into_iter().map(|t| self.view(t, &org_policy)).collect(), page.next))
    }

    /// Finds the caller's token; anybody else's is [`TokenError::NotFound`].
    async fn find_owned(&self, owner: &Principal, reference: &TokenRef) -> Result<Token, TokenError> {
        self.find(Reach::Owner(owner), reference).await
    }

    /// Finds a token within `reach`; any other is [`TokenError::NotFound`].
    /// A value names a token only while it works: the previous value of a
    /// rolled token, past its grace period, names nothing.
    async fn find(&self, reach: Reach<'_>, reference: &TokenRef) -> Result<Token, TokenError> {
        let got = match (reference, &reach) {
            (TokenRef::Id(id), Reach::Owner(owner)) => self.tokens.get(id, owner).await,
            (TokenRef::Id(id), Reach::Org(org)) => self.tokens.get_in_org(id, org).await,
            (TokenRef::Value(value), _) => {
                let hash = value.hash();
                let found = self.tokens.find_by_secret_hash(&hash).await?;
                let now = self.clock.now();
                found
                    .filter(|token| token.value_state(&hash, now) != latchkey_domain::ValueState::Ended)
                    .ok_or(GetError::NotFound)
            }
            (TokenRef::Unknown, _) => Err(GetError::NotFound),
        };
        let token = match got {
            Ok(token) => token,
            Err(GetError::NotFound) => return Err(TokenError::NotFound),
            Err(GetError::Backend(e)) => return Err(e.into()),
        };
        let within = match reach {
            Reach::Owner(owner) => token.owner == *owner,
            Reach::Org(org) => token.owner.org == *org,
        };
        if within { Ok(token) } else { Err(TokenError::NotFound) }
    }

    /// The caller's token.
    ///
    /// # Errors
    /// [`TokenError::NotFound`] for a missing token or anybody else's.
    pub async fn get(&self, owner: &Principal, reference: &TokenRef) -> Result<TokenView, TokenError> {
        let token = self.find_owned(owner, reference).await?;
        let org_policy = self.policies.policy(&owner.org).await?;
        Ok(self.view(token, &org_policy))
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
        let org_policy = self.policies.policy(&owner.org).await?;
        let update = patch.update_draft();
        let parts = TokenPatch::checked_parts(&update);
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
            let violations = org_policy.check(&subject(&updated), parts);
            if !violations.is_empty() {
                return Err(TokenError::Invalid(violations));
            }
            let changes = token_changes(Some(&current), Some(&updated));
            let event = Self::event(owner, updated.updated_at, AuditAction::TokenUpdated, &updated, changes)?;
            match self.tokens.update(&updated, current.version, &event).await {
                Ok(()) => {
                    // After the write, never before: a lookup between an
                    // early eviction and the write could cache the old row.
                    self.evict(&current);
                    tracing::info!(token_id = %updated.id, version = updated.version, "token updated");
                    return Ok(self.view(updated, &org_policy));
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
        for _ in 0..ATTEMPTS {
            let current = self.find_owned(owner, reference).await?;
            match self.remove(owner, current, if_match, AuditAction::TokenDeleted).await {
                // Changed between the read and the delete, and the caller
                // did not ask for a version: read it again.
                Err(TokenError::PreconditionFailed) if if_match.is_none() => continue,
                outcome => return outcome,
            }
        }
        Err(TokenError::Contended)
    }

    /// Deletes `current` as `actor`, recording `action`. Without `if_match`
    /// the token is deleted at the version read, so that the event's
    /// record of what it allowed is exact; a concurrent change makes the
    /// caller try again.
    async fn remove(
        &self,
        actor: &Principal,
        current: Token,
        if_match: Option<u64>,
        action: AuditAction,
    ) -> Result<Token, TokenError> {
        if if_match.is_some_and(|expected| expected != current.version) {
            return Err(TokenError::PreconditionFailed);
        }
        let changes = token_changes(Some(&current), None);
        let event = Self::event(actor, self.clock.now(), action, &current, changes)?;
        match self.tokens.delete(&current.id, Some(current.version), &event).await {
            Ok(()) => {
                self.evict(&current);
                tracing::info!(token_id = %current.id, action = %action, actor = %actor.user, "token deleted");
                Ok(current)
            }
            Err(DeleteError::NotFound) => Err(TokenError::NotFound),
            Err(DeleteError::Conflict) => Err(TokenError::PreconditionFailed),
            Err(DeleteError::Backend(e)) => Err(e.into()),
        }
    }

    /// Forgets what this instance cached of `token`, under every hash it
    /// could have been found by (other instances hear of it through the
    /// store's change feed).
    fn evict(&self, token: &Token) {
        for hash in token.secret_hashes() {
            self.cache.evict(hash);
        }
    }

    /// Gives the caller's token a new value. The previous value keeps
    /// working for `grace`, then stops; a previous value from an earlier
    /// roll stops at once. The token must meet the org's policy as a new
    /// token would: a roll issues a new credential. With `if_match`, only
    /// if the token is still at that version.
    ///
    /// # Errors
    /// [`TokenError::NotFound`], [`TokenError::PreconditionFailed`],
    /// [`TokenError::Invalid`] with the policy's violations, or a backend
    /// failure.
    pub async fn roll(
        &self,
        owner: &Principal,
        reference: &TokenRef,
        grace: GracePeriod,
        if_match: Option<u64>,
    ) -> Result<TokenView, TokenError> {
        let org_policy = self.policies.policy(&owner.org).await?;
        for _ in 0..ATTEMPTS {
            let current = self.find_owned(owner, reference).await?;
            if if_match.is_some_and(|expected| expected != current.version) {
                return Err(TokenError::PreconditionFailed);
            }
            let violations = org_policy.check(&subject(&current), CheckedParts::ALL);
            if !violations.is_empty() {
                return Err(TokenError::Invalid(violations));
            }
            let now = self.clock.now().max(current.updated_at);
            let value = with_os_rng(TokenValue::generate)?;
            let previous =
                grace.ends(now).map(|expires_at| PreviousValue { secret_hash: current.secret_hash, expires_at });
            let rolled = Token {
                secret_hash: value.hash(),
                sealed_secret: self.sealer.seal(&current.id, &value)?,
                previous,
                updated_at: now,
                version: current.version + 1,
                ..current.clone()
            };
            let changes = token_changes(Some(&current), Some(&rolled));
            let event = Self::event(owner, now, AuditAction::TokenRolled, &rolled, changes)?;
            match self.tokens.roll(&rolled, current.version, &event).await {
                Ok(()) => {
                    self.evict(&current);
                    tracing::info!(token_id = %rolled.id, version = rolled.version, grace = ?grace, "token rolled");
                    return Ok(TokenView { value: Some(value), ..self.view_without_value(rolled, &org_policy) });
                }
                Err(UpdateError::Conflict) if if_match.is_some() => return Err(TokenError::PreconditionFailed),
                Err(UpdateError::Conflict) => continue,
                Err(UpdateError::NotFound) => return Err(TokenError::NotFound),
                Err(UpdateError::NameTaken) => return Err(TokenError::Contended),
                Err(UpdateError::Backend(e)) => return Err(e.into()),
            }
        }
        Err(TokenError::Contended)
    }

    /// Up to `limit` tokens of the admin's org (of one user's when `owner`
    /// is given) after `after`, newest first, without their values.
    ///
    /// # Errors
    /// [`TokenError::Forbidden`] for a caller who is not an org admin, or a
    /// backend failure.
    pub async fn list_org(
        &self,
        admin: &Identity,
        owner: Option<UserName>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<(Vec<TokenView>, Option<Cursor>), TokenError> {
        let org = &Self::admin_org(admin)?.org;
        let page = self.tokens.list_org(org, owner, after, limit).await?;
        let org_policy = self.policies.policy(org).await?;
        Ok((page.tokens.into_iter().map(|t| self.view_without_value(t, &org_policy)).collect(), page.next))
    }

    /// Deletes any token of the admin's org, by id; it stops authorizing at
    /// once. Recorded as `token.revoked`, which its owner sees in their
    /// audit log.
    ///
    /// # Errors
    /// [`TokenError::Forbidden`], [`TokenError::NotFound`] (a token of
    /// another org included), or a backend failure.
    pub async fn revoke(&self, admin: &Identity, id: &TokenId) -> Result<Token, TokenError> {
        let actor = Self::admin_org(admin)?;
        for _ in 0..ATTEMPTS {
            let current = self.find(Reach::Org(&actor.org), &TokenRef::Id(id.clone())).await?;
            match self.remove(actor, current, None, AuditAction::TokenRevoked).await {
                // Changed between the read and the delete: read it again.
                Err(TokenError::PreconditionFailed) => continue,
                outcome => return outcome,
            }
        }
        Err(TokenError::Contended)
    }

    /// The admin's principal, or [`TokenError::Forbidden`].
    fn admin_org(identity: &Identity) -> Result<&Principal, TokenError> {
        if identity.role.is_admin() { Ok(&identity.principal) } else { Err(TokenError::Forbidden) }
    }
}
