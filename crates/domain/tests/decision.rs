//! SPEC §6: every denial reason, their order, and SPEC §3 through the
//! decision itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use latchkey_domain::decision::decide;
use latchkey_domain::{AccessRequest, Api, DenyReason, SourceType, Target, Timestamp};
use support::{grant, now, policy};
use time::Duration;

const QUERY: &str = "SELECT name, geom FROM `p.d.cities` WHERE pop > @min_pop";

fn restricted() -> latchkey_domain::Policy {
    policy(
        &["maps", "sql"],
        vec![
            grant("carto_dw", "p.d.roads"),
            grant("carto_dw", "p.d.geo_*"),
            grant("carto_dw", QUERY),
            grant("pg", "public.cities"),
        ],
        &["https://app.example.com/"],
        Some("2026-11-27T11:00:00Z"),
    )
}

struct Case {
    what: &'static str,
    api: Api,
    target: Option<(&'static str, SourceType, &'static str)>,
    referer: Option<&'static str>,
    origin: Option<&'static str>,
    at: Timestamp,
    expected: Result<(), DenyReason>,
}

fn ok_request() -> Case {
    Case {
        what: "",
        api: Api::Maps,
        target: Some(("carto_dw", SourceType::Table, "p.d.roads")),
        referer: Some("https://app.example.com/map"),
        origin: None,
        at: now(),
        expected: Ok(()),
    }
}

fn run(policy: &latchkey_domain::Policy, case: &Case) {
    let target = case.target.map(|(connection, source_type, source)| Target { connection, source_type, source });
    let request = AccessRequest::new(case.api, target, case.referer, case.origin).unwrap();
    assert_eq!(decide(policy, &request, case.at), case.expected, "{}", case.what);
}

#[test]
fn each_denial_reason() {
    let policy = restricted();
    let later = |minutes| now().checked_add(Duration::minutes(minutes)).unwrap();
    let cases = [
        Case { what: "allowed", ..ok_request() },
        Case { what: "expired at the instant", at: later(60), expected: Err(DenyReason::TokenExpired), ..ok_request() },
        Case {
            what: "one microsecond before",
            at: later(60).checked_add(Duration::microseconds(-1)).unwrap(),
            ..ok_request()
        },
        Case { what: "api", api: Api::Imports, expected: Err(DenyReason::ApiNotAllowed), ..ok_request() },
        Case {
            what: "lds not allowed",
            api: Api::Lds,
            target: None,
            expected: Err(DenyReason::ApiNotAllowed),
            ..ok_request()
        },
        Case { what: "no referer", referer: None, expected: Err(DenyReason::RefererMissing), ..ok_request() },
        Case { what: "origin instead", referer: None, origin: Some("https://app.example.com"), ..ok_request() },
        Case {
            what: "other site",
            referer: Some("https://app.example.com.evil.net/"),
            expected: Err(DenyReason::RefererNotAllowed),
            ..ok_request()
        },
        Case {
            what: "connection",
            target: Some(("bq", SourceType::Table, "p.d.roads")),
            expected: Err(DenyReason::ConnectionNotGranted),
            ..ok_request()
        },
        Case {
            what: "source",
            target: Some(("carto_dw", SourceType::Table, "p.d.rivers")),
            expected: Err(DenyReason::SourceNotGranted),
            ..ok_request()
        },
        Case { what: "pattern", target: Some(("carto_dw", SourceType::Tileset, "p.d.geo_lines")), ..ok_request() },
        Case {
            what: "query, reformatted",
            api: Api::Sql,
            target: Some((
                "carto_dw",
                SourceType::Query,
                "select name, geom\nfrom `p.d.cities` -- hi\nwhere pop > @min_pop",
            )),
            ..ok_request()
        },
        Case {
            what: "query, another parameter",
            api: Api::Sql,
            target: Some(("carto_dw", SourceType::Query, "SELECT name, geom FROM `p.d.cities` WHERE pop > @max_pop")),
            expected: Err(DenyReason::SourceNotGranted),
            ..ok_request()
        },
        Case {
            what: "a table grant does not allow SQL over the table",
            api: Api::Sql,
            target: Some(("carto_dw", SourceType::Query, "SELECT * FROM p.d.roads")),
            expected: Err(DenyReason::SourceNotGranted),
            ..ok_request()
        },
        Case {
            what: "postgres folds the requested name",
            target: Some(("pg", SourceType::Table, "PUBLIC.Cities")),
            ..ok_request()
        },
    ];
    for case in &cases {
        run(&policy, case);
    }
}

/// A request that fails every check reports the first; fixing the checks one
/// by one walks through the reasons in SPEC's order.
#[test]
fn reasons_come_in_spec_order() {
    let policy = restricted();
    let mut case = Case {
        what: "everything wrong",
        api: Api::Imports,
        target: Some(("bq", SourceType::Table, "p.d.nothing")),
        referer: None,
        origin: None,
        at: now().checked_add(Duration::hours(2)).unwrap(),
        expected: Err(DenyReason::TokenExpired),
    };
    run(&policy, &case);
    case.at = now();
    case.expected = Err(DenyReason::ApiNotAllowed);
    run(&policy, &case);
    case.api = Api::Maps;
    case.expected = Err(DenyReason::RefererMissing);
    run(&policy, &case);
    case.referer = Some("https://elsewhere.example.com/");
    case.expected = Err(DenyReason::RefererNotAllowed);
    run(&policy, &case);
    case.referer = Some("https://app.example.com/");
    case.expected = Err(DenyReason::ConnectionNotGranted);
    run(&policy, &case);
    case.target = Some(("carto_dw", SourceType::Table, "p.d.nothing"));
    case.expected = Err(DenyReason::SourceNotGranted);
    run(&policy, &case);
    case.target = Some(("carto_dw", SourceType::Table, "p.d.roads"));
    case.expected = Ok(());
    run(&policy, &case);
}

#[test]
fn reason_codes_are_stable() {
    let codes: Vec<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        codes,
        [
            "token_malformed",
            "token_unknown",
            "token_expired",
            "api_not_allowed",
            "referer_missing",
            "referer_not_allowed",
            "ip_not_allowed",
            "connection_not_granted",
            "source_not_granted"
        ]
    );
}

#[test]
fn lds_needs_no_grant_and_ignores_the_target() {
    let policy = policy(&["lds"], vec![], &[], None);
    let anything = Target { connection: "nowhere", source_type: SourceType::Query, source: "DROP TABLE t" };
    for target in [None, Some(anything)] {
        let request = AccessRequest::new(Api::Lds, target, None, None).unwrap();
        assert_eq!(decide(&policy, &request, now()), Ok(()));
    }
    assert!(AccessRequest::new(Api::Maps, None, None, None).is_err(), "maps needs a target");
}

/// SPEC §3 through the decision: each kind of grant, each API it may be
/// used with, each source type.
#[test]
fn grant_kinds_serve_apis_as_specified() {
    use SourceType::*;
    let read = |source: &str| policy(&["sql", "maps"], vec![grant("bq", source), grant("bq", "SELECT 1")], &[], None);
    let write = |source: &str| policy(&["imports"], vec![grant("bq", source)], &[], None);
    // (policy, api, source type, requested source, allowed?)
    let cases: Vec<(latchkey_domain::Policy, Api, SourceType, &str, bool)> = vec![
        (read("*"), Api::Sql, Query, "SELECT anything FROM anywhere", true),
        (read("*"), Api::Maps, Table, "p.d.any", true),
        (read("*"), Api::Maps, Tileset, "p.d.any", true),
        (read("*"), Api::Maps, Query, "SELECT 2", true),
        (write("*"), Api::Imports, Table, "p.d.new_table", true),
        (write("*"), Api::Imports, Query, "SELECT 2", false),
        (read("p.d.t"), Api::Maps, Table, "p.d.t", true),
        (read("p.d.t"), Api::Maps, Tileset, "p.d.t", true),
        (read("p.d.t"), Api::Maps, Query, "SELECT * FROM p.d.t", false),
        (read("p.d.t"), Api::Sql, Table, "p.d.t", false),
        (read("p.d.t"), Api::Sql, Query, "SELECT * FROM p.d.t", false),
        (write("p.d.t"), Api::Imports, Table, "p.d.t", true),
        (write("p.d.t"), Api::Imports, Tileset, "p.d.t", false),
        (write("p.d.t"), Api::Imports, Table, "p.d.u", false),
        (read("p.d.t_*"), Api::Maps, Table, "p.d.t_1", true),
        (read("p.d.t_*"), Api::Maps, Tileset, "p.d.t_1", true),
        (read("p.d.t_*"), Api::Sql, Query, "SELECT * FROM p.d.t_1", false),
        (write("p.d.t_*"), Api::Imports, Table, "p.d.t_new", true),
        (write("p.d.t_*"), Api::Imports, Table, "p.d.u_new", false),
        (read("SELECT 1"), Api::Sql, Query, "select 1", true),
        (read("SELECT 1"), Api::Maps, Query, "SELECT  1", true),
        (read("SELECT 1"), Api::Maps, Table, "SELECT 1", false),
    ];
    for (policy, api, source_type, source, allowed) in cases {
        let target = Target { connection: "bq", source_type, source };
        let request = AccessRequest::new(api, Some(target), None, None).unwrap();
        let got = decide(&policy, &request, now());
        let expected = if allowed { Ok(()) } else { Err(DenyReason::SourceNotGranted) };
        assert_eq!(got, expected, "{api} {source_type:?} {source:?} with {:?}", policy.grants()[0].source().text());
    }
}

/// A request whose source is in a body that was not read (forward-auth
/// behind a proxy): only a grant of every source allows it.
#[test]
fn an_unseen_source_needs_an_all_sources_grant() {
    let everything = policy(&["sql", "maps"], vec![grant("bq", "*")], &[], None);
    let one_table = policy(&["maps"], vec![grant("bq", "p.d.t")], &[], None);
    let unseen = |api| AccessRequest::unseen_source(api, "bq", None, None);
    assert_eq!(decide(&everything, &unseen(Api::Sql), now()), Ok(()));
    assert_eq!(decide(&everything, &unseen(Api::Maps), now()), Ok(()));
    assert_eq!(decide(&one_table, &unseen(Api::Maps), now()), Err(DenyReason::SourceNotGranted));
    let elsewhere = AccessRequest::unseen_source(Api::Maps, "pg", None, None);
    assert_eq!(decide(&everything, &elsewhere, now()), Err(DenyReason::ConnectionNotGranted));
    assert_eq!(decide(&one_table, &unseen(Api::Sql), now()), Err(DenyReason::ApiNotAllowed));
    let imports = policy(&["imports"], vec![grant("bq", "*")], &[], None);
    assert_eq!(decide(&imports, &unseen(Api::Imports), now()), Ok(()));
}
