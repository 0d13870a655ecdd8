//! Guards in front of the handlers: a cap on header size, and rate limiting
//! of failed authentication per client address and per surface.
//!
//! User keys and token values have about 190 random bits, so guessing one
//! is hopeless at any speed; the limiter still makes guessing slow and
//! keeps a flood of bad credentials from costing storage lookups. Failures
//! are counted per client address: a 401 on a management call, and a
//! `token_malformed` or `token_unknown` answer from authorize, forward-auth
//! or the gateway. Valid traffic consumes nothing. Once an address has used
//! its burst and its rate, its requests get 429 with `Retry-After` without
//! being evaluated, so that a correct guess among them is not confirmed
//! either. Data services that call authorize for many end users can be
//! exempted.
//!
//! Each surface (management, authorize, forward-auth, gateway) counts on
//! its own: a flood of bad user keys through a proxy must not refuse the
//! data requests that proxy forwards. Behind a proxy every request comes
//! from the proxy's address, so with `--trusted-proxies` the client is the
//! rightmost address in `X-Forwarded-For` that is not a trusted proxy.

use std::collections::HashMap;

use latchkey_domain::ip::{ClientAddress, IpRange, TrustedProxies, canonical_address};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Response;
use axum::middleware::Next;
use axum::response::IntoResponse;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::ApiError;

/// The most header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Marks a response as a failed authentication, for the limiter.
#[derive(Clone, Copy, Debug)]
pub struct AuthFailure;

/// How failures are limited.
#[derive(Clone, Debug)]
pub struct RateLimits {
    /// Failures an address may make per minute, sustained.
    pub failures_per_minute: u32,
    /// Failures an address may make at once.
    pub burst: u32,
    /// Addresses never limited (the data services that call authorize).
    pub exempt: Vec<IpRange>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { failures_per_minute: 600, burst: 100, exempt: Vec::new(), trusted_proxies: TrustedProxies::none() }
    }
}

/// The client of a request, as the guard read it once for every use: the
/// rate limiter's key, and the address a token restricted to addresses is
/// checked against. `None` when it could not be told (a trusted proxy sent
/// an `X-Forwarded-For` the walk could not read): such a token refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

/// The client of a request from `peer` with these headers: the peer, or
/// behind a trusted proxy what its `X-Forwarded-For` says (see
/// [`TrustedProxies::client_address`]). A header line that is not text is
/// passed on as unreadable, never skipped.
#[must_use]
pub fn client_of(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &TrustedProxies) -> ClientAddress {
    let lines: Vec<&str> =
        headers.get_all("x-forwarded-for").iter().map(|value| value.to_str().unwrap_or("")).collect();
    trusted.client_address(peer, &lines)
}

/// Where a request came in: each counts failures on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Surface {
    /// The Tokens API and everything else a user key opens.
    Management,
    /// `/v3/authorize`.
    Authorize,
    /// `/v3/forward-auth`.
    ForwardAuth,
    /// The gateway.
    Gateway,
}

impl Surface {
    /// The surface of a request to `serve`, by its path.
    #[must_use]
    pub fn of_path(path: &str) -> Self {
        if path == "/v3/authorize" {
            Surface::Authorize
        } else if path == "/v3/forward-auth" || path.starts_with("/v3/forward-auth/") {
            Surface::ForwardAuth
        } else {
            Surface::Management
        }
    }
}

type Key = (Surface, IpAddr);

/// Counts failures per surface and address, and blocks those over their
/// quota.
pub struct FailureLimiter {
    limiter: DefaultKeyedRateLimiter<Key>,
    clock: DefaultClock,
    blocked: Mutex<HashMap<Key, Instant>>,
    /// How many keys are blocked: lets valid traffic skip the lock.
    blocked_count: AtomicUsize,
    failures: AtomicUsize,
    exempt: Vec<IpRange>,
    trusted_proxies: TrustedProxies,
}

impl FailureLimiter {
    /// A limiter with these limits.
    #[must_use]
    pub fn new(limits: &RateLimits) -> Self {
        let rate = NonZeroU32::new(limits.failures_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
            blocked: Mutex::new(HashMap::new()),
            blocked_count: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
            exempt: limits.exempt.clone(),
            trusted_proxies: limits.trusted_proxies.clone(),
        }
    }

    /// How long `address` must wait, if it is blocked.
    fn blocked_for(&self, address: Key) -> Option<Duration> {
        if self.blocked_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        let until = *blocked.get(&address)?;
        let now = Instant::now();
        if until > now {
            return Some(until - now);
        }
        blocked.remove(&address);
        self.blocked_count.store(blocked.len(), Ordering::Release);
        None
    }

    /// Counts a failure; returns how long to wait when it was one too many.
    fn fail(&self, address: Key) -> Option<Duration> {
        if self.failures.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
        }
        let not_until = self.limiter.check_key(&address).err()?;
        let wait = not_until.wait_time_from(self.clock.now()).max(Duration::from_millis(1));
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        blocked.insert(address, Instant::now() + wait);
        self.blocked_count.store(blocked.len(), Ordering::Release);
        Some(wait)
    }

    fn exempt(&self, address: IpAddr) -> bool {
        self.exempt.iter().any(|range| range.contains(address))
    }

    /// The client's address and the key it is counted under: the client
    /// when it could be told, else the peer (the last hop that can be
    /// trusted to have said something true).
    fn client(&self, request: &Request) -> Option<(ClientIp, IpAddr)> {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip())?;
        let client = client_of(peer, request.headers(), &self.trusted_proxies).known();
        Some((ClientIp(client), client.unwrap_or_else(|| canonical_address(peer))))
    }
}

/// The answer to a blocked request on `surface`: 429 with `Retry-After`,
/// or for forward-auth 403 with the reason `rate_limited`, since nginx's
/// `auth_request` turns any status but 401 and 403 into a 500 for every
/// client of the proxy.
fn blocked_response(surface: Surface, wait: Duration) -> Response<Body> {
    let mut response = ApiError::RateLimited(wait).into_response();
    if surface == Surface::ForwardAuth {
        *response.status_mut() = axum::http::StatusCode::FORBIDDEN;
        response
            .headers_mut()
            .insert(crate::enforce::REASON_HEADER, axum::http::HeaderValue::from_static("rate_limited"));
    }
    response
}

/// Refuses blocked clients and counts failures, per surface.
pub async fn limit_failures(
    State((limiter, fixed)): State<(Arc<FailureLimiter>, Option<Surface>)>,
    request: Request,
    next: Next,
) -> Response<Body> {
    let mut request = request;
    let Some((client, address)) = limiter.client(&request) else {
        return next.run(request).await;
    };
    request.extensions_mut().insert(client);
    if limiter.exempt(address) {
        return next.run(request).await;
    }
    let surface = fixed.unwrap_or_else(|| Surface::of_path(request.uri().path()));
    let key = (surface, address);
    if let Some(wait) = limiter.blocked_for(key) {
        return blocked_response(surface, wait);
    }
    let response = next.run(request).await;
    if response.extensions().get::<AuthFailure>().is_some()
        && let Some(wait) = limiter.fail(key)
    {
        tracing::warn!(%address, ?surface, "too many failed authentications; refusing for a while");
        return blocked_response(surface, wait);
    }
    response
}

/// Refuses requests whose headers are too large, with the error body.
pub async fn limit_headers(request: Request, next: Next) -> Response<Body> {
    let size: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if size > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_failures_then_a_block() {
        let limits = RateLimits { failures_per_minute: 60, burst: 3, ..RateLimits::default() };
        let limiter = FailureLimiter::new(&limits);
        let address = (Surface::Management, "198.51.100.1".parse().unwrap());
        let other = (Surface::Management, "198.51.100.2".parse().unwrap());
        let same_address_elsewhere = (Surface::ForwardAuth, address.1);
        for _ in 0..3 {
            assert!(limiter.fail(address).is_none());
        }
        let wait = limiter.fail(address).expect("the fourth failure is one too many");
        assert!(wait <= Duration::from_secs(1), "{wait:?}: one failure a second comes back");
        assert!(limiter.blocked_for(address).is_some());
        assert!(limiter.blocked_for(other).is_none(), "per address");
        assert!(limiter.blocked_for(same_address_elsewhere).is_none(), "per surface");
        assert!(limiter.fail(same_address_elsewhere).is_none());
    }

    #[test]
    fn the_client_behind_trusted_proxies() {
        use axum::http::{HeaderMap, HeaderValue};
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let with = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = ip("10.0.0.2");
        let cases: &[(IpAddr, &[&str], &str)] = &[
            // Not from a trusted proxy: the header is the client's word.
            (ip("203.0.113.5"), &["198.51.100.9"], "203.0.113.5"),
            // From a proxy: the rightmost untrusted hop.
            (proxy, &["198.51.100.9"], "198.51.100.9"),
            (proxy, &["6.6.6.6, 198.51.100.9"], "198.51.100.9"),
            (proxy, &["6.6.6.6, 198.51.100.9, 10.0.0.7"], "198.51.100.9"),
            (proxy, &["6.6.6.6", "198.51.100.9"], "198.51.100.9"),
            // Only proxies: the leftmost.
            (proxy, &["10.1.1.1, 10.0.0.7"], "10.1.1.1"),
            // No header: the proxy itself.
            (proxy, &[], "10.0.0.2"),
            (proxy, &["::ffff:198.51.100.9"], "198.51.100.9"),
            // Garbage left of the client is the client's own and ignored.
            (proxy, &["not-an-address, 198.51.100.9"], "198.51.100.9"),
        ];
        for (peer, header, expected) in cases {
            assert_eq!(client_of(*peer, &with(header), &trusted).known(), Some(ip(expected)), "{peer} {header:?}");
        }
        // Garbage where the walk reads: nobody can tell, so no address.
        for header in [&["6.6.6.6, not-an-address"][..], &["198.51.100.9:443"], &["198.51.100.9,"]] {
            assert_eq!(client_of(proxy, &with(header), &trusted), ClientAddress::Unknown, "{header:?}");
        }
        // A header line that is not text is unreadable, not skipped.
        let mut headers = with(&["198.51.100.9"]);
        headers.append("x-forwarded-for", HeaderValue::from_bytes(b"\xff").unwrap());
        assert_eq!(client_of(proxy, &headers, &trusted), ClientAddress::Unknown);
    }
}
