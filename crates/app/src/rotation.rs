//! Re-sealing every stored token value under a new server key, so that an
//! old key can be retired without any token losing its value.
//!
//! The walk goes through the tokens in id order, a page at a time, and
//! replaces each page's values in one atomic step, each only if the value
//! is still the one read. A value already under the new key is left alone,
//! which is what makes a second run after a crash (or after an instance
//! still on the old key sealed a few more) finish the job rather than
//! repeat it.

use std::sync::Arc;

use latchkey_domain::TokenId;
use latchkey_ports::{BackendError, TokenRepository};

use crate::sealing::{Resealed, SealError, Sealer};

/// How many tokens one step reads and replaces.
const PAGE: usize = 500;

/// What a rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Values moved to the new key.
    pub resealed: u64,
    /// Values already under the new key.
    pub current: u64,
    /// Values changed or deleted between reading and replacing them (left
    /// for the next run).
    pub skipped: u64,
    /// Tokens whose value opens under none of the keys (sealed under a key
    /// that is not given, or damaged): they stay as they are.
    pub unreadable: Vec<TokenId>,
}

impl RotationReport {
    /// Every token seen.
    #[must_use]
    pub fn seen(&self) -> u64 {
        self.resealed + self.current + self.skipped + self.unreadable.len() as u64
    }
}

/// Why a rotation stopped.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The store failed; what was replaced before stays replaced.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// No nonce could be drawn.
    #[error("cannot seal: {0}")]
    Seal(#[from] SealError),
}

/// Re-seals stored values under the sealer's current key.
pub struct KeyRotation {
    tokens: Arc<dyn TokenRepository>,
    sealer: Sealer,
}

impl KeyRotation {
    /// A rotation to `sealer`'s current key, from its previous keys.
    #[must_use]
    pub fn new(tokens: Arc<dyn TokenRepository>, sealer: Sealer) -> Self {
        Self { tokens, sealer }
    }

    /// Walks every token once, calling `progress` after each page.
    ///
    /// # Errors
    /// [`RotationError`]; the pages replaced before it stay replaced, and a
    /// new run continues.
    pub async fn run(&self, mut progress: impl FnMut(&RotationReport)) -> Result<RotationReport, RotationError> {
        let mut report = RotationReport::default();
        let mut after = None;
        loop {
            let page = self.tokens.sealed_secrets(after.clone(), PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let mut replacements = Vec::new();
            for (id, sealed) in page {
                match self.sealer.reseal(&id, &sealed) {
                    Ok(Resealed::Current) => report.current += 1,
                    Ok(Resealed::Moved(new)) => replacements.push((id, sealed, new)),
                    Err(SealError::Open) => report.unreadable.push(id),
                    Err(error) => return Err(error.into()),
                }
            }
            let replaced = self.tokens.replace_sealed_secrets(&replacements).await?;
            report.resealed += replaced;
            report.skipped += replacements.len() as u64 - replaced;
            progress(&report);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use latchkey_domain::{SealedSecret, TokenValue};
    use latchkey_ports::MockTokenRepository;

    use super::*;
    use crate::random::with_os_rng;

    #[tokio::test]
    async fn values_move_to_the_new_key_and_the_rest_is_counted() {
        let old = Sealer::new(&[1; 32]);
        let new = Sealer::new(&[2; 32]);
        let stranger = Sealer::new(&[3; 32]);
        let ids: Vec<TokenId> = (0..4).map(|_| with_os_rng(TokenId::generate).unwrap()).collect();
        let value = with_os_rng(TokenValue::generate).unwrap();
        let stored: Vec<(TokenId, SealedSecret)> = vec![
            (ids[0].clone(), old.seal(&ids[0], &value).unwrap()),
            (ids[1].clone(), new.seal(&ids[1], &value).unwrap()),
            (ids[2].clone(), stranger.seal(&ids[2], &value).unwrap()),
            (ids[3].clone(), old.seal(&ids[3], &value).unwrap()),
        ];
        let mut tokens = MockTokenRepository::new();
        let page = stored.clone();
        tokens
            .expect_sealed_secrets()
            .returning(move |after, _| Ok(if after.is_none() { page.clone() } else { vec![] }));
        let check = ids.clone();
        tokens.expect_replace_sealed_secrets().times(1).returning(move |replacements| {
            let moved: Vec<&TokenId> = replacements.iter().map(|(id, _, _)| id).collect();
            assert_eq!(moved, [&check[0], &check[3]]);
            for (id, _, sealed) in replacements {
                assert!(Sealer::new(&[2; 32]).open(id, sealed).is_ok(), "sealed under the new key");
            }
            // The fourth changed meanwhile.
            Ok(1)
        });
        let rotation = KeyRotation::new(Arc::new(tokens), Sealer::new(&[2; 32]).with_previous(&[1; 32]));
        let mut pages = 0;
        let report = rotation.run(|_| pages += 1).await.unwrap();
        assert_eq!(pages, 1);
        assert_eq!((report.resealed, report.current, report.skipped), (1, 1, 1));
        assert_eq!(report.unreadable, [ids[2].clone()]);
        assert_eq!(report.seen(), 4);
    }
}
