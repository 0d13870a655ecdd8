//! Property tests of referer matching (SPEC §5): whatever an attacker puts
//! in the userinfo, path, query or around the host, a pattern for
//! `good.com` only matches URLs whose parsed host is `good.com`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_domain::RefererPattern;
use proptest::prelude::*;
use url::{Host, Url};

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?"
}

/// Hosts that look like `good.com` in many ways, and some that are it.
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("good.com".to_owned()),
        Just("GOOD.com".to_owned()),
        label().prop_map(|l| format!("{l}.good.com")),
        (label(), label()).prop_map(|(a, b)| format!("{a}.{b}.good.com")),
        label().prop_map(|l| format!("good.com.{l}")),
        label().prop_map(|l| format!("{l}good.com")),
        label().prop_map(|l| format!("good.com{l}")),
        label().prop_map(|l| format!("good.co{l}")),
        Just("good.com.".to_owned()),
        label().prop_map(|l| format!("{l}.com")),
        Just("127.0.0.1".to_owned()),
        Just("[::1]".to_owned()),
    ]
}

/// Text with the characters that trick string comparisons.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z/.:@?#%=&]{0,20}",
        Just("good.com".to_owned()),
        Just("https://good.com/".to_owned()),
        Just("@good.com".to_owned()),
        Just("//good.com".to_owned()),
    ]
}

fn url() -> impl Strategy<Value = (Url, String)> {
    (
        prop_oneof![Just("http"), Just("https")],
        prop::option::of(tricky()),
        host(),
        prop::option::of(prop_oneof![Just(80u16), Just(443), Just(8080), 1u16..]),
        tricky(),
        tricky(),
    )
        .prop_filter_map("must parse as a URL", |(scheme, userinfo, host, port, path, query)| {
            let userinfo = userinfo.map(|u| format!("{}@", u.replace(['/', '?', '#', '@'], ""))).unwrap_or_default();
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let path = path.replace(['?', '#'], "");
            let text = format!("{scheme}://{userinfo}{host}{port}/{path}?{query}");
            Url::parse(&text).ok().map(|url| (url, text))
        })
}

fn parsed_domain(url: &Url) -> Option<String> {
    match url.host() {
        Some(Host::Domain(domain)) => Some(domain.to_owned()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn exact_patterns_match_only_that_host((url, text) in url()) {
        for pattern in ["good.com", "https://good.com/", "http://good.com", "good.com:*"] {
            let pattern = RefererPattern::parse(pattern).unwrap();
            if pattern.matches(&url) {
                let domain = parsed_domain(&url);
                prop_assert_eq!(domain.as_deref(), Some("good.com"), "{} matched {:?}", text, pattern);
            }
        }
    }

    #[test]
    fn wildcard_patterns_match_only_subdomains((url, text) in url()) {
        let pattern = RefererPattern::parse("*.good.com").unwrap();
        if pattern.matches(&url) {
            let domain = parsed_domain(&url).unwrap_or_default();
            prop_assert!(domain.ends_with(".good.com") && domain != "good.com", "{} matched as {}", text, domain);
        }
    }

    #[test]
    fn the_bare_domain_never_matches_a_wildcard(
        scheme in prop_oneof![Just("http"), Just("https")],
        userinfo in "[a-z.]{0,10}",
        path in "[a-z/.]{0,20}",
    ) {
        let pattern = RefererPattern::parse("*.good.com").unwrap();
        let url = Url::parse(&format!("{scheme}://{userinfo}@good.com/{path}")).unwrap();
        prop_assert!(!pattern.matches(&url));
    }

    #[test]
    fn schemeless_patterns_match_both_schemes(path in "[a-z/]{0,20}", query in "[a-z=&]{0,10}") {
        let pattern = RefererPattern::parse("good.com").unwrap();
        for scheme in ["http", "https"] {
            let url = Url::parse(&format!("{scheme}://good.com/{path}?{query}")).unwrap();
            prop_assert!(pattern.matches(&url), "{}", url);
        }
        let https_only = RefererPattern::parse("https://good.com").unwrap();
        let plain = Url::parse(&format!("http://good.com/{path}")).unwrap();
        prop_assert!(!https_only.matches(&plain));
    }
}

/// Headers near the plain form: every character the shortcut must think
/// about, in every part.
fn header_like() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just("http://"),
        Just("https://"),
        Just("HTTPS://"),
        Just("http:/"),
        Just("http:///"),
        Just("https:\\\\"),
        Just("ftp://"),
        Just(" https://"),
    ];
    let host = prop_oneof![
        "[a-z0-9.-]{1,16}",
        "[a-zA-Z0-9.%@:_\\[\\]-]{0,16}",
        Just("127.1".to_owned()),
        Just("0x7f.0.0.1".to_owned()),
        Just("1.2.3.com".to_owned()),
        Just("xn--bcher-kva.example".to_owned()),
        Just("xn--zz.example".to_owned()),
        Just("good.com.".to_owned()),
        Just("a..b".to_owned()),
        Just("[::1]".to_owned()),
        Just("good.com@evil.com".to_owned()),
        Just("evil.com\\@good.com".to_owned()),
    ];
    let port = prop_oneof![Just(String::new()), "(:[0-9]{0,7})", Just(":".to_owned()), Just(":0x50".to_owned())];
    let path = prop_oneof![
        Just(String::new()),
        "(/[a-zA-Z0-9._~!$&'()*+,;=:@%-]{0,6}){0,4}",
        "[/.a-z%\\\\?#\t\n \"<>`{}]{0,16}",
        Just("/a/../b".to_owned()),
        Just("/./a".to_owned()),
        Just("/a/%2e%2e/b".to_owned()),
    ];
    let tail = prop_oneof![Just(String::new()), "[?#][ -~]{0,10}", "[?#][\t\u{0}-\u{ff}]{0,6}"];
    (scheme, host, port, path, tail).prop_map(|(s, h, p, path, t)| format!("{s}{h}{p}{path}{t}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// The shortcut that reads plain headers without allocating reads them
    /// exactly as the WHATWG parser of the `url` crate (what browsers
    /// follow) does, or leaves them to it.
    #[test]
    fn the_plain_reading_is_the_whatwg_reading(header in header_like()) {
        let (plain, full) = latchkey_domain::referer::readings(&header);
        if let Some(plain) = plain {
            prop_assert_eq!(Some(plain), full, "{:?}", header);
        }
    }
}

#[test]
fn plain_headers_take_the_shortcut_and_tricky_ones_do_not() {
    use latchkey_domain::referer::readings;
    for plain in [
        "https://app.example.com/",
        "https://app.example.com",
        "http://localhost:8080/map?x=1#top",
        "https://a-b.c0.example/x/y.z/(1)",
        "https://app.example.com:443/a@b",
    ] {
        let (shortcut, full) = readings(plain);
        assert!(shortcut.is_some(), "{plain} takes the shortcut");
        assert_eq!(shortcut, full, "{plain}");
    }
    for tricky in [
        "https://APP.example.com/",
        "https://127.1/",
        "https://0x7f.1/",
        "https://xn--bcher-kva.example/",
        "https://good.com@evil.com/",
        "https://evil.com\\@good.com/",
        "https://app.example.com/a/../b",
        "https://app.example.com/a%2fb",
        "https://app.example.com:/",
        "https://app.example.com:99999/",
        "https://app.example.com./",
        "https:app.example.com/",
        "https:///app.example.com/",
        "https://app.exam\tple.com/",
        "https://app.example.com/ a",
    ] {
        assert_eq!(readings(tricky).0, None, "{tricky:?} is left to the full parser");
    }
}
