//! Referer patterns: parsing any text, and matching any URL against any
//! pattern that parses. The input is a pattern, a newline, and a URL.
#![no_main]

use latchkey_domain::RefererPattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let (pattern, url) = input.split_once('\n').unwrap_or((input, "https://example.com/"));
    let Ok(pattern) = RefererPattern::parse(pattern) else { return };
    let _ = pattern.restricts_path();
    assert_eq!(RefererPattern::parse(pattern.text()).as_ref(), Ok(&pattern), "a pattern's text parses to itself");
    if let Ok(url) = url::Url::parse(url) {
        let _ = pattern.matches(&url);
    }
});
