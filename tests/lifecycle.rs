//! SPEC §13 end to end, through the real binary over HTTP: rolling a token
//! with a grace period, org admins and the org token policy, the audit log,
//! client address restrictions and dry-run authorize.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, TempDir, create_admin, create_connection, create_user, parse};

fn maps_token(name: &str) -> Value {
    json!({"name": name, "allowed_apis": ["maps"], "grants": [{"connection_name": "carto_dw", "source": "p.d.t"}]})
}

fn maps_use(token: &str) -> Value {
    json!({"token": token, "api": "maps", "connection_name": "carto_dw", "source_type": "table", "source": "p.d.t"})
}

fn start(dir: &TempDir) -> (Server, String) {
    let server = Server::start(&dir.sqlite_url(), &[], &[], &dir.path().join("server.log"));
    let key = server.admin_key.clone().expect("a new database is bootstrapped");
    (server, key)
}

async fn create(server: &Server, key: &str, body: Value) -> Value {
    let (status, token) = server.call(Method::POST, "/v3/tokens", Some(key), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    token
}

fn detail_fields(body: &Value) -> Vec<(String, String)> {
    body["details"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|d| (d["field"].as_str().unwrap().to_owned(), d["code"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_roll_gives_a_new_value_and_the_previous_one_a_grace_period() {
    let dir = TempDir::new("roll");
    let (server, key) = start(&dir);
    let token = create(&server, &key, maps_token("rolling")).await;
    let (id, first) = (token["id"].as_str().unwrap(), token["token"].as_str().unwrap().to_owned());
    assert_eq!(token["previous_value_expires_at"], Value::Null);
    assert_eq!(server.authorize(maps_use(&first)).await, (true, None), "warms the cache");

    // An empty body is a roll without grace; here, a grace of 2 seconds.
    let path = format!("/v3/tokens/{id}/roll");
    let response = server.request(Method::POST, &path, Some(&key)).json(&json!({"grace_seconds": 2})).send().await;
    let response = response.unwrap();
    assert_eq!(response.headers()[ETAG], "\"2\"", "a roll is a new version");
    let (status, rolled) = parse(response).await;
    assert_eq!(status, StatusCode::OK, "{rolled}");
    let second = rolled["token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(rolled["id"], token["id"], "the same token");
    assert!(rolled["previous_value_expires_at"].is_string());
    assert_eq!(server.authorize(maps_use(&second)).await, (true, None), "the new value works");
    assert_eq!(server.authorize(maps_use(&first)).await, (true, None), "the previous one, during its grace");
    // The value shown again is the new one; the previous one still names
    // the token while it works.
    let (_, shown) = server.call(Method::GET, &format!("/v3/tokens/{id}"), Some(&key), None).await;
    assert_eq!(shown["token"], second.as_str());
    let (status, _) = server.call(Method::GET, &format!("/v3/tokens/{first}"), Some(&key), None).await;
    assert_eq!(status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(
        server.authorize(maps_use(&first)).await,
        (false, Some("token_unknown".into())),
        "after the grace period, cached or not"
    );
    let (status, _) = server.call(Method::GET, &format!("/v3/tokens/{first}"), Some(&key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, shown) = server.call(Method::GET, &format!("/v3/tokens/{id}"), Some(&key), None).await;
    assert_eq!(shown["previous_value_expires_at"], Value::Null, "no grace period running");

    // A second roll ends an earlier previous value at once.
    let (_, third) = server.call(Method::POST, &path, Some(&key), Some(json!({"grace_seconds": 600}))).await;
    let third = third["token"].as_str().unwrap().to_owned();
    assert_eq!(server.authorize(maps_use(&second)).await, (true, None));
    let (_, fourth) = server.call(Method::POST, &path, Some(&key), Some(json!({"grace_seconds": 600}))).await;
    let fourth = fourth["token"].as_str().unwrap().to_owned();
    assert_eq!(server.authorize(maps_use(&second)).await, (false, Some("token_unknown".into())));
    assert_eq!(server.authorize(maps_use(&third)).await, (true, None));
    assert_eq!(server.authorize(maps_use(&fourth)).await, (true, None));
    // Without grace, the previous value ends with the roll.
    let response = server.request(Method::POST, &path, Some(&key)).send().await.unwrap();
    let (status, fifth) = parse(response).await;
    assert_eq!(status, StatusCode::OK, "{fifth}");
    assert_eq!(fifth["previous_value_expires_at"], Value::Null);
    assert_eq!(server.authorize(maps_use(&fourth)).await, (false, Some("token_unknown".into())));

    // Bad rolls change nothing.
    let version = fifth["updated_at"].clone();
    for (body, field) in [
        (json!({"grace_seconds": 604_801}), "grace_seconds"),
        (json!({"grace_seconds": -1}), "grace_seconds"),
        (json!({"grace_secs": 5}), "grace_secs"),
    ] {
        let (status, error) = server.call(Method::POST, &path, Some(&key), Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(detail_fields(&error)[0].0, field, "{error}");
    }
    let not_json = server
        .request(Method::POST, &path, Some(&key))
        .header(CONTENT_TYPE, "text/plain")
        .body("grace_seconds=5")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let stale = server.request(Method::POST, &path, Some(&key)).header(IF_MATCH, "\"1\"").send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let (_, unchanged) = server.call(Method::GET, &format!("/v3/tokens/{id}"), Some(&key), None).await;
    assert_eq!((unchanged["token"].as_str(), &unchanged["updated_at"]), (fifth["token"].as_str(), &version));
    let (status, _) = server.call(Method::POST, "/v3/tokens/AAAAAAAAAAAA/roll", Some(&key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!server.log_text().contains(&first), "no token value in the log");
}

#[tokio::test]
async fn admins_see_and_revoke_every_token_of_their_org_but_never_a_value() {
    let dir = TempDir::new("admins");
    let db = dir.sqlite_url();
    let (server, admin) = start(&dir);
    let ana = create_user(&db, "default", "ana");
    let deputy = create_admin(&db, "default", "deputy");
    let other_admin = create_admin(&db, "globex", "boss");
    create_connection(&db, "globex", "carto_dw", "carto_dw");
    let anas = create(&server, &ana, maps_token("ana's")).await;
    let admins = create(&server, &admin, maps_token("admin's")).await;
    let globex = create(&server, &other_admin, maps_token("globex's")).await;

    for key in [&admin, &deputy] {
        let (status, page) = server.call(Method::GET, "/v3/org/tokens", Some(key), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().unwrap();
        assert_eq!(data.len(), 2, "the org's tokens, not globex's: {page}");
        assert_eq!((data[0]["id"].clone(), data[0]["owner"].clone()), (admins["id"].clone(), json!("admin")));
        assert_eq!((data[1]["id"].clone(), data[1]["owner"].clone()), (anas["id"].clone(), json!("ana")));
        for token in data {
            assert_eq!(token["token"], Value::Null, "admins never see values");
        }
        let text = page.to_string();
        assert!(!text.contains(anas["token"].as_str().unwrap()), "not anywhere");
    }
    let (_, only_ana) = server.call(Method::GET, "/v3/org/tokens?owner=ana&limit=1", Some(&admin), None).await;
    assert_eq!(only_ana["data"].as_array().unwrap().len(), 1);
    assert_eq!(only_ana["next_cursor"], Value::Null);
    let (status, _) = server.call(Method::GET, "/v3/org/tokens?owner=a%20b", Some(&admin), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Members may not; admins of another org reach nothing here.
    let (status, error) = server.call(Method::GET, "/v3/org/tokens", Some(&ana), None).await;
    assert_eq!((status, error["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let ana_path = format!("/v3/org/tokens/{}", anas["id"].as_str().unwrap());
    let (status, _) = server.call(Method::DELETE, &ana_path, Some(&ana), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a member, even the owner, is no admin");
    let (status, _) = server.call(Method::DELETE, &ana_path, Some(&other_admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another org's admin");
    let (status, _) = server.call(Method::DELETE, "/v3/org/tokens/not-an-id", Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let globex_path = format!("/v3/org/tokens/{}", globex["id"].as_str().unwrap());
    let (status, _) = server.call(Method::DELETE, &globex_path, Some(&admin), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, globex_page) = server.call(Method::GET, "/v3/org/tokens", Some(&other_admin), None).await;
    assert_eq!(globex_page["data"].as_array().unwrap().len(), 1);
    assert_eq!(server.authorize(maps_use(anas["token"].as_str().unwrap())).await, (true, None));

    // An admin revokes: the token stops at once and its owner is told.
    let (status, _) = server.call(Method::DELETE, &ana_path, Some(&deputy), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        server.authorize(maps_use(anas["token"].as_str().unwrap())).await,
        (false, Some("token_unknown".into()))
    );
    let (_, log) = server.call(Method::GET, "/v3/audit", Some(&ana), None).await;
    let revoked = &log["data"][0];
    assert_eq!(revoked["action"], "token.revoked");
    assert_eq!(revoked["actor"], json!({"user": "deputy", "org": "default"}));
    assert_eq!(revoked["token_id"], anas["id"]);
    let (status, _) = server.call(Method::DELETE, &ana_path, Some(&deputy), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "already gone");
}

#[tokio::test]
async fn the_org_policy_bounds_every_change_and_flags_older_tokens() {
    let dir = TempDir::new("policy");
    let db = dir.sqlite_url();
    let (server, admin) = start(&dir);
    let ana = create_user(&db, "default", "ana");
    let older = create(&server, &ana, maps_token("before the policy")).await;
    let imports = create(
        &server,
        &ana,
        json!({"name": "loader", "allowed_apis": ["imports"],
               "grants": [{"connection_name": "carto_dw", "source": "p.d.t"}],
               "expiration_date": time_in(86_400)}),
    )
    .await;

    let (status, policy) = server.call(Method::GET, "/v3/org/policy", Some(&ana), None).await;
    assert_eq!(status, StatusCode::OK, "any member reads it");
    assert_eq!(policy, json!({"max_lifetime_days": null, "require_referers": false, "allowed_apis": null}));
    let strict = json!({"max_lifetime_days": 30, "require_referers": true, "allowed_apis": ["maps", "imports"]});
    let (status, _) = server.call(Method::PUT, "/v3/org/policy", Some(&ana), Some(strict.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins set it");
    for (body, field) in [
        (json!({"max_lifetime_days": 0, "require_referers": true, "allowed_apis": null}), "max_lifetime_days"),
        (json!({"max_lifetime_days": null, "require_referers": true, "allowed_apis": []}), "allowed_apis"),
        (json!({"max_lifetime_days": null, "require_referers": true, "allowed_apis": ["teleport"]}), "allowed_apis[0]"),
        (json!({"require_referers": true, "allowed_apis": null}), "max_lifetime_days"),
        (json!({"max_lifetime_days": null, "require_referer": true, "allowed_apis": null}), "require_referer"),
    ] {
        let (status, error) = server.call(Method::PUT, "/v3/org/policy", Some(&admin), Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(detail_fields(&error).iter().any(|(f, _)| f == field), "{body}: {error}");
    }
    let (status, set) = server.call(Method::PUT, "/v3/org/policy", Some(&admin), Some(strict.clone())).await;
    let alphabetical = json!({"max_lifetime_days": 30, "require_referers": true, "allowed_apis": ["imports", "maps"]});
    assert_eq!((status, &set), (StatusCode::OK, &alphabetical));
    let (_, read) = server.call(Method::GET, "/v3/org/policy", Some(&ana), None).await;
    assert_eq!(read, alphabetical);

    // A create that breaks it is refused field by field.
    let (status, error) = server
        .call(
            Method::POST,
            "/v3/tokens",
            Some(&ana),
            Some(json!({"allowed_apis": ["sql"], "grants": [{"connection_name": "carto_dw", "source": "SELECT 1"}],
                        "expiration_date": time_in(86_400 * 31)})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields = detail_fields(&error);
    for field in ["allowed_apis", "referers", "expiration_date"] {
        assert!(fields.contains(&(field.to_owned(), "policy_violation".to_owned())), "{field}: {error}");
    }
    let compliant = json!({"name": "compliant", "allowed_apis": ["maps"],
        "grants": [{"connection_name": "carto_dw", "source": "p.d.t"}],
        "referers": ["https://app.example.com/"], "expiration_date": time_in(86_400 * 29)});
    let compliant = create(&server, &ana, compliant).await;
    assert_eq!(compliant["warnings"], json!([]));
    // imports is written from servers: no referer is required of it.
    assert_eq!(imports["warnings"], json!([]));
    let (_, imports_now) =
        server.call(Method::GET, &format!("/v3/tokens/{}", imports["id"].as_str().unwrap()), Some(&ana), None).await;
    assert_eq!(imports_now["warnings"], json!([]), "{imports_now}");

    // The older token keeps working and says what it breaks.
    let older_path = format!("/v3/tokens/{}", older["id"].as_str().unwrap());
    let (_, older_now) = server.call(Method::GET, &older_path, Some(&ana), None).await;
    let warned: Vec<(String, String)> = detail_fields(&json!({"details": older_now["warnings"]}));
    assert_eq!(
        warned,
        [("referers".to_owned(), "policy_violation".to_owned()), ("expiration_date".into(), "policy_violation".into())]
    );
    assert_eq!(server.authorize(maps_use(older["token"].as_str().unwrap())).await, (true, None));
    // An update is checked on what it changes: a rename passes, dropping
    // the referers of a compliant token does not.
    let (status, _) = server.call(Method::PATCH, &older_path, Some(&ana), Some(json!({"name": "renamed"}))).await;
    assert_eq!(status, StatusCode::OK);
    let compliant_path = format!("/v3/tokens/{}", compliant["id"].as_str().unwrap());
    let (status, error) = server.call(Method::PATCH, &compliant_path, Some(&ana), Some(json!({"referers": []}))).await;
    assert_eq!(
        (status, detail_fields(&error)),
        (StatusCode::BAD_REQUEST, vec![("referers".into(), "policy_violation".into())])
    );
    // A roll issues a new credential: the whole token must comply.
    let (status, error) = server.call(Method::POST, &format!("{older_path}/roll"), Some(&ana), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(detail_fields(&error).contains(&("expiration_date".into(), "policy_violation".into())), "{error}");
    let (status, _) = server.call(Method::POST, &format!("{compliant_path}/roll"), Some(&ana), None).await;
    assert_eq!(status, StatusCode::OK);

    // The admin sees the policy change in the log; the member does not.
    let (_, admin_log) = server.call(Method::GET, "/v3/audit", Some(&admin), None).await;
    let policy_event = admin_log["data"].as_array().unwrap().iter().find(|e| e["action"] == "policy.updated").unwrap();
    assert_eq!(policy_event["token_id"], Value::Null);
    assert_eq!(policy_event["changes"]["max_lifetime_days"], json!({"from": null, "to": 30}));
    assert_eq!(policy_event["changes"]["require_referers"], json!({"from": false, "to": true}));
    let (_, member_log) = server.call(Method::GET, "/v3/audit", Some(&ana), None).await;
    assert!(member_log["data"].as_array().unwrap().iter().all(|e| e["action"] != "policy.updated"));
}

fn time_in(seconds: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test]
async fn the_audit_log_records_every_change_and_never_a_value() {
    let dir = TempDir::new("audit");
    let db = dir.sqlite_url();
    let (server, admin) = start(&dir);
    let ana = create_user(&db, "default", "ana");
    let token = create(&server, &ana, maps_token("audited")).await;
    let id = token["id"].as_str().unwrap().to_owned();
    let path = format!("/v3/tokens/{id}");
    let mut values = vec![token["token"].as_str().unwrap().to_owned()];
    let (status, _) = server
        .call(
            Method::PATCH,
            &path,
            Some(&ana),
            Some(json!({"referers": ["https://a.example/"], "allowed_ips": ["10.0.0.0/8"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, rolled) =
        server.call(Method::POST, &format!("{path}/roll"), Some(&ana), Some(json!({"grace_seconds": 60}))).await;
    values.push(rolled["token"].as_str().unwrap().to_owned());
    let (status, _) = server.call(Method::DELETE, &path, Some(&ana), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let other = create(&server, &admin, maps_token("admin's")).await;
    values.push(other["token"].as_str().unwrap().to_owned());

    let (status, log) = server.call(Method::GET, &format!("/v3/audit?token={id}"), Some(&ana), None).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let events = log["data"].as_array().unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["token.deleted", "token.rolled", "token.updated", "token.created"], "newest first");
    for event in events {
        assert_eq!(event["actor"], json!({"user": "ana", "org": "default"}));
        assert_eq!((event["token_id"].as_str(), event["token_name"].as_str()), (Some(id.as_str()), Some("audited")));
    }
    let updated = &events[2]["changes"];
    assert_eq!(updated["referers"], json!({"from": [], "to": ["https://a.example/"]}));
    assert_eq!(updated["allowed_ips"], json!({"from": [], "to": ["10.0.0.0/8"]}));
    assert_eq!(updated.as_object().unwrap().len(), 2, "only what changed: {updated}");
    assert!(events[1]["changes"]["previous_value_expires_at"]["to"].is_string());
    assert_eq!(events[3]["changes"]["name"], json!({"from": null, "to": "audited"}));
    assert_eq!(events[0]["changes"]["grants"]["to"], Value::Null, "deleted: every field to null");

    // A member sees their own tokens' events only; the admin the org's.
    let (_, anas) = server.call(Method::GET, "/v3/audit", Some(&ana), None).await;
    assert_eq!(anas["data"].as_array().unwrap().len(), 4);
    let (_, org) = server.call(Method::GET, "/v3/audit?limit=2", Some(&admin), None).await;
    assert_eq!(org["data"].as_array().unwrap().len(), 2);
    let cursor = org["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = server.call(Method::GET, &format!("/v3/audit?limit=500&cursor={cursor}"), Some(&admin), None).await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 3, "5 events in all, paged without a gap");
    for bad in ["/v3/audit?limit=0", "/v3/audit?cursor=nope!", "/v3/audit?token=not-an-id"] {
        let (status, _) = server.call(Method::GET, bad, Some(&admin), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _) = server.call(Method::GET, "/v3/audit", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // No token value, no key, anywhere in the log.
    let whole = format!("{anas}{org}{rest}");
    for secret in values.iter().chain([&ana, &admin]) {
        assert!(!whole.contains(secret.as_str()), "a secret in the audit log");
    }
}

#[tokio::test]
async fn ip_restrictions_are_validated_and_decided_after_the_referer() {
    let dir = TempDir::new("ips");
    let (server, key) = start(&dir);
    let (status, error) = server
        .call(
            Method::POST,
            "/v3/tokens",
            Some(&key),
            Some(json!({"allowed_apis": ["lds"], "grants": [],
                "allowed_ips": ["10.0.0.0/8", "10.0.0.1/8", "fe80::1%eth0", "10/8", "::/129", "2001:db8::/32"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields = detail_fields(&error);
    let expected: Vec<(String, String)> =
        [1, 2, 3, 4].iter().map(|i| (format!("allowed_ips[{i}]"), "ip_range_invalid".to_owned())).collect();
    assert_eq!(fields, expected, "{error}");
    assert!(error["details"][0]["message"].as_str().unwrap().contains("10.0.0.0/8"), "names the network meant");
    let too_many: Vec<String> = (0..51).map(|i| format!("192.0.2.{i}")).collect();
    let (_, error) = server
        .call(
            Method::POST,
            "/v3/tokens",
            Some(&key),
            Some(json!({"allowed_apis": ["lds"], "grants": [], "allowed_ips": too_many})),
        )
        .await;
    assert_eq!(detail_fields(&error), [("allowed_ips".to_owned(), "too_many_ip_ranges".to_owned())]);

    let token = create(
        &server,
        &key,
        json!({"allowed_apis": ["lds"], "grants": [], "referers": ["https://app.example.com"],
               "allowed_ips": ["203.0.113.0/24", "::ffff:198.51.100.0/120", "2001:db8::/32", "203.0.113.0/24"]}),
    )
    .await;
    assert_eq!(
        token["allowed_ips"],
        json!(["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"]),
        "canonical, folded"
    );
    let value = token["token"].as_str().unwrap();
    let ask = |client_ip: Option<&str>, referer: &str| {
        let mut request = json!({"token": value, "api": "lds", "referer": referer});
        if let Some(ip) = client_ip {
            request["client_ip"] = json!(ip);
        }
        request
    };
    let good = "https://app.example.com/page";
    type Case<'a> = (Option<&'a str>, &'a str, (bool, Option<&'a str>));
    let cases: [Case<'_>; 8] = [
        (Some("203.0.113.9"), good, (true, None)),
        (Some("198.51.100.200"), good, (true, None)),
        (Some("::ffff:203.0.113.9"), good, (true, None)),
        (Some("2001:db8:1::5"), good, (true, None)),
        (Some("203.0.114.1"), good, (false, Some("ip_not_allowed"))),
        (None, good, (false, Some("ip_not_allowed"))),
        // The referer is checked first.
        (Some("203.0.114.1"), "https://evil.example/", (false, Some("referer_not_allowed"))),
        (Some("203.0.113.9"), "https://evil.example/", (false, Some("referer_not_allowed"))),
    ];
    for (client_ip, referer, (allowed, reason)) in cases {
        let got = server.authorize(ask(client_ip, referer)).await;
        assert_eq!(got, (allowed, reason.map(str::to_owned)), "{client_ip:?} {referer}");
    }
    for bad in ["203.0.113.9:80", "10.0.0.0/8", "", "[::1]"] {
        let (status, error) = server.call(Method::POST, "/v3/authorize", None, Some(ask(Some(bad), good))).await;
        assert_eq!((status, detail_fields(&error)[0].0.as_str()), (StatusCode::BAD_REQUEST, "client_ip"), "{bad:?}");
    }
    // An update replaces the list; an empty one allows any address again.
    let path = format!("/v3/tokens/{}", token["id"].as_str().unwrap());
    let (_, cleared) = server.call(Method::PATCH, &path, Some(&key), Some(json!({"allowed_ips": []}))).await;
    assert_eq!(cleared["allowed_ips"], json!([]));
    assert_eq!(server.authorize(ask(None, good)).await, (true, None));
}

#[tokio::test]
async fn a_dry_run_answers_the_same_and_records_no_use() {
    let dir = TempDir::new("dry-run");
    let (server, key) = start(&dir);
    let token = create(&server, &key, maps_token("tested")).await;
    let path = format!("/v3/tokens/{}", token["id"].as_str().unwrap());
    let mut dry = maps_use(token["token"].as_str().unwrap());
    dry["dry_run"] = json!(true);
    assert_eq!(server.authorize(dry.clone()).await, (true, None));
    dry["source"] = json!("p.d.other");
    assert_eq!(server.authorize(dry).await, (false, Some("source_not_granted".into())));
    // Uses are written every 100 ms here.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, after_dry) = server.call(Method::GET, &path, Some(&key), None).await;
    assert_eq!(after_dry["last_used_at"], Value::Null, "a dry run is no use");
    let mut real = maps_use(token["token"].as_str().unwrap());
    real["dry_run"] = json!(false);
    assert_eq!(server.authorize(real).await, (true, None));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, after_use) = server.call(Method::GET, &path, Some(&key), None).await;
    assert!(after_use["last_used_at"].is_string(), "{after_use}");
}
