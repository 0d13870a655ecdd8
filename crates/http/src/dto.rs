//! The wire format of SPEC §7: request and response bodies. Serde lives
//! only here; the layers below never see JSON.

use latchkey_app::TokenView;
use latchkey_domain::validation::GrantDraft;
use std::fmt;

use latchkey_domain::{Api, DenyReason, Provider, SourceType};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::body::double_option;
use crate::error::Detail;

/// A string schema whose values are the wire names of a domain list: the
/// domain's `ALL` lists are the one place these names are written.
fn names(description: &str, values: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).description(Some(description)).enum_values(Some(values)).into()
}

/// Declares a schema of the wire names of a domain list.
macro_rules! names_schema {
    ($(#[$doc:meta])* $name:ident, $description:literal, $values:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                names($description, $values)
            }
        }

        impl ToSchema for $name {}
    };
}

names_schema!(
    /// An API a token can be allowed to call.
    ApiName,
    "An API a token can be allowed to call",
    Api::ALL.map(Api::as_str)
);
names_schema!(
    /// What kind of source a request touches.
    SourceTypeName,
    "What kind of source a request touches",
    SourceType::ALL.map(SourceType::as_str)
);
names_schema!(
    /// Why a request was refused.
    ReasonName,
    "Why the request was refused",
    DenyReason::ALL.map(DenyReason::as_str)
);
names_schema!(
    /// The code of an error.
    ErrorCodeName,
    "A stable code for programs",
    crate::error::all_error_codes()
);
names_schema!(
    /// The code of one problem with one field.
    DetailCodeName,
    "A stable code for the problem",
    crate::error::all_detail_codes()
);
names_schema!(
    /// A data warehouse provider.
    ProviderName,
    "A data warehouse provider",
    Provider::ALL.map(Provider::as_str)
);

/// A data source reachable through a connection.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct GrantBody {
    /// The connection's name, e.g. `carto_dw`.
    #[schema(example = "carto_dw", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub connection_name: String,
    /// `*` (all sources), a pattern (`project.dataset.*`), a table or tileset
    /// (`project.dataset.table`), or one SQL statement (at most 64 KiB).
    #[schema(example = "my-project.dataset.table", min_length = 1, max_length = 65536)]
    pub source: String,
}

/// The derived decoding of a grant's fields. It is not `GrantBody`'s own:
/// serde's derived struct decoding also accepts an array of the fields in
/// order (`["carto_dw", "*"]`), which the schema does not allow.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, remote = "GrantBody")]
struct GrantFields {
    connection_name: String,
    source: String,
}

impl<'de> Deserialize<'de> for GrantBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly;
        impl<'de> Visitor<'de> for ObjectOnly {
            type Value = GrantBody;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a grant object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<GrantBody, A::Error> {
                GrantFields::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(ObjectOnly)
    }
}

impl From<GrantBody> for GrantDraft {
    fn from(grant: GrantBody) -> Self {
        GrantDraft { connection_name: grant.connection_name, source: grant.source }
    }
}

/// A token as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "Hq3xJ7rT2mKa", "token": "latchkey_tk_8fJ2kQ9xLw3mZp7rT4vN6bYc1dHs5gUe0aKi2fMo",
    "name": "roads map", "allowed_apis": ["maps"],
    "grants": [{"connection_name": "carto_dw", "source": "my-project.dataset.roads"}],
    "referers": ["https://app.example.com/"], "expiration_date": null,
    "created_at": "2026-11-27T10:00:00Z", "updated_at": "2026-11-27T10:00:00Z", "last_used_at": null, "warnings": []}))]
pub struct TokenBody {
    /// The public id.
    #[schema(example = "Hq3xJ7rT2mKa")]
    pub id: String,
    /// The secret value, to send as the token; null only when the server
    /// key changed since the token was made.
    pub token: Option<String>,
    /// Unique among the owner's tokens.
    #[schema(example = "tk_Hq3xJ7rT2mKa")]
    pub name: String,
    /// Alphabetical.
    #[schema(value_type = Vec<ApiName>)]
    pub allowed_apis: Vec<String>,
    /// The grants.
    pub grants: Vec<GrantBody>,
    /// Allowed websites; empty means any.
    pub referers: Vec<String>,
    /// Allowed client addresses and CIDR ranges, canonical; empty means
    /// any.
    #[schema(example = json!(["203.0.113.0/24", "2001:db8::/32"]))]
    pub allowed_ips: Vec<String>,
    /// RFC 3339, UTC; null means never.
    #[schema(format = DateTime)]
    pub expiration_date: Option<String>,
    /// RFC 3339, UTC: when the value before the last roll stops working;
    /// null unless a roll's grace period is running.
    #[schema(format = DateTime)]
    pub previous_value_expires_at: Option<String>,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// RFC 3339, UTC; null until the token is first used (recorded within
    /// a few seconds of the use).
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    /// Things that are allowed but worth a second look.
    pub warnings: Vec<Detail>,
}

impl From<TokenView> for TokenBody {
    fn from(view: TokenView) -> Self {
        let token = view.token;
        let policy = &token.policy;
        Self {
            id: token.id.to_string(),
            token: view.value.map(|v| v.expose().to_owned()),
            name: token.name.to_string(),
            allowed_apis: policy.apis().iter().map(|a| a.as_str().to_owned()).collect(),
            grants: policy
                .grants()
                .iter()
                .map(|g| GrantBody {
                    connection_name: g.connection().to_string(),
                    source: g.source().text().to_owned(),
                })
                .collect(),
            referers: policy.referers().iter().map(|r| r.text().to_owned()).collect(),
            allowed_ips: policy.allowed_ips().iter().map(ToString::to_string).collect(),
            expiration_date: policy.expiration().map(|t| t.to_rfc3339()),
            previous_value_expires_at: view.previous_value_expires_at.map(|t| t.to_rfc3339()),
            created_at: token.created_at.to_rfc3339(),
            updated_at: token.updated_at.to_rfc3339(),
            last_used_at: token.last_used_at.map(|t| t.to_rfc3339()),
            warnings: view.warnings.into_iter().map(Detail::from).collect(),
        }
    }
}

/// A new token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "roads map", "allowed_apis": ["maps"],
    "grants": [{"connection_name": "carto_dw", "source": "my-project.dataset.roads"}],
    "referers": ["https://app.example.com/"]}))]
pub struct CreateTokenRequest {
    /// 1–128 characters; `tk_` and the id when absent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    pub name: Option<String>,
    /// Not empty; `imports` only alone.
    #[schema(value_type = Vec<ApiName>, min_items = 1)]
    pub allowed_apis: Vec<String>,
    /// At most 100; every API but `lds` needs one.
    #[schema(max_items = 100)]
    pub grants: Vec<GrantBody>,
    /// At most 50 patterns `[scheme://]host[:port][path]`; empty or absent
    /// means any website.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub referers: Option<Vec<String>>,
    /// At most 50 IPv4/IPv6 addresses or CIDR ranges (`203.0.113.0/24`,
    /// `2001:db8::/32`) the token may be used from; empty or absent means
    /// any address.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub allowed_ips: Option<Vec<String>>,
    /// RFC 3339, in the future. Can only be set here.
    #[serde(default)]
    #[schema(format = DateTime)]
    pub expiration_date: Option<String>,
}

/// Changes to a token: each field present replaces the whole field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"referers": ["https://app.example.com/", "https://staging.example.com/"]}))]
pub struct UpdateTokenRequest {
    /// A new name; null resets it to `tk_` and the id.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 128)]
    pub name: Option<Option<String>>,
    /// New allowed APIs.
    #[serde(default)]
    #[schema(value_type = Option<Vec<ApiName>>, min_items = 1)]
    pub allowed_apis: Option<Vec<String>>,
    /// New grants.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub grants: Option<Vec<GrantBody>>,
    /// New referers.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub referers: Option<Vec<String>>,
    /// New client addresses and ranges.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub allowed_ips: Option<Vec<String>>,
    /// Refused with `expiration_immutable`: the expiration is set at
    /// creation only. Listed so that naming it is that error rather than
    /// an unknown field.
    // Only its presence matters, a null included: `Some(_)` when named.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expiration_date: Option<Option<serde_json::Value>>,
}

/// A page of the caller's tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPage {
    /// Newest first.
    pub data: Vec<TokenBody>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A request to a data API, to decide.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token": "latchkey_tk_8fJ2kQ9xLw3mZp7rT4vN6bYc1dHs5gUe0aKi2fMo", "api": "maps",
    "connection_name": "carto_dw", "source_type": "table", "source": "my-project.dataset.roads",
    "referer": "https://app.example.com/map"}))]
pub struct AuthorizeRequest {
    /// The token value the request carries.
    pub token: String,
    /// The API the request is for.
    #[schema(value_type = ApiName)]
    pub api: String,
    /// Required for every API but `lds`.
    #[serde(default)]
    pub connection_name: Option<String>,
    /// `table`, `tileset` or `query`; required for every API but `lds`.
    #[serde(default)]
    #[schema(value_type = Option<SourceTypeName>)]
    pub source_type: Option<String>,
    /// The table or tileset name, or the SQL text; required for every API
    /// but `lds`.
    #[serde(default)]
    pub source: Option<String>,
    /// The request's `Referer` header, if any.
    #[serde(default)]
    pub referer: Option<String>,
    /// The request's `Origin` header, if any.
    #[serde(default)]
    pub origin: Option<String>,
    /// The end client's IP address, as the data service saw it. A token
    /// with `allowed_ips` refuses a request without one.
    #[serde(default)]
    #[schema(schema_with = client_ip_schema)]
    pub client_ip: Option<String>,
    /// Decide, but do not record a use of the token (a request tester).
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// An IPv4 or IPv6 address (RFC 2673 dotted quad, RFC 4291 text), or null.
fn client_ip_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, OneOfBuilder, SchemaFormat};
    let format = |known| ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(known)));
    OneOfBuilder::new()
        .item(format(KnownFormat::Ipv4))
        .item(format(KnownFormat::Ipv6))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "The end client's IP address, as the data service saw it. A token with `allowed_ips` refuses a \
             request without one.",
        ))
        .examples([serde_json::json!("203.0.113.7")])
        .into()
}

/// A token of the org, as an org admin sees it: with its owner, never with
/// its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgTokenBody {
    /// The user who owns the token.
    #[schema(example = "ana@example.com")]
    pub owner: String,
    /// The token; its `token` (the value) is always null here.
    #[serde(flatten)]
    pub token: TokenBody,
}

/// A page of the org's tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgTokenPage {
    /// Newest first.
    pub data: Vec<OrgTokenBody>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A roll of a token's value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"grace_seconds": 3600}))]
pub struct RollRequest {
    /// How long the previous value keeps working, 0 to 604800 seconds (a
    /// week); 0, the default, ends it with the roll.
    #[serde(default, deserialize_with = "crate::body::optional_whole")]
    #[schema(minimum = 0, maximum = 604_800)]
    pub grace_seconds: Option<u64>,
}

/// Who made a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorBody {
    /// The user.
    pub user: String,
    /// The user's org.
    pub org: String,
}

/// One recorded change.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "3kTn8QwZ1xYb5VcR", "at": "2026-11-27T10:00:00Z",
    "actor": {"user": "ana@example.com", "org": "acme"}, "action": "token.updated",
    "token_id": "Hq3xJ7rT2mKa", "token_name": "roads map",
    "changes": {"referers": {"from": [], "to": ["https://app.example.com/"]}}}))]
pub struct AuditEventBody {
    /// Unique.
    pub id: String,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    pub at: String,
    /// Who made the change.
    pub actor: ActorBody,
    /// What happened.
    #[schema(value_type = AuditActionName)]
    pub action: String,
    /// The token changed; null for `policy.updated`.
    pub token_id: Option<String>,
    /// Its name at the time; null for `policy.updated`.
    pub token_name: Option<String>,
    /// Each changed field, `{"from": …, "to": …}`; never a token value or
    /// a key.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
}

names_schema!(
    /// What an audit event records.
    AuditActionName,
    "What happened",
    latchkey_domain::audit::AuditAction::ALL.map(latchkey_domain::audit::AuditAction::as_str)
);

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPageBody {
    /// Newest first.
    pub data: Vec<AuditEventBody>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The org's token policy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"max_lifetime_days": 90, "require_referers": true, "allowed_apis": ["maps", "sql"]}))]
pub struct PolicyBody {
    /// The longest a token may live, in days from its creation (1–36500);
    /// null for no bound.
    #[serde(deserialize_with = "crate::body::nullable_whole")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 36_500, required = true)]
    pub max_lifetime_days: Option<Option<u32>>,
    /// Whether tokens for the sql, maps and lds APIs must name at least one
    /// referer.
    pub require_referers: bool,
    /// The APIs tokens may allow; null for all.
    #[serde(deserialize_with = "crate::body::double_option")]
    #[schema(value_type = Option<Vec<ApiName>>, min_items = 1, required = true)]
    pub allowed_apis: Option<Option<Vec<String>>>,
}

/// The decision.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"allowed": false, "reason": "source_not_granted"}))]
pub struct AuthorizeResponse {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why not; null when allowed.
    #[schema(value_type = Option<ReasonName>)]
    pub reason: Option<String>,
}

/// A connection of the caller's org.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionBody {
    /// The name to use in grants.
    pub name: String,
    /// The warehouse behind it.
    #[schema(value_type = ProviderName)]
    pub provider: String,
}

/// The connections of the caller's org.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    /// Ordered by name.
    pub data: Vec<ConnectionBody>,
}

/// A liveness or readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok`.
    pub status: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{JsonBody, decode};
    use crate::error::ApiError;

    #[test]
    fn a_grant_is_an_object_and_nothing_else() {
        let body = br#"{"allowed_apis": ["sql"], "grants": [{"connection_name": "carto_dw", "source": "*"}]}"#;
        let (request, _) = decode::<CreateTokenRequest>(body).unwrap().with_unknown();
        assert_eq!(request.grants[0].connection_name, "carto_dw");
        let body = br#"{"allowed_apis": ["sql"], "grants": [["carto_dw", "*"]]}"#;
        let Err(ApiError::Validation(details)) = decode::<CreateTokenRequest>(body) else {
            panic!("an array taken for a grant")
        };
        assert_eq!((details[0].field.as_str(), details[0].code.as_str()), ("grants[0]", "invalid_type"));
        let body = br#"{"allowed_apis": ["sql"], "grants": [{"connection_name": "c", "source": "*", "extra": 1}]}"#;
        assert!(matches!(decode::<CreateTokenRequest>(body), Err(ApiError::Validation(_))), "unknown grant field");
        let body = br#"{"allowed_apis": ["sql"], "grants": [{"connection_name": "c"}]}"#;
        let Err(ApiError::Validation(details)) = decode::<CreateTokenRequest>(body) else { panic!("missing source") };
        assert_eq!((details[0].field.as_str(), details[0].code.as_str()), ("grants[0].source", "required"));
    }

    /// The fields a schema in the document declares that serde does not
    /// read, and those serde reads that the schema does not declare.
    fn drift(document: &serde_json::Value, schema: &str, serde: &[&str]) -> (Vec<String>, Vec<String>) {
        let declared: Vec<String> = document["components"]["schemas"][schema]["properties"]
            .as_object()
            .map(|properties| properties.keys().cloned().collect())
            .unwrap_or_default();
        let only_declared = declared.iter().filter(|d| !serde.contains(&d.as_str())).cloned().collect();
        let only_read = serde.iter().filter(|s| !declared.iter().any(|d| d == *s)).map(|s| (*s).to_owned()).collect();
        (only_declared, only_read)
    }

    #[test]
    fn the_document_declares_exactly_the_fields_serde_reads() {
        use crate::body::fields_of;
        let document = serde_json::to_value(crate::openapi()).unwrap();
        for (schema, serde) in [
            ("CreateTokenRequest", fields_of::<CreateTokenRequest>()),
            ("UpdateTokenRequest", fields_of::<UpdateTokenRequest>()),
            ("AuthorizeRequest", fields_of::<AuthorizeRequest>()),
            ("RollRequest", fields_of::<RollRequest>()),
            ("PolicyBody", fields_of::<PolicyBody>()),
        ] {
            assert!(!serde.is_empty(), "{schema}");
            assert_eq!(drift(&document, schema, serde), (vec![], vec![]), "{schema}");
        }
        // A field serde reads but the document forgot is noticed.
        let mut more = fields_of::<AuthorizeRequest>().to_vec();
        more.push("not_a_field");
        assert_eq!(drift(&document, "AuthorizeRequest", &more).1, ["not_a_field"]);
    }

    #[test]
    fn wire_names_come_from_the_domain_lists() {
        let document = serde_json::to_value(crate::openapi()).unwrap();
        let names = |schema: &str| -> Vec<String> {
            document["components"]["schemas"][schema]["enum"]
                .as_array()
                .map(|values| values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        assert_eq!(names("ApiName"), Api::ALL.map(|a| a.as_str().to_owned()));
        assert_eq!(names("SourceTypeName"), SourceType::ALL.map(|t| t.as_str().to_owned()));
        assert_eq!(names("ReasonName"), DenyReason::ALL.map(|r| r.as_str().to_owned()));
        assert_eq!(names("ProviderName"), Provider::ALL.map(|p| p.as_str().to_owned()));
    }

    #[test]
    fn whole_numbers_however_json_spells_them() {
        let days =
            |body: &str| decode::<PolicyBody>(body.as_bytes()).and_then(JsonBody::strict).map(|p| p.max_lifetime_days);
        let policy =
            |days: &str| format!(r#"{{"max_lifetime_days": {days}, "require_referers": false, "allowed_apis": null}}"#);
        assert_eq!(days(&policy("30")).unwrap(), Some(Some(30)));
        assert_eq!(days(&policy("30.0")).unwrap(), Some(Some(30)), "JSON Schema's integer");
        assert_eq!(days(&policy("3e1")).unwrap(), Some(Some(30)));
        assert_eq!(days(&policy("null")).unwrap(), Some(None));
        for bad in ["30.5", "-1", "\"30\"", "true", "4294967296", "1e400"] {
            assert!(matches!(days(&policy(bad)), Err(ApiError::Validation(_) | ApiError::InvalidRequest(_))), "{bad}");
        }
        let missing = r#"{"require_referers": false, "allowed_apis": null}"#;
        let Err(ApiError::Validation(details)) = days(missing) else { panic!("a required field") };
        assert_eq!((details[0].field.as_str(), details[0].code.as_str()), ("max_lifetime_days", "required"));
        let grace =
            |body: &str| decode::<RollRequest>(body.as_bytes()).and_then(JsonBody::strict).map(|r| r.grace_seconds);
        assert_eq!(grace(r#"{"grace_seconds": 60.0}"#).unwrap(), Some(60));
        assert_eq!(grace(r#"{"grace_seconds": null}"#).unwrap(), None);
        assert_eq!(grace("{}").unwrap(), None);
        assert!(grace(r#"{"grace_seconds": 0.5}"#).is_err());
    }

    #[test]
    fn a_patch_is_an_object_and_nothing_else() {
        // Every field of a patch is optional, so an array of nulls would be
        // an empty patch if arrays were taken for objects.
        for body in [&b"[null, null]"[..], b"[]", b" [null]"] {
            assert!(matches!(decode::<UpdateTokenRequest>(body), Err(ApiError::InvalidRequest(_))), "{body:?}");
        }
    }
}
