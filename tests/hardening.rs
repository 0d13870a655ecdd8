//! Hardening, end to end: safe concurrent edits with If-Match, limits with
//! clear errors, rate limiting of failed authentication, and no secret in
//! the logs even at trace level.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;

use reqwest::header::{ETAG, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, TempDir, parse};

/// 50 clients each add their own referer to one token by read, modify,
/// write with If-Match, retrying on 412. No update may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_read_modify_write_clients_lose_no_update() {
    let dir = TempDir::new("if-match");
    let server = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("server.log"));
    let key = server.admin_key.clone().unwrap();
    let (_, token) =
        server.call(Method::POST, "/v3/tokens", Some(&key), Some(json!({"allowed_apis": ["lds"], "grants": []}))).await;
    let path = format!("/v3/tokens/{}", token["id"].as_str().unwrap());
    let server = std::sync::Arc::new(server);
    let mut clients = Vec::new();
    for client in 0..50 {
        let (server, key, path) = (server.clone(), key.clone(), path.clone());
        clients.push(tokio::spawn(async move {
            let mine = format!("https://client{client}.example.com/");
            let mut conflicts = 0;
            loop {
                let response = server.request(Method::GET, &path, Some(&key)).send().await.unwrap();
                let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
                let (_, current) = parse(response).await;
                let mut referers: Vec<Value> = current["referers"].as_array().unwrap().clone();
                referers.push(json!(mine));
                let response = server
                    .request(Method::PATCH, &path, Some(&key))
                    .header(IF_MATCH, &etag)
                    .json(&json!({"referers": referers}))
                    .send()
                    .await
                    .unwrap();
                match response.status() {
                    StatusCode::OK => return conflicts,
                    StatusCode::PRECONDITION_FAILED => conflicts += 1,
                    other => panic!("client {client}: {other} {}", response.text().await.unwrap()),
                }
            }
        }));
    }
    let mut conflicts = 0;
    for client in clients {
        conflicts += client.await.unwrap();
    }
    let (_, last) = server.call(Method::GET, &path, Some(&key), None).await;
    let referers: BTreeSet<&str> = last["referers"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(referers.len(), 50, "every client's referer is there ({conflicts} retries after 412)");
    assert!(conflicts > 0, "the clients did race");
}

#[tokio::test]
async fn without_if_match_a_patch_applies_to_the_current_version() {
    let dir = TempDir::new("no-if-match");
    let server = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("server.log"));
    let key = server.admin_key.clone().unwrap();
    let (_, token) =
        server.call(Method::POST, "/v3/tokens", Some(&key), Some(json!({"allowed_apis": ["lds"], "grants": []}))).await;
    let path = format!("/v3/tokens/{}", token["id"].as_str().unwrap());
    for name in ["first", "second"] {
        let (status, body) = server.call(Method::PATCH, &path, Some(&key), Some(json!({"name": name}))).await;
        assert_eq!((status, body["name"].as_str()), (StatusCode::OK, Some(name)));
    }
    let response = server
        .request(Method::PATCH, &path, Some(&key))
        .header(IF_MATCH, "*")
        .json(&json!({"name": "third"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "If-Match: * matches any version");
    assert_eq!(response.headers()[ETAG], "\"4\"");
    let response = server.request(Method::DELETE, &path, Some(&key)).header(IF_MATCH, "\"4\"").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn limits_answer_with_clear_errors() {
    let dir = TempDir::new("limits");
    let server = Server::start(
        &dir.sqlite_url(),
        &["--max-tokens-per-user", "3", "--max-body-bytes", "200000"],
        &[],
        &dir.path().join("server.log"),
    );
    let key = server.admin_key.clone().unwrap();
    let lds = |name: &str| json!({"name": name, "allowed_apis": ["lds"], "grants": []});
    for i in 0..3 {
        let (status, _) = server.call(Method::POST, "/v3/tokens", Some(&key), Some(lds(&format!("t{i}")))).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, body) = server.call(Method::POST, "/v3/tokens", Some(&key), Some(lds("one too many"))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("too_many_tokens")));
    assert!(body["error"].as_str().unwrap().contains('3'), "{body}");

    // The configured body limit.
    let big = json!({"name": "x".repeat(250_000), "allowed_apis": ["lds"], "grants": []});
    let (status, body) = server.call(Method::POST, "/v3/tokens", Some(&key), Some(big)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));

    // Headers too large.
    let response = server
        .request(Method::GET, "/v3/tokens", Some(&key))
        .header("x-padding", "p".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    let (status, body) = parse(response).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, Some("headers_too_large"))
    );

    // Page size and grant and referer counts are covered by the API and
    // validation suites; here, their errors name the limit.
    let (status, body) = server.call(Method::GET, "/v3/tokens?limit=501", Some(&key), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["details"][0]["message"].as_str().unwrap().contains("500"));
}

#[tokio::test]
async fn failed_authentication_is_rate_limited_per_client_but_valid_traffic_is_not() {
    let dir = TempDir::new("rate-limit");
    let server = Server::start(
        &dir.sqlite_url(),
        &["--auth-failures-per-minute", "60", "--auth-failure-burst", "5"],
        &[],
        &dir.path().join("server.log"),
    );
    let key = server.admin_key.clone().unwrap();
    let (_, token) =
        server.call(Method::POST, "/v3/tokens", Some(&key), Some(json!({"allowed_apis": ["lds"], "grants": []}))).await;
    let valid = json!({"token": token["token"], "api": "lds"});
    // Valid traffic is never limited.
    for _ in 0..50 {
        assert_eq!(server.authorize(valid.clone()).await, (true, None));
    }
    // Guessing user keys: the burst passes, then 429 with Retry-After.
    let mut limited = None;
    for attempt in 0..20 {
        let response = server.request(Method::GET, "/v3/tokens", Some("latchkey_uk_guess")).send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            let (_, body) = parse(response).await;
            assert_eq!(body["code"], "rate_limited");
            assert!((1..=60).contains(&retry), "Retry-After {retry}");
            limited = Some(attempt);
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(limited, Some(5), "five failures allowed, the sixth limited");
    // While limited, even a correct key from that client waits: a guess
    // that happened to be right must not be confirmed at speed.
    let (status, _) = server.call(Method::GET, "/v3/tokens", Some(&key), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Each surface counts on its own: bad user keys from an address (a
    // proxy's, say) do not stop the authorize calls it makes.
    assert_eq!(server.authorize(valid.clone()).await, (true, None));
    // Guessing token values through authorize is limited the same way.
    let guess = json!({"token": "guess", "api": "lds"});
    for _ in 0..5 {
        assert_eq!(server.authorize(guess.clone()).await, (false, Some("token_malformed".into())));
    }
    let (status, body) = server.call(Method::POST, "/v3/authorize", None, Some(guess)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace_level() {
    let log = a_session_logged_as("text").await;
    assert!(log.contains(" TRACE "), "trace logging is on");
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_and_hold_no_secret_either() {
    let log = a_session_logged_as("json").await;
    let mut levels = BTreeSet::new();
    for line in log.lines().filter(|line| !line.is_empty()) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["timestamp"].is_string() && entry["target"].is_string(), "{line}");
        levels.insert(entry["level"].as_str().unwrap().to_owned());
    }
    assert!(levels.contains("TRACE") && levels.contains("INFO"), "{levels:?}");
    let answered = log.lines().find(|line| line.contains("\"answered\"")).expect("an answer is logged");
    let answered: Value = serde_json::from_str(answered).unwrap();
    assert!(answered["status"].is_number() && answered["span"]["request_id"].is_string(), "{answered}");
}

/// A whole session against a server logging at trace level in `format`:
/// no secret used in it is in the log, which is answered.
async fn a_session_logged_as(format: &str) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    let dir = TempDir::new("secrets");
    let secret_file = dir.path().join("jwt.secret");
    std::fs::write(&secret_file, "a secret of at least thirty-two bytes for HS256 tests").unwrap();
    let server = Server::start(
        &dir.sqlite_url(),
        &[
            "--jwt-secret-file",
            secret_file.to_str().unwrap(),
            "--jwt-issuer",
            "https://idp/",
            "--jwt-audience",
            "lk",
            "--log-format",
            format,
        ],
        &[("RUST_LOG", "trace")],
        &dir.path().join("server.log"),
    );
    let key = server.admin_key.clone().unwrap();
    let jwt = encode(
        &Header::default(),
        &json!({"iss": "https://idp/", "aud": "lk", "sub": "ana", "org": "default", "exp": get_current_timestamp() + 600}),
        &EncodingKey::from_secret(b"a secret of at least thirty-two bytes for HS256 tests"),
    )
    .unwrap();
    let mut secrets = vec![key.clone(), jwt.clone()];
    // A whole session: create, list, get by value, patch, authorize (allowed
    // and refused), delete; with the key and with the JWT; plus failures.
    for credential in [&key, &jwt] {
        let (status, token) = server
            .call(
                Method::POST,
                "/v3/tokens",
                Some(credential),
                Some(json!({"allowed_apis": ["maps"],
                "grants": [{"connection_name": "carto_dw", "source": "a.b.c"}]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let value = token["token"].as_str().unwrap().to_owned();
        secrets.push(value.clone());
        server.call(Method::GET, "/v3/tokens", Some(credential), None).await;
        server.call(Method::GET, &format!("/v3/tokens/{value}"), Some(credential), None).await;
        server
            .call(Method::PATCH, &format!("/v3/tokens/{value}"), Some(credential), Some(json!({"name": "renamed"})))
            .await;
        server
            .call(
                Method::PATCH,
                &format!("/v3/tokens/{value}"),
                Some(credential),
                Some(json!({"referers": ["ftp://x"]})),
            )
            .await;
        server.authorize(json!({"token": value, "api": "maps", "connection_name": "carto_dw", "source_type": "table", "source": "a.b.c"})).await;
        server.authorize(json!({"token": value, "api": "sql", "connection_name": "carto_dw", "source_type": "query", "source": "SELECT 1"})).await;
        server.call(Method::POST, "/v3/authorize", None, Some(json!({"token": value, "api": 7}))).await;
        server.call(Method::DELETE, &format!("/v3/tokens/{value}"), Some(credential), None).await;
        server.authorize(json!({"token": value, "api": "lds"})).await;
    }
    let wrong_key = format!("{}x", &key[..key.len() - 1]);
    secrets.push(wrong_key.clone());
    server.call(Method::GET, "/v3/tokens", Some(&wrong_key), None).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = server.log_text();
    for secret in &secrets {
        // The random part is what matters: the prefix is public.
        let random = &secret[secret.len().saturating_sub(24)..];
        assert!(!log.contains(random), "a secret ending …{random} is in the log");
    }
    log
}
