//! From a canonical request to the question of SPEC §6, in CARTO's URL
//! shapes:
//!
//! | request | API, source |
//! |---|---|
//! | `GET\|POST /v3/sql/{connection}/query` (`q`) | `sql`, query |
//! | `POST /v3/sql/{connection}/job` (`query` or `q`) | `sql`, query |
//! | `GET\|POST /v3/maps/{connection}/table` (`name`) | `maps`, table |
//! | `GET\|POST /v3/maps/{connection}/tileset` (`name`) | `maps`, tileset |
//! | `GET\|POST /v3/maps/{connection}/query` (`q`) | `maps`, query |
//! | any method `/v3/lds/…` | `lds` |
//! | `POST /v3/imports` (`connection`, `destination`) | `imports`, table |
//!
//! Parameters come from the query string or, for a POST, a JSON object or
//! form body; [`super::request`] has made sure each is there once.

use latchkey_domain::{AccessRequest, Api, SourceType, Target};

use super::request::{Ambiguity, BodyPresence, CanonicalBody, CanonicalRequest};

/// Why a request is not a data API request latchkey can decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmappable {
    /// Not one of the shapes above.
    UnknownRequest,
    /// A known shape without the parameter that names its source.
    MissingParameter(&'static str),
    /// A request two readers could read differently.
    Ambiguous(Ambiguity),
}

impl From<Ambiguity> for Unmappable {
    fn from(ambiguity: Ambiguity) -> Self {
        Unmappable::Ambiguous(ambiguity)
    }
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
    /// In a body that was not seen.
    Unseen,
}

/// A data API request, mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappedRequest {
    /// The API.
    pub api: Api,
    /// The connection (empty for `lds`, and for an import whose body was
    /// not seen).
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

/// A request shape: what its method and path say before any parameter is
/// read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    api: Api,
    /// The connection from the path (empty for `lds` and `imports`).
    connection: String,
    /// The source's type and the parameters that may name it, in order.
    source: Option<(SourceType, &'static [&'static str])>,
    post: bool,
}

impl Route {
    /// The shape of `method` on `segments`.
    ///
    /// # Errors
    /// [`Unmappable::UnknownRequest`] for anything else.
    pub fn of(method: &str, segments: &[String]) -> Result<Self, Unmappable> {
        let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
        // Methods are case-sensitive: `get` is not GET to a router.
        let get = method == "GET";
        let post = method == "POST";
        let route = |api, connection: &str, source| Route { api, connection: connection.to_owned(), source, post };
        Ok(match parts.as_slice() {
            ["v3", "sql", connection, "query"] if get || post => {
                route(Api::Sql, connection, Some((SourceType::Query, &["q"])))
            }
            ["v3", "sql", connection, "job"] if post => {
                route(Api::Sql, connection, Some((SourceType::Query, &["query", "q"])))
            }
            ["v3", "maps", connection, "table"] if get || post => {
                route(Api::Maps, connection, Some((SourceType::Table, &["name"])))
            }
            ["v3", "maps", connection, "tileset"] if get || post => {
                route(Api::Maps, connection, Some((SourceType::Tileset, &["name"])))
            }
            ["v3", "maps", connection, "query"] if get || post => {
                route(Api::Maps, connection, Some((SourceType::Query, &["q"])))
            }
            ["v3", "lds", _, ..] => route(Api::Lds, "", None),
            ["v3", "imports"] if post => route(Api::Imports, "", Some((SourceType::Table, &["destination"]))),
            _ => return Err(Unmappable::UnknownRequest),
        })
    }

    /// The API.
    #[must_use]
    pub fn api(&self) -> Api {
        self.api
    }

    /// Whether the source may be in the body, so that a gateway must read
    /// it, and forward-auth, which cannot, must decide as if the source
    /// were unseen.
    #[must_use]
    pub fn reads_body(&self) -> bool {
        self.post && self.api != Api::Lds
    }

    /// Maps `request`, which has this route's method and path.
    ///
    /// # Errors
    /// [`Unmappable::MissingParameter`] when the source is named nowhere;
    /// [`Unmappable::Ambiguous`] when it is named twice (as `query` and
    /// `q` of a job).
    pub fn map(&self, request: &CanonicalRequest) -> Result<MappedRequest, Unmappable> {
        let find = |name: &str| {
            request.query.iter().chain(&request.body_parameters).find(|(key, _)| key == name).map(|(_, v)| v.clone())
        };
        // A body that may hold the source was not seen: whatever the URL
        // says, the source is unknown. That is every request with a
        // source whose body this reader did not read, unless the proxy
        // said there was none.
        let unseen = request.body == CanonicalBody::Unseen && request.presence != BodyPresence::Absent;
        let mut connection = self.connection.clone();
        let source = match self.source {
            None => MappedSource::None,
            Some(_) if unseen => MappedSource::Unseen,
            Some((source_type, names)) => {
                let found: Vec<String> = names.iter().filter_map(|name| find(name)).collect();
                match found.as_slice() {
                    [source] => MappedSource::Named { source_type, source: source.clone() },
                    [] => return Err(Unmappable::MissingParameter(names[0])),
                    [_, ..] => return Err(Unmappable::Ambiguous(Ambiguity::RepeatedParameter(names[0]))),
                }
            }
        };
        if self.api == Api::Imports {
            connection = match (unseen, find("connection")) {
                (true, _) => String::new(),
                (false, Some(connection)) => connection,
                (false, None) => return Err(Unmappable::MissingParameter("connection")),
            };
        }
        Ok(MappedRequest {
            api: self.api,
            connection,
            source,
            referer: request.referer.clone(),
            origin: request.origin.clone(),
        })
    }
}
