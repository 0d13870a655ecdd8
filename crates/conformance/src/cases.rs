//! The cases of the suite. Each takes a fresh, empty store and panics when
//! the adapter breaks the contract of the port traits.

use std::collections::HashSet;

use latchkey_domain::audit::{AuditAction, AuditEvent, AuditValue, AuditedToken, FieldChange};
use latchkey_domain::org_policy::OrgPolicy;
use latchkey_domain::{
    Api, ApiSet, AuditEventId, Connection, ConnectionName, PreviousValue, Provider, Role, SealedSecret, Timestamp,
    Token, TokenId, TokenName, TokenValue, UserKey,
};
use latchkey_ports::{AuditCursor, AuditScope, PolicyWriteError};
use latchkey_ports::{CreateConnectionError, CreateUserError, Cursor, DeleteError, GetError, InsertError, UpdateError};
use rand::rngs::SysRng;

use crate::Stores;
use crate::fixtures::Logged;
use crate::fixtures::{at, connection, draft, org_with_connections, policy, principal, simple_policy, token};

/// A token that uses every field to its limit: a unicode name of 128
/// characters, 100 grants of every kind including a 64 KiB query, 50
/// referers, an expiration, and microsecond timestamps.
fn full_token() -> Token {
    let owner = principal("acme", "ana@example.com");
    let mut base = token(&owner, "placeholder", at(0));
    base.name = TokenName::new(&"Ñ地🗺x".repeat(32)).unwrap();
    let big_query = format!("SELECT * FROM t WHERE a = '{}'", "q".repeat(64 * 1024 - 28));
    assert_eq!(big_query.len(), 64 * 1024);
    let mut grants = vec![
        ("carto_dw", big_query),
        ("carto_dw", "*".to_owned()),
        ("pg", "public.\"Weird \"\"Name\"\"\"".to_owned()),
        ("pg", "geo.public.roads_*".to_owned()),
        ("carto_dw", "FROB the widgets -- unparsed".to_owned()),
    ];
    for i in 0..95 {
        grants.push(("carto_dw", format!("`my-project.dataset.table_{i}`")));
    }
    let referers: Vec<String> =
        (0..49).map(|i| format!("https://app{i}.example.com/")).chain(["*.bücher.example:*".to_owned()]).collect();
    base.policy = policy(&draft(&["sql", "maps", "lds"], grants, referers), Some(at(86_400 * 365)));
    assert_eq!(base.policy.grants().len(), 100);
    assert_eq!(base.policy.referers().len(), 50);
    base.policy = base.policy.with_allowed_ips(
        latchkey_domain::ip::IpRanges::new(
            ["203.0.113.0/24", "2001:db8::/32", "192.0.2.7", "::1"]
                .iter()
                .map(|text| latchkey_domain::ip::IpRange::parse(text).unwrap())
                .collect(),
        )
        .0,
    );
    base.previous = Some(PreviousValue {
        secret_hash: TokenValue::generate(&mut SysRng).unwrap().hash(),
        expires_at: Timestamp::from_unix_micros(1_700_000_000_123_457).unwrap(),
    });
    base.updated_at = at(1);
    base
}

pub async fn round_trip_preserves_every_field(stores: &Stores) {
    let token = full_token();
    stores.tokens.insert_logged(&token, None).await.unwrap();
    assert_eq!(stores.tokens.get(&token.id, &token.owner).await.unwrap(), token, "get");
    assert_eq!(stores.tokens.find_by_secret_hash(&token.secret_hash).await.unwrap(), Some(token.clone()), "by hash");
    let page = stores.tokens.list(&token.owner, None, 10).await.unwrap();
    assert_eq!(page.tokens, vec![token.clone()], "list");
    assert_eq!(page.next, None);
}

pub async fn update_replaces_what_it_may_and_keeps_the_rest(stores: &Stores) {
    let original = full_token();
    stores.tokens.insert_logged(&original, None).await.unwrap();
    let mut changed = original.clone();
    changed.name = TokenName::new("renamed").unwrap();
    // The new policy also tries to drop the expiration: the store keeps it.
    changed.policy = simple_policy();
    changed.updated_at = at(2);
    changed.version = 2;
    // Fields an update may not touch, changed to show they are ignored.
    changed.created_at = at(-5);
    changed.sealed_secret = SealedSecret::new(vec![1, 2, 3]);
    changed.last_used_at = Some(at(9));
    stores.tokens.update_logged(&changed, 1).await.unwrap();

    let stored = stores.tokens.get(&original.id, &original.owner).await.unwrap();
    let expected = Token {
        name: changed.name.clone(),
        policy: simple_policy().with_expiration(original.policy.expiration()),
        updated_at: at(2),
        version: 2,
        ..original.clone()
    };
    assert_eq!(stored, expected);
    assert_eq!(stores.tokens.find_by_secret_hash(&original.secret_hash).await.unwrap(), Some(expected));

    assert!(matches!(stores.tokens.update_logged(&changed, 1).await, Err(UpdateError::Conflict)), "stale version");
    let mut missing = token(&original.owner, "ghost", at(0));
    missing.version = 2;
    assert!(matches!(stores.tokens.update_logged(&missing, 1).await, Err(UpdateError::NotFound)));
}

pub async fn names_are_unique_per_owner(stores: &Stores) {
    let ana = principal("acme", "ana");
    let bob = principal("acme", "bob");
    let first = token(&ana, "prod", at(0));
    stores.tokens.insert_logged(&first, None).await.unwrap();
    let again = token(&ana, "prod", at(1));
    assert!(matches!(stores.tokens.insert_logged(&again, None).await, Err(InsertError::NameTaken)));
    stores.tokens.insert_logged(&token(&bob, "prod", at(1)), None).await.unwrap();

    let second = token(&ana, "staging", at(2));
    stores.tokens.insert_logged(&second, None).await.unwrap();
    let renamed = Token { name: TokenName::new("prod").unwrap(), version: 2, ..second.clone() };
    assert!(matches!(stores.tokens.update_logged(&renamed, 1).await, Err(UpdateError::NameTaken)));
    assert_eq!(stores.tokens.get(&second.id, &second.owner).await.unwrap(), second, "a refused update changes nothing");

    // Keeping one's own name is not taking it.
    let same_name = Token { updated_at: at(3), version: 2, ..second.clone() };
    stores.tokens.update_logged(&same_name, 1).await.unwrap();

    // A deleted token's name is free again, and names are exact: case and
    // accents make other names.
    stores.tokens.delete_logged(&first.id, None).await.unwrap();
    stores.tokens.insert_logged(&token(&ana, "prod", at(4)), None).await.unwrap();
    stores.tokens.insert_logged(&token(&ana, "Prod", at(5)), None).await.unwrap();
    stores.tokens.insert_logged(&token(&ana, "pród", at(6)), None).await.unwrap();
}

pub async fn concurrent_inserts_of_one_name_let_exactly_one_win(stores: &Stores) {
    let owner = principal("acme", "ana");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let tokens = stores.tokens.clone();
        let candidate = token(&owner, "contested", at(i));
        tasks.push(tokio::spawn(async move { tokens.insert_logged(&candidate, None).await }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(InsertError::NameTaken) => {}
            Err(other) => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(page_through(stores, &owner, 100).await.len(), 1);
}

pub async fn capped_inserts_never_overshoot_the_limit(stores: &Stores) {
    let (ana, bob) = (principal("acme", "ana"), principal("acme", "bob"));
    stores.tokens.insert_logged(&token(&ana, "old", at(0)), None).await.unwrap();
    // Twenty creates race for the four places left under a limit of five.
    let mut tasks = Vec::new();
    for i in 1..=20 {
        let tokens = stores.tokens.clone();
        let candidate = token(&ana, &format!("racer {i}"), at(i));
        tasks.push(tokio::spawn(async move { tokens.insert_logged(&candidate, Some(5)).await }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(InsertError::LimitReached) => {}
            Err(other) => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!(won, 4);
    assert_eq!(page_through(stores, &ana, 100).await.len(), 5);
    // The limit is per owner; a delete frees a place.
    stores.tokens.insert_logged(&token(&bob, "mine", at(30)), Some(5)).await.unwrap();
    let page = stores.tokens.list(&ana, None, 10).await.unwrap();
    stores.tokens.delete_logged(&page.tokens[0].id, None).await.unwrap();
    stores.tokens.insert_logged(&token(&ana, "after a delete", at(31)), Some(5)).await.unwrap();
    assert!(matches!(
        stores.tokens.insert_logged(&token(&ana, "one too many", at(32)), Some(5)).await,
        Err(InsertError::LimitReached)
    ));
    // A capped insert still refuses a taken name below the limit.
    assert!(matches!(
        stores.tokens.insert_logged(&token(&bob, "mine", at(33)), Some(5)).await,
        Err(InsertError::NameTaken)
    ));
}

pub async fn concurrent_updates_of_one_version_let_exactly_one_win(stores: &Stores) {
    let owner = principal("acme", "ana");
    let original = token(&owner, "shared", at(0));
    stores.tokens.insert_logged(&original, None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let tokens = stores.tokens.clone();
        let update = Token { name: TokenName::new(&format!("writer {i}")).unwrap(), version: 2, ..original.clone() };
        tasks.push(tokio::spawn(async move { tokens.update_logged(&update, 1).await.map(|()| i) }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(i) => winners.push(i),
            Err(UpdateError::Conflict) => {}
            Err(other) => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one update of version 1");
    let stored = stores.tokens.get(&original.id, &original.owner).await.unwrap();
    assert_eq!((stored.version, stored.name.as_str()), (2, format!("writer {}", winners[0]).as_str()));
}

pub async fn duplicate_ids_and_secrets_are_refused(stores: &Stores) {
    let owner = principal("acme", "ana");
    let original = token(&owner, "one", at(0));
    stores.tokens.insert_logged(&original, None).await.unwrap();
    let same_id = Token { name: TokenName::new("two").unwrap(), ..token(&owner, "two", at(1)) };
    let same_id = Token { id: original.id.clone(), ..same_id };
    assert!(matches!(stores.tokens.insert_logged(&same_id, None).await, Err(InsertError::Duplicate)));
    let same_hash = Token { secret_hash: original.secret_hash, ..token(&owner, "three", at(1)) };
    assert!(matches!(stores.tokens.insert_logged(&same_hash, None).await, Err(InsertError::Duplicate)));
    assert_eq!(page_through(stores, &owner, 100).await.len(), 1);
}

pub async fn lookup_by_secret_hash(stores: &Stores) {
    let owner = principal("acme", "ana");
    let tokens: Vec<Token> = (0..5).map(|i| token(&owner, &format!("t{i}"), at(i))).collect();
    for t in &tokens {
        stores.tokens.insert_logged(t, None).await.unwrap();
    }
    for t in &tokens {
        assert_eq!(stores.tokens.find_by_secret_hash(&t.secret_hash).await.unwrap().as_ref(), Some(t));
    }
    let stranger = TokenValue::generate(&mut SysRng).unwrap();
    assert_eq!(stores.tokens.find_by_secret_hash(&stranger.hash()).await.unwrap(), None);
}

/// Pages through the whole list with `limit` and returns every id, checking
/// that each page but the last is full and says where to go next.
async fn page_through(stores: &Stores, owner: &latchkey_domain::Principal, limit: usize) -> Vec<Token> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = stores.tokens.list(owner, cursor.clone(), limit).await.unwrap();
        assert!(page.tokens.len() <= limit);
        match page.next {
            Some(next) => {
                assert_eq!(page.tokens.len(), limit, "only the last page may be short");
                let last = page.tokens.last().unwrap();
                assert_eq!(next, Cursor { created_at: last.created_at, id: last.id.clone() });
                seen.extend(page.tokens);
                cursor = Some(next);
            }
            None => {
                seen.extend(page.tokens);
                return seen;
            }
        }
    }
}

fn newest_first(tokens: &mut [Token]) {
    tokens.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
}

pub async fn list_pages_newest_first_without_gaps_or_duplicates(stores: &Stores) {
    let owner = principal("acme", "ana");
    let mut expected = Vec::new();
    for i in 0..23 {
        // Groups of three share a creation time: the id breaks the tie.
        let t = token(&owner, &format!("t{i:02}"), at(i / 3));
        stores.tokens.insert_logged(&t, None).await.unwrap();
        expected.push(t);
    }
    newest_first(&mut expected);
    for limit in [1, 5, 10, 23, 100] {
        assert_eq!(page_through(stores, &owner, limit).await, expected, "limit {limit}");
    }
    let empty = stores.tokens.list(&principal("acme", "nobody"), None, 10).await.unwrap();
    assert!(empty.tokens.is_empty() && empty.next.is_none());
}

pub async fn list_is_stable_while_tokens_are_inserted(stores: &Stores) {
    let owner = principal("acme", "ana");
    let mut expected = Vec::new();
    for i in 0..30 {
        let t = token(&owner, &format!("old {i}"), at(i));
        stores.tokens.insert_logged(&t, None).await.unwrap();
        expected.push(t);
    }
    newest_first(&mut expected);
    // The client reads its first page, then newer tokens arrive while it
    // pages through the rest.
    let first = stores.tokens.list(&owner, None, 7).await.unwrap();
    let mut seen = first.tokens;
    let mut cursor = first.next;
    let tokens = stores.tokens.clone();
    let writer_owner = owner.clone();
    let writer = tokio::spawn(async move {
        for i in 0..40 {
            tokens.insert_logged(&token(&writer_owner, &format!("new {i}"), at(1_000 + i)), None).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    while let Some(position) = cursor {
        let page = stores.tokens.list(&owner, Some(position), 7).await.unwrap();
        seen.extend(page.tokens);
        cursor = page.next;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert_eq!(seen, expected, "every old token once, in order, none of the new");
}

pub async fn owners_never_see_each_others_tokens(stores: &Stores) {
    let ana = principal("acme", "ana");
    let bob = principal("acme", "bob");
    for i in 0..4 {
        stores.tokens.insert_logged(&token(&ana, &format!("a{i}"), at(i)), None).await.unwrap();
    }
    for i in 0..2 {
        stores.tokens.insert_logged(&token(&bob, &format!("b{i}"), at(i)), None).await.unwrap();
    }
    let bobs = stores.tokens.list(&bob, None, 100).await.unwrap();
    assert_eq!(bobs.tokens.len(), 2);
    assert!(bobs.tokens.iter().all(|t| t.owner == bob));
    // A cursor taken from another owner's list shows nothing of theirs.
    let anas = stores.tokens.list(&ana, None, 1).await.unwrap();
    let foreign_cursor = anas.next.unwrap();
    let page = stores.tokens.list(&bob, Some(foreign_cursor), 100).await.unwrap();
    assert!(page.tokens.iter().all(|t| t.owner == bob));
    assert_eq!(page_through(stores, &ana, 100).await.len(), 4);
    assert_eq!(page_through(stores, &bob, 100).await.len(), 2);
    // By id, another owner's token is missing, exactly like an unknown id;
    // the owner's own is found. Owners in other orgs count as others.
    let anas_token = &anas.tokens[0];
    assert!(matches!(stores.tokens.get(&anas_token.id, &bob).await, Err(GetError::NotFound)));
    assert!(matches!(stores.tokens.get(&anas_token.id, &principal("other", "ana")).await, Err(GetError::NotFound)));
    assert_eq!(stores.tokens.get(&anas_token.id, &ana).await.unwrap(), *anas_token);
}

pub async fn deleted_tokens_are_gone_everywhere(stores: &Stores) {
    let owner = principal("acme", "ana");
    let kept = token(&owner, "kept", at(0));
    let doomed = token(&owner, "doomed", at(1));
    stores.tokens.insert_logged(&kept, None).await.unwrap();
    stores.tokens.insert_logged(&doomed, None).await.unwrap();

    assert!(matches!(stores.tokens.delete_logged(&doomed.id, Some(7)).await, Err(DeleteError::Conflict)));
    assert_eq!(stores.tokens.get(&doomed.id, &doomed.owner).await.unwrap(), doomed, "a refused delete changes nothing");

    stores.tokens.delete_logged(&doomed.id, Some(1)).await.unwrap();
    assert!(matches!(stores.tokens.get(&doomed.id, &doomed.owner).await, Err(GetError::NotFound)));
    assert_eq!(stores.tokens.find_by_secret_hash(&doomed.secret_hash).await.unwrap(), None);
    assert_eq!(stores.tokens.list(&owner, None, 10).await.unwrap().tokens, vec![kept.clone()]);
    assert!(matches!(stores.tokens.delete_logged(&doomed.id, None).await, Err(DeleteError::NotFound)));
    let resurrect = Token { version: 2, ..doomed.clone() };
    assert!(matches!(stores.tokens.update_logged(&resurrect, 1).await, Err(UpdateError::NotFound)));
    assert_eq!(page_through(stores, &owner, 100).await.len(), 1);
}

pub async fn last_use_only_moves_forward_and_is_not_a_change(stores: &Stores) {
    let owner = principal("acme", "ana");
    let used = token(&owner, "used", at(0));
    let idle = token(&owner, "idle", at(0));
    stores.tokens.insert_logged(&used, None).await.unwrap();
    stores.tokens.insert_logged(&idle, None).await.unwrap();
    let ghost = token(&owner, "never stored", at(0));

    stores.tokens.record_last_use(&[(used.id.clone(), at(10)), (ghost.id.clone(), at(10))]).await.unwrap();
    stores.tokens.record_last_use(&[(used.id.clone(), at(5))]).await.unwrap();
    stores.tokens.record_last_use(&[]).await.unwrap();
    let stored = stores.tokens.get(&used.id, &used.owner).await.unwrap();
    assert_eq!(stored, Token { last_used_at: Some(at(10)), ..used.clone() }, "version and updated_at untouched");
    assert_eq!(stores.tokens.get(&idle.id, &idle.owner).await.unwrap().last_used_at, None);
    assert!(matches!(stores.tokens.get(&ghost.id, &ghost.owner).await, Err(GetError::NotFound)), "no row appears");

    // An update after use keeps the use.
    let renamed = Token { name: TokenName::new("renamed").unwrap(), version: 2, ..used.clone() };
    stores.tokens.update_logged(&renamed, 1).await.unwrap();
    assert_eq!(stores.tokens.get(&used.id, &used.owner).await.unwrap().last_used_at, Some(at(10)));
}

pub async fn sealed_secrets_are_walked_in_id_order(stores: &Stores) {
    let ana = principal("acme", "ana");
    let bob = principal("other", "bob");
    let mut stored = Vec::new();
    for n in 0..7 {
        let owner = if n % 2 == 0 { &ana } else { &bob };
        let token =
            Token { sealed_secret: SealedSecret::new(vec![n, 255, 0, n]), ..token(owner, &format!("t{n}"), at(0)) };
        stores.tokens.insert_logged(&token, None).await.unwrap();
        stored.push((token.id.clone(), token.sealed_secret.clone()));
    }
    // Bytewise, as the port says: upper case before lower case.
    stored.sort_by(|a, b| a.0.as_str().as_bytes().cmp(b.0.as_str().as_bytes()));
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = stores.tokens.sealed_secrets(after.clone(), 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        walked.extend(page);
    }
    assert_eq!(walked, stored, "every token once, in id order, across owners");
}

pub async fn sealed_secrets_are_replaced_only_if_unchanged(stores: &Stores) {
    let owner = principal("acme", "ana");
    let first = token(&owner, "first", at(0));
    let second = token(&owner, "second", at(0));
    let gone = token(&owner, "gone", at(0));
    for t in [&first, &second, &gone] {
        stores.tokens.insert_logged(t, None).await.unwrap();
    }
    stores.tokens.delete_logged(&gone.id, None).await.unwrap();
    let resealed = SealedSecret::new(vec![9; 40]);
    let stale = SealedSecret::new(vec![7; 40]);
    let replaced = stores
        .tokens
        .replace_sealed_secrets(&[
            (first.id.clone(), first.sealed_secret.clone(), resealed.clone()),
            (second.id.clone(), stale.clone(), resealed.clone()),
            (gone.id.clone(), gone.sealed_secret.clone(), resealed.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(replaced, 1, "only the token that still held the expected value");
    let stored = stores.tokens.get(&first.id, &owner).await.unwrap();
    assert_eq!(stored, Token { sealed_secret: resealed.clone(), ..first.clone() }, "nothing else changes");
    assert_eq!(stores.tokens.get(&second.id, &owner).await.unwrap(), second, "not the stored value: untouched");
    let again = stores
        .tokens
        .replace_sealed_secrets(&[(first.id.clone(), first.sealed_secret.clone(), stale.clone())])
        .await
        .unwrap();
    assert_eq!(again, 0, "a second rotation from the old value finds it gone");
    assert_eq!(stores.tokens.replace_sealed_secrets(&[]).await.unwrap(), 0);
    let walked: Vec<TokenId> =
        stores.tokens.sealed_secrets(None, 10).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert!(walked.contains(&first.id) && walked.contains(&second.id) && !walked.contains(&gone.id));
}

pub async fn connections_belong_to_existing_orgs(stores: &Stores) {
    let acme = principal("acme", "ana");
    let dw = connection("carto_dw", Provider::CartoDw);
    assert!(matches!(stores.catalog.create_connection(&acme.org, &dw).await, Err(CreateConnectionError::UnknownOrg)));
    assert!(stores.catalog.connections(&acme.org).await.unwrap().is_empty());
    org_with_connections(stores, &acme).await;
    assert!(matches!(stores.catalog.create_connection(&acme.org, &dw).await, Err(CreateConnectionError::NameTaken)));
    let snow = connection("a_snowflake", Provider::Snowflake);
    stores.catalog.create_connection(&acme.org, &snow).await.unwrap();
    let names: Vec<(String, Provider)> = stores
        .catalog
        .connections(&acme.org)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name.to_string(), c.provider))
        .collect();
    assert_eq!(
        names,
        [
            ("a_snowflake".to_owned(), Provider::Snowflake),
            ("carto_dw".to_owned(), Provider::CartoDw),
            ("pg".to_owned(), Provider::Postgres)
        ],
        "ordered by name, with providers"
    );
}

pub async fn users_and_their_keys(stores: &Stores) {
    assert!(!stores.users.has_users().await.unwrap());
    let ana = principal("acme", "ana@example.com");
    // The first user of an org makes the org: connections can be made in it.
    let dw = Connection { name: ConnectionName::new("dw").unwrap(), provider: Provider::CartoDw };
    assert!(matches!(stores.catalog.create_connection(&ana.org, &dw).await, Err(CreateConnectionError::UnknownOrg)));
    let key = UserKey::generate(&mut SysRng).unwrap();
    stores.users.create_user(&ana, Role::Member, &key.hash()).await.unwrap();
    assert!(stores.users.has_users().await.unwrap());
    stores.catalog.create_connection(&ana.org, &dw).await.unwrap();
    let member =
        |principal: &latchkey_domain::Principal, role| latchkey_domain::Identity { principal: principal.clone(), role };
    assert_eq!(stores.users.find_by_key_hash(&key.hash()).await.unwrap(), Some(member(&ana, Role::Member)));
    let other = UserKey::generate(&mut SysRng).unwrap();
    assert_eq!(stores.users.find_by_key_hash(&other.hash()).await.unwrap(), None);
    assert!(matches!(
        stores.users.create_user(&ana, Role::Member, &other.hash()).await,
        Err(CreateUserError::UserExists)
    ));
    assert_eq!(stores.users.find_by_key_hash(&other.hash()).await.unwrap(), None, "the refused key is not stored");
    let bob = principal("acme", "bob");
    // The role is kept with the user.
    stores.users.create_user(&bob, Role::Admin, &other.hash()).await.unwrap();
    assert_eq!(stores.users.find_by_key_hash(&other.hash()).await.unwrap(), Some(member(&bob, Role::Admin)));
}

pub async fn the_org_boundary(stores: &Stores) {
    // The same user name in two orgs is two people.
    let acme_ana = principal("acme", "ana");
    let globex_ana = principal("globex", "ana");
    org_with_connections(stores, &acme_ana).await;
    org_with_connections(stores, &globex_ana).await;
    let only_acme = connection("acme_only", Provider::Bigquery);
    stores.catalog.create_connection(&acme_ana.org, &only_acme).await.unwrap();
    let globex: HashSet<String> =
        stores.catalog.connections(&globex_ana.org).await.unwrap().into_iter().map(|c| c.name.to_string()).collect();
    assert!(!globex.contains("acme_only"));

    let at_acme = token(&acme_ana, "prod", at(0));
    let at_globex = token(&globex_ana, "prod", at(0));
    stores.tokens.insert_logged(&at_acme, None).await.unwrap();
    stores.tokens.insert_logged(&at_globex, None).await.unwrap();
    assert_eq!(stores.tokens.list(&acme_ana, None, 10).await.unwrap().tokens, vec![at_acme]);
    assert_eq!(stores.tokens.list(&globex_ana, None, 10).await.unwrap().tokens, vec![at_globex]);
}

/// `token` rolled to a fresh value at `when`, the old one kept until
/// `grace_until` when given.
fn rolled(token: &Token, when: Timestamp, grace_until: Option<Timestamp>) -> Token {
    let value = TokenValue::generate(&mut SysRng).unwrap();
    Token {
        secret_hash: value.hash(),
        sealed_secret: SealedSecret::new(vec![9; 40]),
        previous: grace_until.map(|expires_at| PreviousValue { secret_hash: token.secret_hash, expires_at }),
        updated_at: when,
        version: token.version + 1,
        ..token.clone()
    }
}

pub async fn rolls_replace_the_value_and_keep_the_previous_one(stores: &Stores) {
    let original = token(&principal("acme", "ana"), "rolling", at(0));
    stores.tokens.insert_logged(&original, None).await.unwrap();
    let first = rolled(&original, at(10), Some(at(100)));
    let event = |t: &Token| crate::fixtures::event(AuditAction::TokenRolled, None, t);
    stores.tokens.roll(&first, 1, &event(&first)).await.unwrap();
    let stored = stores.tokens.get(&first.id, &first.owner).await.unwrap();
    assert_eq!(stored, first, "value, sealed value, previous value, time and version replaced; the rest kept");
    let by_new = stores.tokens.find_by_secret_hash(&first.secret_hash).await.unwrap();
    assert_eq!(by_new.as_ref(), Some(&first), "found by the new value");
    let by_old = stores.tokens.find_by_secret_hash(&original.secret_hash).await.unwrap();
    assert_eq!(by_old.as_ref(), Some(&first), "found by the previous value while it is kept");
    let stale = rolled(&original, at(11), None);
    assert!(matches!(stores.tokens.roll(&stale, 1, &event(&stale)).await, Err(UpdateError::Conflict)));
    // A second roll replaces the previous value: the first one is gone.
    let second = rolled(&first, at(20), None);
    stores.tokens.roll(&second, 2, &event(&second)).await.unwrap();
    assert_eq!(stores.tokens.find_by_secret_hash(&original.secret_hash).await.unwrap(), None, "first value");
    assert_eq!(stores.tokens.find_by_secret_hash(&first.secret_hash).await.unwrap(), None, "no grace given");
    assert_eq!(stores.tokens.find_by_secret_hash(&second.secret_hash).await.unwrap(), Some(second.clone()));
    // An update leaves the value alone.
    let mut renamed = second.clone();
    renamed.name = TokenName::new("renamed").unwrap();
    renamed.version = 4;
    stores.tokens.update_logged(&renamed, 3).await.unwrap();
    assert_eq!(stores.tokens.find_by_secret_hash(&second.secret_hash).await.unwrap(), Some(renamed.clone()));
    let missing = rolled(&token(&principal("acme", "ana"), "never stored", at(0)), at(1), None);
    assert!(matches!(stores.tokens.roll(&missing, 1, &event(&missing)).await, Err(UpdateError::NotFound)));
    // Deleted, it is found by no value.
    let kept = rolled(&renamed, at(30), Some(at(1_000)));
    stores.tokens.roll(&kept, 4, &event(&kept)).await.unwrap();
    stores.tokens.delete_logged(&kept.id, None).await.unwrap();
    for hash in [kept.secret_hash, second.secret_hash] {
        assert_eq!(stores.tokens.find_by_secret_hash(&hash).await.unwrap(), None);
    }
}

/// An event by `actor` at `when`, about `token` when given.
fn event_at(actor: &latchkey_domain::Principal, when: i64, action: AuditAction, token: Option<&Token>) -> AuditEvent {
    let mut changes = latchkey_domain::audit::Changes::new();
    changes.insert("name".into(), FieldChange { from: AuditValue::Null, to: AuditValue::Text("ünï 名".into()) });
    changes.insert(
        "grants".into(),
        FieldChange {
            from: AuditValue::List(vec![]),
            to: AuditValue::List(vec![AuditValue::Map(vec![
                ("connection_name".into(), AuditValue::Text("carto_dw".into())),
                ("source".into(), AuditValue::Text("SELECT '\"x\"'".into())),
            ])]),
        },
    );
    changes.insert("max_lifetime_days".into(), FieldChange { from: AuditValue::Int(-1), to: AuditValue::Bool(true) });
    AuditEvent {
        id: AuditEventId::generate(&mut SysRng).unwrap(),
        at: at(when),
        actor: actor.clone(),
        action,
        token: token.map(|t| AuditedToken { id: t.id.clone(), name: t.name.clone(), owner: t.owner.user.clone() }),
        changes,
    }
}

async fn all_events(stores: &Stores, scope: AuditScope, token: Option<TokenId>) -> Vec<AuditEvent> {
    stores.audit.events(scope, token, None, 500).await.unwrap().events
}

pub async fn every_change_is_stored_with_its_event_and_refusals_with_none(stores: &Stores) {
    let ana = principal("acme", "ana");
    let scope = AuditScope::Org(ana.org.clone());
    let first = token(&ana, "first", at(1));
    let created = event_at(&ana, 1, AuditAction::TokenCreated, Some(&first));
    stores.tokens.insert(&first, None, &created).await.unwrap();
    assert_eq!(all_events(stores, scope.clone(), None).await, vec![created.clone()], "kept exactly");

    // Refused changes leave no event.
    let mut clash = token(&ana, "first", at(2));
    let refused = event_at(&ana, 2, AuditAction::TokenCreated, Some(&clash));
    assert!(matches!(stores.tokens.insert(&clash, None, &refused).await, Err(InsertError::NameTaken)));
    clash.name = TokenName::new("second").unwrap();
    assert!(matches!(stores.tokens.insert(&clash, Some(1), &refused).await, Err(InsertError::LimitReached)));
    let mut stale = first.clone();
    stale.version = 9;
    assert!(matches!(stores.tokens.update(&stale, 8, &refused).await, Err(UpdateError::Conflict)));
    assert!(matches!(stores.tokens.roll(&stale, 8, &refused).await, Err(UpdateError::Conflict)));
    assert!(matches!(stores.tokens.delete(&first.id, Some(8), &refused).await, Err(DeleteError::Conflict)));
    assert_eq!(all_events(stores, scope.clone(), None).await, vec![created.clone()], "no event without its change");

    let mut changed = first.clone();
    changed.version = 2;
    let updated = event_at(&ana, 3, AuditAction::TokenUpdated, Some(&changed));
    stores.tokens.update(&changed, 1, &updated).await.unwrap();
    let rolled_token = rolled(&changed, at(4), None);
    let rolled_event = event_at(&ana, 4, AuditAction::TokenRolled, Some(&rolled_token));
    stores.tokens.roll(&rolled_token, 2, &rolled_event).await.unwrap();
    let deleted = event_at(&ana, 5, AuditAction::TokenDeleted, Some(&rolled_token));
    stores.tokens.delete(&first.id, None, &deleted).await.unwrap();
    assert_eq!(all_events(stores, scope, None).await, vec![deleted, rolled_event, updated, created], "newest first");
}

pub async fn the_log_pages_newest_first_within_its_scope(stores: &Stores) {
    let (ana, bob, eve) = (principal("acme", "ana"), principal("acme", "bob"), principal("globex", "ana"));
    let (ana_token, bob_token, eve_token) = (token(&ana, "a", at(0)), token(&bob, "b", at(0)), token(&eve, "e", at(0)));
    org_with_connections(stores, &ana).await;
    org_with_connections(stores, &eve).await;
    let mut written = Vec::new();
    for (i, (actor, token)) in
        [(&ana, Some(&ana_token)), (&bob, Some(&bob_token)), (&eve, Some(&eve_token)), (&ana, None)]
            .into_iter()
            .cycle()
            .take(24)
            .enumerate()
    {
        // Several events share a time: the id breaks the tie.
        let when = i64::try_from(i / 3).unwrap();
        let action = if token.is_some() { AuditAction::TokenUpdated } else { AuditAction::PolicyUpdated };
        let event = event_at(actor, when, action, token);
        // Events are written only with changes; a policy change carries
        // them here, since it needs no token.
        let current = stores.policies.policy(&actor.org).await.unwrap();
        stores.policies.replace_policy(&actor.org, &current, &current, &event).await.unwrap();
        written.push(event);
    }
    let newest_first = |filter: &dyn Fn(&AuditEvent) -> bool| {
        let mut events: Vec<AuditEvent> = written.iter().filter(|e| filter(e)).cloned().collect();
        events.sort_by(|a, b| (b.at, b.id.as_str()).cmp(&(a.at, a.id.as_str())));
        events
    };
    let acme = newest_first(&|e| e.actor.org.as_str() == "acme");
    assert_eq!(acme.len(), 18);
    // A member sees the events about their own tokens, whoever made them.
    let anas = newest_first(&|e| {
        e.actor.org.as_str() == "acme" && e.token.as_ref().is_some_and(|t| t.owner.as_str() == "ana")
    });
    assert_eq!(all_events(stores, AuditScope::Owner(ana.clone()), None).await, anas);
    assert_eq!(all_events(stores, AuditScope::Owner(eve.clone()), None).await.len(), 6, "the same name in another org");
    let about_bob = newest_first(&|e| e.token.as_ref().is_some_and(|t| t.id == bob_token.id));
    assert_eq!(all_events(stores, AuditScope::Org(ana.org.clone()), Some(bob_token.id.clone())).await, about_bob);
    assert!(all_events(stores, AuditScope::Owner(ana.clone()), Some(bob_token.id.clone())).await.is_empty());
    // Pages of 5 cover the org's events once each, in order.
    let mut seen = Vec::new();
    let mut after: Option<AuditCursor> = None;
    loop {
        let page = stores.audit.events(AuditScope::Org(ana.org.clone()), None, after.clone(), 5).await.unwrap();
        assert!(page.events.len() <= 5);
        seen.extend(page.events);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, acme);
}

pub async fn org_policies_are_replaced_only_from_the_version_read(stores: &Stores) {
    let admin = principal("acme", "ana");
    org_with_connections(stores, &admin).await;
    assert_eq!(stores.policies.policy(&admin.org).await.unwrap(), OrgPolicy::default(), "the default allows all");
    let mut apis = ApiSet::empty();
    apis.insert(Api::Maps);
    apis.insert(Api::Lds);
    let strict = OrgPolicy::new(Some(90), true, Some(apis)).unwrap();
    let event = event_at(&admin, 1, AuditAction::PolicyUpdated, None);
    stores.policies.replace_policy(&admin.org, &OrgPolicy::default(), &strict, &event).await.unwrap();
    assert_eq!(stores.policies.policy(&admin.org).await.unwrap(), strict);
    let other = principal("globex", "ana");
    assert_eq!(stores.policies.policy(&other.org).await.unwrap(), OrgPolicy::default(), "per org");
    // A writer that read the old policy loses, and its event is not kept.
    let lost = event_at(&admin, 2, AuditAction::PolicyUpdated, None);
    let loose = OrgPolicy::new(None, false, None).unwrap();
    assert!(matches!(
        stores.policies.replace_policy(&admin.org, &OrgPolicy::default(), &loose, &lost).await,
        Err(PolicyWriteError::Conflict)
    ));
    assert_eq!(stores.policies.policy(&admin.org).await.unwrap(), strict);
    assert_eq!(all_events(stores, AuditScope::Org(admin.org.clone()), None).await, vec![event.clone()]);
    let later = event_at(&admin, 3, AuditAction::PolicyUpdated, None);
    stores.policies.replace_policy(&admin.org, &strict, &loose, &later).await.unwrap();
    assert_eq!(stores.policies.policy(&admin.org).await.unwrap(), OrgPolicy::default());
}

pub async fn admins_reach_every_token_of_their_org_and_no_other(stores: &Stores) {
    let (ana, bob, eve) = (principal("acme", "ana"), principal("acme", "bob"), principal("globex", "eve"));
    let mut acme = Vec::new();
    for i in 0..7 {
        let owner = if i % 2 == 0 { &ana } else { &bob };
        let t = token(owner, &format!("t{i}"), at(i));
        stores.tokens.insert_logged(&t, None).await.unwrap();
        acme.push(t);
    }
    let foreign = token(&eve, "t0", at(3));
    stores.tokens.insert_logged(&foreign, None).await.unwrap();
    acme.reverse();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = stores.tokens.list_org(&ana.org, None, after, 3).await.unwrap();
        seen.extend(page.tokens);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, acme, "every token of the org, newest first, once");
    let bobs: Vec<Token> = acme.iter().filter(|t| t.owner == bob).cloned().collect();
    let page = stores.tokens.list_org(&ana.org, Some(bob.user.clone()), None, 100).await.unwrap();
    assert_eq!(page.tokens, bobs, "one owner's");
    let nobody = latchkey_domain::UserName::new("nobody").unwrap();
    assert!(stores.tokens.list_org(&ana.org, Some(nobody), None, 100).await.unwrap().tokens.is_empty());
    assert_eq!(stores.tokens.get_in_org(&acme[0].id, &ana.org).await.unwrap(), acme[0]);
    assert!(matches!(stores.tokens.get_in_org(&foreign.id, &ana.org).await, Err(GetError::NotFound)), "other org");
    assert!(matches!(stores.tokens.get_in_org(&acme[0].id, &eve.org).await, Err(GetError::NotFound)));
}
