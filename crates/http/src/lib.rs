//! latchkey's delivery: the HTTP API of SPEC §7 over axum, its OpenAPI
//! document, and the Credentials web page.
//!
//! Architecture invariant: only this crate knows the wire format. JSON,
//! status codes and headers stop here; handlers translate between them and
//! the use cases of `latchkey-app`, and every failure leaves through the one
//! error type of [`error`].

mod auth;
mod body;
mod dto;
pub mod enforce;
mod error;
pub mod gateway;
mod guard;
mod layers;
mod openapi;
mod routes;
pub mod server;
mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use latchkey_app::{Authorizer, ConnectionService, Metrics, OrgService, Readiness, TokenService};
use latchkey_ports::Authenticator;

pub use enforce::{ForwardAuth, HeaderSet};
pub use error::{ApiError, Detail, ErrorBody};
pub use guard::{ClientIp, RateLimits};
pub use openapi::openapi;

/// What the handlers use.
#[derive(Clone)]
pub struct Services {
    /// Token management.
    pub tokens: Arc<TokenService>,
    /// The audit log and the org policy.
    pub org: Arc<OrgService>,
    /// The authorize decision.
    pub authorizer: Arc<Authorizer>,
    /// Management credentials.
    pub authenticator: Arc<dyn Authenticator>,
    /// Connections, for `GET /v3/connections`.
    pub connections: Arc<ConnectionService>,
    /// Readiness.
    pub readiness: Arc<Readiness>,
    /// Limits the handlers enforce themselves (the body size).
    /// Shared, since the state is cloned for every request.
    pub limits: Arc<Limits>,
    /// Forward-auth, when configured (`--org` and `--forward-auth-headers`).
    pub forward_auth: Option<Arc<ForwardAuth>>,
}

/// The router's state: the services behind one reference count. axum
/// clones a route's state for every request; cloned field by field, the
/// services cost one atomic increment and decrement per `Arc` on a cache
/// line every core shares, which profiles of `/healthz` showed as a tenth
/// of its time.
pub(crate) type Shared = Arc<Services>;

/// Limits of the HTTP server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest request body, in bytes.
    pub body_bytes: usize,
    /// How long a request may take before it is answered with 408.
    pub request_timeout: Duration,
    /// Rate limiting of failed authentication.
    pub rate: RateLimits,
}

impl Default for Limits {
    fn default() -> Self {
        // 1 MiB holds the largest valid token (100 grants, one of them a
        // 64 KiB query, and 50 referers) with room to spare.
        Self { body_bytes: 1024 * 1024, request_timeout: Duration::from_secs(30), rate: RateLimits::default() }
    }
}

/// The whole HTTP application: every route of SPEC §7 and its layers.
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`:
/// failed authentication is limited per client address, and a request
/// without one (as in tests that call the router directly) is not limited.
pub fn app(services: Services) -> Router {
    let limits = services.limits.clone();
    let metrics = services.authorizer.metrics().clone();
    let limiter = Arc::new(guard::FailureLimiter::new(&limits.rate));
    let (api, _) = openapi::router().split_for_parts();
    let router = api
        .merge(openapi::forward_auth_prefix_route())
        .with_state(Arc::new(services))
        .layer(axum::middleware::from_fn_with_state((limiter, None), guard::limit_failures))
        .layer(axum::middleware::from_fn(guard::limit_headers));
    layers::wrap(router, &limits, layers::Counting { metrics, unmatched: "unmatched" })
}

/// An application that serves only `GET /metrics`, for a listener of its
/// own (the gateway's `--metrics-listen`): the gateway forwards every other
/// path, `/metrics` included, to the data API.
pub fn metrics_app(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", axum::routing::get(move || std::future::ready(routes::metrics_text(&metrics))))
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM): pass to
/// `axum::serve(…).with_graceful_shutdown`, which then stops accepting and
/// lets requests in flight finish.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Entry points for the fuzz targets in `fuzz/` (not an API).
#[doc(hidden)]
pub mod fuzzing {
    use latchkey_domain::validation::{ExpirationInput, TokenDraft, validate};
    use latchkey_domain::{Connection, ConnectionName, Provider, Timestamp};

    use crate::body::decode;
    use crate::dto::{AuthorizeRequest, CreateTokenRequest, UpdateTokenRequest};

    /// Decodes `bytes` as each request body, and validates what decodes as
    /// a token.
    pub fn decode_bodies(bytes: &[u8]) {
        let connections: Vec<Connection> = [("carto_dw", Provider::CartoDw), ("pg", Provider::Postgres)]
            .into_iter()
            .filter_map(|(name, provider)| Some(Connection { name: ConnectionName::new(name).ok()?, provider }))
            .collect();
        let Ok(now) = Timestamp::from_unix_micros(1_800_000_000_000_000) else { return };
        if let Ok(body) = decode::<CreateTokenRequest>(bytes) {
            let (request, unknown_fields) = body.with_unknown();
            let draft = TokenDraft {
                name: request.name,
                allowed_apis: request.allowed_apis,
                grants: request.grants.into_iter().map(Into::into).collect(),
                referers: request.referers.unwrap_or_default(),
                allowed_ips: request.allowed_ips.unwrap_or_default(),
                unknown_fields,
            };
            let expiration = ExpirationInput::Requested { date: request.expiration_date.as_deref(), now };
            if let Ok(valid) = validate(&draft, expiration, &connections) {
                let _ = latchkey_domain::validation::warnings(&valid.policy);
            }
        }
        let _ = decode::<UpdateTokenRequest>(bytes);
        let _ = decode::<AuthorizeRequest>(bytes).and_then(crate::body::JsonBody::strict);
        let _ = decode::<crate::dto::RollRequest>(bytes).and_then(crate::body::JsonBody::strict);
        let _ = decode::<crate::dto::PolicyBody>(bytes).and_then(crate::body::JsonBody::strict);
    }
}
