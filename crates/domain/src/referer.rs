//! Referer patterns (SPEC §5): which websites may use a token, and how a
//! request's `Referer` or `Origin` header is matched against them.
//!
//! Requests are parsed with the WHATWG URL rules of the `url` crate and
//! compared by their parsed parts, never as strings: a string prefix test
//! would let `https://good.com.evil.com/` or `https://good.com@evil.com/`
//! pass for `good.com`.

use std::fmt;

use url::{Host, Url};

/// A URL scheme a pattern can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn of(url: &Url) -> Option<Self> {
        match url.scheme() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    const fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum HostPattern {
    /// This host only: a DNS name in ASCII lower case, or an IP address.
    Exact(Host<String>),
    /// Any host with one or more labels before this domain, never the
    /// domain itself.
    Subdomains(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum PortPattern {
    /// The default port of the request's scheme.
    Default,
    Any,
    Exact(u16),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PathPattern {
    Any,
    /// This path or anything below it on a segment boundary. Stored without
    /// a trailing slash.
    Segments(String),
    /// Any path that starts with this text (the pattern ended in `*`).
    Prefix(String),
}

/// Why a string is not a referer pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefererError {
    #[error("the referer is empty")]
    Empty,
    #[error("a referer must not contain whitespace or control characters")]
    Whitespace,
    #[error("only the http and https schemes are allowed")]
    Scheme,
    #[error("the host is not a valid domain name or IP address")]
    Host,
    #[error("`*` may only start a host, as in *.example.com, or stand for the port")]
    Wildcard,
    #[error("the port must be a number from 1 to 65535, or *")]
    Port,
    #[error("a referer cannot contain user information (`@`)")]
    UserInfo,
    #[error("a referer cannot contain a query or fragment (`?`, `#`)")]
    QueryOrFragment,
}

/// One allowed website: `[scheme://]host[:port][path]`.
///
/// Invariant: `text` is the trimmed pattern as written and the other fields
/// are its parsed meaning; see the module documentation of SPEC §5.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RefererPattern {
    text: String,
    scheme: Option<Scheme>,
    host: HostPattern,
    port: PortPattern,
    path: PathPattern,
}

impl fmt::Debug for RefererPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefererPattern({:?})", self.text)
    }
}

fn parse_port(text: &str) -> Result<PortPattern, RefererError> {
    if text == "*" {
        return Ok(PortPattern::Any);
    }
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RefererError::Port);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(RefererError::Port),
        Ok(port) => Ok(PortPattern::Exact(port)),
    }
}

fn parse_host(text: &str) -> Result<HostPattern, RefererError> {
    if let Some(domain) = text.strip_prefix("*.") {
        if domain.contains('*') {
            return Err(RefererError::Wildcard);
        }
        return match Host::parse(domain) {
            Ok(Host::Domain(domain)) if !domain.split('.').any(str::is_empty) => Ok(HostPattern::Subdomains(domain)),
            Ok(_) | Err(_) => Err(RefererError::Host),
        };
    }
    if text.contains('*') {
        return Err(RefererError::Wildcard);
    }
    match Host::parse(text) {
        Ok(host) => Ok(HostPattern::Exact(host)),
        Err(_) => Err(RefererError::Host),
    }
}

/// Normalises a pattern's path as the URL parser normalises a request's
/// (percent-encoding, dot segments), so that both compare like for like.
fn normalize_path(path: &str) -> Result<String, RefererError> {
    let url = Url::parse(&format!("http://h{path}")).map_err(|_| RefererError::Host)?;
    Ok(url.path().to_owned())
}

fn parse_path(path: &str) -> Result<PathPattern, RefererError> {
    if path.is_empty() || path == "/" {
        return Ok(PathPattern::Any);
    }
    if let Some(prefix) = path.strip_suffix('*') {
        if prefix.contains('*') {
            return Err(RefererError::Wildcard);
        }
        return Ok(PathPattern::Prefix(normalize_path(prefix)?));
    }
    if path.contains('*') {
        return Err(RefererError::Wildcard);
    }
    let normalized = normalize_path(path)?;
    let trimmed = normalized.trim_end_matches('/');
    Ok(if trimmed.is_empty() { PathPattern::Any } else { PathPattern::Segments(trimmed.to_owned()) })
}

impl RefererPattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// [`RefererError`] saying which part is wrong.
    pub fn parse(raw: &str) -> Result<Self, RefererError> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(RefererError::Empty);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(RefererError::Whitespace);
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "http" => (Some(Scheme::Http), rest),
                "https" => (Some(Scheme::Https), rest),
                _ => return Err(RefererError::Scheme),
            },
            None => (None, text),
        };
        if rest.contains(['?', '#']) {
            return Err(RefererError::QueryOrFragment);
        }
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if authority.contains('@') {
            return Err(RefererError::UserInfo);
        }
        if authority.contains('\\') {
            return Err(RefererError::Host);
        }
        let (host, port) = if authority.starts_with('[') {
            // An IPv6 literal: the port, if any, follows the bracket.
            let close = authority.find(']').ok_or(RefererError::Host)?;
            let (host, after) = authority.split_at(close + 1);
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(RefererError::Host),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(RefererError::Host);
        }
        Ok(Self {
            text: text.to_owned(),
            scheme,
            host: parse_host(host)?,
            port: port.map_or(Ok(PortPattern::Default), parse_port)?,
            path: parse_path(path)?,
        })
    }

    /// The pattern as written (trimmed).
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the pattern restricts the path. Browsers send only the origin
    /// on cross-origin requests by default, so such a pattern may refuse
    /// requests its author meant to allow.
    #[must_use]
    pub fn restricts_path(&self) -> bool {
        !matches!(self.path, PathPattern::Any)
    }

    /// Whether the parsed request URL `url` is one this pattern allows.
    #[must_use]
    pub fn matches(&self, url: &Url) -> bool {
        Seen::of(url).is_some_and(|seen| self.allows(&seen))
    }

    /// Whether a request URL read as `seen` is one this pattern allows.
    fn allows(&self, seen: &Seen<'_>) -> bool {
        if self.scheme.is_some_and(|allowed| allowed != seen.scheme) {
            return false;
        }
        let host_ok = match (&self.host, &seen.host) {
            (HostPattern::Exact(allowed), host) => host_eq(allowed, host),
            (HostPattern::Subdomains(domain), Host::Domain(host)) => is_subdomain(host, domain),
            (HostPattern::Subdomains(_), _) => false,
        };
        if !host_ok {
            return false;
        }
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Default => seen.port == seen.scheme.default_port(),
            PortPattern::Exact(allowed) => seen.port == allowed,
        };
        port_ok
            && match &self.path {
                PathPattern::Any => true,
                PathPattern::Prefix(prefix) => seen.path.starts_with(prefix.as_str()),
                PathPattern::Segments(base) => {
                    seen.path.strip_prefix(base.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                }
            }
    }
}

/// What a pattern compares of a request's URL, as the WHATWG URL parser
/// reads it: the scheme, the host, the port (the scheme's default when
/// none is written) and the path.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen<'a> {
    scheme: Scheme,
    host: Host<&'a str>,
    port: u16,
    path: &'a str,
}

impl<'a> Seen<'a> {
    /// The parts of a parsed URL; `None` for a URL that is not http(s) or
    /// has no host.
    fn of(url: &'a Url) -> Option<Self> {
        let scheme = Scheme::of(url)?;
        Some(Self { scheme, host: url.host()?, port: url.port_or_known_default()?, path: url.path() })
    }

    /// Reads `header` without allocating, when it is in the plain form most
    /// browsers send, `http[s]://host[:port][/path][?query][#fragment]`,
    /// where the WHATWG parser would change nothing: printable ASCII only (it
    /// removes tabs and newlines anywhere), a lower-case DNS name that is no
    /// IPv4 number in disguise (`127.1`, `0x7f.1`) and no punycode (which it
    /// checks), no user info, a port of at most five digits, and a path of
    /// characters it keeps as they are, without `.` or `..` segments (which
    /// it resolves). Anything else is `None`, and the caller lets the full
    /// parser read it: this is a shortcut to the same reading, never a
    /// second reader. A property test holds it to the `url` crate's.
    fn plain(header: &'a str) -> Option<Self> {
        if !header.bytes().all(|byte| byte.is_ascii_graphic()) {
            return None;
        }
        let (scheme, rest) = if let Some(rest) = header.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            (Scheme::Http, header.strip_prefix("http://")?)
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let label_byte = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-';
        let plain_label =
            |label: &str| !label.is_empty() && label.bytes().all(label_byte) && !label.starts_with("xn--");
        let last = host.rsplit('.').next()?;
        if !host.split('.').all(plain_label) || !last.as_bytes().first().is_some_and(u8::is_ascii_lowercase) {
            return None;
        }
        let port = match port {
            None => scheme.default_port(),
            Some(digits) if (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) => {
                u16::try_from(digits.parse::<u32>().ok()?).ok()?
            }
            Some(_) => return None,
        };
        let path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
        let kept = |byte: u8| byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte);
        if !path.bytes().all(kept) || path.split('/').any(|segment| segment == "." || segment == "..") {
            return None;
        }
        Some(Self { scheme, host: Host::Domain(host), port, path: if path.is_empty() { "/" } else { path } })
    }
}

fn host_eq(allowed: &Host<String>, host: &Host<&str>) -> bool {
    match (allowed, host) {
        (Host::Domain(a), Host::Domain(b)) => a == b,
        (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
        (Host::Ipv6(a), Host::Ipv6(b)) => a == b,
        _ => false,
    }
}

/// Whether `host` is `domain` with one or more non-empty labels in front.
fn is_subdomain(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain)
        .and_then(|head| head.strip_suffix('.'))
        .is_some_and(|labels| !labels.is_empty() && !labels.split('.').any(str::is_empty))
}

/// A header's value, unless it is absent or blank.
fn present(header: Option<&str>) -> Option<&str> {
    header.map(str::trim).filter(|h| !h.is_empty())
}

/// Why a request's website is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefererDenial {
    /// Neither `Referer` nor `Origin` was sent.
    Missing,
    /// The header that was sent matches no pattern (or is not a URL).
    NotAllowed,
}

/// Checks a request against a token's patterns.
///
/// With no patterns every request passes. Otherwise the `Referer` is
/// matched, or when there is none the `Origin`; with neither the request is
/// refused, because a token restricted to websites must not work from a
/// client that hides where it runs. A `Referer` that does not match is not
/// rescued by a matching `Origin`: both come from the same client, and the
/// more specific one decides.
pub(crate) fn check(
    patterns: &[RefererPattern],
    referer: Option<&str>,
    origin: Option<&str>,
) -> Result<(), RefererDenial> {
    if patterns.is_empty() {
        return Ok(());
    }
    let header = present(referer).or_else(|| present(origin)).ok_or(RefererDenial::Missing)?;
    let allowed = match Seen::plain(header) {
        Some(seen) => patterns.iter().any(|p| p.allows(&seen)),
        None => {
            let url = Url::parse(header).map_err(|_| RefererDenial::NotAllowed)?;
            patterns.iter().any(|p| p.matches(&url))
        }
    };
    if allowed { Ok(()) } else { Err(RefererDenial::NotAllowed) }
}

/// The plain reading of `header`, if it has one, and the full parser's,
/// for the property test that holds the two together.
#[doc(hidden)]
#[must_use]
pub fn readings(header: &str) -> (Option<String>, Option<String>) {
    let show = |seen: &Seen<'_>| format!("{:?} {:?} {} {}", seen.scheme, seen.host, seen.port, seen.path);
    let plain = Seen::plain(header).map(|seen| show(&seen));
    let full = Url::parse(header).ok().and_then(|url| Seen::of(&url).map(|seen| show(&seen)));
    (plain, full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, url: &str) -> bool {
        RefererPattern::parse(pattern).unwrap().matches(&Url::parse(url).unwrap())
    }

    #[test]
    fn pattern_parsing() {
        let cases: &[(&str, Result<(), RefererError>)] = &[
            ("https://carto.com/", Ok(())),
            ("carto.com", Ok(())),
            ("http://localhost:3000", Ok(())),
            ("https://*.example.com/", Ok(())),
            ("example.com:*", Ok(())),
            ("https://[::1]:8443/app", Ok(())),
            ("http://127.0.0.1", Ok(())),
            ("https://bücher.example/", Ok(())),
            ("HTTPS://Example.COM/Path", Ok(())),
            ("https://app.example.com/dash*", Ok(())),
            ("", Err(RefererError::Empty)),
            ("   ", Err(RefererError::Empty)),
            ("ftp://example.com", Err(RefererError::Scheme)),
            ("javascript://example.com", Err(RefererError::Scheme)),
            ("https://", Err(RefererError::Host)),
            ("https:///path", Err(RefererError::Host)),
            ("https://exa mple.com", Err(RefererError::Whitespace)),
            ("https://ex*ample.com", Err(RefererError::Wildcard)),
            ("https://*.*.example.com", Err(RefererError::Wildcard)),
            ("*", Err(RefererError::Wildcard)),
            ("https://*.127.0.0.1", Err(RefererError::Host)),
            ("https://example.com:0", Err(RefererError::Port)),
            ("https://example.com:65536", Err(RefererError::Port)),
            ("https://example.com:http", Err(RefererError::Port)),
            ("https://user@example.com", Err(RefererError::UserInfo)),
            ("https://example.com/?q=1", Err(RefererError::QueryOrFragment)),
            ("https://example.com/#top", Err(RefererError::QueryOrFragment)),
            ("https://example.com/a*b", Err(RefererError::Wildcard)),
            ("https://exa%mple.com", Err(RefererError::Host)),
        ];
        for (raw, expected) in cases {
            assert_eq!(&RefererPattern::parse(raw).map(|_| ()), expected, "{raw:?}");
        }
    }

    #[test]
    fn matching_table() {
        let cases: &[(&str, &str, bool)] = &[
            // Scheme: named or both.
            ("https://good.com/", "https://good.com/", true),
            ("https://good.com/", "http://good.com/", false),
            ("good.com", "http://good.com/", true),
            ("good.com", "https://good.com/x", true),
            ("good.com", "ftp://good.com/", false),
            // Host: case-insensitive, punycode, exact unless wildcard.
            ("https://GOOD.com", "https://good.COM/", true),
            ("https://bücher.example", "https://xn--bcher-kva.example/", true),
            ("https://xn--bcher-kva.example", "https://bücher.example/", true),
            ("good.com", "https://good.com.evil.com/", false),
            ("good.com", "https://good.com@evil.com/", false),
            ("good.com", "https://evil.com/?https://good.com/", false),
            ("good.com", "https://evil.com/good.com", false),
            ("good.com", "https://notgood.com/", false),
            ("good.com", "https://www.good.com/", false),
            ("*.good.com", "https://www.good.com/", true),
            ("*.good.com", "https://a.b.good.com/", true),
            ("*.good.com", "https://good.com/", false),
            ("*.good.com", "https://evilgood.com/", false),
            ("*.good.com", "https://www.good.com.evil.com/", false),
            ("127.0.0.1", "http://127.0.0.1/", true),
            ("http://[::1]", "http://[0:0::1]/", true),
            // Port: default of the scheme, exact, or any.
            ("https://good.com", "https://good.com:443/", true),
            ("https://good.com", "https://good.com:8443/", false),
            ("good.com", "http://good.com:443/", false),
            ("good.com:8080", "http://good.com:8080/", true),
            ("good.com:8080", "http://good.com/", false),
            ("good.com:*", "https://good.com:9999/", true),
            ("good.com:*", "http://good.com/", true),
            // Path: segment prefix, or a raw prefix with *.
            ("https://good.com/app/", "https://good.com/app/", true),
            ("https://good.com/app/", "https://good.com/app/x", true),
            ("https://good.com/app", "https://good.com/app/x?y#z", true),
            ("https://good.com/app", "https://good.com/app", true),
            ("https://good.com/app", "https://good.com/apple", false),
            ("https://good.com/app/", "https://good.com/", false),
            ("https://good.com/app*", "https://good.com/apple", true),
            ("https://good.com/app*", "https://good.com/ap", false),
            ("https://good.com/a%20b", "https://good.com/a b/c", true),
            ("https://good.com/café", "https://good.com/caf%C3%A9/menu", true),
            ("https://good.com/app", "https://good.com/app/../admin", false),
            ("https://good.com/", "https://good.com/anything/at/all", true),
        ];
        for (pattern, url, expected) in cases {
            assert_eq!(allows(pattern, url), *expected, "{pattern} vs {url}");
        }
    }

    #[test]
    fn referer_then_origin_then_fail_closed() {
        let patterns = vec![RefererPattern::parse("https://good.com").unwrap()];
        assert_eq!(check(&[], None, None), Ok(()), "no patterns: any request");
        assert_eq!(check(&patterns, Some("https://good.com/page"), None), Ok(()));
        assert_eq!(check(&patterns, None, Some("https://good.com")), Ok(()));
        assert_eq!(check(&patterns, Some(""), Some("https://good.com")), Ok(()), "empty Referer is absent");
        assert_eq!(check(&patterns, None, None), Err(RefererDenial::Missing));
        assert_eq!(check(&patterns, Some("  "), None), Err(RefererDenial::Missing));
        assert_eq!(
            check(&patterns, Some("https://evil.com/"), Some("https://good.com")),
            Err(RefererDenial::NotAllowed)
        );
        assert_eq!(check(&patterns, None, Some("null")), Err(RefererDenial::NotAllowed));
        assert_eq!(check(&patterns, Some("not a url"), None), Err(RefererDenial::NotAllowed));
        assert_eq!(check(&patterns, Some("/relative/path"), None), Err(RefererDenial::NotAllowed));
    }

    #[test]
    fn only_path_patterns_are_flagged() {
        assert!(!RefererPattern::parse("https://good.com/").unwrap().restricts_path());
        assert!(!RefererPattern::parse("good.com").unwrap().restricts_path());
        assert!(RefererPattern::parse("https://good.com/app").unwrap().restricts_path());
    }
}
