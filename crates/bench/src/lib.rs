//! The decision scenarios the benchmarks measure, as latchkey policies.
//! The same scenarios are written for Cedar and Casbin in the benchmark
//! itself; see `docs/benchmarks.md`.
//!
//! Every scenario puts the grant that decides last, so that a token with N
//! grants is measured at its worst: the whole list is looked at.
//!
//! [`IpScenario`] adds a token's `allowed_ips` to the table hit at 100
//! grants, to measure what the client address check adds to a decision.

use std::net::IpAddr;

use latchkey_domain::ip::MAX_IP_RANGES;
use latchkey_domain::{AccessRequest, Api, IpRange, IpRanges, Policy, Provider, SourceType, Target};

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

/// How a token's `allowed_ips` meets the client of a table hit at
/// [`IpCase::GRANTS`] grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpScenario {
    /// The same token without `allowed_ips`: the check is one emptiness test.
    Unrestricted,
    /// [`MAX_IP_RANGES`] ranges; the client is in the first.
    FirstOfMany,
    /// [`MAX_IP_RANGES`] ranges; the client is in the last only, so every
    /// range is compared (the worst allowed case).
    LastOfMany,
    /// [`MAX_IP_RANGES`] ranges; the client is in none (`ip_not_allowed`).
    /// Every range is compared, and the grants are not looked at.
    Refused,
}

impl IpScenario {
    /// Every scenario.
    pub const ALL: [IpScenario; 4] =
        [IpScenario::Unrestricted, IpScenario::FirstOfMany, IpScenario::LastOfMany, IpScenario::Refused];

    /// A short name for reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            IpScenario::Unrestricted => "no allowed_ips, client_ip sent",
            IpScenario::FirstOfMany => "50 ranges, client in the first",
            IpScenario::LastOfMany => "50 ranges, client in the last",
            IpScenario::Refused => "50 ranges, client in none (ip_not_allowed)",
        }
    }

    /// A name for file paths.
    #[must_use]
    pub const fn slug(self) -> &'static str {
        match self {
            IpScenario::Unrestricted => "unrestricted",
            IpScenario::FirstOfMany => "first_of_50",
            IpScenario::LastOfMany => "last_of_50",
            IpScenario::Refused => "refused",
        }
    }
}

/// Whether the range number `i` is IPv4. The families alternate, but the
/// first and the last ranges are both IPv4, so that every scenario's client
/// is an IPv4 address: reading an IPv6 address from text costs more, and
/// that difference would otherwise show as the cost of the ranges.
fn is_ipv4_range(i: usize) -> bool {
    i.is_multiple_of(2) || i == MAX_IP_RANGES - 1
}

/// The range number `i` of a restricted token: IPv4 and IPv6 mixed (see
/// [`is_ipv4_range`]), none containing another, so that only one can match
/// a client.
#[must_use]
pub fn allowed_range(i: usize) -> String {
    if is_ipv4_range(i) { format!("10.{i}.0.0/16") } else { format!("2001:db8:{i:x}::/48") }
}

/// An address in [`allowed_range`] `i` and in no other.
#[must_use]
pub fn address_in_range(i: usize) -> String {
    if is_ipv4_range(i) { format!("10.{i}.0.1") } else { format!("2001:db8:{i:x}::1") }
}

/// A table hit at [`IpCase::GRANTS`] grants, made from `client` with a
/// token restricted as its [`IpScenario`] says.
#[derive(Clone, Debug)]
pub struct IpCase {
    /// Which scenario.
    pub scenario: IpScenario,
    /// The table hit, with `allowed_ips` added to its policy. Its own
    /// request and `allowed` know no client: use [`IpCase::request`] and
    /// [`IpCase::allowed`].
    pub table: Case,
    /// The client's address, as text: `/v3/authorize` reads it from the
    /// body's `client_ip`, so the request is built from it.
    pub client: String,
    /// Whether the request is allowed.
    pub allowed: bool,
}

impl IpCase {
    /// The grants of the token: the size the decision targets are set at.
    pub const GRANTS: usize = 100;

    /// Builds the scenario.
    ///
    /// # Panics
    /// Never: the ranges and addresses written here are valid.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn new(scenario: IpScenario) -> Self {
        let mut table = Case::new(Scenario::TableHit, Self::GRANTS);
        let ranges: Vec<IpRange> =
            (0..MAX_IP_RANGES).map(|i| IpRange::parse(&allowed_range(i)).expect("a valid range")).collect();
        let last = MAX_IP_RANGES - 1;
        let (client, allowed) = match scenario {
            IpScenario::Unrestricted | IpScenario::LastOfMany => (address_in_range(last), true),
            IpScenario::FirstOfMany => (address_in_range(0), true),
            IpScenario::Refused => ("192.0.2.1".to_owned(), false),
        };
        if scenario != IpScenario::Unrestricted {
            let (ranges, dropped) = IpRanges::new(ranges);
            assert!(dropped.is_empty(), "the ranges are distinct");
            table.policy = table.policy.with_allowed_ips(ranges);
        }
        Self { scenario, table, client, allowed }
    }

    /// The request of this scenario, from its client: the address is read
    /// from its text, as `/v3/authorize` reads `client_ip`.
    #[must_use]
    pub fn request(&self) -> AccessRequest<'_> {
        self.table.request().from_client(self.client.parse::<IpAddr>().ok())
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
    fn every_ip_scenario_decides_as_labelled() {
        use latchkey_domain::DenyReason;
        let now = Timestamp::from_unix_micros(0).unwrap();
        for scenario in IpScenario::ALL {
            let case = IpCase::new(scenario);
            let expected = if case.allowed { Ok(()) } else { Err(DenyReason::IpNotAllowed) };
            assert_eq!(decide(&case.table.policy, &case.request(), now), expected, "{scenario:?}");
            let ranges = case.table.policy.allowed_ips();
            let client: IpAddr = case.client.parse().unwrap();
            let matching: Vec<usize> =
                ranges.iter().enumerate().filter(|(_, r)| r.contains(client)).map(|(i, _)| i).collect();
            let expected_matches: &[usize] = match scenario {
                IpScenario::Unrestricted | IpScenario::Refused => &[],
                IpScenario::FirstOfMany => &[0],
                IpScenario::LastOfMany => &[MAX_IP_RANGES - 1],
            };
            assert_eq!(matching, expected_matches, "{scenario:?}: which ranges hold the client");
            let restricted = scenario != IpScenario::Unrestricted;
            assert_eq!(ranges.len(), if restricted { MAX_IP_RANGES } else { 0 }, "{scenario:?}");
        }
    }

    #[test]
    fn the_restricted_ranges_mix_both_families_and_every_client_is_ipv4() {
        let ranges: Vec<IpRange> = (0..MAX_IP_RANGES).map(|i| IpRange::parse(&allowed_range(i)).unwrap()).collect();
        let ipv6 = ranges.iter().filter(|range| !range.is_ipv4()).count();
        assert!((20..=25).contains(&ipv6), "{ipv6} IPv6 ranges of {MAX_IP_RANGES}");
        for scenario in IpScenario::ALL {
            assert!(IpCase::new(scenario).client.parse::<IpAddr>().unwrap().is_ipv4(), "{scenario:?}");
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
