//! Secret values — token values and user keys — and their hashes (SPEC §9).
//!
//! A secret reads `latchkey_tk_` (or `latchkey_uk_` for a user key), then 32
//! random base62 characters (about 190 bits), then 6 base62 characters of a
//! CRC-32 checksum of everything before them. The prefix names the product
//! so that secret scanners recognise a leaked value, and tells a token from
//! a user key at a glance; the checksum lets a mistyped or made-up value be
//! refused without a storage lookup.

use std::fmt;
use std::marker::PhantomData;

use rand_core::TryCryptoRng;
use sha2::{Digest, Sha256};

use crate::base62;

const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;

/// What kind of secret a [`Secret`] is.
pub trait SecretKind {
    /// The fixed text every secret of this kind starts with.
    const PREFIX: &'static str;
}

/// Marker for API access token values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenSecret {}

impl SecretKind for TokenSecret {
    const PREFIX: &'static str = "latchkey_tk_";
}

/// Marker for users' keys to the management API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserSecret {}

impl SecretKind for UserSecret {
    const PREFIX: &'static str = "latchkey_uk_";
}

/// The value of an API access token.
pub type TokenValue = Secret<TokenSecret>;
/// A user's key to the management API.
pub type UserKey = Secret<UserSecret>;

/// A secret in the format of this module.
///
/// Invariant: the text has the kind's prefix, 32 base62 characters and a
/// correct checksum. `Debug` never prints the secret, so a secret that ends
/// up in a log line through a derived `Debug` shows only its kind.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret<K: SecretKind> {
    text: String,
    kind: PhantomData<K>,
}

/// The text is not a secret of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a well-formed latchkey secret")]
pub struct MalformedSecret;

fn checksum(body: &str) -> String {
    base62::encode_fixed(u64::from(crc32fast::hash(body.as_bytes())), CHECKSUM_LEN)
}

impl<K: SecretKind> Secret<K> {
    /// The length of every secret of this kind.
    #[must_use]
    pub fn len() -> usize {
        K::PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN
    }

    /// A fresh secret from `rng`, which must be a cryptographically secure
    /// generator (the operating system's, in the service).
    ///
    /// # Errors
    /// Whatever the generator reports.
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self, R::Error> {
        let mut text = String::with_capacity(Self::len());
        text.push_str(K::PREFIX);
        text.push_str(&base62::random(rng, RANDOM_LEN)?);
        let sum = checksum(&text);
        text.push_str(&sum);
        Ok(Self { text, kind: PhantomData })
    }

    /// Whether `text` starts like a secret of this kind (no other check).
    #[must_use]
    pub fn has_prefix(text: &str) -> bool {
        text.starts_with(K::PREFIX)
    }

    /// Checks the format of `text`: prefix, length, alphabet and checksum.
    /// No lookup is needed to refuse a value that fails.
    ///
    /// # Errors
    /// [`MalformedSecret`] when any check fails.
    pub fn parse(text: &str) -> Result<Self, MalformedSecret> {
        // ASCII first: the slicing below must fall on character boundaries.
        if !text.is_ascii() || text.len() != Self::len() || !text.starts_with(K::PREFIX) {
            return Err(MalformedSecret);
        }
        let (body, sum) = text.split_at(text.len() - CHECKSUM_LEN);
        if !body[K::PREFIX.len()..].bytes().all(base62::is_base62) || checksum(body) != sum {
            return Err(MalformedSecret);
        }
        Ok(Self { text: text.to_owned(), kind: PhantomData })
    }

    /// The secret itself. Named so that every place that reveals a secret is
    /// easy to find.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The SHA-256 hash under which the secret is stored and looked up. A
    /// plain hash is enough: the value has 190 random bits, so nothing can be
    /// guessed from the hash, and a salt or slow hash would rule out lookups.
    #[must_use]
    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.text.as_bytes()).into())
    }
}

impl<K: SecretKind> fmt::Debug for Secret<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}…)", K::PREFIX)
    }
}

/// The SHA-256 hash of a secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Wraps a stored hash.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Wraps a stored hash read as a slice.
    ///
    /// # Errors
    /// [`MalformedSecret`] when the slice is not 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, MalformedSecret> {
        <[u8; 32]>::try_from(bytes).map(Self).map_err(|_| MalformedSecret)
    }

    /// The hash's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash(")?;
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A token value encrypted under the server key, so that its owner can copy
/// it again from the list. The domain never looks inside; the application
/// seals and opens it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SealedSecret(Vec<u8>);

impl SealedSecret {
    /// Wraps sealed bytes.
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The sealed bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(42)
    }

    #[test]
    fn generated_values_parse_and_have_the_documented_shape() {
        let mut rng = rng();
        for _ in 0..100 {
            let value = TokenValue::generate(&mut rng).unwrap();
            let text = value.expose();
            assert_eq!(text.len(), 12 + 32 + 6);
            assert!(text.starts_with("latchkey_tk_"));
            assert!(text["latchkey_tk_".len()..].bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(TokenValue::parse(text), Ok(value.clone()));
        }
    }

    #[test]
    fn malformed_values_are_refused_without_lookup() {
        let good = TokenValue::generate(&mut rng()).unwrap().expose().to_owned();
        let mut wrong_checksum = good.clone().into_bytes();
        let last = wrong_checksum.len() - 1;
        wrong_checksum[last] = if wrong_checksum[last] == b'A' { b'B' } else { b'A' };
        let mut flipped_body = good.clone().into_bytes();
        flipped_body[20] = if flipped_body[20] == b'x' { b'y' } else { b'x' };
        let cases = [
            String::new(),
            "latchkey_tk_".to_owned(),
            good[..good.len() - 1].to_owned(),
            format!("{good}0"),
            String::from_utf8(wrong_checksum).unwrap(),
            String::from_utf8(flipped_body).unwrap(),
            good.replacen("latchkey_tk_", "latchkey_uk_", 1),
            good.replacen("latchkey_tk_", "LATCHKEY_TK_", 1),
            format!("{}-{}", &good[..20], &good[21..]),
            format!(" {}", &good[1..]),
            format!("{}é{}", &good[..30], &good[32..]),
        ];
        for bad in &cases {
            assert_eq!(TokenValue::parse(bad), Err(MalformedSecret), "{bad:?}");
        }
    }

    #[test]
    fn token_values_and_user_keys_are_not_interchangeable() {
        let key = UserKey::generate(&mut rng()).unwrap();
        assert!(key.expose().starts_with("latchkey_uk_"));
        assert_eq!(TokenValue::parse(key.expose()), Err(MalformedSecret));
        assert!(UserKey::parse(key.expose()).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let value = TokenValue::generate(&mut rng()).unwrap();
        let shown = format!("{value:?} {:?}", value.hash());
        assert!(!shown.contains(&value.expose()["latchkey_tk_".len()..]));
        assert_eq!(format!("{value:?}"), "Secret(latchkey_tk_…)");
    }

    #[test]
    fn hash_is_sha256_of_the_text() {
        let value = TokenValue::generate(&mut rng()).unwrap();
        let expected: [u8; 32] = Sha256::digest(value.expose().as_bytes()).into();
        assert_eq!(value.hash().as_bytes(), &expected);
        let other = TokenValue::generate(&mut rng()).unwrap();
        assert_eq!(value.hash(), other.hash(), "same seed, same value");
        let third = TokenValue::generate(&mut rand::rngs::StdRng::seed_from_u64(43)).unwrap();
        assert_ne!(value.hash(), third.hash());
    }
}
