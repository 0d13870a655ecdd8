//! The token value and user key checks, which run before any lookup.
#![no_main]

use latchkey_domain::{TokenValue, UserKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(value) = TokenValue::parse(input) {
        assert_eq!(value.expose(), input);
        assert!(UserKey::parse(input).is_err(), "never both a token and a key");
    }
    if let Ok(key) = UserKey::parse(input) {
        assert_eq!(key.expose(), input);
    }
});
