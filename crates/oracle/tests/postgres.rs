//! PostgreSQL as the judge of query keys: whenever latchkey gives a granted
//! query and a request the same key (with the PostgreSQL or the Redshift
//! rules), PostgreSQL's own parser (libpg_query) reads the request as the
//! same statement, literals and identifiers included, or rejects it.
//!
//! The requests are the grants with random edits of the kinds that broke the
//! earlier comparison: comments, carriage returns and other control
//! characters, quotes and backslashes, dollar quotes, Unicode whitespace and
//! letters, case.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_domain::Provider;
use latchkey_domain::sql::QueryKey;
use proptest::prelude::*;

/// Granted queries, each valid PostgreSQL, each exercising something the
/// lexer must get right.
const GRANTS: &[&str] = &[
    "SELECT a, b FROM t WHERE x = 1",
    "SELECT name FROM public.users WHERE email = 'a@b.c' AND id > $1",
    "SELECT E'it\\'s', 'plain''quote', $$dollar -- quoted$$, $t$tagged $$ inside$t$ FROM \"Quoted Table\"",
    "SELECT a::int, b->>'k', c #> '{a,b}' FROM t WHERE d @> ARRAY[1,2]",
    "SELECT count(*) FROM orders WHERE status <> 'deleted' AND customer = 'acme'",
    "SELECT x FROM t WHERE y < -1 AND z !~ '^a' ORDER BY x DESC LIMIT 10",
    "WITH q AS (SELECT 1 AS one) SELECT one FROM q /* trailing */",
    "SELECT a FROM t -- a comment\nWHERE b = 'x -- not a comment'",
    "SELECT \"MixedCase\", mixedcase, café FROM \"Sch\".tbl",
    "SELECT 1e-5, 0x1F, 1_000, .5, 5. FROM t",
    "SELECT 'C:\\temp', 'a\\\\' FROM t",
    "SELECT B'101', X'1F', N'nat' FROM t",
    "SELECT a FROM t WHERE b = $1 AND c = $2",
    "SELECT 'a'\n'b' AS joined FROM t",
    "SELECT a.b, t.\"c\" FROM s.t AS a",
    "SELECT a FROM t WHERE b = 1 UNION ALL SELECT c FROM u",
];

/// Text the edits insert: separators, comment and quote markers, escapes,
/// dollar signs, control and Unicode characters, operator characters.
const FRAGMENTS: &[&str] = &[
    " ", "  ", "\t", "\n", "\r\n", "\r", "\u{a0}", "\u{3000}", "\u{2028}", "\u{85}", "\u{b}", "\u{c}", "/* c */",
    "/**/", "/* -- */", "/* /* */", "*/", "-- c\n", "--", "-- c\r", "-- \\\n", "/*", "'", "''", "\\'", "\\", "\"",
    "\"\"", "$$", "$a$", "$1", "E", "e", "U&", "&", "é", "É", "N", ";", "(", ")", "#", "@", "-", "+", "=", "::", "`",
    "x", "X", "1", ".",
];

#[derive(Clone, Debug)]
enum Edit {
    Insert(usize, &'static str),
    FlipCase(usize),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), prop::sample::select(FRAGMENTS)).prop_map(|(at, text)| Edit::Insert(at, text)),
        2 => any::<usize>().prop_map(Edit::FlipCase),
        1 => any::<usize>().prop_map(Edit::Delete),
    ]
}

/// The character boundaries of `text`, end included.
fn boundaries(text: &str) -> Vec<usize> {
    text.char_indices().map(|(i, _)| i).chain([text.len()]).collect()
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut text = text.to_owned();
    for edit in edits {
        let points = boundaries(&text);
        match edit {
            Edit::Insert(at, fragment) => text.insert_str(points[at % points.len()], fragment),
            Edit::FlipCase(at) => {
                let at = points[at % points.len()];
                if let Some(c) = text[at..].chars().next() {
                    let flipped: String =
                        if c.is_lowercase() { c.to_uppercase().collect() } else { c.to_lowercase().collect() };
                    text.replace_range(at..at + c.len_utf8(), &flipped);
                }
            }
            Edit::Delete(at) => {
                let at = points[at % points.len()];
                if let Some(c) = text[at..].chars().next() {
                    text.replace_range(at..at + c.len_utf8(), "");
                }
            }
        }
    }
    text
}

/// PostgreSQL's parse tree of `sql` with positions removed, or `None` when
/// PostgreSQL rejects it.
fn tree(sql: &str) -> Option<String> {
    let parsed = pg_query::parse(sql).ok()?;
    Some(without_positions(&format!("{:?}", parsed.protobuf)))
}

/// Removes the numbers after `location: ` and `stmt_len: ` in a debug print
/// of the tree: the same statement written differently has other positions.
fn without_positions(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug;
    loop {
        let next =
            ["location: ", "stmt_len: "].iter().filter_map(|marker| rest.find(marker).map(|at| (at, marker))).min();
        let Some((at, marker)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at + marker.len()]);
        rest = rest[at + marker.len()..].trim_start_matches(|c: char| c == '-' || c.is_ascii_digit());
    }
}

fn key(sql: &str, provider: Provider) -> Option<QueryKey> {
    QueryKey::new(sql, provider).ok()
}

/// The property: the same key means the same statement to PostgreSQL.
fn same_key_same_statement(a: &str, b: &str) -> Result<(), TestCaseError> {
    for provider in [Provider::Postgres, Provider::Redshift] {
        let (Some(ka), Some(kb)) = (key(a, provider), key(b, provider)) else {
            continue;
        };
        if ka != kb {
            continue;
        }
        if let (Some(ta), Some(tb)) = (tree(a), tree(b)) {
            prop_assert_eq!(ta, tb, "[{}] same key, different statements: {:?} / {:?}", provider, a, b);
        }
    }
    Ok(())
}

#[test]
fn every_grant_is_valid_postgresql_and_has_a_key() {
    for grant in GRANTS {
        assert!(tree(grant).is_some(), "not valid PostgreSQL: {grant:?}");
        assert!(key(grant, Provider::Postgres).is_some(), "no key: {grant:?}");
    }
}

#[test]
fn the_oracle_tells_statements_apart() {
    // The comparison below would prove nothing if the trees hid literals,
    // identifiers or case.
    assert_ne!(tree("SELECT a FROM t WHERE x = 'a'"), tree("SELECT a FROM t WHERE x = 'A'"));
    assert_ne!(tree("SELECT \"A\" FROM t"), tree("SELECT a FROM t"));
    assert_eq!(tree("SELECT A FROM t"), tree("select a  from t -- c"));
    assert_ne!(tree("SELECT $1"), tree("SELECT $2"));
}

#[test]
fn the_review_cases_are_different_statements_and_different_keys() {
    let cases = [
        // A lone carriage return ends a `--` comment in PostgreSQL.
        ("SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x = 1 --\rUNION ALL SELECT secret FROM s"),
        // A literal that spells other tokens.
        (
            "SELECT * FROM orders WHERE status <> 'deleted' AND customer = 'acme'",
            "SELECT * FROM orders WHERE status <> 'deleted\u{1f}AND\u{1f}customer\u{1f}=\u{1f}acme'",
        ),
        (
            "SELECT * FROM orders WHERE status <> 'deleted' AND customer = 'acme'",
            "SELECT * FROM orders WHERE status <> 'deleted'' AND customer = ''acme'",
        ),
        // Comment markers inside a string.
        ("SELECT a FROM t WHERE b = '--'", "SELECT a FROM t WHERE b = '--\nUNION SELECT secret FROM s'"),
    ];
    for (grant, request) in cases {
        if let (Some(a), Some(b)) = (tree(grant), tree(request)) {
            assert_ne!(a, b, "PostgreSQL reads these as one statement: {request:?}");
        }
        // Nested comments are one of the cases where PostgreSQL reads a
        // grant's statement and BigQuery another: refused for both.
        for provider in [Provider::Postgres, Provider::Redshift] {
            assert!(key(request, provider).is_none_or(|k| Some(k) != key(grant, provider)), "{request:?}");
        }
    }
    let nested = "SELECT a /* x /* y */ UNION SELECT secret FROM s */ FROM t";
    assert_eq!(tree(nested), tree("SELECT a FROM t"), "PostgreSQL nests comments");
    assert!(key(nested, Provider::Postgres).is_none() && key(nested, Provider::Bigquery).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn an_edited_grant_with_the_grants_key_is_the_grants_statement(
        grant in prop::sample::select(GRANTS),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        same_key_same_statement(grant, &apply(grant, &edits))?;
    }

    #[test]
    fn two_edited_requests_with_one_key_are_one_statement(
        grant in prop::sample::select(GRANTS),
        first in prop::collection::vec(edit(), 1..4),
        second in prop::collection::vec(edit(), 1..4),
    ) {
        same_key_same_statement(&apply(grant, &first), &apply(grant, &second))?;
    }
}
