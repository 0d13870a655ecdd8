//! The cases of the suite. Each takes a fresh, empty store and panics when
//! the adapter breaks the contract of the port traits.

use std::collections::HashSet;

use latchkey_domain::{
    Connection, ConnectionName, Provider, SealedSecret, Token, TokenId, TokenName, TokenValue, UserKey,
};
use latchkey_ports::{CreateConnectionError, CreateUserError, Cursor, DeleteError, GetError, InsertError, UpdateError};
use rand::rngs::SysRng;

use crate::Stores;
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
    base.updated_at = at(1);
    base
}

pub async fn round_trip_preserves_every_field(stores: &Stores) {
    let token = full_token();
    stores.tokens.insert(&token, None).await.unwrap();
    assert_eq!(stores.tokens.get(&token.id, &token.owner).await.unwrap(), token, "get");
    assert_eq!(stores.tokens.find_by_secret_hash(&token.secret_hash).await.unwrap(), Some(token.clone()), "by hash");
    let page = stores.tokens.list(&token.owner, None, 10).await.unwrap();
    assert_eq!(page.tokens, vec![token.clone()], "list");
    assert_eq!(page.next, None);
}

pub async fn update_replaces_what_it_may_and_keeps_the_rest(stores: &Stores) {
    let original = full_token();
    stores.tokens.insert(&original, None).await.unwrap();
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
    stores.tokens.update(&changed, 1).await.unwrap();

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

    assert!(matches!(stores.tokens.update(&changed, 1).await, Err(UpdateError::Conflict)), "stale version");
    let mut missing = token(&original.owner, "ghost", at(0));
    missing.version = 2;
    assert!(matches!(stores.tokens.update(&missing, 1).await, Err(UpdateError::NotFound)));
}

pub async fn names_are_unique_per_owner(stores: &Stores) {
    let ana = principal("acme", "ana");
    let bob = principal("acme", "bob");
    let first = token(&ana, "prod", at(0));
    stores.tokens.insert(&first, None).await.unwrap();
    let again = token(&ana, "prod", at(1));
    assert!(matches!(stores.tokens.insert(&again, None).await, Err(InsertError::NameTaken)));
    stores.tokens.insert(&token(&bob, "prod", at(1)), None).await.unwrap();

    let second = token(&ana, "staging", at(2));
    stores.tokens.insert(&second, None).await.unwrap();
    let renamed = Token { name: TokenName::new("prod").unwrap(), version: 2, ..second.clone() };
    assert!(matches!(stores.tokens.update(&renamed, 1).await, Err(UpdateError::NameTaken)));
    assert_eq!(stores.tokens.get(&second.id, &second.owner).await.unwrap(), second, "a refused update changes nothing");

    // Keeping one's own name is not taking it.
    let same_name = Token { updated_at: at(3), version: 2, ..second.clone() };
    stores.tokens.update(&same_name, 1).await.unwrap();

    // A deleted token's name is free again, and names are exact: case and
    // accents make other names.
    stores.tokens.delete(&first.id, None).await.unwrap();
    stores.tokens.insert(&token(&ana, "prod", at(4)), None).await.unwrap();
    stores.tokens.insert(&token(&ana, "Prod", at(5)), None).await.unwrap();
    stores.tokens.insert(&token(&ana, "pród", at(6)), None).await.unwrap();
}

pub async fn concurrent_inserts_of_one_name_let_exactly_one_win(stores: &Stores) {
    let owner = principal("acme", "ana");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let tokens = stores.tokens.clone();
        let candidate = token(&owner, "contested", at(i));
        tasks.push(tokio::spawn(async move { tokens.insert(&candidate, None).await }));
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
    stores.tokens.insert(&token(&ana, "old", at(0)), None).await.unwrap();
    // Twenty creates race for the four places left under a limit of five.
    let mut tasks = Vec::new();
    for i in 1..=20 {
        let tokens = stores.tokens.clone();
        let candidate = token(&ana, &format!("racer {i}"), at(i));
        tasks.push(tokio::spawn(async move { tokens.insert(&candidate, Some(5)).await }));
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
    stores.tokens.insert(&token(&bob, "mine", at(30)), Some(5)).await.unwrap();
    let page = stores.tokens.list(&ana, None, 10).await.unwrap();
    stores.tokens.delete(&page.tokens[0].id, None).await.unwrap();
    stores.tokens.insert(&token(&ana, "after a delete", at(31)), Some(5)).await.unwrap();
    assert!(matches!(
        stores.tokens.insert(&token(&ana, "one too many", at(32)), Some(5)).await,
        Err(InsertError::LimitReached)
    ));
    // A capped insert still refuses a taken name below the limit.
    assert!(matches!(stores.tokens.insert(&token(&bob, "mine", at(33)), Some(5)).await, Err(InsertError::NameTaken)));
}

pub async fn concurrent_updates_of_one_version_let_exactly_one_win(stores: &Stores) {
    let owner = principal("acme", "ana");
    let original = token(&owner, "shared", at(0));
    stores.tokens.insert(&original, None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let tokens = stores.tokens.clone();
        let update = Token { name: TokenName::new(&format!("writer {i}")).unwrap(), version: 2, ..original.clone() };
        tasks.push(tokio::spawn(async move { tokens.update(&update, 1).await.map(|()| i) }));
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
    stores.tokens.insert(&original, None).await.unwrap();
    let same_id = Token { name: TokenName::new("two").unwrap(), ..token(&owner, "two", at(1)) };
    let same_id = Token { id: original.id.clone(), ..same_id };
    assert!(matches!(stores.tokens.insert(&same_id, None).await, Err(InsertError::Duplicate)));
    let same_hash = Token { secret_hash: original.secret_hash, ..token(&owner, "three", at(1)) };
    assert!(matches!(stores.tokens.insert(&same_hash, None).await, Err(InsertError::Duplicate)));
    assert_eq!(page_through(stores, &owner, 100).await.len(), 1);
}

pub async fn lookup_by_secret_hash(stores: &Stores) {
    let owner = principal("acme", "ana");
    let tokens: Vec<Token> = (0..5).map(|i| token(&owner, &format!("t{i}"), at(i))).collect();
    for t in &tokens {
        stores.tokens.insert(t, None).await.unwrap();
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
        stores.tokens.insert(&t, None).await.unwrap();
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
        stores.tokens.insert(&t, None).await.unwrap();
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
            tokens.insert(&token(&writer_owner, &format!("new {i}"), at(1_000 + i)), None).await.unwrap();
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
        stores.tokens.insert(&token(&ana, &format!("a{i}"), at(i)), None).await.unwrap();
    }
    for i in 0..2 {
        stores.tokens.insert(&token(&bob, &format!("b{i}"), at(i)), None).await.unwrap();
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
    stores.tokens.insert(&kept, None).await.unwrap();
    stores.tokens.insert(&doomed, None).await.unwrap();

    assert!(matches!(stores.tokens.delete(&doomed.id, Some(7)).await, Err(DeleteError::Conflict)));
    assert_eq!(stores.tokens.get(&doomed.id, &doomed.owner).await.unwrap(), doomed, "a refused delete changes nothing");

    stores.tokens.delete(&doomed.id, Some(1)).await.unwrap();
    assert!(matches!(stores.tokens.get(&doomed.id, &doomed.owner).await, Err(GetError::NotFound)));
    assert_eq!(stores.tokens.find_by_secret_hash(&doomed.secret_hash).await.unwrap(), None);
    assert_eq!(stores.tokens.list(&owner, None, 10).await.unwrap().tokens, vec![kept.clone()]);
    assert!(matches!(stores.tokens.delete(&doomed.id, None).await, Err(DeleteError::NotFound)));
    let resurrect = Token { version: 2, ..doomed.clone() };
    assert!(matches!(stores.tokens.update(&resurrect, 1).await, Err(UpdateError::NotFound)));
    assert_eq!(page_through(stores, &owner, 100).await.len(), 1);
}

pub async fn last_use_only_moves_forward_and_is_not_a_change(stores: &Stores) {
    let owner = principal("acme", "ana");
    let used = token(&owner, "used", at(0));
    let idle = token(&owner, "idle", at(0));
    stores.tokens.insert(&used, None).await.unwrap();
    stores.tokens.insert(&idle, None).await.unwrap();
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
    stores.tokens.update(&renamed, 1).await.unwrap();
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
        stores.tokens.insert(&token, None).await.unwrap();
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
        stores.tokens.insert(t, None).await.unwrap();
    }
    stores.tokens.delete(&gone.id, None).await.unwrap();
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
    stores.users.create_user(&ana, &key.hash()).await.unwrap();
    assert!(stores.users.has_users().await.unwrap());
    stores.catalog.create_connection(&ana.org, &dw).await.unwrap();
    assert_eq!(stores.users.find_by_key_hash(&key.hash()).await.unwrap(), Some(ana.clone()));
    let other = UserKey::generate(&mut SysRng).unwrap();
    assert_eq!(stores.users.find_by_key_hash(&other.hash()).await.unwrap(), None);
    assert!(matches!(stores.users.create_user(&ana, &other.hash()).await, Err(CreateUserError::UserExists)));
    assert_eq!(stores.users.find_by_key_hash(&other.hash()).await.unwrap(), None, "the refused key is not stored");
    let bob = principal("acme", "bob");
    stores.users.create_user(&bob, &other.hash()).await.unwrap();
    assert_eq!(stores.users.find_by_key_hash(&other.hash()).await.unwrap(), Some(bob));
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
    stores.tokens.insert(&at_acme, None).await.unwrap();
    stores.tokens.insert(&at_globex, None).await.unwrap();
    assert_eq!(stores.tokens.list(&acme_ana, None, 10).await.unwrap().tokens, vec![at_acme]);
    assert_eq!(stores.tokens.list(&globex_ana, None, 10).await.unwrap().tokens, vec![at_globex]);
}
