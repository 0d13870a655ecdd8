//! The decision scenarios the benchmarks measure, as latchkey policies.
//! The same scenarios are written for Cedar and Casbin in the benchmark
//! itself; see `docs/benchmarks.md`.
//!
//! Every scenario puts the grant that decides last, so that a token with N
//! grants is measured at its worst: the whole list is looked at.

use latchkey_domain::{AccessRequest, Api, Policy, Provider, SourceType, Target};

/// What a scenario asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// A table grant matches (Maps API, table request).
    TableHit,
    /// A query grant matches by key: the request is the granted query with
    /// other keyword case, layout and a comment (SQL API), so it is lexed.
    QueryHit,
    /// A query grant matches a request that differs only in layout and
    /// comments: also lexed (only the very same text is not).
    QueryLayout,
    /// A pattern grant matches (Maps API, table request).
    PatternHit,
    /// No grant matches: table grants, another table requested.
    Denial,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 5] =
        [Scenario::TableHit, Scenario::QueryHit, Scenario::QueryLayout, Scenario::PatternHit, Scenario::Denial];

    /// A short name for reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Scenario::TableHit => "table hit",
            Scenario::QueryHit => "query hit (reworded)",
            Scenario::QueryLayout => "query hit (layout only)",
            Scenario::PatternHit => "pattern hit",
            Scenario::Denial => "denial",
        }
    }

    /// A name for file paths.
    #[must_use]
    pub const fn slug(self) -> &'static str {
        match self {
            Scenario::TableHit => "table_hit",
            Scenario::QueryHit => "query_hit",
            Scenario::QueryLayout => "query_layout",
            Scenario::PatternHit => "pattern_hit",
            Scenario::Denial => "denial",
        }
    }
}

/// The connection every scenario uses.
pub const CONNECTION: &str = "carto_dw";

/// A scenario with `grants` grants.
#[derive(Clone, Debug)]
pub struct Case {
    /// Which scenario.
    pub scenario: Scenario,
    /// The grants' sources, in order.
    pub sources: Vec<String>,
    /// The latchkey policy of those grants.
    pub policy: Policy,
    /// The API asked for.
    pub api: Api,
    /// What kind of source is asked for.
    pub source_type: SourceType,
    /// The source asked for.
    pub requested: String,
    /// Whether the request is allowed.
    pub allowed: bool,
}

/// The granted query number `i`.
#[must_use]
pub fn granted_query(i: usize) -> String {
    format!("SELECT name, geom FROM `my-project.dataset.table_{i}` WHERE population > @min_population")
}

/// The same query with its layout changed and a comment added.
#[must_use]
pub fn relaid_query(i: usize) -> String {
    format!(
        "SELECT name, geom\n  FROM `my-project.dataset.table_{i}`  /* by id */\n WHERE population > @min_population"
    )
}

/// The same query as a client might send it: other case, spacing and a
/// comment.
#[must_use]
pub fn reformatted_query(i: usize) -> String {
    format!(
        "select name,\n       geom\n  from `my-project.dataset.table_{i}` -- the {i}th\n where population > @min_population"
    )
}

impl Case {
    /// Builds the scenario with `grants` grants.
    ///
    /// # Panics
    /// Never for the scenarios defined here (their policies are valid).
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn new(scenario: Scenario, grants: usize) -> Self {
        let last = grants - 1;
        let (api, api_name, sources, source_type, requested, allowed) = match scenario {
            Scenario::TableHit => (
                Api::Maps,
                "maps",
                (0..grants).map(|i| format!("my-project.dataset.table_{i}")).collect::<Vec<_>>(),
                SourceType::Table,
                format!("my-project.dataset.table_{last}"),
                true,
            ),
            Scenario::QueryHit => (
                Api::Sql,
                "sql",
                (0..grants).map(granted_query).collect(),
                SourceType::Query,
                reformatted_query(last),
                true,
            ),
            Scenario::QueryLayout => {
                (Api::Sql, "sql", (0..grants).map(granted_query).collect(), SourceType::Query, relaid_query(last), true)
            }
            Scenario::PatternHit => (
                Api::Maps,
                "maps",
                (0..grants).map(|i| format!("my-project.dataset_{i}.roads_*")).collect(),
                SourceType::Table,
                format!("my-project.dataset_{last}.roads_europe"),
                true,
            ),
            Scenario::Denial => (
                Api::Maps,
                "maps",
                (0..grants).map(|i| format!("my-project.dataset.table_{i}")).collect(),
                SourceType::Table,
                "my-project.dataset.secret".to_owned(),
                false,
            ),
        };
        let grants = sources.iter().map(|source| latchkey_testkit::grant(CONNECTION, source)).collect();
        let draft = latchkey_testkit::draft(&[api_name], grants, &[]);
        let connections = [latchkey_testkit::connection(CONNECTION, Provider::CartoDw)];
        let policy = latchkey_testkit::policy_of(&draft, None, &connections);
        Self { scenario, sources, policy, api, source_type, requested, allowed }
    }

    /// The request of this scenario.
    ///
    /// # Panics
    /// Never: every scenario names a target.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn request(&self) -> AccessRequest<'_> {
        let target = Target { connection: CONNECTION, source_type: self.source_type, source: &self.requested };
        AccessRequest::new(self.api, Some(target), None, None).expect("a target is given")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_domain::Timestamp;
    use latchkey_domain::decision::decide;

    #[test]
    fn every_scenario_decides_as_labelled() {
        let now = Timestamp::from_unix_micros(0).unwrap();
        for scenario in Scenario::ALL {
            for grants in [1, 10, 100] {
                let case = Case::new(scenario, grants);
                let allowed = decide(&case.policy, &case.request(), now).is_ok();
                assert_eq!(allowed, case.allowed, "{scenario:?} with {grants} grants");
            }
        }
    }

    #[test]
    fn the_query_scenario_needs_the_key_comparison() {
        use latchkey_domain::sql::QueryKey;
        assert_ne!(granted_query(3), reformatted_query(3), "not the same text");
        assert_eq!(
            QueryKey::new(&granted_query(3), Provider::CartoDw),
            QueryKey::new(&reformatted_query(3), Provider::CartoDw)
        );
    }
}
