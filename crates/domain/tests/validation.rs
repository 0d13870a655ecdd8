//! SPEC §4: one table of cases per rule, V1 to V10, plus "every violation
//! at once".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use latchkey_domain::validation::{ExpirationInput, TokenDraft, ValidToken, validate, warnings};
use latchkey_domain::{Api, Timestamp};
use support::{connections, draft, grant, now};

type Expected = &'static [(&'static str, &'static str)];

fn run(draft: &TokenDraft, expiration: Option<&str>) -> Result<ValidToken, Vec<(String, &'static str)>> {
    validate(draft, ExpirationInput::Requested { date: expiration, now: now() }, &connections())
        .map_err(|issues| issues.into_iter().map(|i| (i.field, i.code.as_str())).collect())
}

fn check_table(rule: &str, cases: Vec<(&str, TokenDraft, Option<&str>, Expected)>) {
    for (what, draft, expiration, expected) in cases {
        let got = run(&draft, expiration);
        let expected: Vec<(String, &str)> = expected.iter().map(|(f, c)| ((*f).to_owned(), *c)).collect();
        match got {
            Ok(_) => assert!(expected.is_empty(), "{rule}, {what}: accepted, expected {expected:?}"),
            Err(issues) => assert_eq!(issues, expected, "{rule}, {what}"),
        }
    }
}

fn table() -> Vec<latchkey_domain::validation::GrantDraft> {
    vec![grant("carto_dw", "p.d.t")]
}
fn query() -> Vec<latchkey_domain::validation::GrantDraft> {
    vec![grant("carto_dw", "SELECT * FROM `p.d.t`")]
}

#[test]
fn v1_allowed_apis_are_known_and_not_empty() {
    check_table(
        "V1",
        vec![
            ("empty", draft(&[], table(), &[]), None, &[("allowed_apis", "required")]),
            ("unknown", draft(&["sql", "bogus"], query(), &[]), None, &[("allowed_apis[1]", "unknown_api")]),
            ("upper case", draft(&["SQL"], query(), &[]), None, &[("allowed_apis[0]", "unknown_api")]),
            ("duplicates fold", draft(&["sql", "sql", "maps"], query(), &[]), None, &[]),
            ("every API but imports", draft(&["sql", "maps", "lds"], query(), &[]), None, &[]),
        ],
    );
    let valid = run(&draft(&["sql", "sql"], query(), &[]), None).unwrap();
    assert_eq!(valid.policy.apis().iter().collect::<Vec<_>>(), vec![Api::Sql]);
}

#[test]
fn v2_imports_stands_alone() {
    check_table(
        "V2",
        vec![
            ("with maps", draft(&["imports", "maps"], table(), &[]), None, &[("allowed_apis", "imports_exclusive")]),
            ("with lds", draft(&["lds", "imports"], table(), &[]), None, &[("allowed_apis", "imports_exclusive")]),
            ("alone", draft(&["imports"], table(), &[]), None, &[]),
            ("twice", draft(&["imports", "imports"], table(), &[]), None, &[]),
        ],
    );
}

#[test]
fn v3_every_api_but_lds_has_a_grant() {
    check_table(
        "V3",
        vec![
            ("lds needs none", draft(&["lds"], vec![], &[]), None, &[]),
            ("maps without grants", draft(&["maps"], vec![], &[]), None, &[("allowed_apis", "api_without_grant")]),
            ("sql served by the query, maps too", draft(&["sql", "maps"], query(), &[]), None, &[]),
            (
                "a table grant does not serve sql",
                draft(&["sql", "maps"], table(), &[]),
                None,
                &[("allowed_apis", "api_without_grant")],
            ),
            (
                "imports served by a pattern",
                draft(&["imports"], vec![grant("carto_dw", "p.d.staging_*")], &[]),
                None,
                &[],
            ),
            ("sql served by *", draft(&["sql"], vec![grant("pg", "*")], &[]), None, &[]),
        ],
    );
}

#[test]
fn v4_every_grant_serves_an_allowed_api() {
    check_table(
        "V4",
        vec![
            (
                "a grant for lds only",
                draft(&["lds"], vec![grant("pg", "*")], &[]),
                None,
                &[("grants[0]", "grant_unused")],
            ),
            (
                "a table grant on a sql token",
                draft(&["sql"], vec![grant("pg", "SELECT 1"), grant("pg", "public.t")], &[]),
                None,
                &[("grants[1]", "grant_unused")],
            ),
            (
                "a query grant on an imports token",
                draft(&["imports"], query(), &[]),
                None,
                &[("allowed_apis", "api_without_grant"), ("grants[0]", "grant_unused")],
            ),
        ],
    );
}

#[test]
fn v5_connections_exist_in_the_org() {
    check_table(
        "V5",
        vec![
            (
                "unknown",
                draft(&["maps"], vec![grant("elsewhere", "p.d.t")], &[]),
                None,
                &[("grants[0].connection_name", "connection_unknown")],
            ),
            (
                "not even a name",
                draft(&["maps"], vec![grant("carto dw", "p.d.t")], &[]),
                None,
                &[("grants[0].connection_name", "connection_unknown")],
            ),
            (
                "names are exact",
                draft(&["maps"], vec![grant("CARTO_DW", "p.d.t")], &[]),
                None,
                &[("grants[0].connection_name", "connection_unknown")],
            ),
            (
                "the source is still checked",
                draft(&["maps"], vec![grant("elsewhere", "p.*")], &[]),
                None,
                &[("grants[0].connection_name", "connection_unknown"), ("grants[0].source", "pattern_too_broad")],
            ),
        ],
    );
}

#[test]
fn v6_sources_are_classified() {
    let long = format!("SELECT '{}'", "x".repeat(64 * 1024));
    check_table(
        "V6",
        vec![
            ("empty", draft(&["maps"], vec![grant("bq", "  ")], &[]), None, &[("grants[0].source", "source_empty")]),
            (
                "pattern too broad",
                draft(&["maps"], vec![grant("bq", "project.*")], &[]),
                None,
                &[("grants[0].source", "pattern_too_broad")],
            ),
            (
                "misplaced wildcard",
                draft(&["maps"], vec![grant("bq", "p.*.t")], &[]),
                None,
                &[("grants[0].source", "pattern_invalid")],
            ),
            (
                "over 64 KiB",
                draft(&["sql"], vec![grant("bq", &long)], &[]),
                None,
                &[("grants[0].source", "source_too_long")],
            ),
            (
                "two statements",
                draft(&["sql"], vec![grant("pg", "SELECT 1; DELETE FROM t")], &[]),
                None,
                &[("grants[0].source", "multiple_statements")],
            ),
            ("a pattern", draft(&["maps"], vec![grant("bq", "p.d.*")], &[]), None, &[]),
            ("unparseable SQL is accepted", draft(&["sql"], vec![grant("pg", "FROB the widgets")], &[]), None, &[]),
        ],
    );
    let folded =
        run(&draft(&["maps"], vec![grant("bq", "p.d.t"), grant("bq", " p.d.t "), grant("pg", "p.d.t")], &[]), None)
            .unwrap();
    assert_eq!(folded.policy.grants().len(), 2, "identical grants fold; another connection is another grant");
}

#[test]
fn v7_names() {
    let named = |name: &str| TokenDraft { name: Some(name.to_owned()), ..draft(&["lds"], vec![], &[]) };
    check_table(
        "V7",
        vec![
            ("blank", named("   "), None, &[("name", "name_empty")]),
            ("empty", named(""), None, &[("name", "name_empty")]),
            ("129 characters", named(&"n".repeat(129)), None, &[("name", "name_too_long")]),
            ("128 characters", named(&"ñ".repeat(128)), None, &[]),
            ("control character", named("tab\there"), None, &[("name", "name_invalid")]),
            ("NUL", named("a\0b"), None, &[("name", "name_invalid")]),
            ("unicode", named("Mapa de España 🗺"), None, &[]),
        ],
    );
    assert_eq!(run(&named("  padded  "), None).unwrap().name.unwrap().as_str(), "padded");
    assert!(run(&draft(&["lds"], vec![], &[]), None).unwrap().name.is_none(), "absent: the caller generates tk_…");
}

#[test]
fn v8_referers() {
    let many: Vec<String> = (0..51).map(|i| format!("https://site{i}.example.com/")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let repeated = vec!["https://same.example.com/"; 60];
    check_table(
        "V8",
        vec![
            ("51 patterns", draft(&["lds"], vec![], &many), None, &[("referers", "too_many_referers")]),
            ("50 patterns", draft(&["lds"], vec![], &many[..50]), None, &[]),
            ("duplicates fold", draft(&["lds"], vec![], &repeated), None, &[]),
            ("empty list is any website", draft(&["lds"], vec![], &[]), None, &[]),
            (
                "invalid ones, each reported",
                draft(&["lds"], vec![], &["ftp://x.com", "https://ok.com/", "https://a@b.com"]),
                None,
                &[("referers[0]", "referer_invalid"), ("referers[2]", "referer_invalid")],
            ),
        ],
    );
}

#[test]
fn v9_expiration() {
    let lds = || draft(&["lds"], vec![], &[]);
    check_table(
        "V9",
        vec![
            ("in the past", lds(), Some("2020-01-01T00:00:00Z"), &[("expiration_date", "expiration_past")]),
            ("now is not the future", lds(), Some("2026-11-27T10:00:00Z"), &[("expiration_date", "expiration_past")]),
            ("not a timestamp", lds(), Some("tomorrow"), &[("expiration_date", "timestamp_invalid")]),
            ("a date without time", lds(), Some("2027-01-01"), &[("expiration_date", "timestamp_invalid")]),
            ("in the future", lds(), Some("2026-11-27T10:00:01Z"), &[]),
            ("with an offset", lds(), Some("2027-01-01T00:00:00+02:00"), &[]),
        ],
    );
    // On update the expiration is kept as it is, even when it has passed.
    let past = Timestamp::parse_rfc3339("2020-01-01T00:00:00Z").unwrap();
    let kept = validate(&lds(), ExpirationInput::Kept(Some(past)), &connections()).unwrap();
    assert_eq!(kept.policy.expiration(), Some(past));
}

#[test]
fn v10_unknown_fields_are_violations() {
    let mut misspelt = draft(&["lds"], vec![], &[]);
    misspelt.unknown_fields = vec!["referrers".into(), "expires".into()];
    let got = run(&misspelt, None).unwrap_err();
    assert_eq!(got, [("referrers".to_owned(), "unknown_field"), ("expires".to_owned(), "unknown_field")]);
}

#[test]
fn v10_at_most_100_grants() {
    let grants = |n: usize| (0..n).map(|i| grant("bq", &format!("p.d.t{i}"))).collect::<Vec<_>>();
    check_table(
        "V10",
        vec![
            ("101", draft(&["maps"], grants(101), &[]), None, &[("grants", "too_many_grants")]),
            ("100", draft(&["maps"], grants(100), &[]), None, &[]),
        ],
    );
    let mut repeated = grants(100);
    repeated.extend(grants(100));
    assert!(run(&draft(&["maps"], repeated, &[]), None).is_ok(), "200 grants that fold to 100");
}

#[test]
fn v11_allowed_ips_are_addresses_or_ranges_at_most_50() {
    let with = |ips: &[&str]| {
        let mut d = draft(&["lds"], vec![], &[]);
        d.allowed_ips = ips.iter().map(|s| (*s).to_owned()).collect();
        d
    };
    let fifty: Vec<String> = (0..50).map(|i| format!("192.0.2.{i}")).collect();
    let fifty: Vec<&str> = fifty.iter().map(String::as_str).collect();
    let mut fifty_one = fifty.clone();
    fifty_one.push("198.51.100.1");
    let mut fifty_with_copies = fifty.clone();
    fifty_with_copies.extend(["::ffff:192.0.2.0", "192.0.2.0/32"]);
    check_table(
        "V11",
        vec![
            ("none: any address", with(&[]), None, &[]),
            ("v4, v6, ranges", with(&["192.0.2.7", "10.0.0.0/8", "2001:db8::/32", "::1"]), None, &[]),
            ("host bits", with(&["10.0.0.0/8", "10.0.0.1/8"]), None, &[("allowed_ips[1]", "ip_range_invalid")]),
            ("shorthand", with(&["10/8"]), None, &[("allowed_ips[0]", "ip_range_invalid")]),
            ("zone", with(&["fe80::1%eth0"]), None, &[("allowed_ips[0]", "ip_range_invalid")]),
            ("port", with(&["192.0.2.7:80"]), None, &[("allowed_ips[0]", "ip_range_invalid")]),
            ("prefix", with(&["::/129"]), None, &[("allowed_ips[0]", "ip_range_invalid")]),
            ("host name", with(&["localhost"]), None, &[("allowed_ips[0]", "ip_range_invalid")]),
            ("fifty", with(&fifty), None, &[]),
            ("fifty-one", with(&fifty_one), None, &[("allowed_ips", "too_many_ip_ranges")]),
            ("copies fold before counting", with(&fifty_with_copies), None, &[]),
        ],
    );
    let valid = run(&with(&["::ffff:10.0.0.0/104", "10.0.0.0/8", "2001:DB8::/32"]), None).unwrap();
    let shown: Vec<String> = valid.policy.allowed_ips().iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.0/8", "2001:db8::/32"], "canonical and folded");
}

#[test]
fn every_violation_is_reported_at_once_in_field_order() {
    let mut bad = draft(
        &["maps", "teleport"],
        vec![grant("bq", "p.d.t"), grant("nowhere", "x.y.z"), grant("bq", "p.*")],
        &["https://ok.com", "gopher://old.net"],
    );
    bad.name = Some(String::new());
    bad.unknown_fields = vec!["referrers".into()];
    let got = run(&bad, Some("yesterday")).unwrap_err();
    let expected = [
        ("name", "name_empty"),
        ("allowed_apis[1]", "unknown_api"),
        ("grants[1].connection_name", "connection_unknown"),
        ("grants[2].source", "pattern_too_broad"),
        ("referers[1]", "referer_invalid"),
        ("expiration_date", "timestamp_invalid"),
        ("referrers", "unknown_field"),
    ];
    let expected: Vec<(String, &str)> = expected.iter().map(|(f, c)| ((*f).to_owned(), *c)).collect();
    assert_eq!(got, expected);
}

#[test]
fn warnings_flag_what_is_allowed_but_risky() {
    let valid = run(
        &draft(
            &["sql", "maps"],
            vec![grant("pg", "*"), grant("pg", "FROB the widgets"), grant("bq", "SELECT 1")],
            &["https://ok.com/", "https://ok.com/app/"],
        ),
        None,
    )
    .unwrap();
    let got: Vec<(String, &str)> = warnings(&valid.policy).into_iter().map(|w| (w.field, w.code.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("grants[0].source".to_owned(), "all_sources"),
            ("grants[1].source".to_owned(), "query_not_parsed"),
            ("referers[1]".to_owned(), "referer_has_path"),
        ]
    );
}
