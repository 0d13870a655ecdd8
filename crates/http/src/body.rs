//! Reading JSON request bodies with errors a client can act on.
//!
//! Unknown fields are refused, never ignored (V10: a misspelt `referrers`
//! must not leave a token unrestricted), and all of them are reported at
//! once. Type errors name the field. Messages never repeat the values sent,
//! which could be credentials.

use std::fmt;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use futures_util::StreamExt;
use latchkey_app::MediaType;
use serde::Deserialize;
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Expected, IntoDeserializer, Unexpected, Visitor};
use serde_json::Value;

use crate::Shared;
use crate::error::{ApiError, Detail, InputIssue};

/// The fields serde reads for `T`, as its derived `Deserialize` declares
/// them: the one list of a body's fields, so that no copy can drift. (A
/// deserializer that records what `deserialize_struct` is given and reads
/// nothing.)
pub(crate) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Recorder(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Recorder {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut recorder = Recorder(None);
    let _ = T::deserialize(&mut recorder);
    recorder.0.unwrap_or(&[])
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
                self.unknown
                    .into_iter()
                    .map(|field| Detail::new(field, InputIssue::UnknownField, "unknown field"))
                    .collect(),
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

/// Whether the management API reads a body of this type: JSON, or a JSON
/// family type such as `application/merge-patch+json` (the media type is
/// parsed by the same function that data API requests go through; only the
/// policy differs, since a data API's framework may not read `+json`).
pub(crate) fn is_json(content_type: Option<&str>) -> bool {
    content_type.and_then(MediaType::parse).is_some_and(|media| media.is_json_family())
}

/// What was wrong with a field, as serde's derived code reports it: the
/// kind of problem from the call it made, never from the text of an error.
#[derive(Debug)]
enum Problem {
    Missing(&'static str),
    InvalidType { found: &'static str, expected: String },
    InvalidValue { expected: String },
    Other,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing(field) => write!(f, "missing field {field}"),
            Problem::InvalidType { found, expected } => write!(f, "expected {expected}, found {found}"),
            Problem::InvalidValue { expected } => write!(f, "expected {expected}"),
            Problem::Other => f.write_str("invalid value"),
        }
    }
}

impl std::error::Error for Problem {}

/// The word for a kind of JSON value, never the value itself.
fn kind(unexpected: &Unexpected<'_>) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "integer",
        Unexpected::Float(_) => "floating",
        Unexpected::Char(_) | Unexpected::Str(_) => "string",
        Unexpected::Unit | Unexpected::Option => "null",
        Unexpected::Seq => "sequence",
        Unexpected::Map => "map",
        _ => "value",
    }
}

impl serde::de::Error for Problem {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Problem::Other
    }
    fn missing_field(field: &'static str) -> Self {
        Problem::Missing(field)
    }
    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Problem::InvalidType { found: kind(&unexpected), expected: expected.to_string() }
    }
    fn invalid_value(_: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Problem::InvalidValue { expected: expected.to_string() }
    }
    fn invalid_length(_: usize, expected: &dyn Expected) -> Self {
        Problem::InvalidValue { expected: expected.to_string() }
    }
}

/// A parsed JSON value read through serde with [`Problem`] as its error,
/// so that what went wrong arrives as a value, not as a sentence to parse.
struct Json<'a>(&'a Value);

impl<'de> IntoDeserializer<'de, Problem> for Json<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> serde::Deserializer<'de> for Json<'_> {
    type Error = Problem;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => visitor.visit_u64(u),
                (None, Some(i)) => visitor.visit_i64(i),
                (None, None) => visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(text) => visitor.visit_str(text),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(Json));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(map) => {
                let mut fields = MapDeserializer::new(map.iter().map(|(k, v)| (k.as_str(), Json(v))));
                let value = visitor.visit_map(&mut fields)?;
                fields.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A validation detail for a decoding problem at `path`.
fn detail(path: &str, problem: &Problem) -> Detail {
    let at = |name: &str| if path.is_empty() || path == "." { name.to_owned() } else { format!("{path}.{name}") };
    match problem {
        Problem::Missing(name) => Detail::new(at(name), InputIssue::Required, "this field is required"),
        Problem::InvalidType { .. } => Detail::new(path, InputIssue::InvalidType, problem.to_string()),
        Problem::InvalidValue { .. } | Problem::Other => {
            Detail::new(path, InputIssue::InvalidValue, problem.to_string())
        }
    }
}

/// Decodes an object body against `T`.
///
/// # Errors
/// The [`ApiError`] for the first stage that fails: not JSON, not an
/// object, unknown fields, or fields of the wrong type.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, ApiError> {
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
    let fields = fields_of::<T>();
    let unknown: Vec<String> = map.keys().filter(|key| !fields.contains(&key.as_str())).cloned().collect();
    for key in &unknown {
        map.remove(key);
    }
    let unknown: Vec<String> = unknown.into_iter().map(|key| key.chars().take(64).collect()).collect();
    let object = Value::Object(map);
    let value = serde_path_to_error::deserialize(Json(&object)).map_err(|error| {
        // A misspelt field is often why a required one is missing: both are
        // reported, so that the client sees the cause next to the effect.
        let mut details = vec![detail(&error.path().to_string(), error.inner())];
        details
            .extend(unknown.iter().map(|field| Detail::new(field.clone(), InputIssue::UnknownField, "unknown field")));
        ApiError::Validation(details)
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

impl<T> FromRequest<Shared> for JsonBody<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Shared) -> Result<Self, Self::Rejection> {
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

/// A whole number however JSON spells it: `30` or `30.0` (JSON Schema's
/// `integer` is any number without a fraction, and generated clients in
/// some languages write whole numbers with one). `30.5`, a negative number
/// or one out of `T`'s range is refused.
fn whole<'de, T, D>(deserializer: D) -> Result<T, D::Error>
where
    T: TryFrom<u64>,
    D: serde::Deserializer<'de>,
{
    use serde::de::{Error, Unexpected};
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = number.as_u64().or_else(|| {
        number.as_f64().filter(|f| f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(f)).map(|f| f as u64)
    });
    let expected = &"a whole number within range";
    match whole {
        Some(value) => T::try_from(value).map_err(|_| D::Error::invalid_value(Unexpected::Unsigned(value), expected)),
        None => Err(D::Error::invalid_value(Unexpected::Other(&number.to_string()), expected)),
    }
}

/// [`whole`] for an optional field: absent or `null` is `None`.
pub(crate) fn optional_whole<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: TryFrom<u64>,
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    struct Whole<T: TryFrom<u64>>(#[serde(deserialize_with = "whole")] T);
    Ok(Option::<Whole<T>>::deserialize(deserializer)?.map(|Whole(value)| value))
}

/// [`whole`] for a required field that may be `null`: `Some(None)` for
/// `null`, and absent is a missing field.
pub(crate) fn nullable_whole<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: TryFrom<u64>,
    D: serde::Deserializer<'de>,
{
    optional_whole(deserializer).map(Some)
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

    fn details(result: Result<JsonBody<Sample>, ApiError>) -> Vec<(String, String)> {
        match result {
            Err(ApiError::Validation(details)) => details.into_iter().map(|d| (d.field, d.code)).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn the_fields_of_a_body_are_serdes() {
        assert_eq!(fields_of::<Sample>(), ["name", "items"]);
        assert_eq!(fields_of::<Item>(), ["source"]);
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
