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
