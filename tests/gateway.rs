//! The gateway and forward-auth under pressure: slow and idle clients,
//! bodies sent with tokens that do not work, guessing, oversized headers, a
//! slow upstream, a flood of bad user keys through a proxy, and clients
//! that claim another address in `X-Forwarded-For`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{Server, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A data API: `/slow` answers after three seconds, the rest at once.
async fn start_upstream() -> String {
    let app = Router::new()
        .route(
            "/v3/lds/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/v3/lds/forwarded-for",
            get(|headers: axum::http::HeaderMap| async move {
                let lines: Vec<String> = headers
                    .get_all("x-forwarded-for")
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                format!("[{}]", lines.join("|"))
            }),
        )
        .fallback(|| async { "upstream" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// The status of the answer to raw `bytes`, within `within`.
async fn status_within(port: u16, bytes: &[u8], within: Duration) -> Option<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(bytes).await.ok()?;
        let mut answer = vec![0; 1024];
        let n = stream.read(&mut answer).await.ok()?;
        String::from_utf8_lossy(&answer[..n]).split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(within, exchange).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_holds_up_against_slow_idle_and_hostile_clients() {
    let dir = TempDir::new("gateway-limits");
    let server = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("serve.log"));
    let key = server.admin_key.clone().unwrap();
    let (_, token) =
        server.call(Method::POST, "/v3/tokens", Some(&key), Some(json!({"allowed_apis": ["lds"], "grants": []}))).await;
    let value = token["token"].as_str().unwrap().to_owned();
    let upstream = start_upstream().await;
    let limits = [
        "--org",
        "default",
        "--max-connections",
        "20",
        "--header-read-timeout-seconds",
        "1",
        "--upstream-timeout-seconds",
        "1",
        "--auth-failure-burst",
        "5",
        "--auth-failures-per-minute",
        "60",
    ];
    let gateway = Server::gateway(
        &dir.sqlite_url(),
        &upstream,
        &limits,
        &[("RUST_LOG", "debug")],
        &dir.path().join("gateway.log"),
    );
    let gateway_port = port(&gateway.url);
    let allowed =
        format!("GET /v3/lds/x HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {value}\r\nConnection: close\r\n\r\n");

    // Three times the connection cap, all idle: the header deadline closes
    // them, and a real client is served within a few seconds.
    let mut idle = Vec::new();
    for _ in 0..60 {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", gateway_port)).await {
            idle.push(stream);
        }
    }
    let started = Instant::now();
    let status = status_within(gateway_port, allowed.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(status, Some(200), "served despite idle connections");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    // The idle ones were closed by the gateway.
    let mut closed = 0;
    for stream in &mut idle {
        let mut byte = [0; 1];
        if matches!(tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert!(closed >= 40, "{closed} of {} idle connections were closed", idle.len());
    drop(idle);

    // A token that does not work is refused before any body is read: the
    // client announces a megabyte and sends nothing.
    let bad = "POST /v3/sql/carto_dw/query HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer latchkey_tk_nope\r\n\
               Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
    assert_eq!(status_within(gateway_port, bad.as_bytes(), Duration::from_secs(2)).await, Some(401));

    // Oversized headers.
    let huge =
        format!("GET /v3/lds/x HTTP/1.1\r\nHost: g\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "a".repeat(40_000));
    assert_eq!(status_within(gateway_port, huge.as_bytes(), Duration::from_secs(5)).await, Some(431));

    // A slow upstream.
    let slow =
        format!("GET /v3/lds/slow HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {value}\r\nConnection: close\r\n\r\n");
    assert_eq!(status_within(gateway_port, slow.as_bytes(), Duration::from_secs(5)).await, Some(504));

    // Guessing tokens: the burst, then 429; the valid token from another
    // client address would still pass (valid traffic is never counted).
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let response =
            client.get(format!("{}/v3/lds/x", gateway.url)).bearer_auth("latchkey_tk_guess").send().await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);

    // The gateway logs its requests, without the token.
    let log = gateway.log_text();
    assert!(log.contains("answered"), "the trace layer logs answers:\n{log}");
    assert!(!log.contains(&value[value.len() - 20..]), "no token in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_user_keys_through_a_proxy_do_not_refuse_its_data_requests() {
    let dir = TempDir::new("surfaces");
    let args = [
        "--org",
        "default",
        "--forward-auth-headers",
        "nginx",
        "--trusted-proxies",
        "127.0.0.1",
        "--auth-failure-burst",
        "5",
    ];
    let server = Server::start(&dir.sqlite_url(), &args, &[], &dir.path().join("serve.log"));
    let key = server.admin_key.clone().unwrap();
    let (_, token) =
        server.call(Method::POST, "/v3/tokens", Some(&key), Some(json!({"allowed_apis": ["lds"], "grants": []}))).await;
    let value = token["token"].as_str().unwrap().to_owned();
    let forward_auth = |client: &'static str, token: String| {
        server
            .request(Method::GET, "/v3/forward-auth", None)
            .header("X-Original-Method", "GET")
            .header("X-Original-URI", "/v3/lds/geocode")
            .header("X-Original-Body", "/")
            .header("X-Forwarded-For", client)
            .bearer_auth(token)
            .send()
    };
    // 130 bad user keys from one client behind the proxy (the proxy is
    // 127.0.0.1, trusted): that client is blocked on the management API.
    for _ in 0..130 {
        server
            .request(Method::GET, "/v3/tokens", Some("latchkey_uk_bad"))
            .header("X-Forwarded-For", "198.51.100.7")
            .send()
            .await
            .unwrap();
    }
    let blocked = server
        .request(Method::GET, "/v3/tokens", Some(&key))
        .header("X-Forwarded-For", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other clients of the same proxy, and forward-auth for this one, go on.
    let other = server
        .request(Method::GET, "/v3/tokens", Some(&key))
        .header("X-Forwarded-For", "198.51.100.8")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(forward_auth("198.51.100.7", value.clone()).await.unwrap().status(), StatusCode::OK);
    // Guessing tokens through forward-auth is limited on its own, with a
    // 403 that nginx passes on (anything else becomes a 500 for everyone).
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let response = forward_auth("198.51.100.9", "latchkey_tk_guess".into()).await.unwrap();
        let reason = response.headers().get("x-latchkey-reason").map(|v| v.to_str().unwrap().to_owned());
        statuses.push((response.status().as_u16(), reason.unwrap_or_default()));
    }
    assert_eq!(statuses[4], (401, "token_malformed".to_owned()));
    assert_eq!(statuses[5], (403, "rate_limited".to_owned()));
    assert_eq!(forward_auth("198.51.100.7", value).await.unwrap().status(), StatusCode::OK, "per client");
}

/// A request to a gateway: connecting from, its `X-Forwarded-For` lines,
/// the token, and the status and reason it must get.
type AddressCase<'a> = (&'a Server, [u8; 4], &'a [&'a [u8]], &'a str, (u16, &'a str));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_reads_x_forwarded_for_only_from_a_trusted_proxy() {
    let dir = TempDir::new("gateway-ips");
    let server = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("serve.log"));
    let key = server.admin_key.clone().unwrap();
    let create = |allowed_ips: serde_json::Value| {
        let (server, key) = (&server, &key);
        async move {
            let body = json!({"allowed_apis": ["lds"], "grants": [], "allowed_ips": allowed_ips});
            let (status, token) = server.call(Method::POST, "/v3/tokens", Some(key), Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{token}");
            token["token"].as_str().unwrap().to_owned()
        }
    };
    let local = create(json!(["127.0.0.1"])).await;
    let second = create(json!(["127.0.0.2"])).await;
    let remote = create(json!(["203.0.113.0/24"])).await;
    let open = create(json!([])).await;
    let upstream = start_upstream().await;
    let start = |extra: &[&str], log: &str| {
        let args: Vec<&str> = ["--org", "default"].iter().chain(extra).copied().collect();
        Server::gateway(&dir.sqlite_url(), &upstream, &args, &[], &dir.path().join(log))
    };
    let direct = start(&[], "direct.log");
    let behind = start(&["--trusted-proxies", "127.0.0.1"], "behind.log");

    const PROXY: [u8; 4] = [127, 0, 0, 1];
    const OTHER: [u8; 4] = [127, 0, 0, 2];
    const ALLOWED: (u16, &str) = (200, "");
    const REFUSED: (u16, &str) = (403, "ip_not_allowed");
    let cases: &[AddressCase<'_>] = &[
        // Without trusted proxies the peer is the client, whatever it says.
        (&direct, PROXY, &[], &local, ALLOWED),
        (&direct, PROXY, &[], &remote, REFUSED),
        (&direct, PROXY, &[b"203.0.113.7"], &remote, REFUSED),
        (&direct, PROXY, &[b"203.0.113.7"], &local, ALLOWED),
        (&direct, PROXY, &[b"203.0.113.7", b"203.0.113.8"], &remote, REFUSED),
        (&direct, PROXY, &[b"garbage"], &local, ALLOWED),
        (&direct, OTHER, &[b"127.0.0.1"], &second, ALLOWED),
        (&direct, OTHER, &[b"127.0.0.1"], &local, REFUSED),
        // Behind 127.0.0.1, trusted: the rightmost address it did not write.
        (&behind, PROXY, &[b"203.0.113.7"], &remote, ALLOWED),
        (&behind, PROXY, &[b"203.0.113.7"], &local, REFUSED),
        (&behind, PROXY, &[b"6.6.6.6, 203.0.113.7"], &remote, ALLOWED),
        (&behind, PROXY, &[b"203.0.113.7, 6.6.6.6"], &remote, REFUSED),
        (&behind, PROXY, &[b" 203.0.113.7 ,\t127.0.0.1 "], &remote, ALLOWED),
        (&behind, PROXY, &[b"6.6.6.6", b"203.0.113.7"], &remote, ALLOWED),
        (&behind, PROXY, &[b"203.0.113.7", b"6.6.6.6"], &remote, REFUSED),
        (&behind, PROXY, &[b"garbage, 203.0.113.7"], &remote, ALLOWED),
        (&behind, PROXY, &[b"::ffff:203.0.113.7"], &remote, ALLOWED),
        (&behind, PROXY, &[], &local, ALLOWED),
        (&behind, PROXY, &[], &remote, REFUSED),
        (&behind, PROXY, &[b"127.0.0.1"], &local, ALLOWED),
        // A peer that is not a trusted proxy is not believed.
        (&behind, OTHER, &[b"203.0.113.7"], &remote, REFUSED),
        (&behind, OTHER, &[b"203.0.113.7"], &second, ALLOWED),
        (&behind, OTHER, &[b"203.0.113.7, garbage"], &second, ALLOWED),
    ];
    // Garbage where the walk reads: nobody can tell the client, so a
    // restricted token refuses (even one for the proxy: the address is not
    // guessed), and an unrestricted one does not care.
    let garbage: &[&[&[u8]]] = &[
        &[b"203.0.113.7, garbage"],
        &[b"203.0.113.7, unknown"],
        &[b"203.0.113.7:443"],
        &[b"[203.0.113.7]"],
        &[b"203.0.113.7,"],
        &[b"203.0.113.7,,127.0.0.1"],
        &[b""],
        &[b"203.0.113.7", b""],
        &[b"203.0.113.7", b"\xff"],
        &[b"203.0.113.7/32"],
        &[b"0203.0.113.7"],
    ];
    let mut all = cases.to_vec();
    for lines in garbage {
        all.push((&behind, PROXY, lines, &remote, REFUSED));
        all.push((&behind, PROXY, lines, &local, REFUSED));
        all.push((&behind, PROXY, lines, &open, ALLOWED));
    }

    let mut failures = Vec::new();
    for (gateway, from, lines, token, (status, reason)) in all {
        let mut request =
            format!("GET /v3/lds/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n")
                .into_bytes();
        for line in lines {
            request.extend(b"X-Forwarded-For: ");
            request.extend(*line);
            request.extend(b"\r\n");
        }
        request.extend(b"\r\n");
        let answer = support::exchange_from(from.into(), port(&gateway.url), &request).await;
        let got = (answer.status, answer.header("x-latchkey-reason").unwrap_or_default());
        if got != (status, reason) {
            let lines: Vec<_> = lines.iter().map(|l| String::from_utf8_lossy(l)).collect();
            let which = if std::ptr::eq(gateway, &direct) { "without" } else { "with" };
            let token = [(&local, "local"), (&second, "second"), (&remote, "remote"), (&open, "open")]
                .iter()
                .find(|(t, _)| *t == token)
                .map_or("?", |(_, name)| name);
            failures.push(format!(
                "{which} trusted proxies, from {from:?}, X-Forwarded-For {lines:?}, token {token}: {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// What the data API reads in `X-Forwarded-For` is the chain latchkey read
/// the client from: one line, every line a trusted proxy sent and then the
/// proxy; from any other peer, the peer alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_api_reads_the_chain_the_gateway_decided_on() {
    let dir = TempDir::new("gateway-chain");
    let server = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("serve.log"));
    let key = server.admin_key.clone().unwrap();
    let body = json!({"allowed_apis": ["lds"], "grants": []});
    let (_, token) = server.call(Method::POST, "/v3/tokens", Some(&key), Some(body)).await;
    let token = token["token"].as_str().unwrap().to_owned();
    let upstream = start_upstream().await;
    let args = ["--org", "default", "--trusted-proxies", "127.0.0.1"];
    let gateway = Server::gateway(&dir.sqlite_url(), &upstream, &args, &[], &dir.path().join("gateway.log"));
    let cases: &[([u8; 4], &[&str], &str)] = &[
        ([127, 0, 0, 1], &["6.6.6.6", "203.0.113.7"], "[6.6.6.6, 203.0.113.7, 127.0.0.1]"),
        ([127, 0, 0, 1], &["6.6.6.6, 203.0.113.7"], "[6.6.6.6, 203.0.113.7, 127.0.0.1]"),
        ([127, 0, 0, 1], &[], "[127.0.0.1]"),
        ([127, 0, 0, 2], &["203.0.113.7"], "[127.0.0.2]"),
        ([127, 0, 0, 2], &["6.6.6.6", "203.0.113.7"], "[127.0.0.2]"),
    ];
    for (from, lines, expected) in cases {
        let mut request = format!(
            "GET /v3/lds/forwarded-for HTTP/1.1\r\nHost: g\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n"
        );
        for line in *lines {
            request.push_str(&format!("X-Forwarded-For: {line}\r\n"));
        }
        request.push_str("\r\n");
        let answer = support::exchange_from((*from).into(), port(&gateway.url), request.as_bytes()).await;
        assert_eq!(answer.status, 200, "{from:?} {lines:?}");
        assert!(answer.body.contains(expected), "from {from:?} with {lines:?}: {:?}", answer.body);
    }
}
