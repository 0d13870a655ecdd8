//! An index of a policy's grants for the decision: the grants of each
//! connection sorted by what they match, so that deciding looks keys up
//! instead of walking every grant. A token with a hundred table grants is
//! decided as fast as a token with one.

use std::collections::{HashMap, HashSet};

use crate::grant::Grant;
use crate::provider::Provider;
use crate::source::{Matcher, PatternKey, TableKey};
use crate::sql::QueryKey;

/// The grants on one connection (for one provider: grants made on a
/// connection all saw its one provider).
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionGrants {
    pub(crate) all_sources: bool,
    pub(crate) tables: HashSet<TableKey>,
    pub(crate) patterns: Vec<PatternKey>,
    /// Query grants by their text as written (the same text is the same
    /// statement, and needs no lexing) and by key.
    pub(crate) query_texts: HashSet<String>,
    pub(crate) queries: HashSet<QueryKey>,
}

/// Grants by connection name, then by provider.
#[derive(Clone, Debug, Default)]
pub(crate) struct GrantIndex {
    connections: HashMap<String, Vec<(Provider, ConnectionGrants)>>,
}

impl GrantIndex {
    pub(crate) fn new(grants: &[Grant]) -> Self {
        let mut index = Self::default();
        for grant in grants {
            let per_provider = index.connections.entry(grant.connection().as_str().to_owned()).or_default();
            let position = match per_provider.iter().position(|(p, _)| *p == grant.provider()) {
                Some(position) => position,
                None => {
                    per_provider.push((grant.provider(), ConnectionGrants::default()));
                    per_provider.len() - 1
                }
            };
            let entry = &mut per_provider[position].1;
            match grant.source().matcher() {
                Matcher::All => entry.all_sources = true,
                Matcher::Table(key) => {
                    entry.tables.insert(key.clone());
                }
                Matcher::Pattern(key) => entry.patterns.push(key.clone()),
                Matcher::Query { key, .. } => {
                    entry.query_texts.insert(grant.source().text().to_owned());
                    entry.queries.insert(key.clone());
                }
            }
        }
        index
    }

    /// The grants on `connection`, by provider; `None` without any.
    pub(crate) fn connection(&self, connection: &str) -> Option<&[(Provider, ConnectionGrants)]> {
        self.connections.get(connection).map(Vec::as_slice)
    }
}
