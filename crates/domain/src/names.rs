//! Names and identifiers: of connections, organizations, users and tokens.

use std::fmt;

use rand_core::TryCryptoRng;

use crate::base62;

/// Why a string is not a valid name or identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("may only contain {allowed}")]
    InvalidCharacter { allowed: &'static str },
}

/// Checks the shape shared by connection and organization names.
fn check_slug(raw: &str, max: usize) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > max {
        return Err(NameError::TooLong { max });
    }
    if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(NameError::InvalidCharacter { allowed: "letters, digits, '_' and '-'" });
    }
    Ok(())
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The name as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype! {
    /// The name of a connection to a data warehouse, unique within its org.
    ///
    /// Invariant: 1 to 64 ASCII letters, digits, `_` or `-`, compared exactly.
    /// The name appears in data API paths (`/v3/sql/{connection}/query`), so it
    /// is kept to characters that need no escaping there.
    ConnectionName
}

impl ConnectionName {
    /// The longest connection name.
    pub const MAX_LEN: usize = 64;

    /// # Errors
    /// [`NameError`] when `raw` breaks the invariant.
    pub fn new(raw: &str) -> Result<Self, NameError> {
        check_slug(raw, Self::MAX_LEN).map(|()| Self(raw.to_owned()))
    }
}

string_newtype! {
    /// The name of an organization (a tenant).
    ///
    /// Invariant: 1 to 64 ASCII letters, digits, `_` or `-`.
    OrgName
}

impl OrgName {
    /// The longest organization name.
    pub const MAX_LEN: usize = 64;

    /// # Errors
    /// [`NameError`] when `raw` breaks the invariant.
    pub fn new(raw: &str) -> Result<Self, NameError> {
        check_slug(raw, Self::MAX_LEN).map(|()| Self(raw.to_owned()))
    }
}

string_newtype! {
    /// The name of a user within an organization.
    ///
    /// Invariant: 1 to 255 characters, none of them whitespace or control
    /// characters. It is looser than other names because an identity
    /// provider's subjects (`auth0|6123…`, e-mail addresses) must fit.
    UserName
}

impl UserName {
    /// The longest user name, in characters.
    pub const MAX_CHARS: usize = 255;

    /// # Errors
    /// [`NameError`] when `raw` breaks the invariant.
    pub fn new(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(NameError::TooLong { max: Self::MAX_CHARS });
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(NameError::InvalidCharacter {
                allowed: "characters other than whitespace and control characters",
            });
        }
        Ok(Self(raw.to_owned()))
    }
}

/// Who is acting: a user of an organization. Tokens belong to a principal and
/// are visible to that principal only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// The organization the user belongs to.
    pub org: OrgName,
    /// The user.
    pub user: UserName,
}

/// What a user may do beyond managing their own tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Manages their own tokens only.
    Member,
    /// Also sees and revokes every token of the org (never their values),
    /// reads the whole org's audit log and sets the org's token policy.
    Admin,
}

impl Role {
    /// Whether the role is [`Role::Admin`].
    #[must_use]
    pub const fn is_admin(self) -> bool {
        matches!(self, Role::Admin)
    }
}

/// An authenticated caller: who, and with which role.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The user.
    pub principal: Principal,
    /// What the user may do.
    pub role: Role,
}

string_newtype! {
    /// The public identifier of a token.
    ///
    /// Invariant: exactly 12 base62 characters (about 71 bits), so an id never
    /// contains the `_` that every token value has, and a path segment is told
    /// apart as one or the other without a lookup.
    TokenId
}

impl TokenId {
    /// The length of every token id.
    pub const LEN: usize = 12;

    /// A fresh random id.
    ///
    /// # Errors
    /// Whatever the random number generator reports.
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self, R::Error> {
        base62::random(rng, Self::LEN).map(Self)
    }

    /// # Errors
    /// [`NameError`] when `raw` is not 12 base62 characters.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() != Self::LEN || !raw.bytes().all(base62::is_base62) {
            return Err(NameError::InvalidCharacter { allowed: "exactly 12 letters and digits" });
        }
        Ok(Self(raw.to_owned()))
    }
}

string_newtype! {
    /// The identifier of an audit event.
    ///
    /// Invariant: exactly 16 base62 characters (about 95 bits).
    AuditEventId
}

impl AuditEventId {
    /// The length of every event id.
    pub const LEN: usize = 16;

    /// A fresh random id.
    ///
    /// # Errors
    /// Whatever the random number generator reports.
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self, R::Error> {
        base62::random(rng, Self::LEN).map(Self)
    }

    /// # Errors
    /// [`NameError`] when `raw` is not 16 base62 characters.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.len() != Self::LEN || !raw.bytes().all(base62::is_base62) {
            return Err(NameError::InvalidCharacter { allowed: "exactly 16 letters and digits" });
        }
        Ok(Self(raw.to_owned()))
    }
}

string_newtype! {
    /// The display name of a token, unique among its owner's tokens.
    ///
    /// Invariant: 1 to 128 characters with no leading or trailing whitespace
    /// and no control characters (V7). Control characters are refused because
    /// names are shown in terminals and logs, where they could rewrite what an
    /// operator sees.
    TokenName
}

impl TokenName {
    /// The longest token name, in characters.
    pub const MAX_CHARS: usize = 128;

    /// Trims `raw` and checks V7's shape (uniqueness is the store's to check).
    ///
    /// # Errors
    /// [`NameError`] when the trimmed text breaks the invariant.
    pub fn new(raw: &str) -> Result<Self, NameError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(NameError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(NameError::TooLong { max: Self::MAX_CHARS });
        }
        if trimmed.chars().any(char::is_control) {
            return Err(NameError::InvalidCharacter { allowed: "no control characters" });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name a token gets when none is given: `tk_` and its id.
    #[must_use]
    pub fn default_for(id: &TokenId) -> Self {
        Self(format!("tk_{id}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn connection_and_org_names() {
        let cases: &[(&str, bool)] = &[
            ("carto_dw", true),
            ("my-bq-2", true),
            ("A", true),
            ("", false),
            ("has space", false),
            ("dotted.name", false),
            ("slash/name", false),
            ("ñandú", false),
        ];
        for (raw, ok) in cases {
            assert_eq!(ConnectionName::new(raw).is_ok(), *ok, "connection {raw:?}");
            assert_eq!(OrgName::new(raw).is_ok(), *ok, "org {raw:?}");
        }
        assert!(ConnectionName::new(&"a".repeat(64)).is_ok());
        assert_eq!(ConnectionName::new(&"a".repeat(65)), Err(NameError::TooLong { max: 64 }));
    }

    #[test]
    fn user_names_accept_identity_provider_subjects() {
        for ok in ["admin", "auth0|61234abc", "ana@example.com", "josé"] {
            assert!(UserName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "two words", "tab\there", "new\nline"] {
            assert!(UserName::new(bad).is_err(), "{bad:?}");
        }
        assert!(UserName::new(&"é".repeat(255)).is_ok());
        assert!(UserName::new(&"é".repeat(256)).is_err());
    }

    #[test]
    fn token_names_follow_v7() {
        assert_eq!(TokenName::new("  My token  ").unwrap().as_str(), "My token");
        assert_eq!(TokenName::new("   "), Err(NameError::Empty));
        assert_eq!(TokenName::new(""), Err(NameError::Empty));
        assert!(TokenName::new(&"ü".repeat(128)).is_ok(), "128 characters, 256 bytes");
        assert_eq!(TokenName::new(&"x".repeat(129)), Err(NameError::TooLong { max: 128 }));
        assert!(matches!(TokenName::new("bell\u{7}"), Err(NameError::InvalidCharacter { .. })));
        assert!(matches!(TokenName::new("a\u{9b}b"), Err(NameError::InvalidCharacter { .. })));
        assert!(TokenName::new("地図トークン 🗺").is_ok());
    }

    #[test]
    fn token_ids_are_twelve_base62_characters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let id = TokenId::generate(&mut rng).unwrap();
        assert_eq!(TokenId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(TokenName::default_for(&id).as_str(), format!("tk_{id}"));
        for bad in ["", "short", "Hq3xJ7rT2mKa1", "Hq3xJ7rT2mK_", "Hq3xJ7rT2mK-"] {
            assert!(TokenId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TokenId::parse("Hq3xJ7rT2mKa").is_ok());
    }
}
