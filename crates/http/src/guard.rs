//! Guards in front of the handlers: a cap on header size, and rate limiting
//! of failed authentication per client address.
//!
//! User keys and token values have about 190 random bits, so guessing one
//! is hopeless at any speed; the limiter still makes guessing slow and
//! keeps a flood of bad credentials from costing storage lookups. Failures
//! are counted per client address: a 401 on a management call, and a
//! `token_malformed` or `token_unknown` answer from authorize. Valid
//! traffic consumes nothing. Once an address has used its burst and its
//! rate, its requests get 429 with `Retry-After` without being evaluated,
//! so that a correct guess among them is not confirmed either. Data
//! services that call authorize for many end users can be exempted.

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

/// An address range exempt from rate limiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exempt {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Exempt {
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

impl Exempt {
    fn contains(&self, address: IpAddr) -> bool {
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
    pub exempt: Vec<Exempt>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { failures_per_minute: 600, burst: 100, exempt: Vec::new() }
    }
}

/// Counts failures per address and blocks addresses over their quota.
pub struct FailureLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    /// How many addresses are blocked: lets valid traffic skip the lock.
    blocked_count: AtomicUsize,
    failures: AtomicUsize,
    exempt: Vec<Exempt>,
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
        }
    }

    /// How long `address` must wait, if it is blocked.
    fn blocked_for(&self, address: IpAddr) -> Option<Duration> {
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
    fn fail(&self, address: IpAddr) -> Option<Duration> {
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
}

fn client_address(request: &Request) -> Option<IpAddr> {
    request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_canonical())
}

/// Refuses blocked addresses and counts failures.
pub async fn limit_failures(
    State(limiter): State<Arc<FailureLimiter>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    let Some(address) = client_address(&request).filter(|a| !limiter.exempt(*a)) else {
        return next.run(request).await;
    };
    if let Some(wait) = limiter.blocked_for(address) {
        return ApiError::RateLimited(wait).into_response();
    }
    let response = next.run(request).await;
    if response.extensions().get::<AuthFailure>().is_some()
        && let Some(wait) = limiter.fail(address)
    {
        tracing::warn!(%address, "too many failed authentications; refusing for a while");
        return ApiError::RateLimited(wait).into_response();
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
    fn exempt_ranges() {
        let range: Exempt = "10.0.0.0/8".parse().unwrap();
        assert!(range.contains("10.1.2.3".parse().unwrap()));
        assert!(range.contains("::ffff:10.1.2.3".parse::<IpAddr>().unwrap()));
        assert!(!range.contains("11.0.0.1".parse().unwrap()));
        let one: Exempt = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: Exempt = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Exempt = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "host", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<Exempt>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_of_failures_then_a_block() {
        let limiter = FailureLimiter::new(&RateLimits { failures_per_minute: 60, burst: 3, exempt: vec![] });
        let address: IpAddr = "198.51.100.1".parse().unwrap();
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.fail(address).is_none());
        }
        let wait = limiter.fail(address).expect("the fourth failure is one too many");
        assert!(wait <= Duration::from_secs(1), "{wait:?}: one failure a second comes back");
        assert!(limiter.blocked_for(address).is_some());
        assert!(limiter.blocked_for(other).is_none(), "per address");
    }
}
