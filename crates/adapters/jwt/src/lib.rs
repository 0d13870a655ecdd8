//! latchkey's identity-provider adapter: accepts JWT bearer credentials
//! (SPEC §8), so that an existing identity provider can sign users in.
//!
//! A token is accepted when its signature verifies with a configured key
//! (HS256 with a shared secret, or RS256 / ES256 with a public key from a
//! JWKS file), its `iss` and `aud` are the configured ones, and it has not
//! expired. The user and org come from configurable claims. The algorithm
//! is fixed by the key, never taken from the token on trust: a token
//! claiming `HS256` is not checked against an RSA public key used as an HMAC
//! secret, and `none` is never accepted.
//!
//! The keys come from a shared secret, a JWKS file, or an OpenID Connect
//! issuer's discovery document ([`oidc`]), whose keys are refetched when a
//! token names one the cache does not hold.
//!
//! Architecture invariant: an adapter depends on ports and domain only.

mod oidc;

use std::sync::Arc;

use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use latchkey_domain::{Identity, OrgName, Principal, Role, UserName};
use latchkey_ports::{AuthenticationError, Authenticator};
use serde_json::{Map, Value};

pub use oidc::OidcSettings;

/// The shortest HS256 secret accepted: as many bytes as the hash has.
pub const MIN_SECRET_BYTES: usize = 32;

/// Which claims must hold what, and where the principal is read from.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    /// The required `iss`.
    pub issuer: String,
    /// The required `aud` (one of them, when the token lists several).
    pub audience: String,
    /// The claim naming the user (usually `sub`).
    pub user_claim: String,
    /// The claim naming the org.
    pub org_claim: String,
    /// Allowed clock skew, in seconds, for `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// The claim that makes a user an org admin; without one, nobody
    /// signed in by JWT is.
    pub admin_claim: Option<AdminClaim>,
}

/// How a JWT says that its user is an org admin (`--jwt-admin-claim`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminClaim {
    /// `CLAIM`: the claim is the boolean `true` (not the string "true").
    Flag(String),
    /// `CLAIM=VALUE`: the claim is the string `VALUE`, or an array holding
    /// it (a role list such as `"roles": ["admin", "dev"]`).
    Role {
        /// The claim's name.
        claim: String,
        /// The role value.
        value: String,
    },
}

impl std::str::FromStr for AdminClaim {
    type Err = String;

    /// `CLAIM` or `CLAIM=VALUE`; neither part may be empty.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            None if !text.is_empty() => Ok(AdminClaim::Flag(text.to_owned())),
            Some((claim, value)) if !claim.is_empty() && !value.is_empty() => {
                Ok(AdminClaim::Role { claim: claim.to_owned(), value: value.to_owned() })
            }
            _ => Err(format!("{text:?}: expected CLAIM (a boolean claim) or CLAIM=VALUE (a role)")),
        }
    }
}

impl AdminClaim {
    /// Whether `claims` make their user an admin. Anything but the exact
    /// shapes above is no: a claim that is missing, of another type, or a
    /// string `"true"`.
    fn holds(&self, claims: &Map<String, Value>) -> bool {
        match self {
            AdminClaim::Flag(claim) => claims.get(claim) == Some(&Value::Bool(true)),
            AdminClaim::Role { claim, value } => match claims.get(claim) {
                Some(Value::String(text)) => text == value,
                Some(Value::Array(items)) => items.iter().any(|item| item.as_str() == Some(value.as_str())),
                _ => false,
            },
        }
    }
}

/// Why the identity-provider configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// The HS256 secret is too short to resist guessing.
    #[error("the JWT secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakSecret,
    /// The JWKS file is not a JWK set.
    #[error("the JWKS is not a valid JWK set: {0}")]
    Jwks(String),
    /// The JWKS holds no RS256 or ES256 (P-256) public key.
    #[error("the JWKS has no RS256 or ES256 public key")]
    NoUsableKey,
    /// An issuer and an audience are required.
    #[error("the JWT issuer and audience must both be set")]
    MissingClaims,
    /// The OpenID Connect provider could not be discovered.
    #[error("OpenID Connect discovery failed: {0}")]
    Oidc(String),
}

struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Where the verifying keys come from.
enum Keys {
    /// Given once: a shared secret or a JWKS file.
    Fixed(Arc<Vec<VerifyingKey>>),
    /// An OpenID Connect provider's, kept current.
    Provider(Box<oidc::ProviderKeys>),
}

/// Verifies JWTs from one identity provider.
pub struct JwtAuthenticator {
    keys: Keys,
    settings: JwtSettings,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            Keys::Fixed(keys) => format!("{} fixed", keys.len()),
            Keys::Provider(provider) => format!("{provider:?}"),
        };
        f.debug_struct("JwtAuthenticator").field("keys", &keys).field("issuer", &self.settings.issuer).finish()
    }
}

/// The RS256 and ES256 keys of a JWK set (the JSON of an identity
/// provider's `jwks_uri`); keys of other types are skipped.
fn parse_jwks(json: &str) -> Result<Vec<VerifyingKey>, JwtConfigError> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| JwtConfigError::Jwks(e.to_string()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => {
                tracing::warn!(kid = ?jwk.common.key_id, "skipping a JWK that is not an RS256 or ES256 key");
                continue;
            }
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => keys.push(VerifyingKey { kid: jwk.common.key_id.clone(), algorithm, key }),
            Err(e) => tracing::warn!(kid = ?jwk.common.key_id, error = %e, "skipping an unreadable JWK"),
        }
    }
    if keys.is_empty() {
        return Err(JwtConfigError::NoUsableKey);
    }
    Ok(keys)
}

/// What verifying with one key set came to.
enum Verified {
    /// The token is good.
    Principal(Identity),
    /// A key of the set verified the signature, or tried and failed: the
    /// token is refused, and no other set would change that.
    Refused,
    /// No key of the set could have signed it (unknown `kid` or algorithm):
    /// a newer set might.
    NoKey,
}

fn check_settings(settings: &JwtSettings) -> Result<(), JwtConfigError> {
    if settings.issuer.trim().is_empty() || settings.audience.trim().is_empty() {
        return Err(JwtConfigError::MissingClaims);
    }
    Ok(())
}

impl JwtAuthenticator {
    /// Accepts HS256 tokens signed with `secret`.
    ///
    /// # Errors
    /// [`JwtConfigError`] for a short secret or missing issuer or audience.
    pub fn hs256(secret: &[u8], settings: JwtSettings) -> Result<Self, JwtConfigError> {
        check_settings(&settings)?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(JwtConfigError::WeakSecret);
        }
        let key = VerifyingKey { kid: None, algorithm: Algorithm::HS256, key: DecodingKey::from_secret(secret) };
        Ok(Self { keys: Keys::Fixed(Arc::new(vec![key])), settings })
    }

    /// Accepts RS256 and ES256 tokens signed by the keys of a JWK set (the
    /// JSON of an identity provider's `jwks_uri`). Keys of other types are
    /// skipped.
    ///
    /// # Errors
    /// [`JwtConfigError`] when the set does not parse or has no usable key.
    pub fn from_jwks(json: &str, settings: JwtSettings) -> Result<Self, JwtConfigError> {
        check_settings(&settings)?;
        Ok(Self { keys: Keys::Fixed(Arc::new(parse_jwks(json)?)), settings })
    }

    /// Accepts RS256 and ES256 tokens signed by the keys of the OpenID
    /// Connect provider `oidc.issuer`, found through its discovery document
    /// and kept current. `settings.issuer` must be that issuer.
    ///
    /// # Errors
    /// [`JwtConfigError::Oidc`] when the provider cannot be reached, its
    /// document names another issuer, or its keys are unusable.
    pub async fn discover(oidc: OidcSettings, settings: JwtSettings) -> Result<Self, JwtConfigError> {
        check_settings(&settings)?;
        if settings.issuer != oidc.issuer {
            return Err(JwtConfigError::Oidc(format!(
                "the required issuer {:?} is not the provider's {:?}",
                settings.issuer, oidc.issuer
            )));
        }
        Ok(Self { keys: Keys::Provider(Box::new(oidc::ProviderKeys::discover(oidc).await?)), settings })
    }

    /// Verifies `credential` with the keys of `keys` that could have signed
    /// it.
    fn verify(&self, keys: &[VerifyingKey], credential: &str, header: &jsonwebtoken::Header) -> Verified {
        let mut candidates = keys
            .iter()
            .filter(|key| {
                key.algorithm == header.alg
                    && match (&key.kid, &header.kid) {
                        (Some(expected), Some(given)) => expected == given,
                        _ => true,
                    }
            })
            .peekable();
        if candidates.peek().is_none() {
            return Verified::NoKey;
        }
        for candidate in candidates {
            let validation = self.validation(candidate.algorithm);
            if let Ok(data) = decode::<Map<String, Value>>(credential, &candidate.key, &validation) {
                // A valid signature with claims that name no valid user or
                // org is still no principal.
                return self.identity(&data.claims).map_or(Verified::Refused, Verified::Principal);
            }
        }
        Verified::Refused
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.settings.leeway_seconds;
        validation.validate_nbf = true;
        validation
    }

    fn identity(&self, claims: &Map<String, Value>) -> Option<Identity> {
        let user = claims.get(&self.settings.user_claim)?.as_str()?;
        let org = claims.get(&self.settings.org_claim)?.as_str()?;
        let principal = Principal { org: OrgName::new(org).ok()?, user: UserName::new(user).ok()? };
        let admin = self.settings.admin_claim.as_ref().is_some_and(|claim| claim.holds(claims));
        Some(Identity { principal, role: if admin { Role::Admin } else { Role::Member } })
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, credential: &str) -> Result<Identity, AuthenticationError> {
        let header = decode_header(credential).map_err(|_| AuthenticationError::Invalid)?;
        let verified = match &self.keys {
            Keys::Fixed(keys) => self.verify(keys, credential, &header),
            Keys::Provider(provider) => {
                let (mut keys, stale) = provider.current();
                if stale && let Some(fresh) = provider.refetch(&keys).await {
                    keys = fresh;
                }
                match self.verify(&keys, credential, &header) {
                    // The provider may have rotated to a key not seen yet.
                    Verified::NoKey => match provider.refetch(&keys).await {
                        Some(fresh) => self.verify(&fresh, credential, &header),
                        None => Verified::NoKey,
                    },
                    verified => verified,
                }
            }
        };
        match verified {
            Verified::Principal(principal) => Ok(principal),
            Verified::Refused | Verified::NoKey => Err(AuthenticationError::Invalid),
        }
    }
}
