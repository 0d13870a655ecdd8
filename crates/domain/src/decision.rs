//! The authorization decision (SPEC §6): may this request, carrying this
//! token, proceed?

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::api::Api;
use crate::grant::kind_serves;
use crate::index::ConnectionGrants;
use crate::provider::Provider;
use crate::referer::{self, RefererDenial};
use crate::source::{self, SourceKind, TableKey};
use crate::sql::QueryKey;
use crate::timestamp::Timestamp;
use crate::token::Policy;

/// Why a request is refused, in the order the checks run: the first reason
/// that applies is the one reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DenyReason {
    /// The value is not in the token format; no storage was consulted.
    TokenMalformed,
    /// No such token, or it was deleted.
    TokenUnknown,
    /// The token is past its expiration date.
    TokenExpired,
    /// The token does not allow the requested API.
    ApiNotAllowed,
    /// The token is restricted to websites and the request names none.
    RefererMissing,
    /// The request's website is not one the token allows.
    RefererNotAllowed,
    /// The token is restricted to client addresses and the request's is
    /// unknown or not one of them.
    IpNotAllowed,
    /// The token has no grant on the requested connection.
    ConnectionNotGranted,
    /// No grant on the connection serves this API and source.
    SourceNotGranted,
}

impl DenyReason {
    /// Every reason, in the order the checks run.
    pub const ALL: [DenyReason; 9] = [
        DenyReason::TokenMalformed,
        DenyReason::TokenUnknown,
        DenyReason::TokenExpired,
        DenyReason::ApiNotAllowed,
        DenyReason::RefererMissing,
        DenyReason::RefererNotAllowed,
        DenyReason::IpNotAllowed,
        DenyReason::ConnectionNotGranted,
        DenyReason::SourceNotGranted,
    ];

    /// The reason's code on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            DenyReason::TokenMalformed => "token_malformed",
            DenyReason::TokenUnknown => "token_unknown",
            DenyReason::TokenExpired => "token_expired",
            DenyReason::ApiNotAllowed => "api_not_allowed",
            DenyReason::RefererMissing => "referer_missing",
            DenyReason::RefererNotAllowed => "referer_not_allowed",
            DenyReason::IpNotAllowed => "ip_not_allowed",
            DenyReason::ConnectionNotGranted => "connection_not_granted",
            DenyReason::SourceNotGranted => "source_not_granted",
        }
    }

    /// Whether the reason is about the token itself (it is not a token that
    /// works) rather than about what it was used for.
    #[must_use]
    pub const fn is_credential_failure(self) -> bool {
        matches!(self, DenyReason::TokenMalformed | DenyReason::TokenUnknown | DenyReason::TokenExpired)
    }
}

impl DenyReason {
    /// The reason in a sentence, for people (the code is [`Self::as_str`]).
    #[must_use]
    pub const fn message(self) -> &'static str {
        match self {
            DenyReason::TokenMalformed => "the request carries no latchkey token, or not a well-formed one",
            DenyReason::TokenUnknown => "the token does not exist here (it may have been deleted)",
            DenyReason::TokenExpired => "the token has expired",
            DenyReason::ApiNotAllowed => "the token does not allow this API",
            DenyReason::RefererMissing => "the token is restricted to websites and the request names none",
            DenyReason::RefererNotAllowed => "the token does not allow requests from this website",
            DenyReason::IpNotAllowed => "the token does not allow requests from this client address",
            DenyReason::ConnectionNotGranted => "the token has no grant on this connection",
            DenyReason::SourceNotGranted => "the token does not grant this source to this API",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of source a request reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceType {
    /// A table (for `imports`, the destination).
    Table,
    /// A tileset: named like a table.
    Tileset,
    /// An SQL query.
    Query,
}

impl SourceType {
    /// Every source type.
    pub const ALL: [SourceType; 3] = [SourceType::Table, SourceType::Tileset, SourceType::Query];

    /// The type's name on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            SourceType::Table => "table",
            SourceType::Tileset => "tileset",
            SourceType::Query => "query",
        }
    }
}

/// The name is not a source type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source type; expected one of table, tileset, query")]
pub struct UnknownSourceType;

impl FromStr for SourceType {
    type Err = UnknownSourceType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        SourceType::ALL.into_iter().find(|t| t.as_str() == name).ok_or(UnknownSourceType)
    }
}

/// The data a request touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The connection's name, as sent (it may name no connection at all).
    pub connection: &'a str,
    /// What kind of source `source` is.
    pub source_type: SourceType,
    /// The table or tileset name, or the SQL text.
    pub source: &'a str,
}

/// A request to a data API, as far as the decision needs it.
///
/// Invariant: the scope is `Nothing` exactly when the API is `lds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessRequest<'a> {
    api: Api,
    scope: Scope<'a>,
    referer: Option<&'a str>,
    origin: Option<&'a str>,
    client_ip: Option<IpAddr>,
}

/// What data a request touches, as far as can be seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope<'a> {
    /// No data source (`lds`).
    Nothing,
    /// This source.
    Source(Target<'a>),
    /// Some source of this connection, in a part of the request that was not
    /// read (a body behind a proxy that only forwards headers). Only a grant
    /// of every source can allow it.
    Unseen { connection: &'a str },
}

/// A request to an API other than `lds` that does not say what it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a request to the {0} API needs connection_name, source_type and source")]
pub struct MissingTarget(pub Api);

impl<'a> AccessRequest<'a> {
    /// Describes a request. For `lds` any target is ignored: that API reads
    /// no data source.
    ///
    /// # Errors
    /// [`MissingTarget`] when another API comes without a target.
    pub fn new(
        api: Api,
        target: Option<Target<'a>>,
        referer: Option<&'a str>,
        origin: Option<&'a str>,
    ) -> Result<Self, MissingTarget> {
        let scope = match api {
            Api::Lds => Scope::Nothing,
            _ => Scope::Source(target.ok_or(MissingTarget(api))?),
        };
        Ok(Self { api, scope, referer, origin, client_ip: None })
    }

    /// Describes a request whose source could not be seen, on `connection`
    /// (for `lds`, a request that needs no source).
    #[must_use]
    pub fn unseen_source(api: Api, connection: &'a str, referer: Option<&'a str>, origin: Option<&'a str>) -> Self {
        let scope = match api {
            Api::Lds => Scope::Nothing,
            _ => Scope::Unseen { connection },
        };
        Self { api, scope, referer, origin, client_ip: None }
    }

    /// The same request, made from `client_ip` (`None`: not known, which a
    /// token restricted to addresses refuses).
    #[must_use]
    pub fn from_client(mut self, client_ip: Option<IpAddr>) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// The client's address, when known.
    #[must_use]
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }

    /// The API the request is for.
    #[must_use]
    pub fn api(&self) -> Api {
        self.api
    }

    /// The data the request touches; `None` for `lds` and for a source
    /// that was not seen.
    #[must_use]
    pub fn target(&self) -> Option<Target<'a>> {
        match self.scope {
            Scope::Source(target) => Some(target),
            Scope::Nothing | Scope::Unseen { .. } => None,
        }
    }
}

/// The kinds of grant that could match a request for a source of type
/// `source_type`: names are matched by table, pattern and all-sources
/// grants, queries by query and all-sources grants. For `imports` the
/// destination is a table (SPEC §6). Which of these serve `api` is SPEC
/// §3, [`kind_serves`], the one place it is written.
fn candidate_kinds(api: Api, source_type: SourceType) -> &'static [SourceKind] {
    match (api, source_type) {
        (Api::Imports, SourceType::Tileset | SourceType::Query) => &[],
        (_, SourceType::Table | SourceType::Tileset) => &[SourceKind::All, SourceKind::Table, SourceKind::Pattern],
        (_, SourceType::Query) => &[SourceKind::All, SourceKind::Query],
    }
}

/// Whether the grants on one connection (for one provider) let `api` use
/// `source` of type `source_type` (SPEC §2, §3). Every check is a lookup but
/// patterns, which are few; a query is lexed only when its text is not
/// exactly a grant's.
fn grants_allow(
    grants: &ConnectionGrants,
    provider: Provider,
    api: Api,
    source_type: SourceType,
    source: &str,
) -> bool {
    let mut table: Option<Option<TableKey>> = None;
    candidate_kinds(api, source_type).iter().filter(|kind| kind_serves(**kind, api)).any(|kind| match kind {
        SourceKind::All => grants.all_sources,
        SourceKind::Table | SourceKind::Pattern => {
            let (tables, patterns) = (!grants.tables.is_empty(), !grants.patterns.is_empty());
            if (*kind == SourceKind::Table && !tables) || (*kind == SourceKind::Pattern && !patterns) {
                return false;
            }
            // The requested name is parsed once for both kinds.
            let key = table.get_or_insert_with(|| TableKey::parse(source, provider));
            key.as_ref().is_some_and(|key| match kind {
                SourceKind::Table => grants.tables.contains(key),
                _ => grants.patterns.iter().any(|pattern| pattern.matches(key)),
            })
        }
        SourceKind::Query => {
            if grants.queries.is_empty() {
                return false;
            }
            // The same bytes are the same statement: the grant's text was
            // lexed (and passed every check) when it was made.
            let text = source::trim(source);
            if grants.query_texts.contains(text) {
                return true;
            }
            // A query that cannot be read with certainty is never granted.
            QueryKey::new(text, provider).is_ok_and(|key| grants.queries.contains(&key))
        }
    })
}

/// Decides a request made with a token of `policy` at `now`.
///
/// The token's format and existence (the first two reasons) are the
/// caller's to check, since they come before the policy is known; this
/// function checks the rest, in order, and reports the first that fails.
///
/// # Errors
/// The [`DenyReason`] that refuses the request.
pub fn decide(policy: &Policy, request: &AccessRequest<'_>, now: Timestamp) -> Result<(), DenyReason> {
    if policy.expiration().is_some_and(|expiration| now >= expiration) {
        return Err(DenyReason::TokenExpired);
    }
    if !policy.apis().contains(request.api) {
        return Err(DenyReason::ApiNotAllowed);
    }
    referer::check(policy.referers(), request.referer, request.origin).map_err(|denial| match denial {
        RefererDenial::Missing => DenyReason::RefererMissing,
        RefererDenial::NotAllowed => DenyReason::RefererNotAllowed,
    })?;
    if !policy.allowed_ips().allows(request.client_ip) {
        return Err(DenyReason::IpNotAllowed);
    }
    let (connection, target) = match request.scope {
        Scope::Nothing => return Ok(()),
        Scope::Source(target) => (target.connection, Some(target)),
        Scope::Unseen { connection } => (connection, None),
    };
    let on_connection = policy.index().connection(connection).ok_or(DenyReason::ConnectionNotGranted)?;
    let allowed = on_connection.iter().any(|(provider, grants)| match target {
        Some(target) => grants_allow(grants, *provider, request.api, target.source_type, target.source),
        None => grants.all_sources && kind_serves(SourceKind::All, request.api),
    });
    if allowed { Ok(()) } else { Err(DenyReason::SourceNotGranted) }
}
