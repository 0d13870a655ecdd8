//! `/metrics` read by a real Prometheus (Debian's package): it scrapes a
//! running `serve` and a running gateway, and the series it stores say what
//! happened, with no token value or source text anywhere in them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, TempDir};

/// A Prometheus scraping `targets` every 250 ms.
struct Prometheus {
    url: String,
    child: Child,
}

impl Prometheus {
    fn start(dir: &TempDir, targets: &[&str]) -> Prometheus {
        let config = dir.path().join("prometheus.yml");
        let targets = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\nscrape_configs:\n  - job_name: latchkey\n    \
                 static_configs:\n      - targets: [{targets}]\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is installed (cargo xtask test installs Debian's package)");
        Prometheus { url: format!("http://127.0.0.1:{port}"), child }
    }

    /// The samples of `query` once Prometheus has any: `(labels, value)`.
    async fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            let url = url::Url::parse_with_params(&format!("{}/api/v1/query", self.url), [("query", query)]).unwrap();
            let answer = client.get(url).send().await;
            if let Ok(answer) = answer
                && let Ok(body) = answer.json::<Value>().await
                && let Some(results) = body["data"]["result"].as_array()
                && !results.is_empty()
            {
                return results
                    .iter()
                    .map(|r| (r["metric"].clone(), r["value"][1].as_str().unwrap().parse().unwrap()))
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("Prometheus never had {query}");
    }

    /// Every label value of every `latchkey_` series Prometheus stored.
    async fn label_values(&self) -> Vec<String> {
        let client = reqwest::Client::new();
        let url = url::Url::parse_with_params(
            &format!("{}/api/v1/series", self.url),
            [("match[]", "{__name__=~\"latchkey_.*\"}")],
        )
        .unwrap();
        let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|series| series.as_object().unwrap().values().map(|v| v.as_str().unwrap().to_owned()))
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn host_port(url: &str) -> &str {
    url.strip_prefix("http://").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_decisions_cache_and_requests_without_secrets() {
    let dir = TempDir::new("metrics");
    let server = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("serve.log"));
    let key = server.admin_key.clone().unwrap();
    let source = "secret_project.hidden_dataset.private_table";
    let (status, token) = server
        .call(
            Method::POST,
            "/v3/tokens",
            Some(&key),
            Some(json!({"allowed_apis": ["maps"], "grants": [{"connection_name": "carto_dw", "source": source}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let value = token["token"].as_str().unwrap().to_owned();
    let ask = |source: &str| json!({"token": value, "api": "maps", "connection_name": "carto_dw", "source_type": "table", "source": source});
    assert_eq!(server.authorize(ask(source)).await, (true, None));
    assert_eq!(server.authorize(ask(source)).await, (true, None));
    let other = "another_project.other_dataset.other_table";
    assert_eq!(server.authorize(ask(other)).await.1.as_deref(), Some("source_not_granted"));
    let guessed = "latchkey_tk_0123456789abcdefghijABCDEFGHIJxyzw4gfFC3";
    let unknown = json!({"token": guessed, "api": "lds"});
    assert!(!server.authorize(unknown).await.0);

    // The gateway, in front of a data API that is down.
    let gateway = Server::gateway(
        &dir.sqlite_url(),
        "http://127.0.0.1:9",
        &["--org", "default", "--metrics-listen", "127.0.0.1:0"],
        &[],
        &dir.path().join("gateway.log"),
    );
    let gateway_metrics = gateway
        .stdout
        .iter()
        .find_map(|line| line.strip_prefix("latchkey metrics on "))
        .expect("the gateway prints its metrics address")
        .trim_end_matches("/metrics")
        .to_owned();
    let table = format!("/v3/maps/carto_dw/table?name={source}&access_token={value}");
    let (status, _) = gateway.call(Method::GET, &table, None, None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "allowed, and the data API is down");
    let (status, _) = gateway.call(Method::GET, &format!("/v3/lds/x?access_token={guessed}"), None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The gateway forwards /metrics like any path: its own are elsewhere.
    let (status, _) = gateway.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not a data API request");

    // The text itself, as Prometheus fetches it.
    let answer = reqwest::get(format!("{}/metrics", server.url)).await.unwrap();
    assert!(answer.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = answer.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");

    let prometheus = Prometheus::start(&dir, &[host_port(&server.url), host_port(&gateway_metrics)]);
    // Both processes export every series: each query names the one.
    let serve = format!("instance=\"{}\"", host_port(&server.url));
    let allowed =
        prometheus.query(r#"latchkey_decisions_total{surface="authorize",api="maps",outcome="allowed"}"#).await;
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0].1, 2.0);
    let refused = prometheus.query(r#"latchkey_decisions_total{surface="authorize",outcome!="allowed"}"#).await;
    let mut reasons: Vec<(String, f64)> =
        refused.iter().map(|(labels, n)| (labels["outcome"].as_str().unwrap().to_owned(), *n)).collect();
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(reasons, [("source_not_granted".to_owned(), 1.0), ("token_malformed".to_owned(), 1.0)]);
    // The first decision read the store, the second the cache.
    assert_eq!(prometheus.query(&format!("latchkey_cache_hits_total{{{serve}}}")).await[0].1, 2.0, "{text}");
    assert_eq!(prometheus.query(&format!("latchkey_cache_entries{{{serve}}}")).await[0].1, 1.0);
    let gateway_decisions = prometheus.query(r#"latchkey_decisions_total{surface="gateway"}"#).await;
    let outcomes: Vec<&str> = gateway_decisions.iter().map(|(labels, _)| labels["outcome"].as_str().unwrap()).collect();
    for expected in ["allowed", "token_malformed", "unknown_request"] {
        assert!(outcomes.contains(&expected), "{expected} in {outcomes:?}");
    }
    let failures = prometheus.query(r#"latchkey_gateway_upstream_failures_total{cause="unreachable"}"#).await;
    assert_eq!(failures[0].1, 1.0);
    let authorize_calls =
        prometheus.query(r#"latchkey_http_requests_total{route="/v3/authorize",method="POST",status="200"}"#).await;
    assert_eq!(authorize_calls[0].1, 4.0);
    let histogram = prometheus.query(r#"latchkey_decision_duration_seconds_count{surface="authorize"}"#).await;
    assert_eq!(histogram[0].1, 4.0);
    // The gateway's series count the request the data API never saw under
    // its own label, not the path the client sent.
    let proxied = prometheus.query(r#"latchkey_http_requests_total{route="proxy",status="502"}"#).await;
    assert_eq!(proxied[0].1, 1.0);

    let values = prometheus.label_values().await;
    assert!(!values.is_empty());
    for secret in [value.as_str(), guessed, source, other, "secret_project", &key] {
        assert!(!values.iter().any(|v| v.contains(secret)), "{secret} in a label: {values:?}");
    }
    assert!(!text.contains(&value) && !text.contains(source) && !text.contains(guessed));
}
