//! Request body decoding, and the validation of what decodes, as the
//! server runs them on every create, update and authorize.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    latchkey_http::fuzzing::decode_bodies(input);
});
