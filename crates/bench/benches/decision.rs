//! Decision latency: latchkey's decision against the same policies written
//! for Cedar (`cedar-policy`) and Casbin (`casbin`), for a table grant hit,
//! a query grant hit by canonical comparison, a pattern hit and a denial,
//! with 1, 10 and 100 grants per token.
//!
//! Each engine is timed from the raw request strings to the answer: for
//! latchkey, building the request and deciding; for Cedar, building the
//! request (and the resource entity its `like` policies read) and
//! authorizing; for Casbin, enforcing. Neither peer knows SQL, so for the
//! query scenario both are handed the request's canonical form, computed in
//! the timed loop with the same canonicaliser latchkey uses.
//!
//! A second group, `decision_allowed_ips`, times latchkey alone on the table
//! hit at 100 grants, made from a client address, with the token
//! restricted to 50 client ranges (the most a token may list) and without
//! them. The peers are left out: the question is what the address check
//! adds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::str::FromStr;
use std::time::Duration;

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use latchkey_bench::{CONNECTION, Case, IpCase, IpScenario, Scenario};
use latchkey_domain::Provider;
use latchkey_domain::Timestamp;
use latchkey_domain::decision::decide;
use latchkey_domain::sql::QueryKey;

const SIZES: [usize; 3] = [1, 10, 100];

/// The key latchkey compares a query by, as the text the peers index.
fn canonical_form(sql: &str, provider: Provider) -> Option<String> {
    QueryKey::new(sql, provider).ok().map(|key| key.as_str().to_owned())
}

fn cedar_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(EntityTypeName::from_str(kind).unwrap(), EntityId::new(id))
}

struct CedarCase {
    policies: PolicySet,
    action: &'static str,
}

fn action_of(case: &Case) -> &'static str {
    match case.scenario {
        Scenario::QueryHit | Scenario::QueryLayout => "sql",
        _ => "maps",
    }
}

fn cedar_case(case: &Case) -> CedarCase {
    let action = action_of(case);
    let text: String = case
        .sources
        .iter()
        .map(|source| match case.scenario {
            Scenario::TableHit | Scenario::Denial => format!(
                "permit(principal == Token::\"t\", action == Action::\"{action}\", resource == Source::\"{CONNECTION}/{}\");\n",
                cedar_string(source)
            ),
            Scenario::QueryHit | Scenario::QueryLayout => format!(
                "permit(principal == Token::\"t\", action == Action::\"{action}\", resource == Query::\"{CONNECTION}/{}\");\n",
                cedar_string(&canonical_form(source, Provider::CartoDw).unwrap())
            ),
            Scenario::PatternHit => format!(
                "permit(principal == Token::\"t\", action == Action::\"{action}\", resource) \
                 when {{ resource.connection == \"{CONNECTION}\" && resource.name like \"{}\" }};\n",
                cedar_string(source)
            ),
        })
        .collect();
    CedarCase { policies: PolicySet::from_str(&text).unwrap(), action }
}

fn cedar_decide(authorizer: &Authorizer, cedar: &CedarCase, case: &Case) -> bool {
    let principal = uid("Token", "t");
    let action = uid("Action", cedar.action);
    let (resource, entities) = match case.scenario {
        Scenario::TableHit | Scenario::Denial => {
            (uid("Source", &format!("{CONNECTION}/{}", case.requested)), Entities::empty())
        }
        Scenario::QueryHit | Scenario::QueryLayout => {
            let canonical = canonical_form(&case.requested, Provider::CartoDw).unwrap_or_default();
            (uid("Query", &format!("{CONNECTION}/{canonical}")), Entities::empty())
        }
        Scenario::PatternHit => {
            let resource = uid("Source", &format!("{CONNECTION}/{}", case.requested));
            let attrs = HashMap::from([
                ("connection".to_owned(), RestrictedExpression::new_string(CONNECTION.to_owned())),
                ("name".to_owned(), RestrictedExpression::new_string(case.requested.clone())),
            ]);
            let entity = Entity::new(resource.clone(), attrs, HashSet::new()).unwrap();
            (resource, Entities::from_entities([entity], None).unwrap())
        }
    };
    let request = Request::new(principal, action, resource, Context::empty(), None).unwrap();
    authorizer.is_authorized(&request, &cedar.policies, &entities).decision() == Decision::Allow
}

const CASBIN_MODEL: &str = "
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.sub == p.sub && r.act == p.act && keyMatch(r.obj, p.obj)
";

fn casbin_object(case: &Case, source: &str) -> String {
    match case.scenario {
        Scenario::QueryHit | Scenario::QueryLayout => {
            format!("{CONNECTION}/{}", canonical_form(source, Provider::CartoDw).unwrap_or_default())
        }
        _ => format!("{CONNECTION}/{source}"),
    }
}

fn casbin_case(runtime: &tokio::runtime::Runtime, case: &Case) -> Enforcer {
    runtime.block_on(async {
        let model = DefaultModel::from_str(CASBIN_MODEL).await.unwrap();
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default()).await.unwrap();
        let rules: Vec<Vec<String>> = case
            .sources
            .iter()
            .map(|source| vec!["t".to_owned(), casbin_object(case, source), action_of(case).to_owned()])
            .collect();
        enforcer.add_policies(rules).await.unwrap();
        enforcer
    })
}

fn casbin_decide(enforcer: &Enforcer, case: &Case) -> bool {
    let object = casbin_object(case, &case.requested);
    enforcer.enforce(("t", object.as_str(), action_of(case))).unwrap()
}

fn benchmarks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let now = Timestamp::from_unix_micros(1_800_000_000_000_000).unwrap();
    let authorizer = Authorizer::new();
    for scenario in Scenario::ALL {
        let mut group = c.benchmark_group(format!("decision_{}", scenario.slug()));
        group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(40);
        for grants in SIZES {
            let case = Case::new(scenario, grants);
            let cedar = cedar_case(&case);
            let casbin = casbin_case(&runtime, &case);
            // The three engines must agree, or the comparison means nothing.
            let latchkey_answer = decide(&case.policy, &case.request(), now).is_ok();
            assert_eq!(latchkey_answer, case.allowed, "latchkey {scenario:?} {grants}");
            assert_eq!(cedar_decide(&authorizer, &cedar, &case), case.allowed, "cedar {scenario:?} {grants}");
            assert_eq!(casbin_decide(&casbin, &case), case.allowed, "casbin {scenario:?} {grants}");

            group.bench_with_input(BenchmarkId::new("latchkey", grants), &case, |b, case| {
                b.iter(|| black_box(decide(&case.policy, &case.request(), now).is_ok()));
            });
            group.bench_with_input(BenchmarkId::new("cedar", grants), &case, |b, case| {
                b.iter(|| black_box(cedar_decide(&authorizer, &cedar, case)));
            });
            group.bench_with_input(BenchmarkId::new("casbin", grants), &case, |b, case| {
                b.iter(|| black_box(casbin_decide(&casbin, case)));
            });
        }
        group.finish();
    }
    let mut group = c.benchmark_group("decision_allowed_ips");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(40);
    for scenario in IpScenario::ALL {
        let case = IpCase::new(scenario);
        assert_eq!(decide(&case.table.policy, &case.request(), now).is_ok(), case.allowed, "{scenario:?}");
        // As for the other scenarios the timed loop starts from the
        // request's strings, the client's address included (`client_ip` of
        // `/v3/authorize`); the unrestricted token gets the same request.
        group.bench_with_input(BenchmarkId::new(scenario.slug(), IpCase::GRANTS), &case, |b, case| {
            b.iter(|| black_box(decide(&case.table.policy, &case.request(), now).is_ok()));
        });
    }
    group.finish();
}

criterion_group!(decision, benchmarks);
criterion_main!(decision);
