//! Grant sources: classification, and binding to every provider.
#![no_main]

use latchkey_domain::{Provider, Source};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let kind = Source::classify(input);
    for provider in Provider::ALL {
        match (Source::new(input, provider), &kind) {
            (Ok(source), Ok(kind)) => assert_eq!(source.kind(), *kind, "binding keeps the classification"),
            (Ok(_), Err(error)) => panic!("classify refused what new accepted: {error}"),
            (Err(_), _) => {}
        }
    }
});
