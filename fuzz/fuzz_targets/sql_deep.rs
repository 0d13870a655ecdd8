//! Deep and long queries: a fragment repeated up to 40 000 times (deeper
//! than any input the fuzzer would write by itself, and past every cap) is
//! read as a grant and as a request by every provider. The process must
//! neither crash nor overflow its stack.
#![no_main]

use latchkey_domain::sql::QueryKey;
use latchkey_domain::{Provider, Source};
use libfuzzer_sys::fuzz_target;

/// Fragments that nest or chain when repeated.
const FRAGMENTS: &[&str] = &[
    "1+", "(", "((", "[", "SELECT (", "NOT ", "- ", " UNION SELECT 1", "::int", " AND a", " || 'a'", "/*", "/* */",
    "-- \n", "CASE WHEN 1 THEN ", "a.", "f(", "ARRAY[", " IS NULL", " COLLATE c",
];

fuzz_target!(|data: &[u8]| {
    let [choice, high, low, rest @ ..] = data else {
        return;
    };
    let fragment = FRAGMENTS[usize::from(*choice) % FRAGMENTS.len()];
    let count = (usize::from(*high) << 8 | usize::from(*low)) % 40_000;
    let tail = String::from_utf8_lossy(rest);
    let text = format!("SELECT {}1{tail}", fragment.repeat(count));
    for provider in Provider::ALL {
        let _ = Source::new(&text, provider);
        let _ = QueryKey::new(&text, provider);
    }
});
