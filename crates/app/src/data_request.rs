//! Mapping a request aimed at a data API to the question of SPEC §6: which
//! token, which API, which source. This is what lets latchkey protect a data
//! API that does not call `/v3/authorize` itself: a reverse proxy asks
//! (forward-auth), or latchkey stands in front as a gateway.
//!
//! The URL shapes are CARTO's:
//!
//! | request | API, source |
//! |---|---|
//! | `GET\|POST /v3/sql/{connection}/query` (`q`) | `sql`, query |
//! | `POST /v3/sql/{connection}/job` (`query` or `q` in the body) | `sql`, query |
//! | `GET\|POST /v3/maps/{connection}/table` (`name`) | `maps`, table |
//! | `GET\|POST /v3/maps/{connection}/tileset` (`name`) | `maps`, tileset |
//! | `GET\|POST /v3/maps/{connection}/query` (`q`) | `maps`, query |
//! | `/v3/lds/…` | `lds` |
//! | `POST /v3/imports` (`connection`, `destination` in the body) | `imports`, table |
//!
//! Parameters come from the query string, or for POST from a JSON object or
//! form body (clients switch to POST when a query makes the URL too long).
//! The token comes from `Authorization: Bearer …` or an `access_token`
//! query parameter. Anything else is not a data API request and is refused.

use latchkey_domain::{AccessRequest, Api, SourceType, Target};

/// What the mapping may read of a request.
#[derive(Clone, Copy, Debug)]
pub struct DataRequest<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The path, percent-encoded, without the query.
    pub path: &'a str,
    /// The query string, without `?`.
    pub query: Option<&'a str>,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Referer` header.
    pub referer: Option<&'a str>,
    /// The `Origin` header.
    pub origin: Option<&'a str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The body, if it was read.
    pub body: Body<'a>,
}

/// A request's body, as far as the caller has it.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    /// The body was read (possibly empty).
    Read(&'a [u8]),
    /// The body exists but was not read: a proxy that asks before
    /// forwarding sends only headers.
    Unread,
}

/// Why a request cannot be mapped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// Not one of the data API requests latchkey knows.
    #[error("not a request to a data API that latchkey knows")]
    UnknownRequest,
    /// A known request without the parameter that names its source.
    #[error("the request has no `{0}` parameter")]
    MissingParameter(&'static str),
}

/// Where the source of a mapped request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MappedSource {
    /// `lds`: no source.
    None,
    /// This source.
    Named {
        /// Table, tileset or query.
        source_type: SourceType,
        /// The name or SQL text.
        source: String,
    },
    /// In a body that was not read.
    Unseen,
}

/// A data API request, mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedRequest {
    /// The token value the request carries, if any.
    pub token: Option<String>,
    /// The API.
    pub api: Api,
    /// The connection (empty for `lds`).
    pub connection: String,
    /// The source.
    pub source: MappedSource,
    /// The `Referer` header.
    pub referer: Option<String>,
    /// The `Origin` header.
    pub origin: Option<String>,
}

impl MappedRequest {
    /// The question for the decision.
    #[must_use]
    pub fn access_request(&self) -> AccessRequest<'_> {
        let (referer, origin) = (self.referer.as_deref(), self.origin.as_deref());
        match &self.source {
            MappedSource::Named { source_type, source } => {
                let target = Target { connection: &self.connection, source_type: *source_type, source };
                AccessRequest::new(self.api, Some(target), referer, origin)
                    .unwrap_or_else(|_| AccessRequest::unseen_source(self.api, &self.connection, referer, origin))
            }
            MappedSource::None | MappedSource::Unseen => {
                AccessRequest::unseen_source(self.api, &self.connection, referer, origin)
            }
        }
    }
}

/// The parameters of a request: query string and, when read, body.
struct Parameters {
    query: Vec<(String, String)>,
    body: BodyParameters,
}

enum BodyParameters {
    None,
    Unread,
    Pairs(Vec<(String, String)>),
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .is_some_and(|c| c.eq_ignore_ascii_case("application/json") || c.to_ascii_lowercase().ends_with("+json"))
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .is_some_and(|c| c.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

/// A JSON object's string fields (other values as their JSON text: a
/// `queryParameters` object is not a source and is never compared).
fn json_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => (key, text),
                other => (key, other.to_string()),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

impl Parameters {
    fn of(request: &DataRequest<'_>) -> Self {
        let query = request.query.map(|q| form_pairs(q.as_bytes())).unwrap_or_default();
        let body = match request.body {
            Body::Unread => BodyParameters::Unread,
            Body::Read([]) => BodyParameters::None,
            Body::Read(bytes) if is_json(request.content_type) => BodyParameters::Pairs(json_pairs(bytes)),
            Body::Read(bytes) if is_form(request.content_type) => BodyParameters::Pairs(form_pairs(bytes)),
            Body::Read(_) => BodyParameters::None,
        };
        Self { query, body }
    }

    /// The first of `names` found: in the body when there is one (a POST
    /// puts its parameters there), else in the query string.
    fn find(&self, names: &[&'static str]) -> Lookup {
        let find_in = |pairs: &[(String, String)]| {
            names.iter().find_map(|name| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone()))
        };
        if let BodyParameters::Pairs(pairs) = &self.body
            && let Some(found) = find_in(pairs)
        {
            return Lookup::Found(found);
        }
        if let Some(found) = find_in(&self.query) {
            return Lookup::Found(found);
        }
        match self.body {
            BodyParameters::Unread => Lookup::MaybeInBody,
            _ => Lookup::Missing,
        }
    }

    fn token(&self, authorization: Option<&str>) -> Option<String> {
        let bearer = authorization.and_then(|value| {
            let (scheme, credential) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| credential.trim().to_owned())
        });
        bearer.or_else(|| self.query.iter().find(|(key, _)| key == "access_token").map(|(_, value)| value.clone()))
    }
}

enum Lookup {
    Found(String),
    MaybeInBody,
    Missing,
}

/// The decoded segments of a path.
fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// Whether the source of `method path` may be in the body, so that a
/// gateway should read the body before deciding.
#[must_use]
pub fn source_may_be_in_body(method: &str, path: &str) -> bool {
    method.eq_ignore_ascii_case("POST") && !matches!(segments(path).get(1).map(String::as_str), Some("lds"))
}

/// Maps a data API request to the decision's question.
///
/// # Errors
/// [`MappingError`] for anything that is not a known data API request, or
/// that lacks the parameter naming its source.
pub fn map_request(request: &DataRequest<'_>) -> Result<MappedRequest, MappingError> {
    let parameters = Parameters::of(request);
    let segments = segments(request.path);
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let get_or_post = request.method.eq_ignore_ascii_case("GET") || request.method.eq_ignore_ascii_case("POST");
    let post = request.method.eq_ignore_ascii_case("POST");
    let named = |api, connection: &str, source_type, names: &[&'static str]| -> Result<MappedRequest, MappingError> {
        let source = match parameters.find(names) {
            Lookup::Found(source) => MappedSource::Named { source_type, source },
            Lookup::MaybeInBody => MappedSource::Unseen,
            Lookup::Missing => return Err(MappingError::MissingParameter(names[0])),
        };
        Ok(MappedRequest { token: None, api, connection: connection.to_owned(), source, referer: None, origin: None })
    };
    let mut mapped = match parts.as_slice() {
        ["v3", "sql", connection, "query"] if get_or_post => named(Api::Sql, connection, SourceType::Query, &["q"])?,
        ["v3", "sql", connection, "job"] if post => named(Api::Sql, connection, SourceType::Query, &["query", "q"])?,
        ["v3", "maps", connection, "table"] if get_or_post => {
            named(Api::Maps, connection, SourceType::Table, &["name"])?
        }
        ["v3", "maps", connection, "tileset"] if get_or_post => {
            named(Api::Maps, connection, SourceType::Tileset, &["name"])?
        }
        ["v3", "maps", connection, "query"] if get_or_post => named(Api::Maps, connection, SourceType::Query, &["q"])?,
        ["v3", "lds", ..] => MappedRequest {
            token: None,
            api: Api::Lds,
            connection: String::new(),
            source: MappedSource::None,
            referer: None,
            origin: None,
        },
        ["v3", "imports"] if post => match (parameters.find(&["connection"]), parameters.find(&["destination"])) {
            (Lookup::Found(connection), Lookup::Found(destination)) => MappedRequest {
                token: None,
                api: Api::Imports,
                connection,
                source: MappedSource::Named { source_type: SourceType::Table, source: destination },
                referer: None,
                origin: None,
            },
            // The connection is in the body too: without it nothing can be
            // granted, and the decision refuses.
            (Lookup::MaybeInBody, _) | (_, Lookup::MaybeInBody) => MappedRequest {
                token: None,
                api: Api::Imports,
                connection: String::new(),
                source: MappedSource::Unseen,
                referer: None,
                origin: None,
            },
            (Lookup::Missing, _) => return Err(MappingError::MissingParameter("connection")),
            (_, Lookup::Missing) => return Err(MappingError::MissingParameter("destination")),
        },
        _ => return Err(MappingError::UnknownRequest),
    };
    mapped.token = parameters.token(request.authorization);
    mapped.referer = request.referer.map(str::to_owned);
    mapped.origin = request.origin.map(str::to_owned);
    Ok(mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(method: &'a str, path: &'a str, query: Option<&'a str>, body: Body<'a>) -> DataRequest<'a> {
        DataRequest {
            method,
            path,
            query,
            authorization: Some("Bearer latchkey_tk_x"),
            referer: Some("https://app.example.com/"),
            origin: None,
            content_type: Some("application/json"),
            body,
        }
    }

    fn named(api: Api, connection: &str, source_type: SourceType, source: &str) -> (Api, String, MappedSource) {
        (api, connection.to_owned(), MappedSource::Named { source_type, source: source.to_owned() })
    }

    fn essence(mapped: &MappedRequest) -> (Api, String, MappedSource) {
        (mapped.api, mapped.connection.clone(), mapped.source.clone())
    }

    #[test]
    fn carto_url_shapes() {
        let json = br#"{"q": "SELECT 2", "queryParameters": {"a": 1}}"#;
        let cases: Vec<(DataRequest<'_>, (Api, String, MappedSource))> = vec![
            (
                request("GET", "/v3/sql/dw/query", Some("q=SELECT%201&queryParameters=%7B%7D"), Body::Read(b"")),
                named(Api::Sql, "dw", SourceType::Query, "SELECT 1"),
            ),
            (
                request("POST", "/v3/sql/dw/query", None, Body::Read(json)),
                named(Api::Sql, "dw", SourceType::Query, "SELECT 2"),
            ),
            (
                request("POST", "/v3/sql/dw/job", None, Body::Read(br#"{"query": "SELECT 3"}"#)),
                named(Api::Sql, "dw", SourceType::Query, "SELECT 3"),
            ),
            (
                request("GET", "/v3/maps/dw/table", Some("name=p.d.t&format=tilejson"), Body::Read(b"")),
                named(Api::Maps, "dw", SourceType::Table, "p.d.t"),
            ),
            (
                request("GET", "/v3/maps/dw/tileset", Some("name=p.d.tiles"), Body::Read(b"")),
                named(Api::Maps, "dw", SourceType::Tileset, "p.d.tiles"),
            ),
            (
                request("POST", "/v3/maps/dw/query", None, Body::Read(br#"{"q": "SELECT geom FROM t"}"#)),
                named(Api::Maps, "dw", SourceType::Query, "SELECT geom FROM t"),
            ),
            (
                request(
                    "POST",
                    "/v3/imports",
                    None,
                    Body::Read(br#"{"connection": "dw", "destination": "p.d.new", "url": "https://x/file.csv"}"#),
                ),
                named(Api::Imports, "dw", SourceType::Table, "p.d.new"),
            ),
            (
                request("GET", "/v3/lds/geocoding/geocode", Some("address=x"), Body::Read(b"")),
                (Api::Lds, String::new(), MappedSource::None),
            ),
            (
                request("GET", "/v3/maps/my%2Dconn/table", Some("name=a.b%20c.d"), Body::Read(b"")),
                named(Api::Maps, "my-conn", SourceType::Table, "a.b c.d"),
            ),
        ];
        for (request, expected) in cases {
            let mapped = map_request(&request).unwrap_or_else(|e| panic!("{} {}: {e}", request.method, request.path));
            assert_eq!(essence(&mapped), expected, "{} {}", request.method, request.path);
            assert_eq!(mapped.token.as_deref(), Some("latchkey_tk_x"));
            assert_eq!(mapped.referer.as_deref(), Some("https://app.example.com/"));
        }
    }

    #[test]
    fn form_bodies_and_access_token_parameters() {
        let mut form =
            request("POST", "/v3/sql/dw/query", Some("access_token=latchkey_tk_y"), Body::Read(b"q=SELECT+1"));
        form.content_type = Some("application/x-www-form-urlencoded");
        form.authorization = None;
        let mapped = map_request(&form).unwrap();
        assert_eq!(essence(&mapped), named(Api::Sql, "dw", SourceType::Query, "SELECT 1"));
        assert_eq!(mapped.token.as_deref(), Some("latchkey_tk_y"));
    }

    #[test]
    fn sources_in_unread_bodies_are_unseen() {
        let unread = request("POST", "/v3/sql/dw/query", None, Body::Unread);
        assert_eq!(map_request(&unread).unwrap().source, MappedSource::Unseen);
        let in_url = request("POST", "/v3/sql/dw/query", Some("q=SELECT+1"), Body::Unread);
        assert_eq!(
            map_request(&in_url).unwrap().source,
            MappedSource::Named { source_type: SourceType::Query, source: "SELECT 1".into() }
        );
        let imports = request("POST", "/v3/imports", None, Body::Unread);
        let mapped = map_request(&imports).unwrap();
        assert_eq!((mapped.api, mapped.connection.as_str(), &mapped.source), (Api::Imports, "", &MappedSource::Unseen));
    }

    #[test]
    fn unknown_shapes_and_missing_parameters_are_refused() {
        let unknown = [
            ("GET", "/v3/tokens"),
            ("GET", "/v3/sql/dw/other"),
            ("DELETE", "/v3/sql/dw/query"),
            ("GET", "/v3/sql/dw/job"),
            ("GET", "/v3/imports"),
            ("GET", "/v2/sql/dw/query"),
            ("GET", "/"),
            ("GET", "/v3/maps/dw/table/extra"),
        ];
        for (method, path) in unknown {
            let mapped = map_request(&request(method, path, Some("q=x&name=y"), Body::Read(b"")));
            assert_eq!(mapped, Err(MappingError::UnknownRequest), "{method} {path}");
        }
        let missing = request("GET", "/v3/maps/dw/table", Some("format=json"), Body::Read(b""));
        assert_eq!(map_request(&missing), Err(MappingError::MissingParameter("name")));
        let bad_json = request("POST", "/v3/sql/dw/query", None, Body::Read(b"{not json"));
        assert_eq!(map_request(&bad_json), Err(MappingError::MissingParameter("q")));
    }

    #[test]
    fn only_posts_outside_lds_may_carry_their_source_in_the_body() {
        assert!(source_may_be_in_body("POST", "/v3/sql/dw/query"));
        assert!(source_may_be_in_body("POST", "/v3/imports"));
        assert!(!source_may_be_in_body("GET", "/v3/sql/dw/query"));
        assert!(!source_may_be_in_body("POST", "/v3/lds/geocode"));
    }
}
