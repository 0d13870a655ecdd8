//! The series latchkey exports to Prometheus (SPEC §14), defined once.
//!
//! Every series is a field of [`Metrics`], registered under the `latchkey_`
//! prefix in [`Metrics::new`], and written in the OpenMetrics text format
//! by [`Metrics::render`]. `docs/metrics.md` lists them; a test reads that
//! list and fails when it and this file disagree.
//!
//! Invariant: every label value is one of a fixed set of names: the
//! domain's lists (APIs, denial reasons), status codes, the methods HTTP
//! defines, and route templates as the router matched them. No token, key,
//! source, path or user text ever becomes a label, so the number of series
//! is bounded whatever clients send.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Where a decision was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Surface {
    /// `POST /v3/authorize`.
    Authorize,
    /// `latchkey gateway`.
    Gateway,
    /// `/v3/forward-auth`, for a reverse proxy.
    ForwardAuth,
}

impl Surface {
    /// Every surface.
    pub const ALL: [Surface; 3] = [Surface::Authorize, Surface::Gateway, Surface::ForwardAuth];

    /// The label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Surface::Authorize => "authorize",
            Surface::Gateway => "gateway",
            Surface::ForwardAuth => "forward_auth",
        }
    }
}

/// Why a token left the authorize cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvictionCause {
    /// The token changed or was deleted (here or, through the change feed,
    /// elsewhere), or the feed was lost and the cache emptied.
    Invalidated,
    /// It outlived the time to live.
    Expired,
    /// The cache was full.
    Capacity,
}

impl EvictionCause {
    const fn as_str(self) -> &'static str {
        match self {
            EvictionCause::Invalidated => "invalidated",
            EvictionCause::Expired => "expired",
            EvictionCause::Capacity => "capacity",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    surface: &'static str,
    api: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SurfaceLabels {
    surface: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// The change feed's series carry the feed's name, so that they are absent
/// (rather than a misleading 0 or 1) where there is no feed: memory has no
/// other writer to hear from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FeedLabels {
    feed: &'static str,
}

/// The change feeds there are: PostgreSQL's LISTEN/NOTIFY, and a SQLite
/// file's change log followed by each process.
pub const FEEDS: [&str; 2] = ["postgres", "sqlite"];

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

/// The most distinct route labels kept; any more are counted as `other`.
/// Callers pass route templates, a few dozen at most: the cap only keeps a
/// caller that passed raw paths by mistake from growing memory without end.
const MAX_ROUTES: usize = 256;

/// Route templates as `&'static str`, so that counting a request neither
/// allocates nor copies its label: each distinct template is leaked once.
#[derive(Default)]
struct Routes(std::sync::RwLock<std::collections::HashSet<&'static str>>);

impl Routes {
    fn intern(&self, route: &str) -> &'static str {
        let known = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(interned) = known.get(route) {
            return interned;
        }
        drop(known);
        let mut known = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(interned) = known.get(route) {
            return interned;
        }
        if known.len() >= MAX_ROUTES {
            return "other";
        }
        let interned: &'static str = Box::leak(route.to_owned().into_boxed_str());
        known.insert(interned);
        interned
    }
}

/// The label of an HTTP method: the methods HTTP defines keep their name,
/// any other becomes `other` (a client may send any token as a method).
#[must_use]
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    KNOWN.into_iter().find(|known| *known == method).unwrap_or("other")
}

/// A value read at scrape time.
type Refresh = Box<dyn Fn(&Metrics) + Send + Sync>;

/// A histogram family whose members share one set of buckets.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn decision_histogram() -> Histogram {
    // 5 µs to about 0.12 s: a cached decision takes a microsecond, one
    // that reads the store a millisecond or more.
    Histogram::new(exponential_buckets(0.000_005, 2.5, 12))
}

fn request_histogram() -> Histogram {
    // 100 µs to about 6 s: the request timeout is 30 s by default, but
    // anything past a few seconds is an incident whatever its exact length.
    Histogram::new(exponential_buckets(0.000_1, 2.5, 13))
}

/// Every series latchkey exports. One per process, shared by all that
/// record into it.
pub struct Metrics {
    registry: Registry,
    /// Run before each rendering, to read values that are cheaper to read
    /// at scrape time than to track (the cache's size).
    before_render: Mutex<Vec<Refresh>>,
    decisions: Family<DecisionLabels, Counter>,
    decision_seconds: Histograms<SurfaceLabels>,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_bypassed: Counter,
    cache_evictions: Family<CauseLabels, Counter>,
    cache_entries: Gauge,
    cache_serving: Gauge,
    feed_up: Family<FeedLabels, Gauge>,
    feed_lag_seconds: Family<FeedLabels, Gauge<f64, AtomicU64>>,
    feed_changes: Family<FeedLabels, Counter>,
    feed_losses: Family<FeedLabels, Counter>,
    storage_errors: Family<OperationLabels, Counter>,
    http_requests: Family<RequestLabels, Counter>,
    http_seconds: Histograms<RouteLabels>,
    routes: Routes,
    /// Which of [`FEEDS`] this process follows (the store decides).
    feed: std::sync::OnceLock<&'static str>,
    upstream_seconds: Histogram,
    upstream_failures: Family<CauseLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series, registered and at zero.
    #[must_use]
    #[allow(clippy::too_many_lines)] // One registration a series, in the order of docs/metrics.md.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("latchkey");
        let metrics = Self {
            registry: Registry::default(),
            before_render: Mutex::new(Vec::new()),
            decisions: Family::default(),
            decision_seconds: Family::new_with_constructor(decision_histogram),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_bypassed: Counter::default(),
            cache_evictions: Family::default(),
            cache_entries: Gauge::default(),
            cache_serving: Gauge::default(),
            feed_up: Family::default(),
            feed_lag_seconds: Family::default(),
            feed_changes: Family::default(),
            feed_losses: Family::default(),
            storage_errors: Family::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(request_histogram),
            routes: Routes::default(),
            feed: std::sync::OnceLock::new(),
            upstream_seconds: request_histogram(),
            upstream_failures: Family::default(),
        };
        registry.register(
            "decisions",
            "Decisions on data API requests, by surface, API and outcome (allowed, a denial reason, or why the \
             request could not be decided)",
            metrics.decisions.clone(),
        );
        registry.register_with_unit(
            "decision_duration",
            "Time to decide a data API request, token lookup included, by surface",
            Unit::Seconds,
            metrics.decision_seconds.clone(),
        );
        registry.register("cache_hits", "Token lookups answered by the authorize cache", metrics.cache_hits.clone());
        registry.register(
            "cache_misses",
            "Token lookups the authorize cache could have answered but did not hold",
            metrics.cache_misses.clone(),
        );
        registry.register(
            "cache_bypassed",
            "Token lookups that went to storage because the cache is off or its change feed is down",
            metrics.cache_bypassed.clone(),
        );
        registry.register(
            "cache_evictions",
            "Tokens that left the authorize cache, by cause",
            metrics.cache_evictions.clone(),
        );
        registry.register("cache_entries", "Tokens in the authorize cache", metrics.cache_entries.clone());
        registry.register(
            "cache_serving",
            "1 while the authorize cache answers lookups (it is on and trusts its change feed, or needs none)",
            metrics.cache_serving.clone(),
        );
        registry.register(
            "change_feed_up",
            "1 while the change feed hears the changes other instances make, 0 while it is lost",
            metrics.feed_up.clone(),
        );
        registry.register_with_unit(
            "change_feed_lag",
            "The change feed's last heartbeat round trip through the database",
            Unit::Seconds,
            metrics.feed_lag_seconds.clone(),
        );
        registry.register(
            "change_feed_changes",
            "Token changes heard on the change feed",
            metrics.feed_changes.clone(),
        );
        registry.register(
            "change_feed_losses",
            "Times the change feed was lost (and the cache emptied)",
            metrics.feed_losses.clone(),
        );
        registry.register("storage_errors", "Storage calls that failed, by operation", metrics.storage_errors.clone());
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            metrics.http_requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by route template",
            Unit::Seconds,
            metrics.http_seconds.clone(),
        );
        registry.register_with_unit(
            "gateway_upstream_duration",
            "Time the data API took to answer a request the gateway forwarded",
            Unit::Seconds,
            metrics.upstream_seconds.clone(),
        );
        registry.register(
            "gateway_upstream_failures",
            "Forwarded requests the data API did not answer, by cause (timeout, unreachable)",
            metrics.upstream_failures.clone(),
        );
        Self { registry, ..metrics }
    }

    /// Counts one decision. `api` is the API's name, or `none` when the
    /// request named no API latchkey knows; `outcome` is `allowed`, a
    /// denial reason, or why the request could not be decided.
    pub fn decision(&self, surface: Surface, api: &'static str, outcome: &'static str) {
        self.decisions.get_or_create(&DecisionLabels { surface: surface.as_str(), api, outcome }).inc();
    }

    /// A decision on `surface` took `took`, token lookup included.
    pub fn decision_time(&self, surface: Surface, took: Duration) {
        self.decision_seconds.get_or_create(&SurfaceLabels { surface: surface.as_str() }).observe(took.as_secs_f64());
    }

    /// A lookup the cache answered.
    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    /// A lookup the cache could have answered but did not hold.
    pub fn cache_miss(&self) {
        self.cache_misses.inc();
    }

    /// A lookup that skipped the cache (off, or not trusted).
    pub fn cache_bypass(&self) {
        self.cache_bypassed.inc();
    }

    /// A token left the cache.
    pub fn cache_evicted(&self, cause: EvictionCause) {
        self.cache_evictions.get_or_create(&CauseLabels { cause: cause.as_str() }).inc();
    }

    /// How many tokens the cache holds now.
    pub fn set_cache_entries(&self, entries: u64) {
        self.cache_entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Whether the cache answers lookups now.
    pub fn set_cache_serving(&self, serving: bool) {
        self.cache_serving.set(i64::from(serving));
    }

    /// Names the change feed this process follows: `sqlite` for the
    /// change log of a SQLite file; `postgres` (the default) otherwise.
    /// Only the first name given counts; anything but [`FEEDS`] is ignored.
    pub fn name_feed(&self, feed: &'static str) {
        if FEEDS.contains(&feed) {
            let _ = self.feed.set(feed);
        }
    }

    fn feed_labels(&self) -> FeedLabels {
        FeedLabels { feed: self.feed.get().copied().unwrap_or(FEEDS[0]) }
    }

    /// The change feed is subscribed: changes made elsewhere are heard.
    pub fn feed_restored(&self) {
        self.feed_up.get_or_create(&self.feed_labels()).set(1);
    }

    /// The change feed was lost.
    pub fn feed_lost(&self) {
        let labels = self.feed_labels();
        self.feed_losses.get_or_create(&labels).inc();
        self.feed_up.get_or_create(&labels).set(0);
    }

    /// A change was heard on the feed.
    pub fn feed_change(&self) {
        self.feed_changes.get_or_create(&self.feed_labels()).inc();
    }

    /// The feed's last heartbeat took `lag` to come back.
    pub fn set_feed_lag(&self, lag: Duration) {
        self.feed_lag_seconds.get_or_create(&self.feed_labels()).set(lag.as_secs_f64());
    }

    /// A storage call named `operation` failed.
    pub fn storage_error(&self, operation: &'static str) {
        self.storage_errors.get_or_create(&OperationLabels { operation }).inc();
    }

    /// One HTTP request answered. `route` is the route's template as the
    /// router matched it, or a fixed name for what no route matched; never
    /// the path the client sent. `method` is a [`method_label`].
    pub fn http_request(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        let route = self.routes.intern(route);
        self.http_seconds.get_or_create(&RouteLabels { route }).observe(took.as_secs_f64());
        self.http_requests.get_or_create(&RequestLabels { route, method, status }).inc();
    }

    /// The data API answered a forwarded request after `took`.
    pub fn upstream_answered(&self, took: Duration) {
        self.upstream_seconds.observe(took.as_secs_f64());
    }

    /// The data API did not answer: `timeout` or `unreachable`.
    pub fn upstream_failed(&self, cause: &'static str) {
        self.upstream_failures.get_or_create(&CauseLabels { cause }).inc();
    }

    /// Runs `refresh` before every rendering, to update a value read at
    /// scrape time.
    pub fn before_render(&self, refresh: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.before_render.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Box::new(refresh));
    }

    /// Every series in the OpenMetrics text format, which Prometheus reads
    /// (see [`CONTENT_TYPE`]).
    #[must_use]
    pub fn render(&self) -> String {
        for refresh in self.before_render.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            refresh(self);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_renders_with_its_labels() {
        let metrics = Metrics::new();
        metrics.decision(Surface::Gateway, "maps", "source_not_granted");
        metrics.decision_time(Surface::Gateway, Duration::from_micros(3));
        metrics.http_request("/v3/tokens", method_label("POST"), 201, Duration::from_millis(2));
        metrics.storage_error("find_by_secret_hash");
        metrics.feed_restored();
        let text = metrics.render();
        for line in [
            "latchkey_decisions_total{surface=\"gateway\",api=\"maps\",outcome=\"source_not_granted\"} 1",
            "latchkey_http_requests_total{route=\"/v3/tokens\",method=\"POST\",status=\"201\"} 1",
            "latchkey_storage_errors_total{operation=\"find_by_secret_hash\"} 1",
            "latchkey_change_feed_up{feed=\"postgres\"} 1",
            "latchkey_decision_duration_seconds_count{surface=\"gateway\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_feed_is_absent_until_there_is_one() {
        let metrics = Metrics::new();
        assert!(!metrics.render().lines().any(|l| l.starts_with("latchkey_change_feed_up")));
        metrics.feed_lost();
        assert!(metrics.render().lines().any(|l| l == "latchkey_change_feed_up{feed=\"postgres\"} 0"));
    }

    /// Every series, touched once, as `(name, type, labels)` read from the
    /// rendered text: the names of samples (counters with `_total`), and
    /// the label names they carry.
    fn rendered_series() -> std::collections::BTreeMap<String, (String, Vec<String>)> {
        let metrics = Metrics::new();
        metrics.decision(Surface::Authorize, "maps", "allowed");
        metrics.decision_time(Surface::Authorize, Duration::from_micros(1));
        metrics.cache_hit();
        metrics.cache_miss();
        metrics.cache_bypass();
        metrics.cache_evicted(EvictionCause::Expired);
        metrics.set_cache_entries(1);
        metrics.set_cache_serving(true);
        metrics.feed_restored();
        metrics.feed_lost();
        metrics.feed_change();
        metrics.set_feed_lag(Duration::from_millis(1));
        metrics.storage_error("ping");
        metrics.http_request("/healthz", "GET", 200, Duration::from_micros(1));
        metrics.upstream_answered(Duration::from_millis(1));
        metrics.upstream_failed("timeout");
        let text = metrics.render();
        let mut series = std::collections::BTreeMap::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (family, kind) = line.split_once(' ').unwrap();
            let name = if kind == "counter" { format!("{family}_total") } else { family.to_owned() };
            let sample = match kind {
                "histogram" => format!("{family}_count"),
                _ => name.clone(),
            };
            let labels = text
                .lines()
                .find(|l| l.starts_with(&format!("{sample}{{")) || l.starts_with(&format!("{sample} ")))
                .and_then(|l| l.split_once('{'))
                .map(|(_, rest)| {
                    rest.split('}')
                        .next()
                        .unwrap()
                        .split(',')
                        .map(|pair| pair.split('=').next().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            series.insert(name, (kind.to_owned(), labels));
        }
        series
    }

    /// The ```metrics block of docs/metrics.md: `name | type | labels | …`.
    fn documented_series(doc: &str) -> std::collections::BTreeMap<String, (String, Vec<String>)> {
        let block = doc.split("```metrics\n").nth(1).unwrap().split("```").next().unwrap();
        block
            .lines()
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let labels = cells[2].split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
                (cells[0].to_owned(), (cells[1].to_owned(), labels))
            })
            .collect()
    }

    #[test]
    fn docs_metrics_md_lists_exactly_the_series() {
        let doc = include_str!("../../../docs/metrics.md");
        assert_eq!(documented_series(doc), rendered_series());
    }

    #[test]
    fn the_docs_check_notices_drift() {
        let doc = include_str!("../../../docs/metrics.md");
        let renamed = doc.replacen("latchkey_cache_hits_total", "latchkey_cache_hit_total", 1);
        assert_ne!(documented_series(&renamed), rendered_series());
        let relabelled = doc.replacen("| surface, api, outcome |", "| surface, outcome |", 1);
        assert_ne!(documented_series(&relabelled), rendered_series());
    }

    #[test]
    fn route_labels_are_capped() {
        let metrics = Metrics::new();
        for n in 0..MAX_ROUTES + 10 {
            metrics.http_request(&format!("/raw/{n}"), "GET", 200, Duration::ZERO);
        }
        let text = metrics.render();
        assert!(text.contains("route=\"other\""), "past the cap");
        assert!(text.contains("route=\"/raw/0\""));
        assert!(!text.contains(&format!("route=\"/raw/{}\"", MAX_ROUTES + 5)));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("patch"), "other");
        assert_eq!(method_label("X-ANYTHING-AT-ALL"), "other");
    }

    #[test]
    fn values_read_at_scrape_time_are_fresh() {
        let metrics = Metrics::new();
        let seen = std::sync::Arc::new(AtomicU64::new(7));
        let source = seen.clone();
        metrics.before_render(move |metrics| {
            metrics.set_cache_entries(source.load(std::sync::atomic::Ordering::Relaxed));
        });
        assert!(metrics.render().contains("latchkey_cache_entries 7\n"));
        seen.store(9, std::sync::atomic::Ordering::Relaxed);
        assert!(metrics.render().contains("latchkey_cache_entries 9\n"));
    }
}
