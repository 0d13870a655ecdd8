//! Scale-out: two `latchkey serve` processes on one PostgreSQL database.
//! A change, roll or delete through one is honoured by the other at once, also
//! after the other's listening connection was killed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod support;

use std::time::{Duration, Instant};

use latchkey_test_postgres::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, TempDir};

const LISTENING: &str = "listening for token changes";

/// Asks `server` until the answer for `request` is `expected`, for at most
/// five seconds (the test only checks that it happens; the benchmarks
/// measure how fast).
async fn until(server: &Server, request: &Value, expected: (bool, Option<&str>)) -> Duration {
    let start = Instant::now();
    loop {
        let (allowed, reason) = server.authorize(request.clone()).await;
        if (allowed, reason.as_deref()) == expected {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still {allowed} {reason:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn table_request(token: &Value, table: &str) -> Value {
    json!({"token": token["token"], "api": "maps", "connection_name": "carto_dw", "source_type": "table", "source": table})
}

/// Creates a Maps token for the table `p.d.roads` through `server`: the
/// token as created and the authorize request that uses it.
async fn create_roads_token(server: &Server, key: Option<&str>) -> (Value, Value) {
    let (status, token) = server
        .call(
            Method::POST,
            "/v3/tokens",
            key,
            Some(json!({"allowed_apis": ["maps"],
            "grants": [{"connection_name": "carto_dw", "source": "p.d.roads"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let request = table_request(&token, "p.d.roads");
    (token, request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_agree_on_every_change() {
    let database = TestDatabase::create().await;
    let dir = TempDir::new("scale-out");
    let a = Server::start(database.url(), &[], &[], &dir.path().join("a.log"));
    let key = a.admin_key.clone().expect("the first instance bootstraps");
    let b = Server::start(database.url(), &[], &[], &dir.path().join("b.log"));
    assert!(b.admin_key.is_none(), "the second finds the users there");
    b.wait_for_log(LISTENING, 1).await;
    let key = Some(key.as_str());

    // An edit through A is re-evaluated by B.
    let (token, roads) = create_roads_token(&a, key).await;
    for _ in 0..3 {
        assert_eq!(b.authorize(roads.clone()).await, (true, None), "B allows, and caches");
    }
    let id = token["id"].as_str().unwrap();
    let (status, _) = a
        .call(
            Method::PATCH,
            &format!("/v3/tokens/{id}"),
            key,
            Some(json!({"grants": [{"connection_name": "carto_dw", "source": "p.d.rivers"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let took = until(&b, &roads, (false, Some("source_not_granted"))).await;
    println!("B re-evaluated the edit after {took:?}");
    assert_eq!(b.authorize(table_request(&token, "p.d.rivers")).await, (true, None));

    // A delete through A is refused by B.
    let (status, _) = a.call(Method::DELETE, &format!("/v3/tokens/{id}"), key, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let took = until(&b, &table_request(&token, "p.d.rivers"), (false, Some("token_unknown"))).await;
    println!("B refused the deleted token after {took:?}");

    // A roll through A: B serves the new value and, during the grace
    // period, the previous one; a second roll without grace ends both
    // older values on B at once, though B had cached the token under each.
    let (rolling, first) = create_roads_token(&a, key).await;
    let roll = format!("/v3/tokens/{}/roll", rolling["id"].as_str().unwrap());
    assert_eq!(b.authorize(first.clone()).await, (true, None));
    let (status, rolled) = a.call(Method::POST, &roll, key, Some(json!({"grace_seconds": 600}))).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    let second = table_request(&rolled, "p.d.roads");
    for _ in 0..3 {
        assert_eq!(b.authorize(second.clone()).await, (true, None), "B serves, and caches, the new value");
        assert_eq!(b.authorize(first.clone()).await, (true, None), "and the previous one, in its grace period");
    }
    let (status, again) = a.call(Method::POST, &roll, key, Some(json!({"grace_seconds": 0}))).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let took = until(&b, &first, (false, Some("token_unknown"))).await;
    println!("B refused the value two rolls back after {took:?}");
    until(&b, &second, (false, Some("token_unknown"))).await;
    assert_eq!(b.authorize(table_request(&again, "p.d.roads")).await, (true, None));

    // Kill B's listening connection. B notices, stops trusting its cache,
    // and subscribes again.
    let admin = sqlx_connection(database.url()).await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(format!("{}-{}", latchkey_postgres::APPLICATION_NAME, b.pid()))
    .fetch_one(&admin)
    .await
    .unwrap();
    // The listening connection and the one that sends its heartbeats.
    assert!(killed >= 1, "B's listener was found and killed");
    b.wait_for_log("lost the connection that listens for token changes", 1).await;

    // Whatever the state of B's listener, B is right.
    let (second, request) = create_roads_token(&a, key).await;
    assert_eq!(b.authorize(request.clone()).await, (true, None));
    a.call(Method::DELETE, &format!("/v3/tokens/{}", second["id"].as_str().unwrap()), key, None).await;
    until(&b, &request, (false, Some("token_unknown"))).await;

    // Once subscribed again, B caches and hears changes as before.
    b.wait_for_log(LISTENING, 2).await;
    let (third, request) = create_roads_token(&a, key).await;
    for _ in 0..3 {
        assert_eq!(b.authorize(request.clone()).await, (true, None));
    }
    a.call(Method::DELETE, &format!("/v3/tokens/{}", third["id"].as_str().unwrap()), key, None).await;
    let took = until(&b, &request, (false, Some("token_unknown"))).await;
    println!("after recovery, B refused the deleted token after {took:?}");

    assert!(a.stop().success() && b.stop().success());
    admin.close().await;
    database.drop_database().await;
}

async fn sqlx_connection(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await.unwrap()
}

/// Two processes on one SQLite file (the embedded default): each caches,
/// and each hears the other's changes through the file's change log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_sqlite_file_agree_on_every_change() {
    const FOLLOWING: &str = "following token changes on the SQLite file";
    let dir = TempDir::new("sqlite-two-processes");
    let a = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("a.log"));
    let key = a.admin_key.clone().expect("the first process bootstraps");
    let b = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("b.log"));
    b.wait_for_log(FOLLOWING, 1).await;
    let key = Some(key.as_str());

    let (token, roads) = create_roads_token(&a, key).await;
    for _ in 0..3 {
        assert_eq!(b.authorize(roads.clone()).await, (true, None), "B allows, and caches");
    }
    let path = format!("/v3/tokens/{}", token["id"].as_str().unwrap());
    let rivers = json!({"grants": [{"connection_name": "carto_dw", "source": "p.d.rivers"}]});
    let (status, _) = a.call(Method::PATCH, &path, key, Some(rivers)).await;
    assert_eq!(status, StatusCode::OK);
    let took = until(&b, &roads, (false, Some("source_not_granted"))).await;
    println!("B re-evaluated an edit made by A after {took:?}");

    // Rolls: the previous value during its grace, then neither older one.
    let rivers_request = table_request(&token, "p.d.rivers");
    assert_eq!(b.authorize(rivers_request.clone()).await, (true, None));
    let (_, rolled) = a.call(Method::POST, &format!("{path}/roll"), key, Some(json!({"grace_seconds": 600}))).await;
    let second = table_request(&rolled, "p.d.rivers");
    until(&b, &second, (true, None)).await;
    assert_eq!(b.authorize(rivers_request.clone()).await, (true, None), "the previous value, in its grace");
    let (_, again) = a.call(Method::POST, &format!("{path}/roll"), key, Some(json!({"grace_seconds": 0}))).await;
    until(&b, &rivers_request, (false, Some("token_unknown"))).await;
    until(&b, &second, (false, Some("token_unknown"))).await;
    let third = table_request(&again, "p.d.rivers");
    assert_eq!(b.authorize(third.clone()).await, (true, None));

    // A delete through either is refused by the other.
    let (status, _) = b.call(Method::DELETE, &path, key, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let took = until(&a, &third, (false, Some("token_unknown"))).await;
    println!("A refused a token deleted through B after {took:?}");
    let text = b.log_text();
    assert!(!text.contains("fell behind") && !text.contains("cannot read the SQLite change log"), "{text}");
    // B did answer from its cache, so the feed's evictions are what kept
    // it right.
    let metrics = b.request(Method::GET, "/metrics", None).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("latchkey_change_feed_up{feed=\"sqlite\"} 1"), "{metrics}");
    let hits = metrics
        .lines()
        .find_map(|line| line.strip_prefix("latchkey_cache_hits_total "))
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(hits >= 2.0, "B served from its cache: {hits} hits");
    assert!(a.stop().success() && b.stop().success());
}
