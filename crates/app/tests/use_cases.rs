//! The use cases, unit-tested against mockall mocks of the ports: each test
//! states which port calls it expects, so a call that should not happen
//! (a lookup for a malformed value, a write to another user's token) fails
//! the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use latchkey_app::{
    Authorizer, CacheSettings, Decision, NewToken, Sealer, TokenCache, TokenError, TokenPatch, TokenRef, TokenService,
    UsageRecorder, Use, UserKeyAuthenticator, UserService,
};
use latchkey_domain::org_policy::OrgPolicy;
use latchkey_domain::{
    AccessRequest, Api, DenyReason, Identity, Principal, Provider, Role, SourceType, Target, Timestamp, Token,
    TokenValue, UserKey,
};
use latchkey_ports::{
    AuthenticationError, Authenticator, DeleteError, GetError, InsertError, MockClock, MockConnectionCatalog,
    MockOrgPolicies, MockTokenRepository, MockUserDirectory, UpdateError,
};
use latchkey_testkit::{connection, draft, grant, now, principal};

fn alice() -> Principal {
    principal("acme", "alice")
}

fn clock() -> Arc<MockClock> {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    Arc::new(clock)
}

fn catalog() -> Arc<MockConnectionCatalog> {
    let mut catalog = MockConnectionCatalog::new();
    catalog.expect_connections().returning(|_| Ok(vec![connection("carto_dw", Provider::CartoDw)]));
    Arc::new(catalog)
}

fn sealer() -> Arc<Sealer> {
    Arc::new(Sealer::new(&[9; 32]))
}

fn cache() -> Arc<TokenCache> {
    Arc::new(TokenCache::new(CacheSettings::default(), true))
}

fn policies() -> Arc<MockOrgPolicies> {
    let mut policies = MockOrgPolicies::new();
    policies.expect_policy().returning(|_| Ok(OrgPolicy::default()));
    Arc::new(policies)
}

fn service(repo: MockTokenRepository) -> TokenService {
    TokenService::new(Arc::new(repo), cache(), catalog(), policies(), clock(), sealer())
}

fn maps_token() -> NewToken {
    NewToken { draft: draft(&["maps"], vec![grant("carto_dw", "p.d.t")], &[]), expiration_date: None }
}

/// Creates a token through the service with a repository that accepts it,
/// and returns what was stored and the value.
async fn stored_token(owner: &Principal, new: NewToken) -> (Token, TokenValue) {
    let inserted = Arc::new(Mutex::new(None));
    let mut repo = MockTokenRepository::new();
    let sink = inserted.clone();
    repo.expect_insert().times(1).returning(move |token, _, _| {
        *sink.lock().unwrap() = Some(token.clone());
        Ok(())
    });
    let view = service(repo).create(owner, new).await.unwrap();
    let token = inserted.lock().unwrap().take().unwrap();
    (token, view.value.unwrap())
}

#[tokio::test]
async fn create_stores_hash_and_sealed_value_and_generates_a_name() {
    let (token, value) = stored_token(&alice(), maps_token()).await;
    assert_eq!(token.owner, alice());
    assert_eq!(token.name.as_str(), format!("tk_{}", token.id));
    assert_eq!(token.secret_hash, value.hash());
    assert_eq!(sealer().open(&token.id, &token.sealed_secret).unwrap(), value);
    assert_eq!((token.created_at, token.updated_at, token.last_used_at, token.version), (now(), now(), None, 1));
}

#[tokio::test]
async fn invalid_tokens_never_reach_the_store() {
    let repo = MockTokenRepository::new(); // no expectations: any call fails the test
    let mut new = maps_token();
    new.draft.allowed_apis = vec!["imports".into(), "maps".into()];
    new.expiration_date = Some("2020-01-01T00:00:00Z".into());
    match service(repo).create(&alice(), new).await {
        Err(TokenError::Invalid(issues)) => {
            let codes: Vec<&str> = issues.iter().map(|i| i.code.as_str()).collect();
            assert_eq!(codes, ["imports_exclusive", "expiration_past"]);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn a_taken_name_is_reported_but_a_generated_one_is_retried() {
    let mut repo = MockTokenRepository::new();
    repo.expect_insert().times(1).returning(|_, _, _| Err(InsertError::NameTaken));
    let mut named = maps_token();
    named.draft.name = Some("prod".into());
    assert!(matches!(service(repo).create(&alice(), named).await, Err(TokenError::NameTaken)));

    let mut repo = MockTokenRepository::new();
    let mut calls = 0;
    repo.expect_insert().times(3).returning(move |_, _, _| {
        calls += 1;
        match calls {
            1 => Err(InsertError::NameTaken),
            2 => Err(InsertError::Duplicate),
            _ => Ok(()),
        }
    });
    assert!(service(repo).create(&alice(), maps_token()).await.is_ok());
}

#[tokio::test]
async fn the_token_limit_applies_per_owner() {
    let mut repo = MockTokenRepository::new();
    // The limit goes to the store, which counts and inserts in one step.
    repo.expect_insert()
        .withf(|_, limit, _| *limit == Some(3))
        .times(1)
        .returning(|_, _, _| Err(InsertError::LimitReached));
    let service = service(repo).with_max_tokens_per_owner(Some(3));
    assert!(matches!(service.create(&alice(), maps_token()).await, Err(TokenError::TooManyTokens { limit: 3 })));
}

#[tokio::test]
async fn another_users_token_is_not_found_by_id_or_value() {
    let (token, value) = stored_token(&principal("acme", "bob"), maps_token()).await;
    for reference in [TokenRef::Id(token.id.clone()), TokenRef::Value(value.clone())] {
        let mut repo = MockTokenRepository::new();
        let by_id = token.clone();
        let by_hash = token.clone();
        // The store finds a token by id only for its owner.
        repo.expect_get().returning(
            move |_, owner| {
                if *owner == by_id.owner { Ok(by_id.clone()) } else { Err(GetError::NotFound) }
            },
        );
        repo.expect_find_by_secret_hash().returning(move |_| Ok(Some(by_hash.clone())));
        // No expect_update / expect_delete: touching the token fails the test.
        let service = service(repo);
        assert!(matches!(service.get(&alice(), &reference).await, Err(TokenError::NotFound)));
        let patch = TokenPatch { name: Some(Some("mine now".into())), ..TokenPatch::default() };
        assert!(matches!(service.update(&alice(), &reference, patch, None).await, Err(TokenError::NotFound)));
        assert!(matches!(service.delete(&alice(), &reference, None).await, Err(TokenError::NotFound)));
        assert!(service.get(&principal("acme", "bob"), &reference).await.is_ok(), "the owner sees it");
    }
}

#[tokio::test]
async fn references_that_are_neither_id_nor_value_never_reach_the_store() {
    let service = service(MockTokenRepository::new());
    for text in ["", "nope", "latchkey_tk_short", "../etc/passwd", "Hq3xJ7rT2mK"] {
        assert_eq!(TokenRef::parse(text), TokenRef::Unknown, "{text}");
        assert!(matches!(service.get(&alice(), &TokenRef::parse(text)).await, Err(TokenError::NotFound)));
    }
}

#[tokio::test]
async fn missing_tokens_are_not_found() {
    let mut repo = MockTokenRepository::new();
    repo.expect_get().returning(|_, _| Err(GetError::NotFound));
    let (token, _) = stored_token(&alice(), maps_token()).await;
    assert!(matches!(service(repo).get(&alice(), &TokenRef::Id(token.id)).await, Err(TokenError::NotFound)));
}

#[tokio::test]
async fn updates_replace_fields_keep_the_rest_and_bump_the_version() {
    let (token, _) = stored_token(&alice(), maps_token()).await;
    let stored = token.clone();
    let mut repo = MockTokenRepository::new();
    repo.expect_get().returning(move |_, _| Ok(stored.clone()));
    let written = Arc::new(Mutex::new(None));
    let sink = written.clone();
    repo.expect_update().times(1).returning(move |token, expected, _| {
        *sink.lock().unwrap() = Some((token.clone(), expected));
        Ok(())
    });
    let patch = TokenPatch { referers: Some(vec!["https://app.example.com/".into()]), ..TokenPatch::default() };
    let view = service(repo).update(&alice(), &TokenRef::Id(token.id.clone()), patch, None).await.unwrap();
    let (updated, expected) = written.lock().unwrap().take().unwrap();
    assert_eq!(expected, 1);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.name, token.name, "name kept");
    assert_eq!(updated.policy.grants(), token.policy.grants(), "grants kept");
    assert_eq!(updated.policy.referers().len(), 1);
    assert_eq!((updated.secret_hash, updated.created_at), (token.secret_hash, token.created_at));
    assert_eq!(view.token, updated);
}

#[tokio::test]
async fn update_rules() {
    let (token, _) = stored_token(&alice(), maps_token()).await;
    let reference = TokenRef::Id(token.id.clone());

    // Naming the expiration is refused before anything is read.
    let patch = TokenPatch { names_expiration: true, ..TokenPatch::default() };
    let result = service(MockTokenRepository::new()).update(&alice(), &reference, patch, None).await;
    assert!(matches!(result, Err(TokenError::ExpirationImmutable)));

    // If-Match on a stale version.
    let mut repo = MockTokenRepository::new();
    let stored = token.clone();
    repo.expect_get().returning(move |_, _| Ok(stored.clone()));
    let result = service(repo).update(&alice(), &reference, TokenPatch::default(), Some(7)).await;
    assert!(matches!(result, Err(TokenError::PreconditionFailed)));

    // A race lost without If-Match is retried on the fresh version.
    let mut repo = MockTokenRepository::new();
    let mut reads = 0;
    let stored = token.clone();
    repo.expect_get().times(2).returning(move |_, _| {
        reads += 1;
        Ok(Token { version: reads, ..stored.clone() })
    });
    let mut expected_versions = Vec::new();
    repo.expect_update().times(2).returning(move |_, expected, _| {
        expected_versions.push(expected);
        if expected_versions.len() == 1 { Err(UpdateError::Conflict) } else { Ok(()) }
    });
    let view = service(repo).update(&alice(), &reference, TokenPatch::default(), None).await.unwrap();
    assert_eq!(view.token.version, 3);

    // The same race with If-Match is the client's to resolve.
    let mut repo = MockTokenRepository::new();
    let stored = token.clone();
    repo.expect_get().returning(move |_, _| Ok(stored.clone()));
    repo.expect_update().times(1).returning(|_, _, _| Err(UpdateError::Conflict));
    let result = service(repo).update(&alice(), &reference, TokenPatch::default(), Some(1)).await;
    assert!(matches!(result, Err(TokenError::PreconditionFailed)));

    // An invalid patch is reported, not written.
    let mut repo = MockTokenRepository::new();
    let stored = token.clone();
    repo.expect_get().returning(move |_, _| Ok(stored.clone()));
    let patch = TokenPatch { allowed_apis: Some(vec!["sql".into()]), ..TokenPatch::default() };
    match service(repo).update(&alice(), &reference, patch, None).await {
        Err(TokenError::Invalid(issues)) => {
            let fields: Vec<(&str, &str)> = issues.iter().map(|i| (i.field.as_str(), i.code.as_str())).collect();
            assert_eq!(fields, [("allowed_apis", "api_without_grant"), ("grants[0]", "grant_unused")]);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn delete_passes_if_match_to_the_store() {
    let (token, _) = stored_token(&alice(), maps_token()).await;
    let reference = TokenRef::Id(token.id.clone());
    let mut repo = MockTokenRepository::new();
    let stored = token.clone();
    repo.expect_get().returning(move |_, _| Ok(stored.clone()));
    repo.expect_delete()
        .withf(|_, expected, _| *expected == Some(1))
        .times(1)
        .returning(|_, _, _| Err(DeleteError::Conflict));
    let result = service(repo).delete(&alice(), &reference, Some(1)).await;
    assert!(matches!(result, Err(TokenError::PreconditionFailed)));
}

fn maps_request() -> AccessRequest<'static> {
    let target = Target { connection: "carto_dw", source_type: SourceType::Table, source: "p.d.t" };
    AccessRequest::new(Api::Maps, Some(target), None, None).unwrap()
}

#[tokio::test]
async fn authorize_refuses_malformed_values_without_a_lookup() {
    let repo = Arc::new(MockTokenRepository::new());
    let authorizer = Authorizer::new(repo.clone(), cache(), clock(), Arc::new(UsageRecorder::new(repo)));
    for value in ["", "secret", "latchkey_tk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let decision = authorizer.authorize(value, &maps_request(), Use::Record).await.unwrap();
        assert_eq!(decision, Decision::Denied(DenyReason::TokenMalformed), "{value}");
    }
}

#[tokio::test]
async fn authorize_decides_and_records_use_off_the_hot_path() {
    let (token, value) = stored_token(&alice(), maps_token()).await;
    let mut repo = MockTokenRepository::new();
    let stored = token.clone();
    let hash = token.secret_hash;
    repo.expect_find_by_secret_hash().returning(move |h| Ok((*h == hash).then(|| stored.clone())));
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let sink = recorded.clone();
    repo.expect_record_last_use().times(1).returning(move |uses| {
        sink.lock().unwrap().extend_from_slice(uses);
        Ok(())
    });
    let repo = Arc::new(repo);
    let usage = Arc::new(UsageRecorder::new(repo.clone()));
    let authorizer = Authorizer::new(repo, cache(), clock(), usage.clone());

    for _ in 0..3 {
        assert_eq!(
            authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap(),
            Decision::Allowed
        );
    }
    let other = TokenValue::parse(stored_token(&alice(), maps_token()).await.1.expose()).unwrap();
    assert_eq!(
        authorizer.authorize(other.expose(), &maps_request(), Use::Record).await.unwrap(),
        Decision::Denied(DenyReason::TokenUnknown)
    );
    let lds = AccessRequest::new(Api::Lds, None, None, None).unwrap();
    assert_eq!(
        authorizer.authorize(value.expose(), &lds, Use::Record).await.unwrap(),
        Decision::Denied(DenyReason::ApiNotAllowed)
    );
    assert_eq!(recorded.lock().unwrap().len(), 0, "no write during authorize");
    assert_eq!(usage.flush().await.unwrap(), 1, "three uses of one token, one row");
    assert_eq!(*recorded.lock().unwrap(), vec![(token.id.clone(), now())]);
    assert_eq!(usage.flush().await.unwrap(), 0, "nothing left");
}

#[tokio::test]
async fn authorize_refuses_expired_tokens() {
    let mut new = maps_token();
    new.expiration_date = Some("2026-11-27T10:00:01Z".into());
    let (token, value) = stored_token(&alice(), new).await;
    let mut repo = MockTokenRepository::new();
    repo.expect_find_by_secret_hash().returning(move |_| Ok(Some(token.clone())));
    let repo = Arc::new(repo);
    let mut later = MockClock::new();
    later.expect_now().returning(|| Timestamp::parse_rfc3339("2026-11-27T10:00:01Z").unwrap());
    let authorizer = Authorizer::new(repo.clone(), cache(), Arc::new(later), Arc::new(UsageRecorder::new(repo)));
    assert_eq!(
        authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap(),
        Decision::Denied(DenyReason::TokenExpired)
    );
}

#[tokio::test]
async fn a_failed_flush_keeps_the_uses() {
    let (token, _) = stored_token(&alice(), maps_token()).await;
    let mut repo = MockTokenRepository::new();
    let mut calls = 0;
    repo.expect_record_last_use().times(2).returning(move |_| {
        calls += 1;
        if calls == 1 { Err(latchkey_ports::BackendError::corrupt("disk full")) } else { Ok(()) }
    });
    let usage = UsageRecorder::new(Arc::new(repo));
    usage.note(&token.id, now());
    assert!(usage.flush().await.is_err());
    assert_eq!(usage.pending(), 1);
    assert_eq!(usage.flush().await.unwrap(), 1);
}

#[tokio::test]
async fn user_keys_are_checked_by_hash_and_malformed_ones_never_looked_up() {
    let key = UserKey::parse(&bootstrap_key().await).unwrap();
    let mut users = MockUserDirectory::new();
    let hash = key.hash();
    let identity = || Identity { principal: alice(), role: Role::Member };
    users.expect_find_by_key_hash().times(2).returning(move |h| Ok((*h == hash).then(identity)));
    let authenticator = UserKeyAuthenticator::new(Arc::new(users));
    assert_eq!(authenticator.authenticate(key.expose()).await.unwrap(), identity());
    let other = bootstrap_key().await;
    assert!(matches!(authenticator.authenticate(&other).await, Err(AuthenticationError::Invalid)));
    for malformed in ["", "Bearer x", "latchkey_uk_nope"] {
        assert!(matches!(authenticator.authenticate(malformed).await, Err(AuthenticationError::Invalid)));
    }
}

/// Runs the first-run bootstrap on an empty directory and returns the key.
async fn bootstrap_key() -> String {
    let mut users = MockUserDirectory::new();
    users.expect_has_users().times(1).returning(|| Ok(false));
    users
        .expect_create_user()
        .withf(|p, role, _| p.org.as_str() == "default" && p.user.as_str() == "admin" && *role == Role::Admin)
        .times(1)
        .returning(|_, _, _| Ok(()));
    let mut catalog = MockConnectionCatalog::new();
    catalog
        .expect_create_connection()
        .withf(|org, c| org.as_str() == "default" && c.name.as_str() == "carto_dw" && c.provider == Provider::CartoDw)
        .times(1)
        .returning(|_, _| Ok(()));
    let key = UserService::new(Arc::new(users), Arc::new(catalog)).bootstrap().await.unwrap();
    key.unwrap().expose().to_owned()
}

#[tokio::test]
async fn bootstrap_runs_only_on_an_empty_store() {
    assert!(bootstrap_key().await.starts_with("latchkey_uk_"));
    let mut users = MockUserDirectory::new();
    users.expect_has_users().returning(|| Ok(true));
    let service = UserService::new(Arc::new(users), Arc::new(MockConnectionCatalog::new()));
    assert!(service.bootstrap().await.unwrap().is_none());
}

// ---------------------------------------------------------------- cache

/// A repository that serves `token` and counts lookups; `on_lookup` runs
/// inside each lookup (to simulate what happens meanwhile).
fn counting_repo(
    token: Option<Token>,
    lookups: Arc<Mutex<usize>>,
    on_lookup: impl Fn() + Send + Sync + 'static,
) -> MockTokenRepository {
    let mut repo = MockTokenRepository::new();
    repo.expect_find_by_secret_hash().returning(move |hash| {
        *lookups.lock().unwrap() += 1;
        on_lookup();
        Ok(token.clone().filter(|t| t.secret_hash == *hash))
    });
    repo.expect_record_last_use().returning(|_| Ok(()));
    repo
}

fn authorizer_with(repo: MockTokenRepository, cache: Arc<TokenCache>) -> Authorizer {
    let repo = Arc::new(repo);
    Authorizer::new(repo.clone(), cache, clock(), Arc::new(UsageRecorder::new(repo)))
}

#[tokio::test]
async fn the_cache_serves_repeat_lookups_and_never_caches_unknown_values() {
    let (token, value) = stored_token(&alice(), maps_token()).await;
    let lookups = Arc::new(Mutex::new(0));
    let cache = cache();
    let authorizer = authorizer_with(counting_repo(Some(token), lookups.clone(), || {}), cache.clone());
    for _ in 0..5 {
        assert_eq!(
            authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap(),
            Decision::Allowed
        );
    }
    assert_eq!(*lookups.lock().unwrap(), 1, "one storage lookup for five requests");

    let unknown = TokenValue::parse(stored_token(&alice(), maps_token()).await.1.expose()).unwrap();
    for _ in 0..3 {
        let decision = authorizer.authorize(unknown.expose(), &maps_request(), Use::Record).await.unwrap();
        assert_eq!(decision, Decision::Denied(DenyReason::TokenUnknown));
    }
    assert_eq!(*lookups.lock().unwrap(), 4, "an unknown value is looked up every time: it may be created next");
}

#[tokio::test]
async fn updates_and_deletes_through_this_instance_evict_at_once() {
    let (token, value) = stored_token(&alice(), maps_token()).await;
    let cache = cache();
    let lookups = Arc::new(Mutex::new(0));
    let authorizer = authorizer_with(counting_repo(Some(token.clone()), lookups.clone(), || {}), cache.clone());
    authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap();

    // Deleting through the service evicts the entry.
    let mut repo = MockTokenRepository::new();
    let stored = token.clone();
    repo.expect_get().returning(move |_, _| Ok(stored.clone()));
    repo.expect_delete().returning(|_, _, _| Ok(()));
    let service = TokenService::new(Arc::new(repo), cache.clone(), catalog(), policies(), clock(), sealer());
    service.delete(&alice(), &TokenRef::Id(token.id.clone()), None).await.unwrap();
    let (hit, _) = cache.get(&token.secret_hash);
    assert!(hit.is_none(), "evicted by the delete");

    // So is an update.
    authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap();
    assert!(cache.get(&token.secret_hash).0.is_some());
    let mut repo = MockTokenRepository::new();
    let stored = token.clone();
    repo.expect_get().returning(move |_, _| Ok(stored.clone()));
    repo.expect_update().returning(|_, _, _| Ok(()));
    let service = TokenService::new(Arc::new(repo), cache.clone(), catalog(), policies(), clock(), sealer());
    let patch = TokenPatch { name: Some(Some("renamed".into())), ..TokenPatch::default() };
    service.update(&alice(), &TokenRef::Id(token.id.clone()), patch, None).await.unwrap();
    assert!(cache.get(&token.secret_hash).0.is_none(), "evicted by the update");
}

#[tokio::test]
async fn a_change_heard_during_a_lookup_keeps_the_result_out_of_the_cache() {
    use latchkey_ports::ChangeSink;
    let (token, value) = stored_token(&alice(), maps_token()).await;
    let cache = cache();
    let lookups = Arc::new(Mutex::new(0));
    let during = cache.clone();
    let hash = token.secret_hash;
    // Each lookup "hears" that the token changed while it was reading.
    let authorizer =
        authorizer_with(counting_repo(Some(token), lookups.clone(), move || during.token_changed(&hash)), cache);
    for _ in 0..3 {
        authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap();
    }
    assert_eq!(*lookups.lock().unwrap(), 3, "what was read during a change is never cached");
}

#[tokio::test]
async fn without_a_change_feed_the_cache_is_bypassed_until_it_returns() {
    use latchkey_ports::ChangeSink;
    let (token, value) = stored_token(&alice(), maps_token()).await;
    let cache = Arc::new(TokenCache::new(CacheSettings::default(), false));
    let lookups = Arc::new(Mutex::new(0));
    let authorizer = authorizer_with(counting_repo(Some(token), lookups.clone(), || {}), cache.clone());
    for _ in 0..3 {
        authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap();
    }
    assert_eq!(*lookups.lock().unwrap(), 3, "not subscribed yet: every lookup goes to storage");
    cache.feed_restored();
    for _ in 0..3 {
        authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap();
    }
    assert_eq!(*lookups.lock().unwrap(), 4, "subscribed: cached");
    cache.feed_lost();
    assert!(!cache.is_serving());
    for _ in 0..3 {
        authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap();
    }
    assert_eq!(*lookups.lock().unwrap(), 7, "feed lost: emptied and bypassed");
    cache.feed_restored();
    authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap();
    assert_eq!(*lookups.lock().unwrap(), 8, "restored: nothing from before the loss is trusted");
    authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap();
    assert_eq!(*lookups.lock().unwrap(), 8);
}

#[tokio::test]
async fn a_disabled_cache_caches_nothing() {
    let (token, value) = stored_token(&alice(), maps_token()).await;
    let lookups = Arc::new(Mutex::new(0));
    let authorizer =
        authorizer_with(counting_repo(Some(token), lookups.clone(), || {}), Arc::new(TokenCache::disabled()));
    for _ in 0..3 {
        authorizer.authorize(value.expose(), &maps_request(), Use::Record).await.unwrap();
    }
    assert_eq!(*lookups.lock().unwrap(), 3);
}
