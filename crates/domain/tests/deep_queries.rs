//! Deep and long queries, as grants and as requests, on a thread with the
//! stack of a tokio worker (2 MiB): the body limit allows 64 KiB of
//! `1+1+…`, and an overflow aborts the whole process, so every construct
//! that nests or chains is tried at the caps and past them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use latchkey_domain::decision::decide;
use latchkey_domain::sql::{MAX_QUERY_NESTING, MAX_QUERY_TOKENS, QueryKey, QueryRefusal};
use latchkey_domain::{AccessRequest, Api, DenyReason, Provider, Source, SourceType, Target};
use support::{grant, now, policy};

/// A tokio worker thread's default stack.
const WORKER_STACK: usize = 2 << 20;

/// Room for a query in the 64 KiB source limit, with space to spare.
const BYTES: usize = 64 * 1024 - 64;

/// `fragment` (of `tokens` tokens) repeated as often as both the token cap
/// and the byte limit allow.
fn repeat(fragment: &str, tokens: usize) -> String {
    fragment.repeat(((MAX_QUERY_TOKENS - 16) / tokens).min(BYTES / fragment.len()))
}

/// Every construct that nests or chains, as deep as the caps allow.
fn chains() -> Vec<(&'static str, String)> {
    let nesting = MAX_QUERY_NESTING;
    vec![
        ("binary operators", format!("SELECT 1{}", repeat("+1", 2))),
        ("set operations", format!("SELECT 1{}", repeat(" UNION SELECT 1", 3))),
        ("casts", format!("SELECT a{}", repeat("::int", 3))),
        ("postfix tests", format!("SELECT a{}", repeat(" IS NULL", 2))),
        ("conjunctions", format!("SELECT 1 WHERE a{}", repeat(" AND a", 2))),
        ("subscripts", format!("SELECT a{}", repeat("[1]", 3))),
        ("method calls", format!("SELECT a{}", repeat(".f()", 4))),
        ("prefix operators", format!("SELECT {}1", repeat("NOT ", 1))),
        ("unary minus", format!("SELECT {}1", repeat("- ", 1))),
        ("joins", format!("SELECT 1 FROM t{}", repeat(" JOIN t ON 1", 4))),
        ("a long list", format!("SELECT 1 IN (1{})", repeat(",1", 2))),
        ("case branches", format!("SELECT CASE{} END", repeat(" WHEN 1 THEN 1", 4))),
        ("nested sub-selects at the nesting cap", format!("{}1{}", "SELECT (".repeat(nesting), ")".repeat(nesting))),
        ("parentheses at the nesting cap", format!("SELECT {}1{}", "(".repeat(nesting), ")".repeat(nesting))),
    ]
}

/// The same constructs at 64 KiB, past the caps, with what refuses them.
fn floods() -> Vec<(&'static str, String, QueryRefusal)> {
    let fill = |fragment: &str| fragment.repeat(BYTES / fragment.len());
    vec![
        ("1+1+…", format!("SELECT {}1", fill("1+")), QueryRefusal::TooManyTokens),
        ("((((…))))", format!("SELECT {}1", fill("(")), QueryRefusal::TooDeep),
        ("nested sub-selects", format!("{}1", fill("SELECT (")), QueryRefusal::TooDeep),
        ("nested comments", format!("SELECT 1 {}", fill("/*")), QueryRefusal::NestedComment),
        ("one long comment", format!("SELECT 1 /*{}", fill("*")), QueryRefusal::UnterminatedComment),
        ("- - - …", format!("SELECT {}1", fill("- ")), QueryRefusal::TooManyTokens),
        ("a.b.c.…", format!("SELECT a{}", fill(".b")), QueryRefusal::TooManyTokens),
    ]
}

fn on_worker_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(WORKER_STACK).spawn(work).unwrap().join().expect("the thread overflowed")
}

fn request(connection: &str, sql: String) -> Result<(), DenyReason> {
    let policy = policy(&["sql"], vec![grant(connection, "SELECT 1")], &[], None);
    let target = Target { connection, source_type: SourceType::Query, source: &sql };
    decide(&policy, &AccessRequest::new(Api::Sql, Some(target), None, None).unwrap(), now())
}

#[test]
fn chains_at_the_caps_are_read_parsed_and_dropped_on_a_worker_stack() {
    for provider in Provider::ALL {
        for (name, sql) in chains() {
            let outcome = on_worker_stack(move || {
                let key = QueryKey::new(&sql, provider).map(|_| ());
                let grant = Source::new(&sql, provider).map(|source| source.query_parsed());
                (key, grant)
            });
            assert_eq!(outcome.0, Ok(()), "{provider}, {name}: within the caps");
            assert!(outcome.1.is_ok(), "{provider}, {name}: {:?}", outcome.1);
        }
    }
}

#[test]
fn floods_past_the_caps_are_refused_as_grants_and_requests() {
    for connection in support::connections() {
        let provider = connection.provider;
        for (name, sql, refusal) in floods() {
            assert!(sql.len() <= 64 * 1024, "{name} fits in the body limit");
            let connection = connection.name.to_string();
            let (key, grant, decision) = on_worker_stack(move || {
                (QueryKey::new(&sql, provider), Source::new(&sql, provider).map(|_| ()), request(&connection, sql))
            });
            assert_eq!(key.err(), Some(refusal), "{provider}, {name}");
            assert!(grant.is_err(), "{provider}, {name}: a grant");
            assert_eq!(decision, Err(DenyReason::SourceNotGranted), "{provider}, {name}: a request");
        }
    }
}
