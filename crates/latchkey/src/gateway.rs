//! `latchkey gateway`: wires the store, the authorizer and the enforcer
//! into the gateway of `latchkey_http::gateway`, and serves it.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::http::Uri;
use latchkey_app::{Authorizer, Enforcer, Metrics, Surface, UsageRecorder};
use latchkey_clock::SystemClock;
use latchkey_http::gateway::GatewaySettings;

use crate::cli::GatewayArgs;
use crate::database::DatabaseUrl;
use crate::serve::{flush_usage, start_cache};

pub async fn run(args: GatewayArgs) -> Result<()> {
    let upstream: Uri = args.upstream.parse().context("--upstream is not a URL")?;
    if upstream.scheme_str() != Some("http") || upstream.authority().is_none() || upstream.query().is_some() {
        bail!(
            "--upstream must be an http:// URL without a query (put TLS in front of the gateway and beside the upstream)"
        );
    }
    let database = &args.database.url;
    if matches!(database, DatabaseUrl::Memory) {
        bail!("memory:// would hold no tokens: point the gateway at the database `latchkey serve` uses");
    }
    database.must_exist("start `latchkey serve` on it first")?;
    // Listen first: a taken port fails the start before anything is opened.
    let listener = args.listen.bind().await?;
    let metrics_listener = match &args.metrics_listen {
        Some(address) => Some(address.bind().await.context("for --metrics-listen")?),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let stores = database.open(args.database.postgres_pool_size).await?.observed(&metrics);
    // Another process (`latchkey serve`) makes the changes: the cache
    // serves only while the store's feed of changes is heard (LISTEN/NOTIFY
    // on PostgreSQL, the change log on a SQLite file).
    let cache = start_cache(database, &stores, args.cache_capacity, args.cache_ttl_seconds, &metrics);
    let usage = Arc::new(UsageRecorder::new(stores.tokens.clone()));
    let authorizer = Authorizer::new(stores.tokens.clone(), cache, Arc::new(SystemClock), usage.clone())
        .with_metrics(metrics.clone());
    let enforcer = Arc::new(Enforcer::new(Arc::new(authorizer), args.org.clone(), Surface::Gateway));
    let settings = GatewaySettings {
        upstream,
        body_limit: args.max_body_bytes,
        request_timeout: Duration::from_secs(args.request_timeout_seconds.max(1)),
        upstream_timeout: Duration::from_secs(args.upstream_timeout_seconds.max(1)),
        rate: args.network.rate_limits(),
    };
    let readiness = Arc::new(latchkey_app::Readiness::new(stores.health.clone()));
    let app = latchkey_http::gateway::app(enforcer, readiness, settings);
    let address = listener.local_addr()?;
    if let Some(metrics_listener) = metrics_listener {
        let bound = metrics_listener.local_addr()?;
        println!("latchkey metrics on http://{bound}/metrics");
        tokio::spawn(async move {
            if let Err(error) = axum::serve(metrics_listener, latchkey_http::metrics_app(metrics)).await {
                tracing::error!(%error, "the metrics listener stopped");
            }
        });
    }
    println!("latchkey listening on http://{address}");
    tracing::info!(%address, upstream = %args.upstream, org = %args.org, "gateway listening");
    let flusher = tokio::spawn(flush_usage(usage.clone(), Duration::from_millis(1000)));
    latchkey_http::server::serve(listener, app, args.network.connection_limits(), latchkey_http::shutdown_signal())
        .await?;
    flusher.abort();
    if let Err(error) = usage.flush().await {
        tracing::error!(%error, "could not record the last token uses");
    }
    Ok(())
}
