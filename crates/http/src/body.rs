//! Reading JSON request bodies with errors a client can act on.
//!
//! Unknown fields are refused, never ignored (V10: a misspelt `referrers`
//! must not leave a token unrestricted), and all of them are reported at
//! once. Type errors name the field. Messages never repeat the values sent,
//! which could be credentials.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Services;
use crate::error::{ApiError, Detail};

/// A request body type: its fields, for the unknown-field check.
pub trait Fields {
    /// Every field the type accepts.
    const FIELDS: &'static [&'static str];
}

/// A decoded JSON object body, with the names of the fields it should not
/// have contained.
#[derive(Debug)]
pub struct JsonBody<T> {
    value: T,
    unknown: Vec<String>,
}

impl<T> JsonBody<T> {
    /// The body, refused with a validation error if it had unknown fields.
    ///
    /// # Errors
    /// [`ApiError::Validation`] listing every unknown field.
    pub fn strict(self) -> Result<T, ApiError> {
        if self.unknown.is_empty() {
            Ok(self.value)
        } else {
            Err(ApiError::Validation(
                self.unknown.into_iter().map(|field| Detail::new(field, "unknown_field", "unknown field")).collect(),
            ))
        }
    }

    /// The body and the unknown fields, for a use case that reports unknown
    /// fields together with its own violations (and therefore must be handed
    /// them).
    pub fn with_unknown(self) -> (T, Vec<String>) {
        (self.value, self.unknown)
    }
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else { return false };
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Describes a deserialisation error without the offending value.
fn describe(error: &serde_json::Error) -> (&'static str, String) {
    let text = error.to_string();
    if text.starts_with("missing field") {
        return ("required", "this field is required".into());
    }
    if let Some(rest) = text.strip_prefix("invalid type: ") {
        let found = rest.split([',', ' ']).next().unwrap_or("value");
        let expected = rest.split_once(", expected ").map_or("another type", |(_, e)| e);
        let expected = expected.split(" at line").next().unwrap_or(expected);
        return ("invalid_type", format!("expected {expected}, found {found}"));
    }
    if let Some((_, expected)) = text.split_once(", expected ") {
        let expected = expected.split(" at line").next().unwrap_or(expected);
        return ("invalid_value", format!("expected {expected}"));
    }
    ("invalid_value", "invalid value".into())
}

/// The field a "missing field `x`" error is about, appended to the path of
/// the object that lacks it.
fn missing_field(path: &str, error: &serde_json::Error) -> Option<String> {
    let text = error.to_string();
    let name = text.strip_prefix("missing field `")?.split('`').next()?;
    Some(if path.is_empty() || path == "." { name.to_owned() } else { format!("{path}.{name}") })
}

/// Decodes an object body against `T`.
///
/// # Errors
/// The [`ApiError`] for the first stage that fails: not JSON, not an
/// object, unknown fields, or fields of the wrong type.
pub fn decode<T: DeserializeOwned + Fields>(bytes: &[u8]) -> Result<JsonBody<T>, ApiError> {
    // The common case, a well-formed body with known fields only, is read
    // straight into its type (every DTO denies unknown fields). Anything
    // else takes the careful path below, which says what is wrong.
    // Only an object may take it: serde's derived decoding of a struct also
    // accepts an array of its fields in order, which is not our schema.
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    if bytes.trim_ascii_start().starts_with(b"{")
        && let Ok(value) = T::deserialize(&mut reader)
        && reader.end().is_ok()
    {
        return Ok(JsonBody { value, unknown: Vec::new() });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_eof() { "the body ends too early" } else { "the body is not valid JSON" };
        ApiError::InvalidRequest(format!("{what} (line {}, column {})", e.line(), e.column()))
    })?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::InvalidRequest("the body must be a JSON object".into()));
    };
    // Unknown fields are taken out here and reported by the caller, with
    // every other violation; the rest is decoded as if they were absent.
    let unknown: Vec<String> = map.keys().filter(|key| !T::FIELDS.contains(&key.as_str())).cloned().collect();
    for key in &unknown {
        map.remove(key);
    }
    let unknown = unknown.into_iter().map(|key| key.chars().take(64).collect()).collect();
    let value = serde_path_to_error::deserialize(Value::Object(map)).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.inner();
        let (code, message) = describe(inner);
        let field = missing_field(&path, inner).unwrap_or(path);
        ApiError::Validation(vec![Detail::new(field, code, message)])
    })?;
    Ok(JsonBody { value, unknown })
}

/// How much of an oversized body is read and thrown away before answering
/// 413. Reading it lets the client finish sending and then read the answer;
/// a server that stops reading makes most clients fail with a broken pipe
/// instead of showing the 413. Beyond this, the connection is cut.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads at most `limit` bytes of `body`.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut data = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|_| ApiError::InvalidRequest("the body could not be read".into()))?;
        total = total.saturating_add(chunk.len());
        if total > DRAIN_LIMIT.max(limit) {
            break;
        }
        if total <= limit {
            buffer.extend_from_slice(&chunk);
        }
    }
    if total > limit { Err(ApiError::PayloadTooLarge) } else { Ok(Bytes::from(buffer)) }
}

impl<T> FromRequest<Services> for JsonBody<T>
where
    T: DeserializeOwned + Fields,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Services) -> Result<Self, Self::Rejection> {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = services.limits.body_bytes;
        let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > DRAIN_LIMIT.max(limit) as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        let bytes = read_limited(request.into_body(), limit).await?;
        decode(&bytes)
    }
}

/// Accepts `null` as "present and null", for fields where that differs
/// from absent (`"name": null` resets a token's name).
pub(crate) fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: Option<String>,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        source: String,
    }

    impl Fields for Sample {
        const FIELDS: &'static [&'static str] = &["name", "items"];
    }

    fn details(result: Result<JsonBody<Sample>, ApiError>) -> Vec<(String, String)> {
        match result {
            Err(ApiError::Validation(details)) => details.into_iter().map(|d| (d.field, d.code)).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/merge-patch+json")));
        assert!(!is_json(None));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/x-www-form-urlencoded")));
    }

    #[test]
    fn every_unknown_field_is_reported() {
        let got = details(
            decode(br#"{"items": [], "referrers": [], "nmae": 1}"#)
                .and_then(|b| b.strict().map(|value| JsonBody { value, unknown: vec![] })),
        );
        assert_eq!(got, [("nmae".into(), "unknown_field".into()), ("referrers".into(), "unknown_field".into())]);
        let (_, unknown) = decode::<Sample>(br#"{"items": [], "referrers": {"weird": true}}"#).unwrap().with_unknown();
        assert_eq!(unknown, ["referrers"]);
        let (decoded, unknown) =
            decode::<Sample>(br#"{"items": [{"source": "s"}], "name": "n"}"#).unwrap().with_unknown();
        assert!(unknown.is_empty() && decoded.items.len() == 1 && decoded.name.as_deref() == Some("n"), "fast path");
    }

    #[test]
    fn type_errors_name_the_field_and_never_echo_the_value() {
        let result = decode::<Sample>(br#"{"items": [{"source": 42}]}"#);
        let Err(ApiError::Validation(found)) = result else { panic!("expected validation error") };
        assert_eq!(found[0].field, "items[0].source");
        assert_eq!(found[0].code, "invalid_type");
        assert!(!found[0].message.contains("42"), "{}", found[0].message);
        let result = decode::<Sample>(br#"{"items": [], "name": ["latchkey_uk_secret"]}"#);
        let Err(ApiError::Validation(found)) = result else { panic!("expected validation error") };
        assert!(!found[0].message.contains("secret"));
        assert_eq!(details(decode(br#"{"items": [{}]}"#)), [("items[0].source".into(), "required".into())]);
        assert_eq!(details(decode(br#"{"name": "x"}"#)), [("items".into(), "required".into())]);
    }

    #[test]
    fn what_is_not_a_json_object_is_an_invalid_request() {
        // `[null, []]` would decode as `Sample { name: None, items: [] }` if
        // arrays were taken for structs.
        for body in [&b""[..], b"{", b"[]", b"[null, []]", b"\"text\"", b"\xff\xfe", b"{\"items\": []} trailing"] {
            assert!(matches!(decode::<Sample>(body), Err(ApiError::InvalidRequest(_))), "{body:?}");
        }
        let (decoded, _) = decode::<Sample>(br#"{"items": [], "name": null}"#).unwrap().with_unknown();
        assert!(decoded.name.is_none());
    }
}
