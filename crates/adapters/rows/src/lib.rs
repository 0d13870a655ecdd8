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

use latchkey_domain::audit::{AuditAction, AuditEvent, AuditValue, AuditedToken, Changes, FieldChange};
use latchkey_domain::ip::{IpRange, IpRanges};
use latchkey_domain::org_policy::OrgPolicy;
use latchkey_domain::{
    AllowedApis, Api, ApiSet, AuditEventId, ConnectionName, Grant, OrgName, Policy, PreviousValue, Principal, Provider,
    RefererPattern, SealedSecret, SecretHash, Timestamp, Token, TokenId, TokenName, UserName,
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
    /// `allowed_ips`: a JSON array of addresses and ranges, canonical.
    pub allowed_ips: String,
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
    /// `previous_secret_hash`: 32 bytes, while a roll's previous value is
    /// kept.
    pub previous_secret_hash: Option<Vec<u8>>,
    /// `previous_expires_at`: set exactly when `previous_secret_hash` is.
    pub previous_expires_at: Option<Timestamp>,
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

/// The allowed client addresses as stored.
#[must_use]
pub fn encode_allowed_ips(ranges: &IpRanges) -> String {
    Value::Array(ranges.iter().map(|range| range.to_string().into()).collect()).to_string()
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
            allowed_ips: encode_allowed_ips(token.policy.allowed_ips()),
            expiration: token.policy.expiration(),
            created_at: token.created_at,
            updated_at: token.updated_at,
            last_used_at: token.last_used_at,
            version: version_to_column(token.version)?,
            previous_secret_hash: token.previous.map(|previous| previous.secret_hash.as_bytes().to_vec()),
            previous_expires_at: token.previous.map(|previous| previous.expires_at),
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
        let allowed_ips = decode_allowed_ips(&self.allowed_ips).ok_or_else(|| corrupt("allowed_ips"))?;
        let policy = Policy::new(apis, grants, referers, self.expiration)
            .map_err(|_| corrupt("policy"))?
            .with_allowed_ips(allowed_ips);
        let previous = match (&self.previous_secret_hash, self.previous_expires_at) {
            (None, None) => None,
            (Some(hash), Some(expires_at)) => Some(PreviousValue {
                secret_hash: SecretHash::from_slice(hash).map_err(|_| corrupt("previous_secret_hash"))?,
                expires_at,
            }),
            _ => return Err(corrupt("previous_expires_at")),
        };
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
            previous,
        })
    }
}

fn decode_allowed_ips(text: &str) -> Option<IpRanges> {
    let Value::Array(items) = serde_json::from_str(text).ok()? else {
        return None;
    };
    let ranges: Vec<IpRange> = items.iter().map(|item| IpRange::parse(item.as_str()?).ok()).collect::<Option<_>>()?;
    Some(IpRanges::new(ranges).0)
}

/// An audit event's columns, as primitive values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    /// `id`.
    pub id: String,
    /// `org`: the actor's.
    pub org: String,
    /// `at`.
    pub at: Timestamp,
    /// `actor`: the acting user, of `org`.
    pub actor: String,
    /// `action`.
    pub action: String,
    /// `token_id`, for token events.
    pub token_id: Option<String>,
    /// `token_name`, set exactly when `token_id` is.
    pub token_name: Option<String>,
    /// `token_owner`, set exactly when `token_id` is.
    pub token_owner: Option<String>,
    /// `changes`: a JSON object of `{"from", "to"}` by field.
    pub changes: String,
}

fn audit_json(value: &AuditValue) -> Value {
    match value {
        AuditValue::Null => Value::Null,
        AuditValue::Bool(flag) => Value::Bool(*flag),
        AuditValue::Int(number) => Value::from(*number),
        AuditValue::Text(text) => Value::String(text.clone()),
        AuditValue::List(items) => Value::Array(items.iter().map(audit_json).collect()),
        AuditValue::Map(fields) => {
            Value::Object(fields.iter().map(|(name, value)| (name.clone(), audit_json(value))).collect())
        }
    }
}

fn audit_value(json: &Value) -> Option<AuditValue> {
    Some(match json {
        Value::Null => AuditValue::Null,
        Value::Bool(flag) => AuditValue::Bool(*flag),
        Value::Number(number) => AuditValue::Int(number.as_i64()?),
        Value::String(text) => AuditValue::Text(text.clone()),
        Value::Array(items) => AuditValue::List(items.iter().map(audit_value).collect::<Option<_>>()?),
        Value::Object(fields) => {
            let mut fields: Vec<(String, AuditValue)> =
                fields.iter().map(|(name, value)| Some((name.clone(), audit_value(value)?))).collect::<Option<_>>()?;
            // Stores reorder keys (PostgreSQL's jsonb by length); the domain
            // builds its maps in name order.
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            AuditValue::Map(fields)
        }
    })
}

/// The changes of an event as JSON: `{"field": {"from": …, "to": …}}`.
#[must_use]
pub fn changes_json(changes: &Changes) -> Value {
    Value::Object(
        changes
            .iter()
            .map(|(field, change)| {
                let pair = serde_json::json!({"from": audit_json(&change.from), "to": audit_json(&change.to)});
                (field.clone(), pair)
            })
            .collect(),
    )
}

fn decode_changes(text: &str) -> Option<Changes> {
    let Value::Object(fields) = serde_json::from_str(text).ok()? else {
        return None;
    };
    fields
        .iter()
        .map(|(field, pair)| {
            let change = FieldChange { from: audit_value(pair.get("from")?)?, to: audit_value(pair.get("to")?)? };
            Some((field.clone(), change))
        })
        .collect()
}

impl AuditRow {
    /// The columns of `event`.
    #[must_use]
    pub fn from_event(event: &AuditEvent) -> Self {
        Self {
            id: event.id.to_string(),
            org: event.actor.org.to_string(),
            at: event.at,
            actor: event.actor.user.to_string(),
            action: event.action.as_str().to_owned(),
            token_id: event.token.as_ref().map(|t| t.id.to_string()),
            token_name: event.token.as_ref().map(|t| t.name.to_string()),
            token_owner: event.token.as_ref().map(|t| t.owner.to_string()),
            changes: changes_json(&event.changes).to_string(),
        }
    }

    /// Rebuilds the event through the domain's constructors.
    ///
    /// # Errors
    /// [`BackendError`] naming the column that does not decode.
    pub fn into_event(self) -> Result<AuditEvent, BackendError> {
        let corrupt = |column: &str| BackendError::corrupt(format!("audit event {} column {column}", self.id));
        let token = match (&self.token_id, &self.token_name, &self.token_owner) {
            (None, None, None) => None,
            (Some(id), Some(name), Some(owner)) => Some(AuditedToken {
                id: TokenId::parse(id).map_err(|_| corrupt("token_id"))?,
                name: TokenName::new(name).map_err(|_| corrupt("token_name"))?,
                owner: UserName::new(owner).map_err(|_| corrupt("token_owner"))?,
            }),
            _ => return Err(corrupt("token_id")),
        };
        Ok(AuditEvent {
            id: AuditEventId::parse(&self.id).map_err(|_| corrupt("id"))?,
            at: self.at,
            actor: Principal {
                org: OrgName::new(&self.org).map_err(|_| corrupt("org"))?,
                user: UserName::new(&self.actor).map_err(|_| corrupt("actor"))?,
            },
            action: self.action.parse::<AuditAction>().map_err(|_| corrupt("action"))?,
            token,
            changes: decode_changes(&self.changes).ok_or_else(|| corrupt("changes"))?,
        })
    }
}

/// An org policy's columns: `max_lifetime_days`, `require_referers` and
/// `allowed_apis` (names joined by commas, or null for every API).
pub type PolicyColumns = (Option<i64>, bool, Option<String>);

/// The columns of `policy`.
#[must_use]
pub fn policy_columns(policy: &OrgPolicy) -> PolicyColumns {
    (
        policy.max_lifetime_days().map(i64::from),
        policy.require_referers(),
        policy.allowed_apis().map(|apis| apis.iter().map(Api::as_str).collect::<Vec<_>>().join(",")),
    )
}

/// The policy of these columns.
///
/// # Errors
/// [`BackendError::corrupt`] when they break the policy's invariant.
pub fn policy_from_columns((days, require_referers, apis): PolicyColumns) -> Result<OrgPolicy, BackendError> {
    let corrupt = || BackendError::corrupt("org policy");
    let days = days.map(u32::try_from).transpose().map_err(|_| corrupt())?;
    let apis = match apis {
        None => None,
        Some(text) => {
            let mut set = ApiSet::empty();
            for name in text.split(',') {
                set.insert(name.parse().map_err(|_| corrupt())?);
            }
            Some(set)
        }
    };
    OrgPolicy::new(days, require_referers, apis).map_err(|_| corrupt())
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
            allowed_ips: r#"["10.0.0.0/8","2001:db8::1"]"#.into(),
            expiration: None,
            created_at: Timestamp::from_unix_micros(1).unwrap(),
            updated_at: Timestamp::from_unix_micros(2).unwrap(),
            last_used_at: None,
            version: 1,
            previous_secret_hash: Some(vec![7; 32]),
            previous_expires_at: Some(Timestamp::from_unix_micros(3).unwrap()),
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
            ("ip", TokenRow { allowed_ips: r#"["10.0.0.1/8"]"#.into(), ..good.clone() }),
            ("ip json", TokenRow { allowed_ips: "{}".into(), ..good.clone() }),
            ("previous without time", TokenRow { previous_expires_at: None, ..good.clone() }),
            ("time without previous", TokenRow { previous_secret_hash: None, ..good.clone() }),
            ("previous hash", TokenRow { previous_secret_hash: Some(vec![7; 3]), ..good.clone() }),
        ];
        for (what, row) in broken {
            assert!(row.into_token().is_err(), "{what}");
        }
    }
}
