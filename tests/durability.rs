//! Durability under `kill -9`: a stream of creates, updates and deletes
//! against the real binary, killed with SIGKILL at random points. After
//! each restart every write whose answer arrived is there exactly as
//! acknowledged, and nothing half-written exists: each token is one that
//! was acknowledged, or the one write that was in flight, whole.
//!
//! `LATCHKEY_DURABILITY_ROUNDS` sets the number of kills per store
//! (default 8; `LATCHKEY_DURABILITY_ROUNDS=100 cargo test -p latchkey
//! --test durability` runs longer).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod support;

use std::collections::BTreeMap;
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
