//! The row format shared by the SQL adapters (SQLite and PostgreSQL), so
//! that both store a token the same way and rebuild it through the same
//! domain constructors.
//!
//! A token is one row. Its grants and referers are JSON arrays in a column
//! of the row rather than rows of their own: the authorize lookup, the hot
//! path, then reads exactly one row by an indexed hash, and a token is
//! written or deleted atomically without joins. Each grant keeps the
//! provider its connection had when the grant was made; connections are
//! never renamed or re-pointed, so that snapshot stays true.
//!
//! Architecture invariant: like the adapters, this crate depends on ports
//! and domain only.

use latchkey_domain::{
    AllowedApis, Api, ApiSet, ConnectionName, Grant, OrgName, Policy, Principal, Provider, RefererPattern,
    SealedSecret, SecretHash, Timestamp, Token, TokenId, TokenName, UserName,
};
use latchkey_ports::BackendError;
use serde_json::Value;

/// A token's columns, as primitive values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRow {
    /// `id`.
    pub id: String,
    /// `org`.
    pub org: String,
    /// `owner`.
    pub owner: String,
    /// `name`.
    pub name: String,
    /// `secret_hash`: 32 bytes.
    pub secret_hash: Vec<u8>,
    /// `sealed_secret`.
    pub sealed_secret: Vec<u8>,
    /// `allowed_apis`: names joined by commas, alphabetical.
    pub allowed_apis: String,
    /// `grants`: a JSON array of `[connection, provider, source]`.
    pub grants: String,
    /// `referers`: a JSON array of patterns.
    pub referers: String,
    /// `expiration_date`.
    pub expiration: Option<Timestamp>,
    /// `created_at`.
    pub created_at: Timestamp,
    /// `updated_at`.
    pub updated_at: Timestamp,
    /// `last_used_at`.
    pub last_used_at: Option<Timestamp>,
    /// `version`.
    pub version: i64,
}

/// The allowed APIs as stored.
#[must_use]
pub fn encode_apis(apis: AllowedApis) -> String {
    apis.iter().map(Api::as_str).collect::<Vec<_>>().join(",")
}

/// The grants as stored.
#[must_use]
pub fn encode_grants(grants: &[Grant]) -> String {
    Value::Array(
        grants
            .iter()
            .map(|g| {
                let mut item =
                    vec![g.connection().as_str().into(), g.provider().as_str().into(), g.source().text().into()];
                // Whether a query parsed when it was granted, so that
                // reading the token back does not parse it again.
                if let Some(parsed) = g.source().query_parsed() {
                    item.push(parsed.into());
                }
                Value::Array(item)
            })
            .collect(),
    )
    .to_string()
}

/// The referers as stored.
#[must_use]
pub fn encode_referers(referers: &[RefererPattern]) -> String {
    Value::Array(referers.iter().map(|r| r.text().into()).collect()).to_string()
}

impl TokenRow {
    /// The columns of `token`.
    ///
    /// # Errors
    /// [`BackendError`] when the version does not fit a signed 64-bit column.
    pub fn from_token(token: &Token) -> Result<Self, BackendError> {
        Ok(Self {
            id: token.id.to_string(),
            org: token.owner.org.to_string(),
            owner: token.owner.user.to_string(),
            name: token.name.to_string(),
            secret_hash: token.secret_hash.as_bytes().to_vec(),
            sealed_secret: token.sealed_secret.as_bytes().to_vec(),
            allowed_apis: encode_apis(token.policy.apis()),
            grants: encode_grants(token.policy.grants()),
            referers: encode_referers(token.policy.referers()),
            expiration: token.policy.expiration(),
            created_at: token.created_at,
            updated_at: token.updated_at,
            last_used_at: token.last_used_at,
            version: version_to_column(token.version)?,
        })
    }

    /// Rebuilds the token through the domain's constructors, so a row that
    /// no longer satisfies an invariant is reported rather than served.
    ///
    /// # Errors
    /// [`BackendError`] naming the column that does not decode.
    pub fn into_token(self) -> Result<Token, BackendError> {
        let corrupt = |column: &str| BackendError::corrupt(format!("token {} column {column}", self.id));
        let id = TokenId::parse(&self.id).map_err(|_| corrupt("id"))?;
        let owner = Principal {
            org: OrgName::new(&self.org).map_err(|_| corrupt("org"))?,
            user: UserName::new(&self.owner).map_err(|_| corrupt("owner"))?,
        };
        let name = TokenName::new(&self.name).map_err(|_| corrupt("name"))?;
        let secret_hash = SecretHash::from_slice(&self.secret_hash).map_err(|_| corrupt("secret_hash"))?;
        let apis = decode_apis(&self.allowed_apis).ok_or_else(|| corrupt("allowed_apis"))?;
        let grants = decode_grants(&self.grants).ok_or_else(|| corrupt("grants"))?;
        let referers = decode_referers(&self.referers).ok_or_else(|| corrupt("referers"))?;
        let policy = Policy::new(apis, grants, referers, self.expiration).map_err(|_| corrupt("policy"))?;
        Ok(Token {
            id,
            owner,
            name,
            policy,
            secret_hash,
            sealed_secret: SealedSecret::new(self.sealed_secret),
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_used_at: self.last_used_at,
            version: u64::try_from(self.version).map_err(|_| corrupt("version"))?,
        })
    }
}

/// A row of `(id, sealed_secret)`, as re-sealing walks them.
///
/// # Errors
/// [`BackendError::corrupt`] when the id is not one.
pub fn sealed_row(id: &str, sealed: Vec<u8>) -> Result<(TokenId, SealedSecret), BackendError> {
    Ok((TokenId::parse(id).map_err(|_| BackendError::corrupt("token id"))?, SealedSecret::new(sealed)))
}

/// A version as a signed 64-bit column value.
///
/// # Errors
/// [`BackendError`] beyond `i64::MAX`, which no token reaches by updates.
pub fn version_to_column(version: u64) -> Result<i64, BackendError> {
    i64::try_from(version).map_err(|_| BackendError::corrupt("version out of range"))
}

fn decode_apis(text: &str) -> Option<AllowedApis> {
    let mut set = ApiSet::empty();
    for name in text.split(',') {
        set.insert(name.parse().ok()?);
    }
    AllowedApis::new(set).ok()
}

fn decode_grants(text: &str) -> Option<Vec<Grant>> {
    let Value::Array(items) = serde_json::from_str(text).ok()? else {
        return None;
    };
    items
        .iter()
        .map(|item| match item.as_array()?.as_slice() {
            [Value::String(connection), Value::String(provider), Value::String(source)] => {
                Grant::new(ConnectionName::new(connection).ok()?, provider.parse::<Provider>().ok()?, source).ok()
            }
            [Value::String(connection), Value::String(provider), Value::String(source), Value::Bool(parsed)] => {
                let grant = Grant::restore(
                    ConnectionName::new(connection).ok()?,
                    provider.parse::<Provider>().ok()?,
                    source,
                    *parsed,
                )
                .ok()?;
                // The flag belongs to query grants only.
                grant.source().query_parsed().is_some().then_some(grant)
            }
            _ => None,
        })
        .collect()
}

fn decode_referers(text: &str) -> Option<Vec<RefererPattern>> {
    let Value::Array(items) = serde_json::from_str(text).ok()? else {
        return None;
    };
    items.iter().map(|item| RefererPattern::parse(item.as_str()?).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_that_break_an_invariant_are_refused() {
        let good = TokenRow {
            id: "Hq3xJ7rT2mKa".into(),
            org: "acme".into(),
            owner: "ana".into(),
            name: "prod".into(),
            secret_hash: vec![0; 32],
            sealed_secret: vec![1, 2, 3],
            allowed_apis: "maps".into(),
            grants: r#"[["carto_dw","carto_dw","p.d.t"]]"#.into(),
            referers: r#"["https://a.example.com/"]"#.into(),
            expiration: None,
            created_at: Timestamp::from_unix_micros(1).unwrap(),
            updated_at: Timestamp::from_unix_micros(2).unwrap(),
            last_used_at: None,
            version: 1,
        };
        let token = good.clone().into_token().unwrap();
        assert_eq!(TokenRow::from_token(&token).unwrap(), good);
        // A query grant keeps whether it parsed, and is read back without
        // being parsed again; rows written before the flag still read.
        let sql = TokenRow {
            allowed_apis: "sql".into(),
            grants: r#"[["pg","postgres","FROBNICATE x"]]"#.into(),
            ..good.clone()
        };
        let token = sql.into_token().unwrap();
        let stored = TokenRow::from_token(&token).unwrap();
        assert_eq!(stored.grants, r#"[["pg","postgres","FROBNICATE x",false]]"#);
        let flagged = TokenRow { grants: r#"[["pg","postgres","SELECT 1",false]]"#.into(), ..stored.clone() };
        assert_eq!(
            flagged.into_token().unwrap().policy.grants()[0].source().query_parsed(),
            Some(false),
            "not parsed again"
        );
        let broken: Vec<(&str, TokenRow)> = vec![
            ("id", TokenRow { id: "short".into(), ..good.clone() }),
            ("hash", TokenRow { secret_hash: vec![0; 31], ..good.clone() }),
            ("apis", TokenRow { allowed_apis: "maps,imports".into(), ..good.clone() }),
            ("unknown api", TokenRow { allowed_apis: "teleport".into(), ..good.clone() }),
            ("grant json", TokenRow { grants: "[".into(), ..good.clone() }),
            ("grant shape", TokenRow { grants: r#"[["carto_dw","p.d.t"]]"#.into(), ..good.clone() }),
            ("provider", TokenRow { grants: r#"[["carto_dw","oracle","p.d.t"]]"#.into(), ..good.clone() }),
            (
                "flag on a table",
                TokenRow { grants: r#"[["carto_dw","carto_dw","p.d.t",true]]"#.into(), ..good.clone() },
            ),
            ("unserved api", TokenRow { grants: "[]".into(), ..good.clone() }),
            ("referer", TokenRow { referers: r#"["ftp://x"]"#.into(), ..good.clone() }),
            ("version", TokenRow { version: -1, ..good.clone() }),
        ];
        for (what, row) in broken {
            assert!(row.into_token().is_err(), "{what}");
        }
    }
}
