//! The canonical reading of a request aimed at a data API (SPEC §12).
//!
//! latchkey decides a request on one reading of it, and the data API acts
//! on another: the proxy's, a web framework's, a router's. The two must be
//! the same. So a request is read here the one way every reasonable reader
//! agrees on, and anything that two readers could read differently is an
//! [`Ambiguity`], refused before any decision:
//!
//! - the path: segments split on `/` and percent-decoded; an empty, `.` or
//!   `..` segment (encoded or not, any case), an encoded `/` or `\`, a
//!   backslash, `;`, NUL, other control characters, invalid
//!   percent-encoding or invalid UTF-8 is ambiguous (routers normalise
//!   them differently, or not at all);
//! - the parameters, in the query string and in a JSON or form body: a
//!   parameter that names a token, a connection or a source given twice,
//!   in the URL and the body, or spelt differently (`NAME`, `name[]`,
//!   `access.token`, which PHP reads as `access_token`), is ambiguous (some
//!   frameworks take the first, some the last, some merge URL and body);
//! - the body: one on a method that has none; on a POST, a `Content-Type`
//!   that is missing, repeated or neither JSON nor a form; JSON that is
//!   invalid, not an object, has duplicate keys, a byte-order mark or
//!   trailing data;
//! - the credentials: two `Authorization` headers, or a token both there
//!   and in `access_token`.
//!
//! What is not ambiguous is kept in a form that can be written back
//! ([`CanonicalRequest::path`], [`CanonicalRequest::query`]), so that the
//! gateway forwards exactly what was decided.

use std::fmt;
use std::net::IpAddr;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};

/// Parameters whose reading decides the request: the token, the connection
/// and the source.
pub const SENSITIVE_PARAMETERS: [&str; 6] = ["access_token", "q", "query", "name", "connection", "destination"];

/// Why a request cannot be read one way only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ambiguity {
    /// The request target is not a path starting with `/`.
    NotAPath,
    /// A path segment is empty (`//`, or a trailing `/`).
    EmptySegment,
    /// A path segment is `.` or `..`, written plainly or percent-encoded.
    DotSegment,
    /// A segment holds an encoded `/` or `\`, a backslash, `;`, NUL or
    /// another control character.
    PathCharacter,
    /// Percent-encoding that is not `%` and two hex digits.
    BadPercentEncoding,
    /// Bytes that are not UTF-8 once decoded.
    InvalidUtf8,
    /// A control character (NUL among them) in a parameter's name.
    ControlCharacter,
    /// A `;` in the query string (some frameworks split parameters on it).
    QuerySemicolon,
    /// A parameter that decides the request appears more than once, in the
    /// URL, the body, or both.
    RepeatedParameter(&'static str),
    /// A parameter that some readers take for one that decides the request
    /// (`NAME`, `name[]`, `access.token`).
    LookalikeParameter(&'static str),
    /// A parameter that decides the request is not a JSON string.
    NotAString(&'static str),
    /// A header that decides the request appears more than once.
    RepeatedHeader(&'static str),
    /// A body on a method without one.
    BodyOnBodylessMethod,
    /// A POST body without a `Content-Type`.
    MissingContentType,
    /// A `Content-Type` other than JSON or a form in UTF-8.
    UnsupportedContentType,
    /// A JSON body that does not parse, or has trailing data.
    InvalidJson,
    /// A JSON body that is not an object.
    JsonNotAnObject,
    /// A JSON object with a key twice.
    DuplicateJsonKey,
    /// A body that starts with a byte-order mark.
    ByteOrderMark,
    /// A token in `Authorization` and in `access_token`.
    TwoTokens,
    /// A `#` in the request target: nginx forwards it, Go reads it as part
    /// of the path, most frameworks drop what follows.
    Fragment,
    /// A client-sent `X-Latchkey-…` header (in any spelling): the data API
    /// could take it for latchkey's word about who is asking.
    IdentityHeader,
    /// `X-HTTP-Method-Override` and its kin, or a `_method` parameter:
    /// some frameworks route the request as another method.
    MethodOverride,
}

impl fmt::Display for Ambiguity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ambiguity::NotAPath => f.write_str("the request target is not a path"),
            Ambiguity::EmptySegment => f.write_str("the path has an empty segment"),
            Ambiguity::DotSegment => f.write_str("the path has a . or .. segment"),
            Ambiguity::PathCharacter => f.write_str(
                "the path has an encoded slash or backslash, a backslash, a semicolon or a control character",
            ),
            Ambiguity::BadPercentEncoding => f.write_str("the request has invalid percent-encoding"),
            Ambiguity::InvalidUtf8 => f.write_str("the request has bytes that are not UTF-8"),
            Ambiguity::ControlCharacter => f.write_str("a parameter's name has a control character"),
            Ambiguity::QuerySemicolon => f.write_str("the query string has a semicolon"),
            Ambiguity::RepeatedParameter(name) => write!(f, "the parameter {name} is given more than once"),
            Ambiguity::LookalikeParameter(name) => write!(f, "a parameter is spelt like {name} but not as {name}"),
            Ambiguity::NotAString(name) => write!(f, "the parameter {name} is not a string"),
            Ambiguity::RepeatedHeader(name) => write!(f, "the {name} header is given more than once"),
            Ambiguity::BodyOnBodylessMethod => f.write_str("the request has a body on a method that has none"),
            Ambiguity::MissingContentType => f.write_str("the body has no Content-Type"),
            Ambiguity::UnsupportedContentType => {
                f.write_str("the body is neither application/json nor application/x-www-form-urlencoded in UTF-8")
            }
            Ambiguity::InvalidJson => f.write_str("the body is not valid JSON"),
            Ambiguity::JsonNotAnObject => f.write_str("the JSON body is not an object"),
            Ambiguity::DuplicateJsonKey => f.write_str("the JSON body has a key twice"),
            Ambiguity::ByteOrderMark => f.write_str("the body starts with a byte-order mark"),
            Ambiguity::TwoTokens => f.write_str("the request carries a token in Authorization and in access_token"),
            Ambiguity::Fragment => f.write_str("the request target has a #"),
            Ambiguity::IdentityHeader => f.write_str("the request carries an X-Latchkey header of its own"),
            Ambiguity::MethodOverride => f.write_str("the request asks to be routed as another method"),
        }
    }
}

/// Whether the request has a body, as far as the reader knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyPresence {
    /// No body (no `Content-Length`, or zero, and no `Transfer-Encoding`).
    Absent,
    /// A body.
    Present,
    /// The reader cannot tell (a proxy that does not say).
    Unknown,
}

/// The headers that decide a request, each as every copy the request had.
#[derive(Clone, Debug, Default)]
pub struct DecidingHeaders<'a> {
    /// `Authorization`.
    pub authorization: Vec<&'a str>,
    /// `Content-Type`.
    pub content_type: Vec<&'a str>,
    /// `Referer`.
    pub referer: Vec<&'a str>,
    /// `Origin`.
    pub origin: Vec<&'a str>,
    /// Whether a method-override header (`X-HTTP-Method-Override`,
    /// `X-HTTP-Method`, `X-Method-Override`) is present.
    pub method_override: bool,
}

/// A request's method, target and headers, read; the body comes later (a
/// gateway checks the token before it reads one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    method: String,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    bearer: Option<String>,
    content_type: Option<BodyFormat>,
    content_type_error: Option<Ambiguity>,
    referer: Option<String>,
    origin: Option<String>,
    body: BodyPresence,
    /// The end client's address, as the connection and the trusted proxies
    /// tell it; not part of what the request says about itself.
    client_ip: Option<IpAddr>,
}

/// The two body formats a data API request may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded`.
    Form,
}

/// A body, as far as the reader has it.
#[derive(Clone, Copy, Debug)]
pub enum BodyView<'a> {
    /// The body's bytes (empty when there is none).
    Read(&'a [u8]),
    /// A body that was not read: forward-auth never sees it.
    Unseen,
}

/// The body of a canonical request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CanonicalBody {
    /// None.
    Empty,
    /// A JSON object, as received: it was checked to have one reading.
    Json(Vec<u8>),
    /// A form, as its parameters.
    Form(Vec<(String, String)>),
    /// A body this reader did not see.
    Unseen,
}

/// A request with one reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalRequest {
    pub(crate) method: String,
    pub(crate) segments: Vec<String>,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: CanonicalBody,
    /// Every parameter of the body, decoded (JSON strings as their text).
    pub(crate) body_parameters: Vec<(String, String)>,
    pub(crate) token: Option<String>,
    pub(crate) referer: Option<String>,
    pub(crate) origin: Option<String>,
    /// Whether the request had a body, as far as the reader knows.
    pub(crate) presence: BodyPresence,
}

/// Characters kept as they are in a rebuilt path segment: unreserved
/// characters and the sub-delimiters that no router treats specially.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b';')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

fn is_hex(byte: u8) -> bool {
    byte.is_ascii_hexdigit()
}

/// Checks that every `%` in `text` starts a valid escape.
fn check_percent(text: &str) -> Result<(), Ambiguity> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if !(bytes.get(i + 1).copied().is_some_and(is_hex) && bytes.get(i + 2).copied().is_some_and(is_hex)) {
                return Err(Ambiguity::BadPercentEncoding);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Splits and decodes a path.
fn path_segments(path: &str) -> Result<Vec<String>, Ambiguity> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Ambiguity::NotAPath);
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    check_percent(rest)?;
    rest.split('/')
        .map(|raw| {
            // A raw backslash, or one encoded: Windows servers and some
            // routers read it as a separator.
            if raw.contains('\\') || raw.contains(';') {
                return Err(Ambiguity::PathCharacter);
            }
            let decoded = percent_decode(raw.as_bytes()).collect::<Vec<u8>>();
            let segment = String::from_utf8(decoded).map_err(|_| Ambiguity::InvalidUtf8)?;
            if segment.is_empty() {
                return Err(Ambiguity::EmptySegment);
            }
            if segment == "." || segment == ".." {
                return Err(Ambiguity::DotSegment);
            }
            if segment.chars().any(|c| matches!(c, '/' | '\\' | ';') || c.is_control()) {
                return Err(Ambiguity::PathCharacter);
            }
            Ok(segment)
        })
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text strictly: valid
/// percent-encoding, UTF-8, no control characters in names.
fn form_pairs(text: &str) -> Result<Vec<(String, String)>, Ambiguity> {
    check_percent(text)?;
    let mut pairs = Vec::new();
    for part in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let decode = |s: &str| {
            let plus = s.replace('+', " ");
            String::from_utf8(percent_decode(plus.as_bytes()).collect()).map_err(|_| Ambiguity::InvalidUtf8)
        };
        let name = decode(name)?;
        if name.chars().any(char::is_control) {
            return Err(Ambiguity::ControlCharacter);
        }
        pairs.push((name, decode(value)?));
    }
    Ok(pairs)
}

/// The sensitive parameter a name may be read as by some framework, and
/// whether it is spelt exactly so: `q` is `Some(("q", true))`; `Q`,
/// `q[]`, `q[0]` and, for `access_token`, `access.token` or `access token`
/// (which PHP turns into `access_token`) are `Some((…, false))`.
fn sensitive(name: &str) -> Option<(&'static str, bool)> {
    let base = name.split('[').next().unwrap_or(name);
    let folded: String =
        base.chars().map(|c| if matches!(c, '.' | ' ') { '_' } else { c.to_ascii_lowercase() }).collect();
    SENSITIVE_PARAMETERS
        .iter()
        .find(|candidate| **candidate == folded)
        .map(|candidate| (*candidate, *candidate == name))
}

/// Checks that each sensitive parameter appears at most once among
/// `pairs`, spelt exactly.
fn check_parameters<'a>(pairs: impl Iterator<Item = &'a str>) -> Result<(), Ambiguity> {
    let mut seen: Vec<&'static str> = Vec::new();
    for name in pairs {
        if let Some((parameter, exact)) = sensitive(name) {
            if !exact {
                return Err(Ambiguity::LookalikeParameter(parameter));
            }
            if seen.contains(&parameter) {
                return Err(Ambiguity::RepeatedParameter(parameter));
            }
            seen.push(parameter);
        }
    }
    Ok(())
}

/// One copy of a header, or an ambiguity.
fn single<'a>(values: &[&'a str], name: &'static str) -> Result<Option<&'a str>, Ambiguity> {
    match values {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(Ambiguity::RepeatedHeader(name)),
    }
}

/// A `Content-Type` value, parsed: the one parser of media types, for
/// the management API and for data API requests alike (each applies its
/// own policy to the result).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    /// `type/subtype`, in lower case.
    essence: String,
    /// The `charset` parameter, in lower case.
    charset: Option<String>,
    /// Whether it has parameters other than `charset`.
    other_parameters: bool,
}

impl MediaType {
    /// Parses `type/subtype[; name=value]…`; `None` for anything else.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let essence = parts.next()?.trim().to_ascii_lowercase();
        let (kind, subtype) = essence.split_once('/')?;
        let token =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
        if !token(kind) || !token(subtype) {
            return None;
        }
        let mut charset = None;
        let mut other_parameters = false;
        for parameter in parts {
            let (name, value) = parameter.split_once('=')?;
            if name.trim().eq_ignore_ascii_case("charset") && charset.is_none() {
                charset = Some(value.trim().trim_matches('"').to_ascii_lowercase());
            } else {
                other_parameters = true;
            }
        }
        Some(Self { essence, charset, other_parameters })
    }

    /// JSON or a JSON-based type (`application/…+json`).
    #[must_use]
    pub fn is_json_family(&self) -> bool {
        self.essence == "application/json"
            || (self.essence.starts_with("application/") && self.essence.ends_with("+json"))
    }
}

/// The format of a data API request's body: exactly JSON or a form, in
/// UTF-8, since frameworks differ on everything else (`+json`, other
/// charsets, parameters).
fn body_format(content_type: &str) -> Result<BodyFormat, Ambiguity> {
    let media = MediaType::parse(content_type).ok_or(Ambiguity::UnsupportedContentType)?;
    if media.other_parameters || media.charset.as_deref().is_some_and(|charset| charset != "utf-8") {
        return Err(Ambiguity::UnsupportedContentType);
    }
    match media.essence.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        "application/x-www-form-urlencoded" => Ok(BodyFormat::Form),
        _ => Err(Ambiguity::UnsupportedContentType),
    }
}

/// Methods that carry a body.
fn has_body(method: &str) -> bool {
    matches!(method, "POST" | "PUT" | "PATCH")
}

impl RequestHead {
    /// Reads a request's method, target (path and query, as received) and
    /// the headers that decide it.
    ///
    /// # Errors
    /// The [`Ambiguity`] found first.
    pub fn parse(
        method: &str,
        target: &str,
        headers: &DecidingHeaders<'_>,
        body: BodyPresence,
    ) -> Result<Self, Ambiguity> {
        if target.contains('#') {
            return Err(Ambiguity::Fragment);
        }
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let segments = path_segments(path)?;
        let query = match query {
            Some(query) if query.contains(';') => return Err(Ambiguity::QuerySemicolon),
            Some(query) => form_pairs(query)?,
            None => Vec::new(),
        };
        check_parameters(query.iter().map(|(name, _)| name.as_str()))?;
        if headers.method_override || query.iter().any(|(name, _)| name.eq_ignore_ascii_case("_method")) {
            return Err(Ambiguity::MethodOverride);
        }
        if body == BodyPresence::Present && !has_body(method) {
            return Err(Ambiguity::BodyOnBodylessMethod);
        }
        let authorization = single(&headers.authorization, "Authorization")?;
        let bearer = authorization.and_then(|value| {
            let (scheme, credential) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| credential.trim().to_owned())
        });
        // A bad Content-Type only matters when there is a body to read.
        let (content_type, content_type_error) = match single(&headers.content_type, "Content-Type") {
            Ok(Some(value)) => match body_format(value) {
                Ok(format) => (Some(format), None),
                Err(error) => (None, Some(error)),
            },
            Ok(None) => (None, None),
            Err(error) => (None, Some(error)),
        };
        Ok(Self {
            method: method.to_owned(),
            segments,
            query,
            bearer,
            content_type,
            content_type_error,
            referer: single(&headers.referer, "Referer")?.map(str::to_owned),
            origin: single(&headers.origin, "Origin")?.map(str::to_owned),
            body,
            client_ip: None,
        })
    }

    /// The same request, from the client at `client_ip` (`None`: not
    /// known, which a token restricted to addresses refuses).
    #[must_use]
    pub fn from_client(mut self, client_ip: Option<IpAddr>) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// The end client's address, when known.
    #[must_use]
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The method.
    #[must_use]
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The decoded path segments.
    #[must_use]
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether the request may have a body to read.
    #[must_use]
    pub fn body_presence(&self) -> BodyPresence {
        self.body
    }

    /// The token of the request so far (a token in a body is found later
    /// and makes the request ambiguous, since this one was seen first).
    ///
    /// # Errors
    /// [`Ambiguity::TwoTokens`] for one in `Authorization` and one in the
    /// query string.
    pub fn token(&self) -> Result<Option<&str>, Ambiguity> {
        let in_query = self.query.iter().find(|(name, _)| name == "access_token").map(|(_, value)| value.as_str());
        match (self.bearer.as_deref(), in_query) {
            (Some(_), Some(_)) => Err(Ambiguity::TwoTokens),
            (bearer, in_query) => Ok(bearer.or(in_query)),
        }
    }

    /// Adds the body and checks the whole request.
    ///
    /// # Errors
    /// The [`Ambiguity`] found first.
    pub fn with_body(self, body: BodyView<'_>) -> Result<CanonicalRequest, Ambiguity> {
        let (canonical_body, body_parameters) = match body {
            BodyView::Unseen => (CanonicalBody::Unseen, Vec::new()),
            BodyView::Read([]) => (CanonicalBody::Empty, Vec::new()),
            BodyView::Read(_) if !has_body(&self.method) => return Err(Ambiguity::BodyOnBodylessMethod),
            BodyView::Read(bytes) => {
                if let Some(error) = self.content_type_error.clone() {
                    return Err(error);
                }
                if bytes.starts_with(b"\xef\xbb\xbf") {
                    return Err(Ambiguity::ByteOrderMark);
                }
                match self.content_type {
                    None => return Err(Ambiguity::MissingContentType),
                    Some(BodyFormat::Json) => (CanonicalBody::Json(bytes.to_vec()), json_parameters(bytes)?),
                    Some(BodyFormat::Form) => {
                        let text = std::str::from_utf8(bytes).map_err(|_| Ambiguity::InvalidUtf8)?;
                        let pairs = form_pairs(text)?;
                        (CanonicalBody::Form(pairs.clone()), pairs)
                    }
                }
            }
        };
        // Each sensitive parameter once in URL and body together.
        check_parameters(self.query.iter().chain(&body_parameters).map(|(name, _)| name.as_str()))?;
        if body_parameters.iter().any(|(name, _)| name.eq_ignore_ascii_case("_method")) {
            return Err(Ambiguity::MethodOverride);
        }
        let token = match self.token()? {
            Some(_) if body_parameters.iter().any(|(name, _)| name == "access_token") => {
                return Err(Ambiguity::TwoTokens);
            }
            Some(token) => Some(token.to_owned()),
            None => body_parameters.iter().find(|(name, _)| name == "access_token").map(|(_, v)| v.clone()),
        };
        Ok(CanonicalRequest {
            method: self.method,
            segments: self.segments,
            query: self.query,
            body: canonical_body,
            body_parameters,
            token,
            referer: self.referer,
            origin: self.origin,
            presence: self.body,
        })
    }
}

/// The parameters of a JSON object body, with every check of SPEC §12:
/// valid, an object, no key twice at any depth, no trailing data; a
/// sensitive parameter must be a string.
fn json_parameters(bytes: &[u8]) -> Result<Vec<(String, String)>, Ambiguity> {
    let value: Strict = serde_json::from_slice(bytes).map_err(|error| {
        if error.to_string().starts_with(DUPLICATE) { Ambiguity::DuplicateJsonKey } else { Ambiguity::InvalidJson }
    })?;
    let Strict::Object(fields) = value else {
        return Err(Ambiguity::JsonNotAnObject);
    };
    fields
        .into_iter()
        .map(|(name, value)| match (sensitive(&name), value) {
            (_, Strict::String(text)) => Ok((name, text)),
            (Some((parameter, _)), _) => Err(Ambiguity::NotAString(parameter)),
            (None, _) => Ok((name, String::new())),
        })
        .collect()
}

/// The message a [`Strict`] object gives for a repeated key: the one place
/// where serde's error text is read, since serde_json offers no error
/// kind for a custom error.
const DUPLICATE: &str = "latchkey: duplicate key";

/// A JSON value that refuses objects with a key twice, at any depth, and
/// keeps only what the mapping reads: strings, and the fields of the top
/// object.
enum Strict {
    Object(Vec<(String, Strict)>),
    String(String),
    Other,
}

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Strict, E> {
        Ok(Strict::String(text.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Strict, E> {
        Ok(Strict::String(text))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict::Other)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict::Other)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict::Other)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict::Other)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Strict, E> {
        Ok(Strict::Other)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict::Other)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut fields: Vec<(String, Strict)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.iter().any(|(seen, _)| *seen == key) {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
            let value = map.next_value::<Strict>()?;
            fields.push((key, value));
        }
        Ok(Strict::Object(fields))
    }
}

impl CanonicalRequest {
    /// The method.
    #[must_use]
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, rebuilt from its decoded segments.
    #[must_use]
    pub fn path(&self) -> String {
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            path.extend(utf8_percent_encode(segment, SEGMENT));
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    /// The query string, re-encoded from the parameters, without
    /// `access_token` (the gateway passes identity in its own headers);
    /// `None` when nothing is left.
    #[must_use]
    pub fn query(&self) -> Option<String> {
        let mut serializer = url::form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (name, value) in self.query.iter().filter(|(name, _)| name != "access_token") {
            serializer.append_pair(name, value);
            any = true;
        }
        any.then(|| serializer.finish())
    }

    /// The body to forward: a JSON object as received, a form re-encoded
    /// without `access_token`, or nothing.
    #[must_use]
    pub fn body(&self) -> Option<(BodyFormat, Vec<u8>)> {
        match &self.body {
            CanonicalBody::Json(bytes) => Some((BodyFormat::Json, bytes.clone())),
            CanonicalBody::Form(pairs) => {
                let mut serializer = url::form_urlencoded::Serializer::new(String::new());
                for (name, value) in pairs.iter().filter(|(name, _)| name != "access_token") {
                    serializer.append_pair(name, value);
                }
                Some((BodyFormat::Form, serializer.finish().into_bytes()))
            }
            CanonicalBody::Empty | CanonicalBody::Unseen => None,
        }
    }

    /// The token value the request carries.
    #[must_use]
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}
