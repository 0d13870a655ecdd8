//! Grants: a source reachable through a named connection, and which APIs
//! each kind of grant serves (SPEC §3).

use crate::api::Api;
use crate::names::ConnectionName;
use crate::provider::Provider;
use crate::source::{Source, SourceError, SourceKind};

/// Whether a grant of `kind` serves `api` (SPEC §3).
///
/// `lds` needs no grant, so no grant serves it: a grant made only for `lds`
/// would be a grant nothing uses. A table grant does not serve `sql`, because
/// it names data, not the queries that may run over it.
#[must_use]
pub const fn kind_serves(kind: SourceKind, api: Api) -> bool {
    matches!(
        (kind, api),
        (SourceKind::All, Api::Sql | Api::Maps | Api::Imports)
            | (SourceKind::Table | SourceKind::Pattern, Api::Maps | Api::Imports)
            | (SourceKind::Query, Api::Sql | Api::Maps)
    )
}

/// A data source reachable through one connection.
///
/// Invariant: `source` was classified and bound with `provider`, the
/// provider of `connection` when the grant was made.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Grant {
    connection: ConnectionName,
    provider: Provider,
    source: Source,
}

impl Grant {
    /// Makes a grant for `source` on `connection`, whose provider is
    /// `provider`.
    ///
    /// # Errors
    /// [`SourceError`] when the source breaks V6.
    pub fn new(connection: ConnectionName, provider: Provider, source: &str) -> Result<Self, SourceError> {
        let source = Source::new(source, provider)?;
        Ok(Self { connection, provider, source })
    }

    /// Rebuilds a stored grant, with whether its query parsed when it was
    /// made (see [`Source::restore`]).
    ///
    /// # Errors
    /// [`SourceError`] when the stored source no longer holds V6.
    pub fn restore(
        connection: ConnectionName,
        provider: Provider,
        source: &str,
        parsed: bool,
    ) -> Result<Self, SourceError> {
        let source = Source::restore(source, provider, parsed)?;
        Ok(Self { connection, provider, source })
    }

    /// The connection the source is reached through.
    #[must_use]
    pub fn connection(&self) -> &ConnectionName {
        &self.connection
    }

    /// The provider of the connection.
    #[must_use]
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The granted source.
    #[must_use]
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Whether this grant serves `api` (SPEC §3).
    #[must_use]
    pub fn serves(&self, api: Api) -> bool {
        kind_serves(self.source.kind(), api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §3, cell by cell.
    #[test]
    fn which_grant_serves_which_api() {
        use Api::*;
        use SourceKind::*;
        let table: &[(SourceKind, [(Api, bool); 4])] = &[
            (All, [(Sql, true), (Maps, true), (Imports, true), (Lds, false)]),
            (Table, [(Sql, false), (Maps, true), (Imports, true), (Lds, false)]),
            (Pattern, [(Sql, false), (Maps, true), (Imports, true), (Lds, false)]),
            (Query, [(Sql, true), (Maps, true), (Imports, false), (Lds, false)]),
        ];
        for (kind, row) in table {
            for (api, expected) in row {
                assert_eq!(kind_serves(*kind, *api), *expected, "{kind:?} serves {api}?");
            }
        }
    }

    #[test]
    fn grants_classify_their_source() {
        let conn = ConnectionName::new("carto_dw").unwrap();
        let grant = Grant::new(conn.clone(), Provider::CartoDw, "p.d.t").unwrap();
        assert_eq!(grant.source().kind(), SourceKind::Table);
        assert!(grant.serves(Api::Maps) && !grant.serves(Api::Sql));
        assert_eq!(Grant::new(conn, Provider::CartoDw, "p.*"), Err(SourceError::PatternTooBroad));
    }
}
