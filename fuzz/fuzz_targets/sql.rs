//! Query keys, with every provider's lexical rules: never a panic, and what
//! surrounds a query (whitespace, a final comment) never changes its key.
#![no_main]

use latchkey_domain::Provider;
use latchkey_domain::sql::QueryKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    for provider in Provider::ALL {
        if let Ok(key) = QueryKey::new(input, provider) {
            let wrapped = format!(" \n{input}\n-- done\n");
            assert_eq!(QueryKey::new(&wrapped, provider), Ok(key), "{provider}: {input:?}");
        }
    }
});
