//! Deep and long SQL through every entry point of the real binary: 64 KiB of
//! `1+1+…`, of `((((…))))`, of nested sub-selects and of nested comments,
//! sent to create, update, authorize, forward-auth and the gateway. Each is
//! refused with its reason, and the process stays up and answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::Router;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, TempDir};

/// Room for a query in the 64 KiB source limit.
const BYTES: usize = 64 * 1024 - 64;

/// The floods, and the validation code each gets as a grant.
fn floods() -> Vec<(&'static str, String, &'static str)> {
    let fill = |fragment: &str| fragment.repeat(BYTES / fragment.len());
    vec![
        ("1+1+…", format!("SELECT {}1", fill("1+")), "query_too_complex"),
        ("((((…))))", format!("SELECT {}1", fill("(")), "query_too_complex"),
        ("nested sub-selects", format!("{}1", fill("SELECT (")), "query_too_complex"),
        ("nested comments", format!("SELECT 1 {}", fill("/*")), "query_ambiguous"),
    ]
}

/// A data API that answers 200 to anything.
async fn start_upstream() -> String {
    let app = Router::new().fallback(|| async { "upstream" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn codes(body: &Value) -> Vec<&str> {
    body["details"].as_array().map(|d| d.iter().filter_map(|i| i["code"].as_str()).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_queries_are_refused_everywhere_and_the_process_stays_up() {
    let dir = TempDir::new("deep-inputs");
    let forward_auth = ["--org", "default", "--forward-auth-headers", "nginx"];
    let server = Server::start(&dir.sqlite_url(), &forward_auth, &[], &dir.path().join("server.log"));
    let key = server.admin_key.clone().unwrap();
    let grant = json!({"connection_name": "carto_dw", "source": "SELECT 1"});
    let (status, token) = server
        .call(Method::POST, "/v3/tokens", Some(&key), Some(json!({"allowed_apis": ["sql"], "grants": [grant]})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let value = token["token"].as_str().unwrap().to_owned();
    let path = format!("/v3/tokens/{}", token["id"].as_str().unwrap());
    let upstream = start_upstream().await;
    let gateway =
        Server::gateway(&dir.sqlite_url(), &upstream, &["--org", "default"], &[], &dir.path().join("gateway.log"));
    let client = reqwest::Client::new();

    for (name, sql, code) in floods() {
        let flood = json!({"connection_name": "carto_dw", "source": sql});
        let (status, body) = server
            .call(Method::POST, "/v3/tokens", Some(&key), Some(json!({"allowed_apis": ["sql"], "grants": [flood]})))
            .await;
        assert_eq!((status, codes(&body)), (StatusCode::BAD_REQUEST, vec![code]), "create with {name}");

        let (status, body) = server.call(Method::PATCH, &path, Some(&key), Some(json!({"grants": [flood]}))).await;
        assert_eq!((status, codes(&body)), (StatusCode::BAD_REQUEST, vec![code]), "update with {name}");

        let ask =
            json!({"token": value, "api": "sql", "connection_name": "carto_dw", "source_type": "query", "source": sql});
        assert_eq!(server.authorize(ask).await, (false, Some("source_not_granted".into())), "authorize {name}");

        // The gateway reads a POST body to find the query.
        let response = client
            .post(format!("{}/v3/sql/carto_dw/query", gateway.url))
            .bearer_auth(&value)
            .json(&json!({"q": sql}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "gateway with {name}");
        assert_eq!(response.headers()["x-latchkey-reason"], "source_not_granted", "gateway with {name}");

        // Forward-auth sees the URL only; a 64 KiB one is refused either by
        // the header limit or by the decision, never by a crash.
        let encoded: String = sql.bytes().map(|b| format!("%{b:02X}")).collect();
        let response = server
            .request(Method::GET, "/v3/forward-auth", None)
            .header("X-Original-URI", format!("/v3/sql/carto_dw/query?q={}", &encoded[..encoded.len().min(24_000)]))
            .header("X-Original-Method", "GET")
            .header("X-Original-Body", "/")
            .bearer_auth(&value)
            .send()
            .await
            .unwrap();
        assert!(
            [StatusCode::FORBIDDEN, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE].contains(&response.status()),
            "forward-auth with {name}: {}",
            response.status()
        );
    }

    // Both processes are still up, and still allow what is granted.
    let ask = json!({"token": value, "api": "sql", "connection_name": "carto_dw", "source_type": "query", "source": "select 1"});
    assert_eq!(server.authorize(ask).await, (true, None));
    let response = client
        .get(format!("{}/v3/sql/carto_dw/query?q=SELECT%201", gateway.url))
        .bearer_auth(&value)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "upstream");
}
