//! `latchkey serve`: wires the adapters into the use cases and serves.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use latchkey_app::{
    Authorizer, BOOTSTRAP_CONNECTION, BOOTSTRAP_ORG, BOOTSTRAP_USER, CacheSettings, ConnectionService,
    CredentialRouter, Enforcer, Metrics, OrgService, Readiness, Surface, TokenCache, TokenService, UsageRecorder,
    UserKeyAuthenticator, UserService,
};
use latchkey_clock::SystemClock;
use latchkey_http::{ForwardAuth, Limits, Services};
use latchkey_ports::Clock;

use crate::cli::ServeArgs;
use crate::database::{DatabaseUrl, Storage};
use crate::secret_key;

pub async fn run(args: ServeArgs) -> Result<()> {
    // Configuration errors first, before anything is created or printed.
    let identity_provider = args.jwt.authenticator().await?;
    let database = &args.database.url;
    // Listen before anything is created or printed: a taken port fails the
    // start without making a key file, or bootstrapping a database whose
    // admin key then goes unused.
    let listener = args.listen.bind().await?;
    let keyring = secret_key::load(database)?;
    if !keyring.previous.is_empty() {
        tracing::info!(keys = keyring.previous.len(), "also opening values sealed under previous server keys");
    }
    let sealer = Arc::new(keyring.sealer());
    let metrics = Arc::new(Metrics::new());
    let stores = database.open(args.database.postgres_pool_size).await?.observed(&metrics);
    tracing::info!(database = %database.redacted(), "storage open");

    if !args.no_bootstrap {
        let users = UserService::new(stores.users.clone(), stores.catalog.clone());
        if let Some(key) = users.bootstrap().await.context("first-run bootstrap")? {
            println!(
                "latchkey: this database had no users; created org {BOOTSTRAP_ORG:?}, user {BOOTSTRAP_USER:?} \
                 and connection {BOOTSTRAP_CONNECTION:?} (provider carto_dw)."
            );
            println!("latchkey: the admin key is shown only now; keep it safe:");
            println!("{}", key.expose());
        }
    }

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let usage = Arc::new(UsageRecorder::new(stores.tokens.clone()));
    let cache = start_cache(database, &stores, args.cache_capacity, args.cache_ttl_seconds, &metrics);
    let tokens = TokenService::new(
        stores.tokens.clone(),
        cache.clone(),
        stores.catalog.clone(),
        stores.policies.clone(),
        clock.clone(),
        sealer,
    )
    .with_max_tokens_per_owner(args.max_tokens_per_user);
    let org = OrgService::new(stores.audit.clone(), stores.policies.clone(), clock.clone());
    let authorizer =
        Arc::new(Authorizer::new(stores.tokens.clone(), cache, clock, usage.clone()).with_metrics(metrics.clone()));
    let forward_auth = match (&args.org, args.forward_auth_headers) {
        (Some(org), Some(headers)) => {
            tracing::info!(%org, ?headers, "forward-auth on");
            let enforcer = Arc::new(Enforcer::new(authorizer.clone(), org.clone(), Surface::ForwardAuth));
            Some(Arc::new(ForwardAuth { enforcer, headers }))
        }
        _ => None,
    };
    let keys = Arc::new(UserKeyAuthenticator::new(stores.users.clone()));
    let identity_provider: Option<Arc<dyn latchkey_ports::Authenticator>> = match identity_provider {
        Some(jwt) => {
            tracing::info!(?jwt, "accepting JWTs from an identity provider");
            Some(Arc::new(jwt))
        }
        None => None,
    };
    let services = Services {
        tokens: Arc::new(tokens),
        org: Arc::new(org),
        authorizer,
        authenticator: Arc::new(CredentialRouter::new(keys, identity_provider)),
        connections: Arc::new(ConnectionService::new(stores.catalog.clone())),
        readiness: Arc::new(Readiness::new(stores.health.clone())),
        limits: Arc::new(Limits {
            body_bytes: args.max_body_bytes,
            request_timeout: Duration::from_secs(args.request_timeout_seconds),
            rate: args.network.rate_limits(),
        }),
        forward_auth,
    };
    let app = latchkey_http::app(services);

    let address = listener.local_addr()?;
    println!("latchkey listening on http://{address}");
    // A wildcard address is not one a browser can open; the same port on
    // this machine is.
    let page = if address.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), address.port())
    } else {
        address
    };
    println!("latchkey: manage API access tokens in a browser at http://{page}/");
    tracing::info!(%address, "listening");

    let flusher = tokio::spawn(flush_usage(usage.clone(), args.usage_flush_interval()));
    latchkey_http::server::serve(listener, app, args.network.connection_limits(), latchkey_http::shutdown_signal())
        .await?;
    flusher.abort();
    match usage.flush().await {
        Ok(n) => tracing::info!(tokens = n, "recorded the last token uses"),
        Err(e) => tracing::error!(error = %e, "could not record the last token uses"),
    }
    if let Some(postgres) = &stores.postgres {
        postgres.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The authorize cache. With PostgreSQL, other instances change tokens
/// too: the cache is trusted only while a listener hears their changes, and
/// that listener is started here. Memory and SQLite have no other writer, so
/// their cache is trusted from the start and kept true by this instance's
/// own evictions.
pub(crate) fn start_cache(
    database: &DatabaseUrl,
    stores: &Storage,
    capacity: u64,
    ttl_seconds: u64,
    metrics: &Arc<Metrics>,
) -> Arc<TokenCache> {
    let settings = CacheSettings { capacity, time_to_live: Duration::from_secs(ttl_seconds) };
    if settings.capacity == 0 {
        return TokenCache::observed(settings, false, metrics.clone());
    }
    // A store other processes can write is cached only while its feed of
    // changes is heard: the cache starts untrusted, and the feed says when
    // it works.
    if let DatabaseUrl::Postgres(url) = database {
        let cache = TokenCache::observed(settings, false, metrics.clone());
        let (url, sink) = (url.clone(), cache.clone());
        tokio::spawn(async move {
            if let Err(error) = latchkey_postgres::follow_changes(url, sink).await {
                tracing::error!(%error, "cannot listen for token changes; the cache stays off");
            }
        });
        return cache;
    }
    if let Some(sqlite) = &stores.sqlite {
        metrics.name_feed("sqlite");
        let cache = TokenCache::observed(settings, false, metrics.clone());
        let sink: Arc<dyn latchkey_ports::ChangeSink> = cache.clone();
        if let Err(error) = sqlite.follow_changes(Arc::downgrade(&sink), latchkey_sqlite::FOLLOW_EVERY) {
            tracing::error!(%error, "cannot follow token changes on the SQLite file; the cache stays off");
        }
        return cache;
    }
    // memory://: this process is the only writer.
    TokenCache::observed(settings, true, metrics.clone())
}

/// Writes recorded token uses at every tick.
pub(crate) async fn flush_usage(usage: Arc<UsageRecorder>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = usage.flush().await {
            tracing::warn!(error = %e, "could not record token uses; will retry");
        }
    }
}
