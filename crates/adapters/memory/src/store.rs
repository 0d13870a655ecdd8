//! The state of the in-memory store and the ports over it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use latchkey_domain::audit::AuditEvent;
use latchkey_domain::org_policy::OrgPolicy;
use latchkey_domain::{
    AuditEventId, Connection, ConnectionName, Identity, OrgName, Principal, Provider, Role, SealedSecret, SecretHash,
    Timestamp, Token, TokenId, UserName,
};
use latchkey_ports::{
    AuditCursor, AuditLog, AuditPage, AuditScope, BackendError, ConnectionCatalog, CreateConnectionError,
    CreateUserError, Cursor, DeleteError, GetError, InsertError, OrgPolicies, Page, PolicyWriteError, StoreHealth,
    TokenRepository, UpdateError, UserDirectory,
};

/// The order of an owner's list: newest first, then by id descending.
type ListKey = (Reverse<Timestamp>, Reverse<TokenId>);

#[derive(Default)]
struct State {
    tokens: HashMap<TokenId, Token>,
    by_hash: HashMap<SecretHash, TokenId>,
    by_name: HashMap<(Principal, String), TokenId>,
    by_owner: HashMap<Principal, BTreeSet<ListKey>>,
    orgs: HashSet<OrgName>,
    users: HashMap<Principal, Role>,
    user_keys: HashMap<SecretHash, Principal>,
    connections: HashMap<OrgName, BTreeMap<ConnectionName, Provider>>,
    /// Every event, oldest first by (at, id).
    events: BTreeMap<(Timestamp, AuditEventId), AuditEvent>,
    policies: HashMap<OrgName, OrgPolicy>,
}

impl State {
    /// Stores an event; the caller holds the write lock and has checked
    /// every condition of the change it records, so both happen together.
    fn record(&mut self, event: &AuditEvent) {
        self.events.insert((event.at, event.id.clone()), event.clone());
    }

    /// A page of tokens of `keys` after `after`.
    fn page(&self, keys: impl Iterator<Item = TokenId>, limit: usize) -> Page {
        let tokens = keys.take(Page::rows_to_read(limit)).filter_map(|id| self.tokens.get(&id).cloned()).collect();
        Page::from_rows(tokens, limit)
    }
}

fn after_cursor(after: Option<Cursor>) -> Bound<ListKey> {
    match after {
        Some(cursor) => Bound::Excluded((Reverse(cursor.created_at), Reverse(cursor.id))),
        None => Bound::Unbounded,
    }
}

/// Tokens, users and connections in memory. Cheap to create; share it as
/// an `Arc` behind every port it implements.
#[derive(Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    // A poisoned lock means a panic happened while it was held. Every
    // write below checks all its conditions before changing anything, so a
    // panic cannot leave the state half-written, and the data stays usable.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn list_key(token: &Token) -> ListKey {
    (Reverse(token.created_at), Reverse(token.id.clone()))
}

fn name_key(token: &Token) -> (Principal, String) {
    (token.owner.clone(), token.name.as_str().to_owned())
}

impl MemoryStore {
    /// Inserts under the write lock, which makes the count and the insert
    /// one step.
    fn insert_within(&self, token: &Token, limit: Option<u64>, event: &AuditEvent) -> Result<(), InsertError> {
        let mut state = self.write();
        let owned = state.by_owner.get(&token.owner).map_or(0, |keys| keys.len() as u64);
        if limit.is_some_and(|limit| owned >= limit) {
            return Err(InsertError::LimitReached);
        }
        if state.tokens.contains_key(&token.id) || token.secret_hashes().any(|hash| state.by_hash.contains_key(hash)) {
            return Err(InsertError::Duplicate);
        }
        if state.by_name.contains_key(&name_key(token)) {
            return Err(InsertError::NameTaken);
        }
        for hash in token.secret_hashes() {
            state.by_hash.insert(*hash, token.id.clone());
        }
        state.record(event);
        state.by_name.insert(name_key(token), token.id.clone());
        state.by_owner.entry(token.owner.clone()).or_default().insert(list_key(token));
        state.tokens.insert(token.id.clone(), token.clone());
        Ok(())
    }
}

#[async_trait]
impl TokenRepository for MemoryStore {
    async fn insert(&self, token: &Token, limit: Option<u64>, event: &AuditEvent) -> Result<(), InsertError> {
        self.insert_within(token, limit, event)
    }

    async fn get(&self, id: &TokenId, owner: &Principal) -> Result<Token, GetError> {
        self.read().tokens.get(id).filter(|token| token.owner == *owner).cloned().ok_or(GetError::NotFound)
    }

    async fn get_in_org(&self, id: &TokenId, org: &OrgName) -> Result<Token, GetError> {
        self.read().tokens.get(id).filter(|token| token.owner.org == *org).cloned().ok_or(GetError::NotFound)
    }

    async fn find_by_secret_hash(&self, hash: &SecretHash) -> Result<Option<Token>, BackendError> {
        let state = self.read();
        Ok(state.by_hash.get(hash).and_then(|id| state.tokens.get(id)).cloned())
    }

    async fn list(&self, owner: &Principal, after: Option<Cursor>, limit: usize) -> Result<Page, BackendError> {
        let state = self.read();
        let Some(keys) = state.by_owner.get(owner) else {
            return Ok(Page { tokens: Vec::new(), next: None });
        };
        let ids = keys.range((after_cursor(after), Bound::Unbounded)).map(|(_, Reverse(id))| id.clone());
        Ok(state.page(ids, limit))
    }

    async fn list_org(
        &self,
        org: &OrgName,
        owner: Option<UserName>,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, BackendError> {
        let state = self.read();
        // The org's owners' lists, merged: a scan is fine for a store meant
        // for tests and single runs.
        let mut keys: Vec<ListKey> = state
            .by_owner
            .iter()
            .filter(|(principal, _)| principal.org == *org && owner.as_ref().is_none_or(|user| principal.user == *user))
            .flat_map(|(_, keys)| keys.iter().cloned())
            .collect();
        keys.sort();
        let start = after_cursor(after);
        let ids = keys
            .into_iter()
            .filter(|key| match &start {
                Bound::Excluded(cursor) => key > cursor,
                _ => true,
            })
            .map(|(_, Reverse(id))| id);
        Ok(state.page(ids, limit))
    }

    async fn update(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError> {
        let mut state = self.write();
        let stored = state.tokens.get(&token.id).ok_or(UpdateError::NotFound)?;
        if stored.version != expected_version {
            return Err(UpdateError::Conflict);
        }
        let old_name = name_key(stored);
        let new_name = name_key(token);
        if old_name != new_name && state.by_name.contains_key(&new_name) {
            return Err(UpdateError::NameTaken);
        }
        let mut updated = stored.clone();
        updated.name = token.name.clone();
        // The expiration never changes after creation; keep the stored one.
        updated.policy = token.policy.clone().with_expiration(stored.policy.expiration());
        updated.updated_at = token.updated_at;
        updated.version = token.version;
        state.by_name.remove(&old_name);
        state.by_name.insert(new_name, token.id.clone());
        state.tokens.insert(token.id.clone(), updated);
        state.record(event);
        Ok(())
    }

    async fn roll(&self, token: &Token, expected_version: u64, event: &AuditEvent) -> Result<(), UpdateError> {
        let mut state = self.write();
        let stored = state.tokens.get(&token.id).ok_or(UpdateError::NotFound)?;
        if stored.version != expected_version {
            return Err(UpdateError::Conflict);
        }
        let old_hashes: Vec<SecretHash> = stored.secret_hashes().copied().collect();
        let mut rolled = stored.clone();
        rolled.secret_hash = token.secret_hash;
        rolled.sealed_secret = token.sealed_secret.clone();
        rolled.previous = token.previous;
        rolled.updated_at = token.updated_at;
        rolled.version = token.version;
        for hash in old_hashes {
            state.by_hash.remove(&hash);
        }
        for hash in rolled.secret_hashes() {
            state.by_hash.insert(*hash, rolled.id.clone());
        }
        state.tokens.insert(token.id.clone(), rolled);
        state.record(event);
        Ok(())
    }

    async fn delete(&self, id: &TokenId, expected_version: Option<u64>, event: &AuditEvent) -> Result<(), DeleteError> {
        let mut state = self.write();
        let stored = state.tokens.get(id).ok_or(DeleteError::NotFound)?;
        if expected_version.is_some_and(|expected| expected != stored.version) {
            return Err(DeleteError::Conflict);
        }
        let hashes: Vec<SecretHash> = stored.secret_hashes().copied().collect();
        let (name, owner, key) = (name_key(stored), stored.owner.clone(), list_key(stored));
        state.tokens.remove(id);
        for hash in hashes {
            state.by_hash.remove(&hash);
        }
        state.by_name.remove(&name);
        if let Some(keys) = state.by_owner.get_mut(&owner) {
            keys.remove(&key);
        }
        state.record(event);
        Ok(())
    }

    async fn record_last_use(&self, uses: &[(TokenId, Timestamp)]) -> Result<(), BackendError> {
        let mut state = self.write();
        for (id, at) in uses {
            if let Some(token) = state.tokens.get_mut(id) {
                token.last_used_at = Some(token.last_used_at.map_or(*at, |last| last.max(*at)));
            }
        }
        Ok(())
    }

    async fn sealed_secrets(
        &self,
        after: Option<TokenId>,
        limit: usize,
    ) -> Result<Vec<(TokenId, SealedSecret)>, BackendError> {
        let state = self.read();
        let mut page: Vec<(TokenId, SealedSecret)> = state
            .tokens
            .values()
            .filter(|token| after.as_ref().is_none_or(|after| token.id.as_str() > after.as_str()))
            .map(|token| (token.id.clone(), token.sealed_secret.clone()))
            .collect();
        page.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        page.truncate(limit);
        Ok(page)
    }

    async fn replace_sealed_secrets(
        &self,
        replacements: &[(TokenId, SealedSecret, SealedSecret)],
    ) -> Result<u64, BackendError> {
        let mut state = self.write();
        let mut replaced = 0;
        for (id, expected, new) in replacements {
            if let Some(token) = state.tokens.get_mut(id)
                && token.sealed_secret == *expected
            {
                token.sealed_secret = new.clone();
                replaced += 1;
            }
        }
        Ok(replaced)
    }
}

#[async_trait]
impl ConnectionCatalog for MemoryStore {
    async fn connections(&self, org: &OrgName) -> Result<Vec<Connection>, BackendError> {
        let state = self.read();
        Ok(state.connections.get(org).map_or_else(Vec::new, |connections| {
            connections.iter().map(|(name, provider)| Connection { name: name.clone(), provider: *provider }).collect()
        }))
    }

    async fn create_connection(&self, org: &OrgName, connection: &Connection) -> Result<(), CreateConnectionError> {
        let mut state = self.write();
        if !state.orgs.contains(org) {
            return Err(CreateConnectionError::UnknownOrg);
        }
        let connections = state.connections.entry(org.clone()).or_default();
        if connections.contains_key(&connection.name) {
            return Err(CreateConnectionError::NameTaken);
        }
        connections.insert(connection.name.clone(), connection.provider);
        Ok(())
    }
}

#[async_trait]
impl UserDirectory for MemoryStore {
    async fn create_user(
        &self,
        principal: &Principal,
        role: Role,
        key_hash: &SecretHash,
    ) -> Result<(), CreateUserError> {
        let mut state = self.write();
        if state.users.contains_key(principal) {
            return Err(CreateUserError::UserExists);
        }
        if state.user_keys.contains_key(key_hash) {
            return Err(CreateUserError::Backend(BackendError::corrupt("two users with one key hash")));
        }
        state.orgs.insert(principal.org.clone());
        state.users.insert(principal.clone(), role);
        state.user_keys.insert(*key_hash, principal.clone());
        Ok(())
    }

    async fn find_by_key_hash(&self, key_hash: &SecretHash) -> Result<Option<Identity>, BackendError> {
        let state = self.read();
        Ok(state.user_keys.get(key_hash).and_then(|principal| {
            state.users.get(principal).map(|role| Identity { principal: principal.clone(), role: *role })
        }))
    }

    async fn has_users(&self) -> Result<bool, BackendError> {
        Ok(!self.read().users.is_empty())
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn events(
        &self,
        scope: AuditScope,
        token: Option<TokenId>,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<AuditPage, BackendError> {
        let state = self.read();
        let upper = match after {
            Some(cursor) => Bound::Excluded((cursor.at, cursor.id)),
            None => Bound::Unbounded,
        };
        let in_scope = |event: &&AuditEvent| match &scope {
            AuditScope::Org(org) => event.actor.org == *org,
            AuditScope::Owner(owner) => {
                event.actor.org == owner.org && event.token.as_ref().is_some_and(|t| t.owner == owner.user)
            }
        };
        let events = state
            .events
            .range((Bound::Unbounded, upper))
            .rev()
            .map(|(_, event)| event)
            .filter(in_scope)
            .filter(|event| token.as_ref().is_none_or(|id| event.token.as_ref().is_some_and(|t| t.id == *id)))
            .take(Page::rows_to_read(limit))
            .cloned()
            .collect();
        Ok(AuditPage::from_rows(events, limit))
    }
}

#[async_trait]
impl OrgPolicies for MemoryStore {
    async fn policy(&self, org: &OrgName) -> Result<OrgPolicy, BackendError> {
        Ok(self.read().policies.get(org).copied().unwrap_or_default())
    }

    async fn replace_policy(
        &self,
        org: &OrgName,
        expected: &OrgPolicy,
        new: &OrgPolicy,
        event: &AuditEvent,
    ) -> Result<(), PolicyWriteError> {
        let mut state = self.write();
        if state.policies.get(org).copied().unwrap_or_default() != *expected {
            return Err(PolicyWriteError::Conflict);
        }
        state.policies.insert(org.clone(), *new);
        state.record(event);
        Ok(())
    }
}

#[async_trait]
impl StoreHealth for MemoryStore {
    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }
}
