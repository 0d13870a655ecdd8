//! The HTTP API of SPEC §7, end to end: the real binary on a free port, a
//! temporary SQLite file (and once PostgreSQL), spoken to over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, TempDir, create_connection, create_user, parse, run_cli};

fn maps_and_sql() -> Value {
    json!({
        "name": "Dashboard",
        "allowed_apis": ["sql", "maps"],
        "grants": [
            {"connection_name": "carto_dw", "source": "project.dataset.roads"},
            {"connection_name": "carto_dw", "source": "SELECT * FROM `project.dataset.roads` WHERE id = @id"}
        ],
        "referers": ["https://app.example.com/"]
    })
}

fn start(dir: &TempDir) -> (Server, String) {
    let server = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("server.log"));
    let key = server.admin_key.clone().expect("a new database is bootstrapped");
    (server, key)
}

#[tokio::test]
async fn token_lifecycle() {
    let dir = TempDir::new("lifecycle");
    let (server, key) = start(&dir);
    let key = Some(key.as_str());

    let response = server.request(Method::POST, "/v3/tokens", key).json(&maps_and_sql()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[ETAG], "\"1\"");
    let location = response.headers()[LOCATION].to_str().unwrap().to_owned();
    let (_, created) = parse(response).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let value = created["token"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v3/tokens/{id}"));
    assert!(value.starts_with("latchkey_tk_"));
    assert_eq!(created["name"], "Dashboard");
    assert_eq!(created["allowed_apis"], json!(["maps", "sql"]));
    assert_eq!(created["grants"][0], json!({"connection_name": "carto_dw", "source": "project.dataset.roads"}));
    assert_eq!(created["referers"], json!(["https://app.example.com/"]));
    assert_eq!((created["expiration_date"].clone(), created["last_used_at"].clone()), (Value::Null, Value::Null));
    assert_eq!(created["created_at"], created["updated_at"]);
    assert_eq!(created["warnings"], json!([]));
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(created["allowed_ips"], json!([]));
    assert_eq!(created["previous_value_expires_at"], Value::Null);
    assert_eq!(
        keys.len(),
        13,
        "exactly the fields of SPEC §7 and §13: id, token, name, allowed_apis, grants, referers, allowed_ips, \
         expiration_date, previous_value_expires_at, created_at, updated_at, last_used_at, warnings; got {keys:?}"
    );

    let (status, list) = server.call(Method::GET, "/v3/tokens", key, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"], json!([created.clone()]));
    assert_eq!(list["next_cursor"], Value::Null);

    for reference in [&id, &value] {
        let (status, got) = server.call(Method::GET, &format!("/v3/tokens/{reference}"), key, None).await;
        assert_eq!((status, &got), (StatusCode::OK, &created));
    }

    let (allowed, reason) = server
        .authorize(json!({"token": value, "api": "maps", "connection_name": "carto_dw", "source_type": "table",
            "source": "project.dataset.roads", "referer": "https://app.example.com/map"}))
        .await;
    assert_eq!((allowed, reason), (true, None));

    let response = server
        .request(Method::PATCH, &format!("/v3/tokens/{id}"), key)
        .header(IF_MATCH, "\"1\"")
        .json(&json!({"referers": ["https://app.example.com/", "*.example.org"], "name": "Dashboard v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[ETAG], "\"2\"");
    let (_, updated) = parse(response).await;
    assert_eq!(updated["name"], "Dashboard v2");
    assert_eq!(updated["referers"], json!(["https://app.example.com/", "*.example.org"]));
    assert_eq!(updated["grants"], created["grants"], "fields not named are kept");
    assert_eq!(updated["token"], created["token"], "the value never changes");
    assert!(updated["updated_at"].as_str() > created["updated_at"].as_str());

    // The use is recorded within the flush interval.
    let mut last_used = Value::Null;
    for _ in 0..50 {
        let (_, got) = server.call(Method::GET, &format!("/v3/tokens/{id}"), key, None).await;
        last_used = got["last_used_at"].clone();
        if !last_used.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(last_used.is_string(), "last_used_at recorded");

    let (status, body) = server.call(Method::DELETE, &format!("/v3/tokens/{id}"), key, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let (allowed, reason) = server
        .authorize(json!({"token": value, "api": "maps", "connection_name": "carto_dw", "source_type": "table",
            "source": "project.dataset.roads", "referer": "https://app.example.com/map"}))
        .await;
    assert_eq!((allowed, reason.as_deref()), (false, Some("token_unknown")), "refused right after the delete");
    let (status, body) = server.call(Method::GET, &format!("/v3/tokens/{id}"), key, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

#[tokio::test]
async fn every_denial_reason_through_authorize() {
    let dir = TempDir::new("denials");
    let (server, key) = start(&dir);
    let key = Some(key.as_str());
    let (_, token) = server.call(Method::POST, "/v3/tokens", key, Some(maps_and_sql())).await;
    let value = token["token"].as_str().unwrap();
    let expiring = json!({"allowed_apis": ["lds"], "grants": [],
        "expiration_date": (time_in(2)), "name": "short-lived"});
    let (status, short) = server.call(Method::POST, "/v3/tokens", key, Some(expiring)).await;
    assert_eq!(status, StatusCode::CREATED, "{short}");

    let base = json!({"token": value, "api": "maps", "connection_name": "carto_dw", "source_type": "tileset",
        "source": "project.dataset.roads", "referer": "https://app.example.com/"});
    let with = |changes: Value| latchkey_testkit::changed(&base, &changes);
    let cases = [
        (with(json!({})), None),
        (with(json!({"token": "latchkey_tk_thisIsNotAToken"})), Some("token_malformed")),
        (with(json!({"token": ""})), Some("token_malformed")),
        (with(json!({"token": token_shaped()})), Some("token_unknown")),
        (with(json!({"api": "imports", "source_type": "table"})), Some("api_not_allowed")),
        (with(json!({"api": "lds"})), Some("api_not_allowed")),
        (with(json!({"referer": null})), Some("referer_missing")),
        (with(json!({"referer": null, "origin": "https://app.example.com"})), None),
        (with(json!({"referer": "https://app.example.com.evil.net/"})), Some("referer_not_allowed")),
        (with(json!({"connection_name": "elsewhere"})), Some("connection_not_granted")),
        (with(json!({"source": "project.dataset.rivers"})), Some("source_not_granted")),
        (
            with(
                json!({"api": "sql", "source_type": "query", "source": "select * from `project.dataset.roads`\n where id=@id"}),
            ),
            None,
        ),
        (
            with(json!({"api": "sql", "source_type": "query", "source": "SELECT * FROM `project.dataset.roads`"})),
            Some("source_not_granted"),
        ),
    ];
    for (request, expected) in cases {
        let (allowed, reason) = server.authorize(request.clone()).await;
        assert_eq!((allowed, reason.as_deref()), (expected.is_none(), expected), "{request}");
    }
    // Restricted to addresses: after the referer, before the connection.
    let path = format!("/v3/tokens/{}", token["id"].as_str().unwrap());
    let (status, _) = server.call(Method::PATCH, &path, key, Some(json!({"allowed_ips": ["192.0.2.0/24"]}))).await;
    assert_eq!(status, StatusCode::OK);
    for (request, expected) in [
        (with(json!({"client_ip": "192.0.2.1"})), None),
        (with(json!({"client_ip": "198.51.100.1"})), Some("ip_not_allowed")),
        (with(json!({})), Some("ip_not_allowed")),
        (with(json!({"client_ip": "198.51.100.1", "referer": "https://evil.example/"})), Some("referer_not_allowed")),
        (with(json!({"client_ip": "198.51.100.1", "connection_name": "elsewhere"})), Some("ip_not_allowed")),
    ] {
        let (allowed, reason) = server.authorize(request.clone()).await;
        assert_eq!((allowed, reason.as_deref()), (expected.is_none(), expected), "{request}");
    }
    let lds = json!({"token": short["token"], "api": "lds"});
    assert_eq!(server.authorize(lds.clone()).await, (true, None));
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(server.authorize(lds).await, (false, Some("token_expired".to_owned())));

    // Malformed requests are 400, not denials.
    for bad in [
        json!({"token": value, "api": "teleport"}),
        json!({"token": value, "api": "maps"}),
        json!({"token": value, "api": "maps", "connection_name": "carto_dw", "source_type": "view", "source": "x"}),
        json!({"api": "lds"}),
        json!({"token": value, "api": "lds", "referrer": "https://x"}),
        json!({"token": value, "api": "lds", "client_ip": "192.0.2.1/32"}),
        json!({"token": value, "api": "lds", "dry_run": "yes"}),
    ] {
        let (status, body) = server.call(Method::POST, "/v3/authorize", None, Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} → {body}");
        assert!(body["details"].as_array().is_some_and(|d| !d.is_empty()), "{body}");
    }
}

/// A value in the token format that no server issued.
fn token_shaped() -> String {
    latchkey_domain::TokenValue::generate(&mut rand::rngs::SysRng).unwrap().expose().to_owned()
}

/// A user key in the right format that no server issued.
fn user_key_shaped() -> String {
    latchkey_domain::UserKey::generate(&mut rand::rngs::SysRng).unwrap().expose().to_owned()
}

fn time_in(seconds: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn every_status_and_error_code() {
    let dir = TempDir::new("errors");
    let (server, key) = start(&dir);
    let key = Some(key.as_str());
    let (_, token) = server.call(Method::POST, "/v3/tokens", key, Some(maps_and_sql())).await;
    let id = token["id"].as_str().unwrap();

    // 401 on every management endpoint, with WWW-Authenticate, for a
    // missing, malformed or unknown credential.
    let management = [
        (Method::POST, "/v3/tokens".to_owned()),
        (Method::GET, "/v3/tokens".to_owned()),
        (Method::GET, format!("/v3/tokens/{id}")),
        (Method::PATCH, format!("/v3/tokens/{id}")),
        (Method::DELETE, format!("/v3/tokens/{id}")),
        (Method::GET, "/v3/connections".to_owned()),
    ];
    let unknown_key = user_key_shaped();
    for (method, path) in &management {
        for credential in [None, Some("garbage"), Some(unknown_key.as_str()), Some(token["token"].as_str().unwrap())] {
            let response = server.request(method.clone(), path, credential).json(&json!({})).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path} {credential:?}");
            assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
            let (_, body) = parse(response).await;
            assert_eq!(body["code"], "unauthorized");
        }
    }

    let cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/v3/tokens".into(),
            Some(json!({"allowed_apis": []})),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            Method::POST,
            "/v3/tokens".into(),
            Some(json!({"allowed_apis": ["maps"], "grants": [{"connection_name": "carto_dw", "source": "project.*"}]})),
            StatusCode::BAD_REQUEST,
            "validation_failed",
        ),
        (
            Method::PATCH,
            format!("/v3/tokens/{id}"),
            Some(json!({"expiration_date": "2030-01-01T00:00:00Z"})),
            StatusCode::BAD_REQUEST,
            "expiration_immutable",
        ),
        (
            Method::PATCH,
            format!("/v3/tokens/{id}"),
            Some(json!({"expiration_date": null})),
            StatusCode::BAD_REQUEST,
            "expiration_immutable",
        ),
        (Method::GET, "/v3/tokens/Hq3xJ7rT2mKa".into(), None, StatusCode::NOT_FOUND, "not_found"),
        (Method::GET, "/v3/tokens/not-a-token".into(), None, StatusCode::NOT_FOUND, "not_found"),
        (Method::DELETE, "/v3/tokens/Hq3xJ7rT2mKa".into(), None, StatusCode::NOT_FOUND, "not_found"),
        (Method::GET, "/v3/nowhere".into(), None, StatusCode::NOT_FOUND, "not_found"),
        (Method::POST, "/v3/tokens".into(), Some(maps_and_sql()), StatusCode::CONFLICT, "name_taken"),
        (Method::PUT, "/v3/tokens".into(), None, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (method, path, body, status, code) in cases {
        let (got_status, got) = server.call(method.clone(), &path, key, body).await;
        assert_eq!((got_status, got["code"].as_str()), (status, Some(code)), "{method} {path}: {got}");
        assert!(got["error"].as_str().is_some_and(|e| !e.is_empty()));
        assert_eq!(got.get("details").is_some(), code == "validation_failed", "details only on validation errors");
    }

    // 412 with a stale If-Match, on PATCH and DELETE; nothing changes.
    for method in [Method::PATCH, Method::DELETE] {
        let response = server
            .request(method.clone(), &format!("/v3/tokens/{id}"), key)
            .header(IF_MATCH, "\"7\"")
            .json(&json!({"name": "stale"}))
            .send()
            .await
            .unwrap();
        let (status, body) = parse(response).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::PRECONDITION_FAILED, Some("precondition_failed")));
        // An If-Match that no version could ever match is malformed, not
        // stale: 400, as the document's pattern for the header says.
        let malformed_values: Vec<&[u8]> = vec![b"{}", b"null", b"7", b"\"x\"", b"W/\"1\"", b"\xc2\x84"];
        for malformed in
            malformed_values.into_iter().map(|bytes| reqwest::header::HeaderValue::from_bytes(bytes).unwrap())
        {
            let response = server
                .request(method.clone(), &format!("/v3/tokens/{id}"), key)
                .header(IF_MATCH, malformed.clone())
                .json(&json!({"name": "malformed"}))
                .send()
                .await
                .unwrap();
            let (status, body) = parse(response).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_request")),
                "{malformed:?}"
            );
        }
    }
    let (_, unchanged) = server.call(Method::GET, &format!("/v3/tokens/{id}"), key, None).await;
    assert_eq!(unchanged, token);

    // 413 for a body over the limit, 415 without JSON.
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let response = server
        .request(Method::POST, "/v3/tokens", key)
        .header(CONTENT_TYPE, "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let (status, body) = parse(response).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let mut request = server.request(Method::POST, "/v3/tokens", key).body(maps_and_sql().to_string());
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let (status, body) = parse(request.send().await.unwrap()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type"))
        );
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_never_a_5xx() {
    let dir = TempDir::new("bad-input");
    let (server, key) = start(&dir);
    let key = Some(key.as_str());
    let raw_bodies: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not JSON", b"{\"allowed_apis\": [".to_vec(), "invalid_request"),
        ("not an object", b"[1, 2]".to_vec(), "invalid_request"),
        ("empty", Vec::new(), "invalid_request"),
        ("not UTF-8", b"{\"name\": \"\xff\xfe\"}".to_vec(), "invalid_request"),
        ("wrong types", br#"{"allowed_apis": "maps", "grants": {}}"#.to_vec(), "validation_failed"),
        (
            "a number for a source",
            br#"{"allowed_apis": ["maps"], "grants": [{"connection_name": "carto_dw", "source": 5}]}"#.to_vec(),
            "validation_failed",
        ),
        ("missing grants", br#"{"allowed_apis": ["lds"]}"#.to_vec(), "validation_failed"),
        (
            "unknown fields",
            br#"{"allowed_apis": ["lds"], "grants": [], "referrers": ["https://a.com"]}"#.to_vec(),
            "validation_failed",
        ),
        (
            "a grant as an array of its fields",
            br#"{"allowed_apis": ["maps"], "grants": [["carto_dw", "*"]]}"#.to_vec(),
            "validation_failed",
        ),
        ("deeply nested", format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(), "invalid_request"),
    ];
    for (what, body, code) in raw_bodies {
        let response = server
            .request(Method::POST, "/v3/tokens", key)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, got) = parse(response).await;
        assert_eq!((status, got["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{what}: {got}");
    }
    // Every field of a patch is optional: an array must not pass for an
    // empty patch (nor, with If-Match, reach the version check).
    let (_, created) =
        server.call(Method::POST, "/v3/tokens", key, Some(json!({"allowed_apis": ["lds"], "grants": []}))).await;
    let path = format!("/v3/tokens/{}", created["id"].as_str().unwrap());
    for if_match in [None, Some("\"1\""), Some("")] {
        let mut request = server.request(Method::PATCH, &path, key).header(CONTENT_TYPE, "application/json");
        if let Some(value) = if_match {
            request = request.header("If-Match", value);
        }
        let (status, got) = parse(request.body("[null, null]").send().await.unwrap()).await;
        assert_eq!((status, got["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{if_match:?}");
    }
    let (_, got) = server
        .call(Method::POST, "/v3/tokens", key, Some(json!({"allowed_apis": ["lds"], "grants": [], "referrers": []})))
        .await;
    assert_eq!(got["details"][0]["field"], "referrers", "the misspelt field is named");

    for limit in ["0", "501", "-1", "abc", "1e3", "100000000000000000000000", ""] {
        let (status, got) = server.call(Method::GET, &format!("/v3/tokens?limit={limit}"), key, None).await;
        assert_eq!((status, got["details"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")), "{limit}");
    }
    for cursor in ["garbage", "AAAA", "%FF"] {
        let (status, got) = server.call(Method::GET, &format!("/v3/tokens?cursor={cursor}"), key, None).await;
        assert_eq!(
            (status, got["details"][0]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("cursor")),
            "{cursor}"
        );
    }
    for path in ["/v3/tokens/%FF%FE", "/v3/tokens/..%2F..%2Fetc", "/v3/tokens/latchkey_tk_%00"] {
        let (status, got) = server.call(Method::GET, path, key, None).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert!(got["code"].is_string(), "{path}: {got}");
    }
    let (status, _) = server.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK, "still alive");
    assert!(!server.log_text().contains("panicked"), "no panic in the log");
}

#[tokio::test]
async fn users_never_see_each_others_tokens() {
    let dir = TempDir::new("isolation");
    let db = dir.sqlite_url();
    let ana = create_user(&db, "acme", "ana");
    let bob = create_user(&db, "acme", "bob");
    let cy = create_user(&db, "globex", "cy");
    create_connection(&db, "acme", "warehouse", "bigquery");
    create_connection(&db, "globex", "warehouse", "snowflake");
    let server = Server::start(&db, &["--no-bootstrap"], &[], &dir.path().join("server.log"));
    assert!(server.admin_key.is_none(), "--no-bootstrap prints no key");

    let token_for = |name: &str| json!({"name": name, "allowed_apis": ["maps"], "grants": [{"connection_name": "warehouse", "source": "a.b.c"}]});
    let mut tokens = Vec::new();
    for (user, key) in [("ana", &ana), ("bob", &bob), ("cy", &cy)] {
        let (status, token) = server.call(Method::POST, "/v3/tokens", Some(key), Some(token_for("shared name"))).await;
        assert_eq!(status, StatusCode::CREATED, "{user}: {token}");
        tokens.push((user, key.clone(), token));
    }
    for (owner, _, token) in &tokens {
        for (intruder, intruder_key, _) in &tokens {
            if owner == intruder {
                continue;
            }
            let intruder_key = Some(intruder_key.as_str());
            for reference in [token["id"].as_str().unwrap(), token["token"].as_str().unwrap()] {
                let path = format!("/v3/tokens/{reference}");
                let roll = format!("{path}/roll");
                let attempts = [
                    (Method::GET, &path, None),
                    (Method::PATCH, &path, Some(json!({"referers": ["https://evil.example/"]}))),
                    (Method::PATCH, &path, Some(json!({"allowed_ips": ["0.0.0.0/0"]}))),
                    (Method::PATCH, &path, Some(json!({"expiration_date": "2030-01-01T00:00:00Z"}))),
                    (Method::POST, &roll, Some(json!({"grace_seconds": 600}))),
                    (Method::POST, &roll, None),
                    (Method::DELETE, &path, None),
                ];
                for (method, path, body) in attempts {
                    let (status, got) = server.call(method.clone(), path, intruder_key, body.clone()).await;
                    let expected = if body.as_ref().is_some_and(|b| b.get("expiration_date").is_some()) {
                        // Refused before any lookup, for every token alike:
                        // it tells nothing about this one.
                        "expiration_immutable"
                    } else {
                        "not_found"
                    };
                    assert_eq!(got["code"], expected, "{intruder} {method} {owner}'s token: {status}");
                }
            }
            let (_, list) = server.call(Method::GET, "/v3/tokens", intruder_key, None).await;
            assert!(list["data"].as_array().unwrap().iter().all(|t| t["id"] != token["id"]));
            // Nor its history, nor the org's tokens: members are no admins.
            let history = format!("/v3/audit?token={}", token["id"].as_str().unwrap());
            let (status, events) = server.call(Method::GET, &history, intruder_key, None).await;
            assert_eq!((status, events["data"].clone()), (StatusCode::OK, json!([])), "{intruder}: {owner}'s history");
            let revoke = format!("/v3/org/tokens/{}", token["id"].as_str().unwrap());
            for (method, path) in [(Method::GET, "/v3/org/tokens"), (Method::DELETE, revoke.as_str())] {
                let (status, got) = server.call(method.clone(), path, intruder_key, None).await;
                assert_eq!(
                    (status, got["code"].as_str()),
                    (StatusCode::FORBIDDEN, Some("forbidden")),
                    "{method} {path}"
                );
            }
        }
    }
    // An admin of another org reaches none of them.
    let boss = support::create_admin(&db, "initech", "boss");
    for (owner, _, token) in &tokens {
        let id = token["id"].as_str().unwrap();
        for (method, path) in [
            (Method::DELETE, format!("/v3/org/tokens/{id}")),
            (Method::GET, format!("/v3/tokens/{id}")),
            (Method::POST, format!("/v3/tokens/{id}/roll")),
        ] {
            let (status, _) = server.call(method.clone(), &path, Some(&boss), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "initech's admin: {method} {owner}'s token");
        }
    }
    let (_, theirs) = server.call(Method::GET, "/v3/org/tokens", Some(&boss), None).await;
    assert_eq!(theirs["data"], json!([]), "initech's admin lists initech's tokens only");
    let (_, their_log) = server.call(Method::GET, "/v3/audit", Some(&boss), None).await;
    assert_eq!(their_log["data"], json!([]), "and reads initech's log only");
    // Nothing changed: every owner sees their token exactly as created.
    for (owner, key, token) in &tokens {
        let (status, now) =
            server.call(Method::GET, &format!("/v3/tokens/{}", token["id"].as_str().unwrap()), Some(key), None).await;
        assert_eq!((status, &now), (StatusCode::OK, token), "{owner}");
    }
    // Connections are per org.
    let (_, acme) = server.call(Method::GET, "/v3/connections", Some(&ana), None).await;
    assert_eq!(acme, json!({"data": [{"name": "warehouse", "provider": "bigquery"}]}));
    let (_, globex) = server.call(Method::GET, "/v3/connections", Some(&cy), None).await;
    assert_eq!(globex, json!({"data": [{"name": "warehouse", "provider": "snowflake"}]}));
    // A grant on another org's connection name resolves in the caller's org.
    let (status, got) = server
        .call(
            Method::POST,
            "/v3/tokens",
            Some(&cy),
            Some(json!({"allowed_apis": ["maps"],
            "grants": [{"connection_name": "carto_dw", "source": "a.b.c"}]})),
        )
        .await;
    assert_eq!((status, got["details"][0]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("connection_unknown")));
}

#[tokio::test]
async fn pages_of_tokens() {
    let dir = TempDir::new("pages");
    let (server, key) = start(&dir);
    let key = Some(key.as_str());
    let mut created = Vec::new();
    for i in 0..7 {
        let body = json!({"name": format!("t{i}"), "allowed_apis": ["lds"], "grants": []});
        let (_, token) = server.call(Method::POST, "/v3/tokens", key, Some(body)).await;
        created.push(token["id"].as_str().unwrap().to_owned());
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut path = "/v3/tokens?limit=3".to_owned();
    loop {
        let (status, page) = server.call(Method::GET, &path, key, None).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(page["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v3/tokens?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, created, "newest first, each once");
    let (_, all) = server.call(Method::GET, "/v3/tokens", key, None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 7, "default limit 50");
}

#[tokio::test]
async fn a_restart_keeps_every_token_and_every_delete() {
    let dir = TempDir::new("restart");
    let db = dir.sqlite_url();
    let (server, key) = start(&dir);
    let k = Some(key.as_str());
    let (_, kept) = server
        .call(Method::POST, "/v3/tokens", k, Some(json!({"name": "kept", "allowed_apis": ["lds"], "grants": []})))
        .await;
    let (_, gone) = server
        .call(Method::POST, "/v3/tokens", k, Some(json!({"name": "gone", "allowed_apis": ["lds"], "grants": []})))
        .await;
    server.call(Method::DELETE, &format!("/v3/tokens/{}", gone["id"].as_str().unwrap()), k, None).await;
    let lds = |token: &Value| json!({"token": token["token"], "api": "lds"});
    assert_eq!(server.authorize(lds(&kept)).await, (true, None));
    let status = server.stop();
    assert!(status.success(), "a clean shutdown on SIGTERM: {status}");

    let server = Server::start(&db, &[], &[], &dir.path().join("second.log"));
    assert!(server.admin_key.is_none(), "the bootstrap runs once");
    let (status, again) =
        server.call(Method::GET, &format!("/v3/tokens/{}", kept["id"].as_str().unwrap()), k, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["token"], kept["token"], "the same value, opened with the same key");
    assert!(again["last_used_at"].is_string(), "the use before the shutdown was written at shutdown");
    assert_eq!(server.authorize(lds(&kept)).await, (true, None));
    assert_eq!(server.authorize(lds(&gone)).await, (false, Some("token_unknown".to_owned())));
}

#[tokio::test]
async fn system_endpoints() {
    let dir = TempDir::new("system");
    let (server, _) = start(&dir);
    for path in ["/healthz", "/readyz"] {
        let (status, body) = server.call(Method::GET, path, None, None).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})), "{path}");
    }
    let (status, document) = server.call(Method::GET, "/v3/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[tokio::test]
async fn users_of_an_identity_provider_sign_in_with_jwts() {
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    let dir = TempDir::new("jwt");
    let secret = "an HS256 secret of at least thirty-two bytes, test only";
    let secret_file = dir.path().join("jwt.secret");
    std::fs::write(&secret_file, secret).unwrap();
    let db = dir.sqlite_url();
    create_user(&db, "acme", "local-admin");
    create_connection(&db, "acme", "warehouse", "postgres");
    let server = Server::start(
        &db,
        &[
            "--jwt-secret-file",
            secret_file.to_str().unwrap(),
            "--jwt-issuer",
            "https://idp.test/",
            "--jwt-audience",
            "latchkey",
            "--jwt-admin-claim",
            "roles=latchkey-admin",
        ],
        &[],
        &dir.path().join("server.log"),
    );
    let signed = |sub: &str, org: &str, roles: Value, exp_offset: i64| {
        let claims = json!({"iss": "https://idp.test/", "aud": "latchkey", "sub": sub, "org": org, "roles": roles,
            "exp": get_current_timestamp() as i64 + exp_offset});
        encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    };
    let jwt = |sub: &str, exp_offset: i64| signed(sub, "acme", json!(["dev"]), exp_offset);
    let ana = jwt("auth0|ana", 600);
    let (status, token) = server
        .call(
            Method::POST,
            "/v3/tokens",
            Some(&ana),
            Some(json!({"allowed_apis": ["sql"],
            "grants": [{"connection_name": "warehouse", "source": "SELECT 1"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let (_, list) = server.call(Method::GET, "/v3/tokens", Some(&jwt("auth0|ana", 60)), None).await;
    assert_eq!(list["data"][0]["id"], token["id"], "a fresh JWT of the same user sees the token");
    let (_, other) = server.call(Method::GET, "/v3/tokens", Some(&jwt("auth0|bob", 60)), None).await;
    assert_eq!(other["data"], json!([]));
    let (status, _) = server.call(Method::GET, "/v3/tokens", Some(&jwt("auth0|ana", -120)), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired");

    // Roles come from the claim named by --jwt-admin-claim, and only there.
    let org_tokens = "/v3/org/tokens";
    let (status, _) = server.call(Method::GET, org_tokens, Some(&jwt("auth0|ana", 60)), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a JWT member");
    let admin = signed("auth0|root", "acme", json!(["dev", "latchkey-admin"]), 60);
    let (status, page) = server.call(Method::GET, org_tokens, Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"][0]["id"], token["id"]);
    assert_eq!((page["data"][0]["owner"].as_str(), &page["data"][0]["token"]), (Some("auth0|ana"), &Value::Null));
    let outsider = signed("auth0|root", "globex", json!(["latchkey-admin"]), 60);
    let revoke = format!("/v3/org/tokens/{}", token["id"].as_str().unwrap());
    let (status, _) = server.call(Method::DELETE, &revoke, Some(&outsider), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a JWT admin of another org");
    let (status, _) = server.call(Method::DELETE, &revoke, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, history) = server.call(Method::GET, "/v3/audit", Some(&jwt("auth0|ana", 60)), None).await;
    assert_eq!(history["data"][0]["action"], "token.revoked");
    assert_eq!(history["data"][0]["actor"], json!({"user": "auth0|root", "org": "acme"}));
}

/// An OpenID Connect provider for the binary: discovery and a JWKS that
/// the test swaps to rotate keys. Answers the issuer URL.
async fn start_oidc_provider(jwks: std::sync::Arc<std::sync::Mutex<Value>>) -> String {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let document = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(move || std::future::ready(axum::Json(document.clone()))))
        .route("/jwks", get(move || std::future::ready(axum::Json(jwks.lock().unwrap().clone()))));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    issuer
}

// Multi-threaded: starting the server blocks its thread while the provider
// must answer the server's discovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_provider_rotates_its_keys_and_the_server_follows_without_a_restart() {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
    const RSA_PEM: &[u8] = include_bytes!("../crates/adapters/jwt/tests/fixtures/rsa-private.pem");
    const EC_PEM: &[u8] = include_bytes!("../crates/adapters/jwt/tests/fixtures/ec-private.pem");
    let rsa = EncodingKey::from_rsa_pem(RSA_PEM).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PEM).unwrap();
    let public = |key: &EncodingKey, algorithm, kid: &str| {
        let mut jwk = Jwk::from_encoding_key(key, algorithm).unwrap();
        jwk.common.key_id = Some(kid.into());
        serde_json::to_value(JwkSet { keys: vec![jwk] }).unwrap()
    };
    let jwks = std::sync::Arc::new(std::sync::Mutex::new(public(&rsa, Algorithm::RS256, "first")));
    let issuer = start_oidc_provider(jwks.clone()).await;

    let dir = TempDir::new("oidc");
    let db = dir.sqlite_url();
    create_user(&db, "acme", "local-admin");
    let server = Server::start(
        &db,
        &["--oidc-issuer", &issuer, "--jwt-audience", "latchkey"],
        &[],
        &dir.path().join("server.log"),
    );
    let jwt = |key: &EncodingKey, algorithm, kid: &str| {
        let claims = json!({"iss": issuer, "aud": "latchkey", "sub": "ana", "org": "acme",
            "exp": get_current_timestamp() + 600});
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.into());
        encode(&header, &claims, key).unwrap()
    };
    let first = jwt(&rsa, Algorithm::RS256, "first");
    let (status, _) = server.call(Method::GET, "/v3/tokens", Some(&first), None).await;
    assert_eq!(status, StatusCode::OK);

    *jwks.lock().unwrap() = public(&ec, Algorithm::ES256, "second");
    let second = jwt(&ec, Algorithm::ES256, "second");
    let (status, body) = server.call(Method::GET, "/v3/tokens", Some(&second), None).await;
    assert_eq!(status, StatusCode::OK, "the new key, fetched on first sight: {body}");
    let (status, _) = server.call(Method::GET, "/v3/tokens", Some(&first), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the withdrawn key");

    // A provider that cannot be reached stops the start, saying where.
    let (ok, _, stderr) = run_cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database",
        &db,
        "--oidc-issuer",
        "http://127.0.0.1:9",
        "--jwt-audience",
        "latchkey",
    ]);
    assert!(!ok);
    assert!(stderr.contains("http://127.0.0.1:9/.well-known/openid-configuration"), "{stderr}");
}

#[tokio::test]
async fn postgres_store_end_to_end() {
    let database = latchkey_test_postgres::TestDatabase::create().await;
    let dir = TempDir::new("postgres");
    let server = Server::start(database.url(), &[], &[], &dir.path().join("server.log"));
    let key = server.admin_key.clone().expect("bootstrapped");
    let key = Some(key.as_str());
    let (status, token) = server.call(Method::POST, "/v3/tokens", key, Some(maps_and_sql())).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let request = json!({"token": token["token"], "api": "maps", "connection_name": "carto_dw",
        "source_type": "table", "source": "project.dataset.roads", "origin": "https://app.example.com"});
    assert_eq!(server.authorize(request.clone()).await, (true, None));
    let (status, _) =
        server.call(Method::DELETE, &format!("/v3/tokens/{}", token["id"].as_str().unwrap()), key, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(server.authorize(request).await, (false, Some("token_unknown".to_owned())));
    assert!(server.stop().success());
    database.drop_database().await;
}

#[tokio::test]
async fn corrupt_stored_data_is_an_internal_error_and_refuses() {
    let dir = TempDir::new("corrupt");
    let (server, key) = start(&dir);
    let key = Some(key.as_str());
    let (_, token) = server.call(Method::POST, "/v3/tokens", key, Some(maps_and_sql())).await;
    let id = token["id"].as_str().unwrap();
    // Another process damages the row behind the server's back.
    let file = rusqlite::Connection::open(dir.path().join("latchkey.db")).unwrap();
    file.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    file.execute("UPDATE tokens SET allowed_apis = 'maps,teleport' WHERE id = ?1", [id]).unwrap();
    drop(file);

    let (status, body) = server.call(Method::GET, &format!("/v3/tokens/{id}"), key, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("internal")));
    assert_eq!(body["error"], "internal error", "no internal detail reaches the client");
    let (status, body) = server
        .call(
            Method::POST,
            "/v3/authorize",
            None,
            Some(json!({"token": token["token"], "api": "maps",
            "connection_name": "carto_dw", "source_type": "table", "source": "project.dataset.roads",
            "referer": "https://app.example.com/"})),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("internal")), "never allowed");
    assert!(server.log_text().contains("corrupt stored data"), "the cause is logged");
}
