//! `latchkey gateway`: a reverse proxy in front of a data API that decides
//! every request before forwarding it, so that an unchanged data API is
//! protected by its tokens.
//!
//! A request whose source may be in its body (a POST) has the body read,
//! within the body limit, to find it; other bodies stream through untouched.
//! Allowed requests are forwarded to the upstream with their method, path,
//! query and headers (hop-by-hop headers aside), and the answer streams
//! back. Refused ones get 401 or 403 with the error body of SPEC §7 and the
//! reason in `X-Latchkey-Reason`.

#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use latchkey_app::{Authorizer, Body, DataRequest, UsageRecorder, source_may_be_in_body};
use latchkey_http::enforce::{Verdict, decide, verdict_response};
use latchkey_http::{ApiError, ErrorBody};
use latchkey_memory::SystemClock;
use latchkey_ports::StoreHealth;

use crate::cli::GatewayArgs;
use crate::database::DatabaseUrl;
use crate::serve::{flush_usage, start_cache};

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

struct Gateway {
    authorizer: Authorizer,
    health: Arc<dyn StoreHealth>,
    upstream: Uri,
    client: Client<HttpConnector, AxumBody>,
    body_limit: usize,
}

pub async fn run(args: GatewayArgs) -> Result<()> {
    let upstream: Uri = args.upstream.parse().context("--upstream is not a URL")?;
    if upstream.scheme_str() != Some("http") || upstream.authority().is_none() {
        bail!("--upstream must be an http:// URL (put TLS in front of the gateway and beside the upstream)");
    }
    let database = &args.database.url;
    if matches!(database, DatabaseUrl::Memory) {
        bail!("memory:// would hold no tokens: point the gateway at the database `latchkey serve` uses");
    }
    let stores = database.open(args.database.postgres_pool_size).await?;
    // With SQLite another process (`latchkey serve`) makes the changes and
    // no feed reports them, so the gateway reads every token from the file.
    let cache = match database {
        DatabaseUrl::Postgres(_) => start_cache(database, args.cache_capacity, args.cache_ttl_seconds),
        _ => Arc::new(latchkey_app::TokenCache::disabled()),
    };
    let usage = Arc::new(UsageRecorder::new(stores.tokens.clone()));
    let authorizer = Authorizer::new(stores.tokens.clone(), cache, Arc::new(SystemClock), usage.clone());
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let gateway = Arc::new(Gateway {
        authorizer,
        health: stores.health.clone(),
        upstream,
        client: Client::builder(TokioExecutor::new()).build(connector),
        body_limit: args.max_body_bytes,
    });
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(proxy)
        .with_state(gateway);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    println!("latchkey listening on http://{address}");
    tracing::info!(%address, upstream = %args.upstream, "gateway listening");
    let flusher = tokio::spawn(flush_usage(usage.clone(), Duration::from_millis(1000)));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(latchkey_http::shutdown_signal())
        .await?;
    flusher.abort();
    if let Err(error) = usage.flush().await {
        tracing::error!(%error, "could not record the last token uses");
    }
    Ok(())
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.health.ping().await {
        Ok(()) => "ok".into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

fn text(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody { error: message.to_owned(), code: code.to_owned(), details: None };
    (status, axum::Json(body)).into_response()
}

async fn proxy(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let method = parts.method.as_str().to_owned();
    let (read, forward_body) = if source_may_be_in_body(&method, &path) {
        match axum::body::to_bytes(body, gateway.body_limit).await {
            Ok(bytes) => (Some(bytes.clone()), AxumBody::from(bytes)),
            Err(_) => {
                return error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large");
            }
        }
    } else {
        (None, body)
    };
    let data = DataRequest {
        method: &method,
        path: &path,
        query: query.as_deref(),
        authorization: text(&parts.headers, header::AUTHORIZATION),
        referer: text(&parts.headers, header::REFERER),
        origin: text(&parts.headers, header::ORIGIN),
        content_type: text(&parts.headers, header::CONTENT_TYPE),
        body: Body::Read(read.as_deref().unwrap_or(b"")),
    };
    match decide(&gateway.authorizer, &data).await {
        Ok(Verdict::Allowed) => {}
        Ok(refused) => return verdict_response(&refused),
        Err(error) => return error.into_response(),
    }

    let path_and_query = match &query {
        Some(query) => format!("{path}?{query}"),
        None => path.clone(),
    };
    let base = gateway.upstream.path().trim_end_matches('/');
    let target = format!(
        "{}://{}{base}{path_and_query}",
        gateway.upstream.scheme_str().unwrap_or("http"),
        gateway.upstream.authority().map_or("", |a| a.as_str())
    );
    let Ok(uri) = target.parse::<Uri>() else {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "the request URI cannot be forwarded");
    };
    let original_host = parts.headers.get(header::HOST).cloned();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    parts.headers.remove(header::HOST);
    if let Some(host) = original_host {
        parts.headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    let forwarded_for = match text(&parts.headers, HeaderName::from_static("x-forwarded-for")) {
        Some(previous) => format!("{previous}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        parts.headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    parts.headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
    parts.uri = uri;
    parts.version = axum::http::Version::HTTP_11;
    let upstream_request = axum::http::Request::from_parts(parts, forward_body);
    match gateway.client.request(upstream_request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, AxumBody::new(body))
        }
        Err(failure) => {
            tracing::warn!(error = %failure, "the upstream did not answer");
            error(StatusCode::BAD_GATEWAY, "bad_gateway", "the upstream data API did not answer")
        }
    }
}
