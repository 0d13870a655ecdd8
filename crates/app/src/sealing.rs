//! Token values encrypted at rest with AES-256-GCM under the server key
//! (SPEC §9), so that an owner can copy a token again from the list while a
//! stolen database alone yields no usable token.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use latchkey_domain::{SealedSecret, TokenId, TokenValue};

use crate::random;

/// The first byte of every sealed value: the format, so that a later
/// format (a new key, another cipher) can be told apart from this one.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No nonce could be drawn.
    #[error(transparent)]
    Random(#[from] random::RandomError),
    /// The sealed bytes are not in a known format, were sealed under another
    /// key or for another token, or were altered.
    #[error("the stored token value cannot be opened with this server key")]
    Open,
}

/// Seals token values under the server key, and opens them under it or,
/// while a rotation is under way, under the previous key.
pub struct Sealer {
    cipher: Aes256Gcm,
    /// Keys being rotated away from, tried in order: they open, never seal.
    previous: Vec<Aes256Gcm>,
}

/// Which key a sealed value opened with, for re-sealing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resealed {
    /// It is sealed under the current key already.
    Current,
    /// It was sealed under the previous key; here it is under the current.
    Moved(SealedSecret),
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

/// The associated data binds a sealed value to its token: a sealed value
/// copied onto another token's row does not open there.
fn associated_data(id: &TokenId) -> Vec<u8> {
    let mut aad = b"latchkey token value:".to_vec();
    aad.extend_from_slice(id.as_str().as_bytes());
    aad
}

impl Sealer {
    /// A sealer for the 256-bit server key `key`.
    #[must_use]
    pub fn new(key: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)), previous: Vec::new() }
    }

    /// Also opens values sealed under `previous`, a key being rotated away
    /// from (values sealed before the rotation, until they are re-sealed).
    /// Call once for each such key.
    #[must_use]
    pub fn with_previous(mut self, previous: &[u8; 32]) -> Self {
        self.previous.push(Aes256Gcm::new(&Key::<Aes256Gcm>::from(*previous)));
        self
    }

    /// Encrypts `value` for token `id` under a fresh random nonce.
    ///
    /// # Errors
    /// [`SealError::Random`] when no nonce can be drawn.
    pub fn seal(&self, id: &TokenId, value: &TokenValue) -> Result<SealedSecret, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        random::fill(&mut nonce)?;
        let aad = associated_data(id);
        let ciphertext = self
            .cipher
            .encrypt(&nonce.into(), Payload { msg: value.expose().as_bytes(), aad: &aad })
            .map_err(|_| SealError::Open)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(FORMAT_V1);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(SealedSecret::new(sealed))
    }

    /// Decrypts the value of token `id`, under the current key or else a
    /// previous one.
    ///
    /// # Errors
    /// [`SealError::Open`] when the value was sealed under none of the keys, for
    /// another token, or was altered.
    pub fn open(&self, id: &TokenId, sealed: &SealedSecret) -> Result<TokenValue, SealError> {
        std::iter::once(&self.cipher)
            .chain(&self.previous)
            .find_map(|cipher| open_with(cipher, id, sealed).ok())
            .ok_or(SealError::Open)
    }

    /// The value of token `id` sealed under the current key: [`Resealed::Current`]
    /// when it already is, a new sealed value when it was under a previous
    /// key.
    ///
    /// # Errors
    /// [`SealError::Open`] when it opens under none of the keys;
    /// [`SealError::Random`] when no nonce can be drawn.
    pub fn reseal(&self, id: &TokenId, sealed: &SealedSecret) -> Result<Resealed, SealError> {
        if open_with(&self.cipher, id, sealed).is_ok() {
            return Ok(Resealed::Current);
        }
        let value =
            self.previous.iter().find_map(|cipher| open_with(cipher, id, sealed).ok()).ok_or(SealError::Open)?;
        Ok(Resealed::Moved(self.seal(id, &value)?))
    }
}

fn open_with(cipher: &Aes256Gcm, id: &TokenId, sealed: &SealedSecret) -> Result<TokenValue, SealError> {
    let bytes = sealed.as_bytes();
    let (Some(&FORMAT_V1), Some(nonce), Some(ciphertext)) =
        (bytes.first(), bytes.get(1..=NONCE_LEN), bytes.get(1 + NONCE_LEN..))
    else {
        return Err(SealError::Open);
    };
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Open)?;
    let aad = associated_data(id);
    let plain = cipher.decrypt(&nonce.into(), Payload { msg: ciphertext, aad: &aad }).map_err(|_| SealError::Open)?;
    let text = String::from_utf8(plain).map_err(|_| SealError::Open)?;
    TokenValue::parse(&text).map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::with_os_rng;

    fn fresh() -> (TokenId, TokenValue) {
        (with_os_rng(TokenId::generate).unwrap(), with_os_rng(TokenValue::generate).unwrap())
    }

    #[test]
    fn round_trip_and_no_plaintext_at_rest() {
        let sealer = Sealer::new(&[7; 32]);
        let (id, value) = fresh();
        let sealed = sealer.seal(&id, &value).unwrap();
        assert_eq!(sealer.open(&id, &sealed).unwrap(), value);
        let secret_part = &value.expose().as_bytes()["latchkey_tk_".len()..];
        assert!(!sealed.as_bytes().windows(secret_part.len()).any(|w| w == secret_part));
        assert_ne!(sealer.seal(&id, &value).unwrap(), sealed, "a fresh nonce every time");
    }

    #[test]
    fn opening_fails_with_another_key_token_or_altered_bytes() {
        let sealer = Sealer::new(&[7; 32]);
        let (id, value) = fresh();
        let sealed = sealer.seal(&id, &value).unwrap();
        assert!(Sealer::new(&[8; 32]).open(&id, &sealed).is_err(), "another key");
        let (other_id, _) = fresh();
        assert!(sealer.open(&other_id, &sealed).is_err(), "another token's row");
        let mut altered = sealed.as_bytes().to_vec();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(sealer.open(&id, &SealedSecret::new(altered)).is_err(), "altered");
        for short in [vec![], vec![FORMAT_V1], vec![2; 40]] {
            assert!(sealer.open(&id, &SealedSecret::new(short)).is_err());
        }
    }

    #[test]
    fn a_rotation_opens_both_keys_and_reseals_under_the_new_one() {
        let (id, value) = fresh();
        let before = Sealer::new(&[1; 32]).seal(&id, &value).unwrap();
        let rotating = Sealer::new(&[2; 32]).with_previous(&[1; 32]);
        assert_eq!(rotating.open(&id, &before).unwrap(), value, "the previous key still opens");
        let Resealed::Moved(after) = rotating.reseal(&id, &before).unwrap() else { panic!("moved") };
        assert_eq!(Sealer::new(&[2; 32]).open(&id, &after).unwrap(), value, "the new key alone opens it");
        assert!(Sealer::new(&[1; 32]).open(&id, &after).is_err());
        assert_eq!(rotating.reseal(&id, &after).unwrap(), Resealed::Current, "a second pass does nothing");
        let stranger = Sealer::new(&[3; 32]).seal(&id, &value).unwrap();
        assert!(matches!(rotating.reseal(&id, &stranger), Err(SealError::Open)));
        assert!(matches!(Sealer::new(&[2; 32]).reseal(&id, &before), Err(SealError::Open)), "no previous key");
    }
}
