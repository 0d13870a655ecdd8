//! PostgreSQL as the judge of query keys: text inserted anywhere in a
//! granted query that leaves its key unchanged (with the PostgreSQL or the
//! Redshift rules) must leave PostgreSQL's parse tree unchanged too, or
//! make PostgreSQL reject the query. The same property as
//! `crates/oracle/tests/postgres.rs`, with the fuzzer choosing the text.
#![no_main]

use latchkey_domain::Provider;
use latchkey_domain::sql::QueryKey;
use libfuzzer_sys::fuzz_target;

const GRANTS: &[&str] = &[
    "SELECT a, b FROM t WHERE x = 1",
    "SELECT name FROM public.users WHERE email = 'a@b.c' AND id > $1",
    "SELECT E'it\\'s', 'plain''quote', $$dollar -- quoted$$, $t$tagged $$ inside$t$ FROM \"Quoted Table\"",
    "SELECT a::int, b->>'k', c #> '{a,b}' FROM t WHERE d @> ARRAY[1,2]",
    "SELECT x FROM t WHERE y < -1 AND z !~ '^a' ORDER BY x DESC LIMIT 10",
    "SELECT a FROM t -- a comment\nWHERE b = 'x -- not a comment'",
    "SELECT \"MixedCase\", mixedcase, café FROM \"Sch\".tbl",
];

/// The parse tree without positions, or `None` when PostgreSQL rejects it.
fn tree(sql: &str) -> Option<String> {
    let debug = format!("{:?}", pg_query::parse(sql).ok()?.protobuf);
    let mut out = String::with_capacity(debug.len());
    let mut rest = debug.as_str();
    loop {
        let next = ["location: ", "stmt_len: "].iter().filter_map(|m| rest.find(m).map(|at| (at, m))).min();
        let Some((at, marker)) = next else {
            out.push_str(rest);
            return Some(out);
        };
        out.push_str(&rest[..at + marker.len()]);
        rest = rest[at + marker.len()..].trim_start_matches(|c: char| c == '-' || c.is_ascii_digit());
    }
}

fuzz_target!(|data: &[u8]| {
    let [choice, position, rest @ ..] = data else {
        return;
    };
    let Ok(inserted) = std::str::from_utf8(rest) else {
        return;
    };
    let grant = GRANTS[usize::from(*choice) % GRANTS.len()];
    let boundaries: Vec<usize> = grant.char_indices().map(|(i, _)| i).chain([grant.len()]).collect();
    let at = boundaries[usize::from(*position) % boundaries.len()];
    let request = format!("{}{inserted}{}", &grant[..at], &grant[at..]);
    for provider in [Provider::Postgres, Provider::Redshift] {
        let same = match (QueryKey::new(grant, provider), QueryKey::new(&request, provider)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same && let Some(requested) = tree(&request) {
            assert_eq!(tree(grant), Some(requested), "{provider}: {request:?}");
        }
    }
});
