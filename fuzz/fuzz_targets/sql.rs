//! The SQL canonicaliser, with every provider's dialect.
#![no_main]

use latchkey_domain::Provider;
use latchkey_domain::source::{canonical_form, normalize_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    for provider in Provider::ALL {
        let _ = canonical_form(input, provider);
    }
    let normalized = normalize_text(input);
    assert_eq!(normalize_text(&normalized), normalized, "normalising twice changes nothing");
});
