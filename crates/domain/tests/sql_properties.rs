//! Property tests of query comparison (SPEC §2): reformatting a query never
//! changes whether it matches its grant; changing a literal, an identifier
//! or a placeholder always does; and no literal can be built to read like
//! the tokens of another query. (These check latchkey's own rules; that the
//! rules are the warehouse's is checked against PostgreSQL's parser in
//! `crates/oracle` and rule by rule in `sql_lexicon.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use latchkey_domain::decision::decide;
use latchkey_domain::sql::QueryKey;
use latchkey_domain::{AccessRequest, Api, DenyReason, Policy, Provider, SourceType, Target};
use proptest::prelude::*;
use support::{grant, now, policy};

#[derive(Clone, Debug)]
enum Value {
    Int(u32),
    Text(String),
    Param(String),
}

#[derive(Clone, Debug)]
struct Query {
    columns: Vec<String>,
    table: String,
    filters: Vec<(String, Value)>,
}

/// Identifiers with a prefix that no SQL keyword has.
fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,6}".prop_map(|s| format!("c_{s}"))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u32>().prop_map(Value::Int),
        "[A-Za-z0-9 ]{0,8}".prop_map(Value::Text),
        ident().prop_map(Value::Param),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    (prop::collection::vec(ident(), 1..4), ident(), prop::collection::vec((ident(), value()), 0..4))
        .prop_map(|(columns, table, filters)| Query { columns, table, filters })
}

/// How to lay a query out: what goes between tokens, and keyword case.
#[derive(Clone, Debug)]
struct Layout {
    separators: Vec<&'static str>,
    lower_keywords: Vec<bool>,
}

fn layout() -> impl Strategy<Value = Layout> {
    let separator = prop_oneof![
        Just(" "),
        Just("  "),
        Just("\n"),
        Just("\t \n  "),
        Just(" /* a comment */ "),
        Just(" -- a comment\n"),
        Just("\r\n"),
    ];
    (prop::collection::vec(separator, 64), prop::collection::vec(any::<bool>(), 64))
        .prop_map(|(separators, lower_keywords)| Layout { separators, lower_keywords })
}

/// Renders `query` with parameters in BigQuery's `@name` style.
fn render(query: &Query, layout: Option<&Layout>) -> String {
    let mut tokens: Vec<(String, bool)> = vec![("SELECT".into(), true)];
    for (i, column) in query.columns.iter().enumerate() {
        if i > 0 {
            tokens.push((",".into(), false));
        }
        tokens.push((column.clone(), false));
    }
    tokens.push(("FROM".into(), true));
    tokens.push((query.table.clone(), false));
    for (i, (column, value)) in query.filters.iter().enumerate() {
        tokens.push((if i == 0 { "WHERE" } else { "AND" }.into(), true));
        tokens.push((column.clone(), false));
        tokens.push(("=".into(), false));
        tokens.push((
            match value {
                Value::Int(n) => n.to_string(),
                Value::Text(s) => format!("'{s}'"),
                Value::Param(p) => format!("@{p}"),
            },
            false,
        ));
    }
    let mut out = String::new();
    for (i, (token, keyword)) in tokens.into_iter().enumerate() {
        if i > 0 {
            out.push_str(layout.map_or(" ", |l| l.separators[i % l.separators.len()]));
        }
        let lower = layout.is_some_and(|l| l.lower_keywords[i % l.lower_keywords.len()]);
        out.push_str(&if keyword && lower { token.to_lowercase() } else { token });
    }
    out
}

fn granted(sql: &str) -> Policy {
    policy(&["sql"], vec![grant("bq", sql)], &[], None)
}

fn decision(policy: &Policy, sql: &str) -> Result<(), DenyReason> {
    let target = Target { connection: "bq", source_type: SourceType::Query, source: sql };
    decide(policy, &AccessRequest::new(Api::Sql, Some(target), None, None).unwrap(), now())
}

/// Every way to change one literal, identifier or placeholder of `query`.
fn mutations(query: &Query) -> Vec<Query> {
    let mut out = Vec::new();
    for i in 0..query.columns.len() {
        let mut q = query.clone();
        q.columns[i].push('x');
        out.push(q);
    }
    let mut q = query.clone();
    q.table.push('x');
    out.push(q);
    for i in 0..query.filters.len() {
        let mut q = query.clone();
        q.filters[i].0.push('x');
        out.push(q);
        let mut q = query.clone();
        q.filters[i].1 = match &query.filters[i].1 {
            Value::Int(n) => Value::Int(n.wrapping_add(1)),
            Value::Text(s) => Value::Text(format!("{s}x")),
            Value::Param(p) => Value::Param(format!("{p}x")),
        };
        out.push(q);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn reformatting_never_changes_the_match(query in query(), layout in layout()) {
        let plain = render(&query, None);
        let policy = granted(&plain);
        let reformatted = render(&query, Some(&layout));
        prop_assert_eq!(decision(&policy, &reformatted), Ok(()), "{:?} vs {:?}", plain, reformatted);
        // And the other way round: a grant written with odd layout matches
        // the plain text.
        prop_assert_eq!(decision(&granted(&reformatted), &plain), Ok(()));
    }

    #[test]
    fn changing_a_literal_identifier_or_placeholder_always_does(query in query(), layout in layout()) {
        let policy = granted(&render(&query, None));
        for changed in mutations(&query) {
            let text = render(&changed, Some(&layout));
            prop_assert_eq!(decision(&policy, &text), Err(DenyReason::SourceNotGranted), "{:?}", text);
        }
    }
}

/// What goes between the words a forged literal spells: the old key's
/// separator, quote tricks, and pieces of the key's own encoding.
fn glue() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "\u{1f}", " ", "' ", "'' ", "\\' ", "_", "w3:", "o1:", "q5:", "_w", "' AND '", "'||'", "\n", "\t",
    ])
}

fn provider() -> impl Strategy<Value = Provider> {
    prop::sample::select(Provider::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The review's forgery, generalised: a grant with two literals, and a
    /// request whose one literal spells the grant's tail (or the tail of the
    /// grant's key) glued with anything.
    #[test]
    fn no_literal_reads_like_other_tokens(
        first in "[a-z]{1,8}",
        second in "[a-z]{1,8}",
        glue in glue(),
        provider in provider(),
    ) {
        let grant = format!("SELECT * FROM orders WHERE status <> '{first}' AND customer = '{second}'");
        let Ok(granted) = QueryKey::new(&grant, provider) else {
            return Err(TestCaseError::fail(format!("grant refused: {grant:?}")));
        };
        let tail_of_key = granted.as_str().split(&format!("{first}'")).nth(1).unwrap_or_default().to_owned();
        let forgeries = [
            [first.as_str(), "AND", "customer", "=", second.as_str()].join(glue),
            format!("{first}{glue}{tail_of_key}"),
        ];
        for inner in forgeries {
            let request = format!("SELECT * FROM orders WHERE status <> '{inner}'");
            prop_assert_ne!(QueryKey::new(&request, provider).ok(), Some(granted.clone()), "{}: {:?}", provider, request);
        }
    }
}
