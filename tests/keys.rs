//! `latchkey keys rotate`: every stored value re-sealed under a new key,
//! resumable after `kill -9` midway, with key files (SQLite) and with the
//! key variables (any store).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{SECRET_KEY, Server, TempDir, binary};

/// Creates `count` tokens, `parallel` at a time; answers id → value.
async fn create_tokens(server: &Arc<Server>, key: &str, count: usize) -> HashMap<String, String> {
    let mut created = HashMap::new();
    for batch in (0..count).collect::<Vec<_>>().chunks(16) {
        let calls = batch.iter().map(|n| {
            let server = server.clone();
            let key = key.to_owned();
            let body = json!({"name": format!("t{n}"), "allowed_apis": ["lds"], "grants": []});
            tokio::spawn(async move { server.call(Method::POST, "/v3/tokens", Some(&key), Some(body)).await })
        });
        for call in calls.collect::<Vec<_>>() {
            let (status, token) = call.await.unwrap();
            assert_eq!(status, StatusCode::CREATED, "{token}");
            created.insert(token["id"].as_str().unwrap().to_owned(), token["token"].as_str().unwrap().to_owned());
        }
    }
    created
}

/// Every token the server lists, id → value (`None` for a value it cannot
/// open).
async fn listed(server: &Server, key: &str) -> HashMap<String, Option<String>> {
    let mut all = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v3/tokens?limit=500&cursor={cursor}"),
            None => "/v3/tokens?limit=500".to_owned(),
        };
        let (status, page) = server.call(Method::GET, &path, Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for token in page["data"].as_array().unwrap() {
            all.insert(token["id"].as_str().unwrap().to_owned(), token["token"].as_str().map(str::to_owned));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
}

fn rotate(database: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(binary());
    command.args(["keys", "rotate", "--database", database]).env_remove("LATCHKEY_SECRET_KEY");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (output.status.success(), String::from_utf8(output.stdout).unwrap(), String::from_utf8(output.stderr).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_midway_resumes_and_no_value_is_lost() {
    let dir = TempDir::new("rotate-files");
    let path = dir.path().join("latchkey.db");
    let database = format!("sqlite://{}", path.display());
    let key_file = dir.path().join("latchkey.db.key");
    let (next_file, previous_file) =
        (dir.path().join("latchkey.db.key.next"), dir.path().join("latchkey.db.key.previous"));

    // A server on the generated key file (no LATCHKEY_SECRET_KEY).
    let start =
        |log: &str| Arc::new(Server::start(&database, &[], &[("LATCHKEY_SECRET_KEY", "")], &dir.path().join(log)));
    let server = start("first.log");
    let admin = server.admin_key.clone().unwrap();
    let created = create_tokens(&server, &admin, 4000).await;
    drop(server);
    let old_key = std::fs::read_to_string(&key_file).unwrap();

    // Rotate, and kill it with SIGKILL once the first page is re-sealed.
    let mut child = Command::new(binary())
        .args(["keys", "rotate", "--database", &database])
        .env_remove("LATCHKEY_SECRET_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = progress.next().unwrap().unwrap();
    assert!(first.starts_with("pass 1: 500 re-sealed"), "{first}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(next_file.exists(), "the new key waits in .key.next");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), old_key, "the old key is still the key in use");

    // Meanwhile the server starts on the old key and shows values sealed
    // under it; the ones already re-sealed show as null until the end.
    let server = start("between.log");
    let between = listed(&server, &admin).await;
    let unopened = between.values().filter(|value| value.is_none()).count();
    assert!((500..4000).contains(&unopened), "{unopened} values under the new key so far");
    drop(server);

    let (ok, stdout, stderr) = rotate(&database, &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("resuming the rotation"), "{stderr}");
    assert!(stdout.contains("re-sealed"), "{stdout}");
    assert!(!next_file.exists());
    assert_eq!(std::fs::read_to_string(&previous_file).unwrap(), old_key, "the old key is kept as .key.previous");
    assert_ne!(std::fs::read_to_string(&key_file).unwrap(), old_key);

    // Without the old key at all, every value opens, and is the one made.
    std::fs::remove_file(&previous_file).unwrap();
    let server = start("after.log");
    let after = listed(&server, &admin).await;
    assert_eq!(after.len(), created.len(), "every token listed");
    for (id, value) in &created {
        assert_eq!(after[id].as_deref(), Some(value.as_str()), "token {id}");
    }
    // And the values still authorize (authorization reads the hash).
    let some = created.values().next().unwrap();
    assert_eq!(server.authorize(json!({"token": some, "api": "lds"})).await, (true, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_key_variables_the_old_key_opens_until_the_rotation_is_done() {
    let dir = TempDir::new("rotate-variables");
    let database = dir.sqlite_url();
    let new_key = "bmV3LXNlcnZlci1rZXktZm9yLXJvdGF0aW9uLXRlc3Q=";
    let server = Arc::new(Server::start(&database, &[], &[], &dir.path().join("old.log")));
    let admin = server.admin_key.clone().unwrap();
    let created = create_tokens(&server, &admin, 30).await;
    drop(server);

    // Without the previous key, the rotation refuses to start.
    let (ok, _, stderr) = rotate(&database, &[("LATCHKEY_SECRET_KEY", new_key)]);
    assert!(!ok && stderr.contains("LATCHKEY_PREVIOUS_SECRET_KEY"), "{stderr}");

    // Step 1: instances restart with the new key, the old one as previous.
    let both = [("LATCHKEY_SECRET_KEY", new_key), ("LATCHKEY_PREVIOUS_SECRET_KEY", SECRET_KEY)];
    let server = Arc::new(Server::start(&database, &[], &both, &dir.path().join("both.log")));
    let (status, made_now) = server
        .call(Method::POST, "/v3/tokens", Some(&admin), Some(json!({"allowed_apis": ["lds"], "grants": []})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let seen = listed(&server, &admin).await;
    assert!(seen.values().all(Option::is_some), "both keys open");
    drop(server);

    // Step 2: the rotation. Step 3: the previous key goes.
    let (ok, stdout, stderr) = rotate(&database, &both);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("re-sealed 30 token values under the new key; 1 were under it already"), "{stdout}");
    let server = Server::start(&database, &[], &[("LATCHKEY_SECRET_KEY", new_key)], &dir.path().join("new.log"));
    let after = listed(&server, &admin).await;
    for (id, value) in &created {
        assert_eq!(after[id].as_deref(), Some(value.as_str()));
    }
    let made_now: &Value = &made_now;
    assert_eq!(after[made_now["id"].as_str().unwrap()].as_deref(), made_now["token"].as_str());
    let (ok, stdout, _) = rotate(&database, &both);
    assert!(ok && stdout.contains("re-sealed 0 token values under the new key; 31 were under it already"), "{stdout}");
}
