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

/// An IPv4 or IPv6 address range (`192.0.2.7`, `10.0.0.0/8`,
/// `2001:db8::/32`): addresses exempt from rate limiting, trusted proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for IpRange {
    type Err = String;

    /// `192.0.2.7`, `10.0.0.0/8` or `2001:db8::/32`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
        let network: IpAddr = address.trim().parse().map_err(|_| format!("{text:?} is not an IP address or range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has a bad prefix length"))?
        };
        Ok(Self { network, prefix })
    }
}

impl IpRange {
    /// Whether `address` (IPv4-mapped IPv6 included) is in the range.
    #[must_use]
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

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
    pub trusted_proxies: Vec<IpRange>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { failures_per_minute: 600, burst: 100, exempt: Vec::new(), trusted_proxies: Vec::new() }
    }
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
    trusted_proxies: Vec<IpRange>,
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

    /// The client's address: the peer's, or behind a trusted proxy the
    /// rightmost address of `X-Forwarded-For` that is not a trusted proxy
    /// (every proxy appends the address it saw; the ones to the left of
    /// the first untrusted hop were written by the client and prove
    /// nothing).
    #[must_use]
    pub fn client_address(&self, request: &Request) -> Option<IpAddr> {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_canonical())?;
        client_behind(peer, request.headers(), &self.trusted_proxies)
    }
}

/// The client of a request from `peer`, given the proxies trusted.
#[must_use]
pub fn client_behind(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpRange]) -> Option<IpAddr> {
    let is_trusted = |address: IpAddr| trusted.iter().any(|range| range.contains(address));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop that is not an address ends the chain of trust: what is to
        // its left cannot be told apart from what a client made up.
        let Ok(address) = hop.parse::<IpAddr>().map(|a| a.to_canonical()) else {
            break;
        };
        client = address;
        if !is_trusted(address) {
            break;
        }
    }
    Some(client)
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
    let Some(address) = limiter.client_address(&request).filter(|a| !limiter.exempt(*a)) else {
        return next.run(request).await;
    };
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
    fn ip_ranges() {
        let range: IpRange = "10.0.0.0/8".parse().unwrap();
        assert!(range.contains("10.1.2.3".parse().unwrap()));
        assert!(range.contains("::ffff:10.1.2.3".parse::<IpAddr>().unwrap()));
        assert!(!range.contains("11.0.0.1".parse().unwrap()));
        let one: IpRange = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: IpRange = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: IpRange = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "host", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }

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
        let trusted: Vec<IpRange> = vec!["10.0.0.0/8".parse().unwrap()];
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
            // No header, or garbage at the right: the proxy itself.
            (proxy, &[], "10.0.0.2"),
            (proxy, &["6.6.6.6, not-an-address"], "10.0.0.2"),
            (proxy, &["::ffff:198.51.100.9"], "198.51.100.9"),
        ];
        for (peer, header, expected) in cases {
            assert_eq!(client_behind(*peer, &with(header), &trusted), Some(ip(expected)), "{peer} {header:?}");
        }
    }
}
