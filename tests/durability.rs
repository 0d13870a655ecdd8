//! Durability under `kill -9`: a stream of creates, updates and deletes
//! against the real binary, killed with SIGKILL at random points. After
//! each restart every write whose answer arrived is there exactly as
//! acknowledged, and nothing half-written exists: each token is one that
//! was acknowledged, or the one write that was in flight, whole.
//!
//! The audit log under the same treatment (SPEC §13): concurrent writers
//! create, update, roll, delete and revoke tokens while the server is
//! killed, and after each restart the log and the tokens agree: no change
//! without its event, no event without its change.
//!
//! `LATCHKEY_DURABILITY_ROUNDS` sets the number of kills per store
//! (default 8; `LATCHKEY_DURABILITY_ROUNDS=100 cargo test -p latchkey
//! --test durability` runs longer).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, TempDir};

fn rounds() -> usize {
    std::env::var("LATCHKEY_DURABILITY_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(8)
}

/// A small deterministic generator, so a failing run can be replayed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the client believes: the last acknowledged state of each token, and
/// the one write whose answer never came.
#[derive(Default)]
struct Model {
    tokens: BTreeMap<String, Value>,
    in_flight: Option<InFlight>,
}

#[derive(Debug)]
enum InFlight {
    Create { name: String },
    Rename { id: String, name: String },
    Delete { id: String },
}

/// The fields that must survive exactly.
fn essence(token: &Value) -> Value {
    json!({
        "id": token["id"], "token": token["token"], "name": token["name"],
        "allowed_apis": token["allowed_apis"], "grants": token["grants"], "referers": token["referers"],
        "expiration_date": token["expiration_date"], "created_at": token["created_at"],
        "updated_at": token["updated_at"],
    })
}

/// Sends writes until the server dies; returns how many were acknowledged.
async fn write_until_killed(server: &Server, key: &str, model: &mut Model, dice: &mut Dice, serial: &mut u64) -> usize {
    let mut acknowledged = 0;
    loop {
        let existing: Vec<String> = model.tokens.keys().cloned().collect();
        let choice = if existing.is_empty() { 0 } else { dice.below(4) };
        *serial += 1;
        let (operation, request) = match choice {
            0 | 1 => {
                let name = format!("token {serial}");
                let body = json!({"name": name, "allowed_apis": ["maps", "sql"],
                    "grants": [{"connection_name": "carto_dw", "source": format!("p.d.t{serial}")},
                               {"connection_name": "carto_dw", "source": format!("SELECT {serial} FROM t")}],
                    "referers": [format!("https://site{serial}.example.com/")]});
                (InFlight::Create { name }, server.request(Method::POST, "/v3/tokens", Some(key)).json(&body))
            }
            2 => {
                let id = existing[dice.below(existing.len() as u64) as usize].clone();
                let name = format!("renamed {serial}");
                let request =
                    server.request(Method::PATCH, &format!("/v3/tokens/{id}"), Some(key)).json(&json!({"name": name}));
                (InFlight::Rename { id, name }, request)
            }
            _ => {
                let id = existing[dice.below(existing.len() as u64) as usize].clone();
                let request = server.request(Method::DELETE, &format!("/v3/tokens/{id}"), Some(key));
                (InFlight::Delete { id }, request)
            }
        };
        model.in_flight = Some(operation);
        let Ok(response) = request.send().await else { return acknowledged };
        let status = response.status();
        let Ok(text) = response.text().await else { return acknowledged };
        match (model.in_flight.take(), status) {
            (Some(InFlight::Create { .. }), StatusCode::CREATED) => {
                let token: Value = serde_json::from_str(&text).unwrap();
                model.tokens.insert(token["id"].as_str().unwrap().to_owned(), token);
            }
            (Some(InFlight::Rename { id, .. }), StatusCode::OK) => {
                model.tokens.insert(id, serde_json::from_str(&text).unwrap());
            }
            (Some(InFlight::Delete { id }), StatusCode::NO_CONTENT) => {
                model.tokens.remove(&id);
            }
            (operation, status) => panic!("{operation:?} answered {status}: {text}"),
        }
        acknowledged += 1;
    }
}

/// Every token the store has, through the API.
async fn all_tokens(server: &Server, key: &str) -> Vec<Value> {
    let mut tokens = Vec::new();
    let mut path = "/v3/tokens?limit=500".to_owned();
    loop {
        let (status, page) = server.call(Method::GET, &path, Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        tokens.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v3/tokens?limit=500&cursor={cursor}"),
            None => return tokens,
        }
    }
}

async fn check(server: &Server, key: &str, model: &mut Model) {
    let found = all_tokens(server, key).await;
    let mut found_by_id: BTreeMap<String, Value> =
        found.into_iter().map(|t| (t["id"].as_str().unwrap().to_owned(), t)).collect();
    let in_flight = model.in_flight.take();
    // Acknowledged tokens: present and exact, unless the write in flight
    // touched them (then either state is fine).
    for (id, expected) in &model.tokens {
        let touched = match &in_flight {
            Some(InFlight::Rename { id: target, .. } | InFlight::Delete { id: target }) => target == id,
            _ => false,
        };
        match found_by_id.remove(id) {
            Some(actual) if essence(&actual) == essence(expected) => {}
            Some(actual) if touched => {
                if let Some(InFlight::Rename { name, .. }) = &in_flight {
                    assert_eq!(actual["name"], json!(name), "a rename applied whole");
                    assert_eq!(actual["grants"], expected["grants"]);
                } else {
                    panic!("{id} changed by an unacknowledged delete: {actual}");
                }
            }
            Some(actual) => panic!("token {id} is not as acknowledged:\n{actual}\nexpected\n{expected}"),
            None if touched && matches!(in_flight, Some(InFlight::Delete { .. })) => {}
            None => panic!("an acknowledged token is missing: {expected}"),
        }
    }
    // Anything else can only be the create in flight, whole.
    let extra: Vec<Value> = found_by_id.into_values().collect();
    assert!(extra.len() <= 1, "tokens nobody acknowledged: {extra:?}");
    if let Some(token) = extra.into_iter().next() {
        let Some(InFlight::Create { name }) = &in_flight else { panic!("an unexplained token: {token}") };
        assert_eq!(token["name"], json!(name));
        assert_eq!(token["grants"].as_array().unwrap().len(), 2, "written whole: {token}");
        assert_eq!(token["referers"].as_array().unwrap().len(), 1);
        model.tokens.insert(token["id"].as_str().unwrap().to_owned(), token);
    }
    // Reconcile the model with what the store holds now.
    let now: BTreeMap<String, Value> =
        all_tokens(server, key).await.into_iter().map(|t| (t["id"].as_str().unwrap().to_owned(), t)).collect();
    model.tokens = now;
    // Every token still opens and authorizes.
    for token in model.tokens.values() {
        let allowed = server
            .authorize(json!({"token": token["token"], "api": "maps", "connection_name": "carto_dw",
                "source_type": "table", "source": token["grants"][0]["source"],
                "referer": token["referers"][0]}))
            .await;
        assert_eq!(allowed, (true, None), "{token}");
    }
}

async fn kill_loop(database: &str, dir: &TempDir, seed: u64) {
    let mut dice = Dice(seed);
    let mut model = Model::default();
    let mut serial = 0;
    let mut key = None;
    let mut total = 0;
    for round in 0..rounds() {
        let server = Server::start(database, &[], &[], &dir.path().join(format!("round-{round}.log")));
        let admin = key.get_or_insert_with(|| server.admin_key.clone().expect("bootstrap")).clone();
        check(&server, &admin, &mut model).await;
        // Kill at a random moment 20 to 400 ms into a stream of writes.
        let delay = Duration::from_millis(20 + dice.below(380));
        let pid = server.pid();
        let killer = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tokio::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().await;
        });
        let started = Instant::now();
        total += write_until_killed(&server, &admin, &mut model, &mut dice, &mut serial).await;
        killer.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        drop(server);
    }
    let server = Server::start(database, &[], &[], &dir.path().join("final.log"));
    check(&server, key.as_deref().unwrap(), &mut model).await;
    assert!(total > rounds(), "writes were acknowledged between kills ({total})");
    println!("{total} acknowledged writes over {} kills, all durable", rounds());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_write_across_kill_9() {
    let dir = TempDir::new("durability-sqlite");
    kill_loop(&dir.sqlite_url(), &dir, 0x5eed_1234).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keeps_every_acknowledged_write_across_kill_9() {
    let database = latchkey_test_postgres::TestDatabase::create().await;
    let dir = TempDir::new("durability-postgres");
    kill_loop(database.url(), &dir, 0x5eed_9876).await;
    database.drop_database().await;
}

// The audit log across `kill -9`.
//
// Several writers change tokens at once while the server is killed; after
// the restart every token is held to its events: one `token.created`, as
// many `token.updated` and `token.rolled` as its version has counted since
// 1, and a `token.deleted` or `token.revoked` exactly when it is gone. The
// writers keep the store busy, so a kill usually lands inside a write.
// Were a change and its event committed separately, a kill between the two
// commits would leave a token without its `token.created`, a version that
// counts a change with no event, a token that is gone without its removal
// event, or (event first) an event whose change never happened: each
// breaks one of these equalities. (Committing the SQLite adapter's change
// before its event, or its event before its change, made the SQLite test
// fail within a round or two in every run tried.) The log is also held to
// what the writers were told: an acknowledged change has its event, and
// an unanswered one has its event exactly when its change is there.

/// How many writers run at once.
const WRITERS: usize = 4;

/// What the writers of one round share.
struct Shared {
    /// Every writer's tokens: what a revocation picks from.
    live: Mutex<Vec<String>>,
    /// Numbers the names given, over every round.
    serial: AtomicU64,
    /// The answers so far this round: what the kill waits for.
    answered: AtomicUsize,
}

/// What a writer asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Create,
    Update,
    Roll,
    Delete,
    Revoke,
}

impl Change {
    /// The action of the event it writes.
    fn action(self) -> &'static str {
        match self {
            Change::Create => "token.created",
            Change::Update => "token.updated",
            Change::Roll => "token.rolled",
            Change::Delete => "token.deleted",
            Change::Revoke => "token.revoked",
        }
    }

    /// The status of its success.
    fn success(self) -> StatusCode {
        match self {
            Change::Create => StatusCode::CREATED,
            Change::Update | Change::Roll => StatusCode::OK,
            Change::Delete | Change::Revoke => StatusCode::NO_CONTENT,
        }
    }
}

/// What came back.
#[derive(Debug)]
enum Answer {
    /// Success: the body (null when empty) and the version of the `ETag`.
    Done { body: Value, version: Option<u64> },
    /// 404, or 503 because other writers kept winning: nothing changed.
    Refused(StatusCode),
    /// The server died first: the change may or may not have been made.
    Lost,
}

/// One request of one writer.
#[derive(Debug)]
struct Sent {
    change: Change,
    /// The token changed; `None` for a create.
    id: Option<String>,
    /// The name a create or a rename gives.
    name: Option<String>,
    answer: Answer,
}

/// Sends changes until the server dies: creates, and updates, rolls and
/// deletes of the writer's own tokens (`own`, id to name), and revocations
/// of any writer's, without waiting for the other writers. Returns
/// every request with its answer; the last one is lost.
async fn audited_writer(
    server: Arc<Server>,
    key: String,
    mut own: BTreeMap<String, String>,
    shared: Arc<Shared>,
    mut dice: Dice,
) -> Vec<Sent> {
    let mut sent = Vec::new();
    loop {
        let n = shared.serial.fetch_add(1, Ordering::Relaxed);
        let change = if own.is_empty() {
            Change::Create
        } else {
            match dice.below(10) {
                0..=2 => Change::Create,
                3..=5 => Change::Update,
                6 | 7 => Change::Roll,
                8 => Change::Delete,
                _ => Change::Revoke,
            }
        };
        let mine: Vec<&String> = own.keys().collect();
        let id = match change {
            Change::Create => None,
            Change::Revoke => {
                let live = shared.live.lock().unwrap();
                Some(if live.is_empty() {
                    mine[dice.below(mine.len() as u64) as usize].clone()
                } else {
                    live[dice.below(live.len() as u64) as usize].clone()
                })
            }
            _ => Some(mine[dice.below(mine.len() as u64) as usize].clone()),
        };
        let target = id.as_deref().unwrap_or_default();
        let mut name = None;
        let request = match change {
            Change::Create => {
                name = Some(format!("audited {n}"));
                let body = json!({"name": name, "allowed_apis": ["maps"],
                    "grants": [{"connection_name": "carto_dw", "source": format!("p.d.t{n}")}],
                    "referers": [format!("https://site{n}.example.com/")]});
                server.request(Method::POST, "/v3/tokens", Some(&key)).json(&body)
            }
            Change::Update => {
                let referers = json!([format!("https://moved{n}.example.com/")]);
                let body = match dice.below(3) {
                    0 => json!({"referers": referers}),
                    rename => {
                        name = Some(format!("renamed {n}"));
                        if rename == 1 { json!({"name": name}) } else { json!({"name": name, "referers": referers}) }
                    }
                };
                server.request(Method::PATCH, &format!("/v3/tokens/{target}"), Some(&key)).json(&body)
            }
            Change::Roll => server
                .request(Method::POST, &format!("/v3/tokens/{target}/roll"), Some(&key))
                .json(&json!({"grace_seconds": 5 * dice.below(2)})),
            Change::Delete => server.request(Method::DELETE, &format!("/v3/tokens/{target}"), Some(&key)),
            Change::Revoke => server.request(Method::DELETE, &format!("/v3/org/tokens/{target}"), Some(&key)),
        };
        let answer = match request.send().await {
            Err(_) => Answer::Lost,
            Ok(response) => {
                let status = response.status();
                let version = response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|etag| etag.to_str().ok())
                    .and_then(|etag| etag.trim_matches('"').parse().ok());
                match response.text().await {
                    Err(_) => Answer::Lost,
                    Ok(text) if status == change.success() => {
                        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
                        Answer::Done { body, version }
                    }
                    // A storage failure is a 503 too, but one whose write may
                    // have been made; the store does not fail here.
                    Ok(text)
                        if change != Change::Create
                            && (status == StatusCode::NOT_FOUND
                                || status == StatusCode::SERVICE_UNAVAILABLE && !text.contains("storage")) =>
                    {
                        Answer::Refused(status)
                    }
                    Ok(text) => panic!("{change:?} {id:?} answered {status}: {text}"),
                }
            }
        };
        // Keep the writer's tokens, and everybody's, in step with the answer.
        match (&answer, change) {
            (Answer::Done { body, .. }, Change::Create) => {
                let id = body["id"].as_str().unwrap().to_owned();
                own.insert(id.clone(), name.clone().unwrap());
                shared.live.lock().unwrap().push(id);
            }
            (Answer::Done { body, .. }, Change::Update) => {
                let expected = name.clone().unwrap_or_else(|| own[target].clone());
                assert_eq!(body["name"], json!(expected), "an update keeps the name it does not change: {body}");
                own.insert(target.to_owned(), expected);
            }
            (Answer::Done { .. }, Change::Delete | Change::Revoke) | (Answer::Refused(StatusCode::NOT_FOUND), _) => {
                own.remove(target);
                shared.live.lock().unwrap().retain(|other| other != target);
            }
            _ => {}
        }
        let lost = matches!(answer, Answer::Lost);
        if !lost {
            shared.answered.fetch_add(1, Ordering::Relaxed);
        }
        sent.push(Sent { change, id, name, answer });
        if lost {
            return sent;
        }
    }
}

/// What the writers know of one token, over every round.
#[derive(Debug, Default)]
struct Known {
    /// The highest version an answer showed, then the stored one.
    version: u64,
    /// Updates answered, and sent (answered or lost).
    updates: (usize, usize),
    /// Rolls answered, and sent.
    rolls: (usize, usize),
    /// The names acknowledged renames gave.
    renamed_to: Vec<String>,
    /// The `updated_at` of acknowledged updates and rolls: their events' `at`.
    updated_at: Vec<String>,
    rolled_at: Vec<String>,
    /// Deletes and revocations answered or lost.
    removals_sent: usize,
    /// The action of the one that was answered.
    removed: Option<&'static str>,
    /// Answers 404 or 503 to changes of this token.
    refused: usize,
}

/// What the writers were told, over every round.
#[derive(Default)]
struct Ledger {
    tokens: BTreeMap<String, Known>,
    /// Every token value an answer or a listing showed.
    values: BTreeSet<String>,
    /// The names of this round's creates whose answers were lost.
    lost_creates: Vec<String>,
    /// Acknowledged changes by kind, and unanswered changes that turned out
    /// to have been made, for the summary.
    acknowledged: BTreeMap<&'static str, usize>,
    landed_unanswered: usize,
}

impl Ledger {
    fn note(&mut self, sent: Sent) {
        if let Answer::Done { .. } = sent.answer {
            *self.acknowledged.entry(sent.change.action()).or_default() += 1;
        }
        let id = match (&sent.change, &sent.answer, &sent.id) {
            (Change::Create, Answer::Done { body, .. }, _) => body["id"].as_str().unwrap().to_owned(),
            (Change::Create, _, _) => {
                self.lost_creates.push(sent.name.unwrap());
                return;
            }
            (_, _, id) => id.clone().unwrap(),
        };
        let known = self.tokens.entry(id).or_default();
        match (sent.change, sent.answer) {
            (Change::Create, Answer::Done { body, version }) => {
                assert_eq!(version, Some(1), "a new token is at version 1: {body}");
                known.version = 1;
                self.values.insert(body["token"].as_str().unwrap().to_owned());
            }
            (Change::Update, Answer::Done { body, version }) => {
                known.updates.0 += 1;
                known.updates.1 += 1;
                known.renamed_to.extend(sent.name);
                known.updated_at.push(body["updated_at"].as_str().unwrap().to_owned());
                known.version = known.version.max(version.unwrap());
            }
            (Change::Roll, Answer::Done { body, version }) => {
                known.rolls.0 += 1;
                known.rolls.1 += 1;
                known.rolled_at.push(body["updated_at"].as_str().unwrap().to_owned());
                known.version = known.version.max(version.unwrap());
                self.values.insert(body["token"].as_str().unwrap().to_owned());
            }
            (change @ (Change::Delete | Change::Revoke), Answer::Done { .. }) => {
                assert_eq!(known.removed, None, "removed twice: {known:?}");
                known.removed = Some(change.action());
                known.removals_sent += 1;
            }
            (Change::Update, Answer::Lost) => known.updates.1 += 1,
            (Change::Roll, Answer::Lost) => known.rolls.1 += 1,
            (Change::Delete | Change::Revoke, Answer::Lost) => known.removals_sent += 1,
            (_, Answer::Refused(_)) => known.refused += 1,
            (Change::Create, _) => unreachable!("handled above"),
        }
    }
}

/// Every event of the org, newest first, through the API.
async fn all_events(server: &Server, key: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = "/v3/audit?limit=500".to_owned();
    loop {
        let (status, page) = server.call(Method::GET, &path, Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        events.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v3/audit?limit=500&cursor={cursor}"),
            None => return events,
        }
    }
}

/// One token's events.
#[derive(Debug, Default)]
struct Logged {
    created: usize,
    updated: usize,
    rolled: usize,
    removed: Vec<String>,
    renamed_to: BTreeSet<String>,
    updated_at: BTreeSet<String>,
    rolled_at: BTreeSet<String>,
}

/// Reads every token and every event after a restart and holds them to each
/// other and to the ledger; returns the tokens (id to name), split among
/// the writers of the next round.
async fn check_audit(server: &Server, key: &str, ledger: &mut Ledger) -> Vec<BTreeMap<String, String>> {
    // Each stored token with its version, which only its ETag shows.
    let mut stored: BTreeMap<String, (String, u64)> = BTreeMap::new();
    for token in all_tokens(server, key).await {
        let id = token["id"].as_str().unwrap().to_owned();
        let response = server.request(Method::GET, &format!("/v3/tokens/{id}"), Some(key)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let etag = response.headers()[reqwest::header::ETAG].to_str().unwrap().to_owned();
        let version: u64 = etag.trim_matches('"').parse().unwrap();
        if let Some(value) = token["token"].as_str() {
            ledger.values.insert(value.to_owned());
        }
        stored.insert(id, (token["name"].as_str().unwrap().to_owned(), version));
    }
    let events = all_events(server, key).await;
    let mut logged: BTreeMap<String, Logged> = BTreeMap::new();
    let mut event_ids = BTreeSet::new();
    for event in &events {
        assert!(event_ids.insert(event["id"].as_str().unwrap().to_owned()), "an event listed twice: {event}");
        let id = event["token_id"].as_str().unwrap_or_else(|| panic!("an event about no token: {event}"));
        let log = logged.entry(id.to_owned()).or_default();
        match event["action"].as_str().unwrap() {
            "token.created" => log.created += 1,
            "token.updated" => {
                log.updated += 1;
                log.updated_at.insert(event["at"].as_str().unwrap().to_owned());
                if let Some(name) = event["changes"]["name"]["to"].as_str() {
                    log.renamed_to.insert(name.to_owned());
                }
            }
            "token.rolled" => {
                log.rolled += 1;
                log.rolled_at.insert(event["at"].as_str().unwrap().to_owned());
            }
            action @ ("token.deleted" | "token.revoked") => log.removed.push(action.to_owned()),
            _ => panic!("an event no writer caused: {event}"),
        }
    }

    // No value and no key in any event. Every value has the prefix, so the
    // first search covers them all; the second would find a value's body
    // stored without it.
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains("latchkey_tk_") && !text.contains("latchkey_uk_"), "a secret in the audit log");
    let words: BTreeSet<&str> = text.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    for value in &ledger.values {
        let body = value.strip_prefix("latchkey_tk_").unwrap_or_else(|| panic!("not a token value: {value}"));
        assert!(!words.contains(body), "a token value in the audit log");
    }

    // A token nobody was told about is a create whose answer was lost,
    // whole and untouched (nobody knew its id).
    for (id, (name, version)) in &stored {
        if !ledger.tokens.contains_key(id) {
            let lost = ledger.lost_creates.iter().position(|lost| lost == name);
            assert!(lost.is_some(), "a token nobody created: {id} {name:?}");
            ledger.lost_creates.swap_remove(lost.unwrap());
            assert_eq!(*version, 1, "{id} changed by nobody");
            ledger.tokens.insert(id.clone(), Known { version: 1, ..Known::default() });
            ledger.landed_unanswered += 1;
        }
    }
    // The other lost creates never happened, and so may have no event: an
    // event about an id nobody knows is one without its change.
    ledger.lost_creates.clear();
    for (id, log) in &logged {
        assert!(ledger.tokens.contains_key(id), "events about a token that was never stored: {id} {log:?}");
    }

    let nothing = Logged::default();
    for (id, known) in &mut ledger.tokens {
        let log = logged.get(id).unwrap_or(&nothing);
        let context = format!("token {id}: stored {:?}, logged {log:?}, known {known:?}", stored.get(id));
        assert_eq!(log.created, 1, "exactly one token.created; {context}");
        assert!(log.removed.len() <= 1, "removed once at most; {context}");
        // Acknowledged changes are logged; unanswered ones may be.
        assert!(known.updates.0 <= log.updated && log.updated <= known.updates.1, "updates; {context}");
        assert!(known.rolls.0 <= log.rolled && log.rolled <= known.rolls.1, "rolls; {context}");
        for name in &known.renamed_to {
            assert!(log.renamed_to.contains(name), "the event of the rename to {name:?}; {context}");
        }
        for at in &known.updated_at {
            assert!(log.updated_at.contains(at), "the event of the update at {at}; {context}");
        }
        for at in &known.rolled_at {
            assert!(log.rolled_at.contains(at), "the event of the roll at {at}; {context}");
        }
        if known.refused > 0 {
            assert!(known.removals_sent > 0, "a change refused although nobody removed the token; {context}");
        }
        ledger.landed_unanswered += log.updated - known.updates.0 + log.rolled - known.rolls.0;
        known.updates.0 = log.updated;
        known.rolls.0 = log.rolled;
        match stored.get(id) {
            Some((_, version)) => {
                assert!(log.removed.is_empty(), "a token that exists has no removal event; {context}");
                assert_eq!(known.removed, None, "an acknowledged removal undone; {context}");
                assert_eq!(
                    (log.updated + log.rolled) as u64,
                    version - 1,
                    "one token.updated or token.rolled per version; {context}"
                );
                assert!(*version >= known.version, "an acknowledged version lost; {context}");
                known.version = *version;
            }
            None => {
                assert_eq!(log.removed.len(), 1, "a token that is gone has its removal event; {context}");
                match known.removed {
                    Some(action) => assert_eq!(log.removed[0], action, "{context}"),
                    None => {
                        assert!(known.removals_sent > 0, "removed by nobody; {context}");
                        ledger.landed_unanswered += 1;
                        known.removed =
                            Some(if log.removed[0] == "token.deleted" { "token.deleted" } else { "token.revoked" });
                    }
                }
                assert!((log.updated + log.rolled + 1) as u64 >= known.version, "{context}");
            }
        }
    }

    let mut owned = vec![BTreeMap::new(); WRITERS];
    for (n, (id, (name, _))) in stored.into_iter().enumerate() {
        owned[n % WRITERS].insert(id, name);
    }
    owned
}

async fn audited_kill_loop(database: &str, dir: &TempDir, seed: u64) {
    let mut dice = Dice(seed);
    let mut ledger = Ledger::default();
    let mut serial = 0;
    let mut key = None;
    for round in 0..rounds() {
        let log = dir.path().join(format!("audited-{round}.log"));
        let server = Arc::new(Server::start(database, &[], &[], &log));
        let admin = key.get_or_insert_with(|| server.admin_key.clone().expect("bootstrap")).clone();
        let owned = check_audit(&server, &admin, &mut ledger).await;
        let shared = Arc::new(Shared {
            live: Mutex::new(owned.iter().flat_map(|own| own.keys().cloned()).collect()),
            serial: AtomicU64::new(serial),
            answered: AtomicUsize::new(0),
        });
        // Kill a few milliseconds after a random number of answers (5 to
        // 60), rather than after a random time, so that every round has
        // writes to check however fast the machine is; after 5 s at most.
        let answers = 5 + dice.below(56) as usize;
        let jitter = Duration::from_millis(dice.below(20));
        let pid = server.pid();
        let watched = shared.clone();
        let killer = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while watched.answered.load(Ordering::Relaxed) < answers && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(jitter).await;
            let _ = tokio::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().await;
        });
        let started = Instant::now();
        let writers: Vec<_> = owned
            .into_iter()
            .map(|own| {
                let writer_dice = Dice(dice.next() | 1);
                tokio::spawn(audited_writer(server.clone(), admin.clone(), own, shared.clone(), writer_dice))
            })
            .collect();
        let mut sent = Vec::new();
        for writer in writers {
            sent.extend(writer.await.unwrap());
        }
        killer.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        serial = shared.serial.load(Ordering::Relaxed);
        // Creates first: a writer may revoke a token another made this round.
        sent.sort_by_key(|sent| sent.change != Change::Create);
        for sent in sent {
            ledger.note(sent);
        }
        drop(server);
    }
    let server = Server::start(database, &[], &[], &dir.path().join("audited-final.log"));
    check_audit(&server, key.as_deref().unwrap(), &mut ledger).await;
    for change in [Change::Create, Change::Update, Change::Roll, Change::Delete, Change::Revoke] {
        assert!(ledger.acknowledged.get(change.action()) > Some(&0), "no {change:?} was acknowledged");
    }
    println!(
        "acknowledged {:?}, {} unanswered changes made, over {} kills: every change with its event",
        ledger.acknowledged,
        ledger.landed_unanswered,
        rounds()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_writes_every_change_with_its_event_across_kill_9() {
    let dir = TempDir::new("audit-durability-sqlite");
    audited_kill_loop(&dir.sqlite_url(), &dir, 0xa0d1_7001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writes_every_change_with_its_event_across_kill_9() {
    let database = latchkey_test_postgres::TestDatabase::create().await;
    let dir = TempDir::new("audit-durability-postgres");
    audited_kill_loop(database.url(), &dir, 0xa0d1_7002).await;
    database.drop_database().await;
}
