//! Base62 text (`0-9A-Za-z`) for identifiers and secrets: URL-safe, no
//! punctuation a user could mis-copy, and double-click selects all of it.

use rand_core::TryCryptoRng;

pub(crate) const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

pub(crate) fn is_base62(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

/// Fills a string of `len` characters drawn uniformly from the alphabet.
///
/// Bytes of 248 and above are rejected rather than reduced modulo 62, which
/// would make the first eight characters slightly more likely.
pub(crate) fn random<R: TryCryptoRng + ?Sized>(rng: &mut R, len: usize) -> Result<String, R::Error> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.try_fill_bytes(&mut buf)?;
        for &byte in &buf {
            if out.len() == len {
                break;
            }
            if byte < 248 {
                out.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
    }
    Ok(out)
}

/// Encodes `value` in exactly `width` base62 digits, most significant first.
/// `width` must be large enough for the value (6 digits hold any `u32`).
pub(crate) fn encode_fixed(mut value: u64, width: usize) -> String {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    digits.into_iter().map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn fixed_width_encoding_round_numbers() {
        assert_eq!(encode_fixed(0, 6), "000000");
        assert_eq!(encode_fixed(61, 2), "0z");
        assert_eq!(encode_fixed(62, 2), "10");
        assert_eq!(encode_fixed(u64::from(u32::MAX), 6), "4gfFC3");
    }

    #[test]
    fn random_strings_use_only_the_alphabet_and_have_the_length_asked() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in [0, 1, 12, 32, 100] {
            let s = random(&mut rng, len).unwrap();
            assert_eq!(s.len(), len);
            assert!(s.bytes().all(is_base62));
        }
    }
}
