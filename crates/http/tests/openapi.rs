//! The OpenAPI document: valid OpenAPI 3.1, complete, and in step with the
//! router it is generated with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use latchkey_app::{
    Authorizer, ConnectionService, CredentialRouter, OrgService, Readiness, Sealer, TokenCache, TokenService,
    UsageRecorder, UserKeyAuthenticator,
};
use latchkey_clock::SystemClock;
use latchkey_http::{Limits, Services, app, openapi};
use latchkey_memory::MemoryStore;
use serde_json::{Value, json};
use tower::ServiceExt;

fn document() -> Value {
    serde_json::to_value(openapi()).unwrap()
}

fn services() -> Services {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(SystemClock);
    let usage = Arc::new(UsageRecorder::new(store.clone()));
    let cache = Arc::new(TokenCache::disabled());
    Services {
        tokens: Arc::new(TokenService::new(
            store.clone(),
            cache.clone(),
            store.clone(),
            store.clone(),
            clock.clone(),
            Arc::new(Sealer::new(&[1; 32])),
        )),
        org: Arc::new(OrgService::new(store.clone(), store.clone(), clock.clone())),
        authorizer: Arc::new(Authorizer::new(store.clone(), cache, clock, usage)),
        authenticator: Arc::new(CredentialRouter::new(Arc::new(UserKeyAuthenticator::new(store.clone())), None)),
        connections: Arc::new(ConnectionService::new(store.clone())),
        readiness: Arc::new(Readiness::new(store)),
        limits: Arc::new(Limits::default()),
        forward_auth: None,
    }
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let text = serde_json::to_string(&openapi()).unwrap();
    let parsed = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(parsed.openapi.starts_with("3.1"), "{}", parsed.openapi);
    let document = document();
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["type"], "http");
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    // Every schema reference resolves.
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for reference in references(&document) {
        let name = reference.strip_prefix("#/components/schemas/").expect("local schema reference");
        assert!(schemas.contains_key(name), "dangling reference {reference}");
    }
}

fn references(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => {
            map.iter()
                .flat_map(|(key, v)| {
                    if key == "$ref" { v.as_str().map(str::to_owned).into_iter().collect() } else { references(v) }
                })
                .collect()
        }
        Value::Array(items) => items.iter().flat_map(references).collect(),
        _ => Vec::new(),
    }
}

/// The SPEC §7 and §13 endpoints, with the statuses each must document.
#[test]
fn every_endpoint_documents_its_statuses_and_security() {
    let document = document();
    let expected: &[(&str, &str, &[&str], bool)] = &[
        ("/v3/tokens", "post", &["201", "400", "401", "409", "413", "415", "503"], true),
        ("/v3/tokens", "get", &["200", "400", "401", "503"], true),
        ("/v3/tokens/{token}", "get", &["200", "401", "404", "503"], true),
        ("/v3/tokens/{token}", "patch", &["200", "400", "401", "404", "409", "412", "413", "415", "503"], true),
        ("/v3/tokens/{token}", "delete", &["204", "400", "401", "404", "412", "503"], true),
        ("/v3/tokens/{token}/roll", "post", &["200", "400", "401", "404", "412", "413", "415", "503"], true),
        ("/v3/authorize", "post", &["200", "400", "413", "415", "503"], false),
        ("/v3/org/tokens", "get", &["200", "400", "401", "403", "503"], true),
        ("/v3/org/tokens/{id}", "delete", &["204", "401", "403", "404", "503"], true),
        ("/v3/audit", "get", &["200", "400", "401", "503"], true),
        ("/v3/org/policy", "get", &["200", "401", "503"], true),
        ("/v3/org/policy", "put", &["200", "400", "401", "403", "413", "415", "503"], true),
        ("/v3/connections", "get", &["200", "401", "503"], true),
        ("/v3/openapi.json", "get", &["200"], false),
        ("/healthz", "get", &["200"], false),
        ("/readyz", "get", &["200", "503"], false),
        ("/metrics", "get", &["200"], false),
        ("/", "get", &["200"], false),
        ("/app.js", "get", &["200"], false),
        ("/app.css", "get", &["200"], false),
        ("/favicon.svg", "get", &["200"], false),
        ("/favicon.ico", "get", &["200"], false),
        ("/v3/forward-auth", "get", &["200", "401", "403", "503"], false),
        ("/v3/forward-auth", "post", &["200", "401", "403", "503"], false),
        ("/v3/forward-auth/{path}", "get", &["200", "401", "403"], false),
    ];
    for (path, method, statuses, secured) in expected {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        let documented: BTreeSet<&str> =
            operation["responses"].as_object().unwrap().keys().map(String::as_str).collect();
        for status in *statuses {
            assert!(documented.contains(status), "{method} {path} documents {status}: {documented:?}");
        }
        assert_eq!(operation["security"].is_array(), *secured, "{method} {path} security");
        for (status, response) in operation["responses"].as_object().unwrap() {
            // Answers without a body: 204, the document itself, a
            // forward-auth "yes", and the wildcard forward-auth route.
            let bodiless = status == "204"
                || (status == "200" && (path.starts_with("/v3/forward-auth") || *path == "/v3/openapi.json"))
                || *path == "/v3/forward-auth/{path}";
            if !bodiless {
                let content = response["content"].as_object().expect("a body");
                assert!(
                    !content.is_empty() && content.values().all(|c| c["schema"].is_object()),
                    "{method} {path} {status} has a body schema"
                );
            }
        }
    }
    let paths: BTreeSet<&str> = document["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    let listed: BTreeSet<&str> = expected.iter().map(|(p, ..)| *p).collect();
    assert_eq!(paths, listed, "no undocumented test expectation, no unexpected path");
}

/// Each documented path answers with exactly its documented methods: an
/// unsupported method gets 405 with `Allow` listing them, which an
/// undocumented or missing route would not.
#[tokio::test]
async fn the_router_serves_exactly_the_documented_routes() {
    let document = document();
    let router = app(services());
    for (path, item) in document["paths"].as_object().unwrap() {
        let mut documented: BTreeSet<String> =
            item.as_object().unwrap().keys().map(|m| m.to_ascii_uppercase()).collect();
        if documented.contains("GET") {
            documented.insert("HEAD".into());
        }
        let concrete = path.replace("{token}", "Hq3xJ7rT2mKa").replace("{path}", "v3/sql/dw/query");
        let request = Request::builder().method(Method::TRACE).uri(&concrete).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path} is routed");
        let allow: BTreeSet<String> =
            response.headers()[header::ALLOW].to_str().unwrap().split(',').map(|m| m.trim().to_owned()).collect();
        assert_eq!(allow, documented, "{path}: the router's methods are the documented ones");
    }
    let request = Request::builder().uri("/v3/undocumented").body(Body::empty()).unwrap();
    assert_eq!(router.oneshot(request).await.unwrap().status(), StatusCode::NOT_FOUND);
}

async fn served(query: &str) -> Value {
    let request = Request::builder().uri(format!("/v3/openapi.json{query}")).body(Body::empty()).unwrap();
    let response = app(services()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn operation_ids(document: &Value) -> Vec<String> {
    document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|operation| operation["operationId"].as_str().expect("every operation has an id").to_owned())
        .collect()
}

/// What client generators read: every operation named once, the client
/// surface only by default (no web page files, no forward-auth), a
/// server, and the rules JSON Schema can state written as JSON Schema.
#[tokio::test]
async fn the_served_document_suits_client_generators() {
    let client = served("").await;
    let all = served("?include=all").await;
    for document in [&client, &all] {
        let ids = operation_ids(document);
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "operationIds are unique: {ids:?}");
        assert_eq!(document["servers"][0]["url"], "/");
        let text = serde_json::to_string(document).unwrap();
        oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    }
    let client_paths: BTreeSet<&str> = client["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    let all_paths: BTreeSet<&str> = all["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        all_paths.difference(&client_paths).copied().collect::<Vec<_>>(),
        [
            "/",
            "/app.css",
            "/app.js",
            "/favicon.ico",
            "/favicon.svg",
            "/metrics",
            "/v3/forward-auth",
            "/v3/forward-auth/{path}"
        ]
    );
    assert_eq!(served("?include=client").await, client);
    assert!(operation_ids(&all).contains(&"forward_auth_post".to_owned()));
    assert!(operation_ids(&all).contains(&"forward_auth_path_delete".to_owned()));

    let schemas = &client["components"]["schemas"];
    let codes = schemas["ErrorCodeName"]["enum"].as_array().unwrap();
    for code in ["validation_failed", "precondition_failed", "token_unknown", "ambiguous_request", "bad_gateway"] {
        assert!(codes.contains(&json!(code)), "{code}");
    }
    assert!(schemas["DetailCodeName"]["enum"].as_array().unwrap().contains(&json!("pattern_too_broad")));
    assert_eq!(schemas["AuthorizeRequest"]["then"]["required"], json!(["connection_name", "source_type", "source"]));
    assert_eq!(schemas["AuthorizeRequest"]["if"]["properties"]["api"]["enum"], json!(["imports", "maps", "sql"]));
    assert_eq!(schemas["UpdateTokenRequest"]["not"], json!({"required": ["expiration_date"]}));
}
