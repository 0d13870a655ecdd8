//! The contract suite of latchkey's storage ports.
//!
//! Every adapter — memory, SQLite, PostgreSQL, and any a team adds — runs
//! the same cases through one macro, [`conformance_suite!`], given a factory
//! that makes a fresh, empty store. A case is a plain async function in
//! [`cases`] that panics when the adapter breaks the contract documented on
//! the port traits.
//!
//! ```text
//! latchkey_conformance::conformance_suite!(|| async {
//!     let store = std::sync::Arc::new(MyStore::open_fresh().await);
//!     latchkey_conformance::Stores::from_one(store)
//! });
//! ```
//!
//! Architecture invariant: the suite knows the ports and the domain only,
//! never an adapter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cases;
mod fixtures;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use latchkey_ports::{AuditLog, ConnectionCatalog, OrgPolicies, TokenRepository, UserDirectory};

/// What runs after a case to release what the factory made (drop a test
/// database, delete a file).
pub type Teardown = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A fresh, empty store under test, seen through each port.
pub struct Stores {
    /// The token repository.
    pub tokens: Arc<dyn TokenRepository>,
    /// The connection catalog.
    pub catalog: Arc<dyn ConnectionCatalog>,
    /// The user directory.
    pub users: Arc<dyn UserDirectory>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// The org policies.
    pub policies: Arc<dyn OrgPolicies>,
    teardown: Option<Teardown>,
}

impl Stores {
    /// Views one store that implements every port.
    pub fn from_one<S>(store: Arc<S>) -> Self
    where
        S: TokenRepository + ConnectionCatalog + UserDirectory + AuditLog + OrgPolicies + 'static,
    {
        Self {
            tokens: store.clone(),
            catalog: store.clone(),
            users: store.clone(),
            audit: store.clone(),
            policies: store,
            teardown: None,
        }
    }

    /// Runs `teardown` after the case, whether it passed or not.
    #[must_use]
    pub fn with_teardown(mut self, teardown: Teardown) -> Self {
        self.teardown = Some(teardown);
        self
    }

    /// Runs `case` on these stores, then the teardown, then reports the
    /// case's failure if it failed. Used by [`conformance_suite!`].
    pub async fn run<F, Fut>(mut self, case: F)
    where
        F: FnOnce(Arc<Stores>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let teardown = self.teardown.take();
        let stores = Arc::new(self);
        let outcome = tokio::spawn(case(stores.clone())).await;
        // Close every handle on the store before the teardown drops it.
        drop(stores);
        if let Some(teardown) = teardown {
            teardown().await;
        }
        if let Err(error) = outcome {
            match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(error) => panic!("the case did not finish: {error}"),
            }
        }
    }
}

/// The one list of cases: expands `$crate::$then!` with the arguments
/// given and then every case's name. [`conformance_suite!`] and [`CASES`]
/// read it; a test checks it against the functions of [`cases`].
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($then:ident $($args:tt)*) => {
        $crate::$then! { $($args)*
            round_trip_preserves_every_field,
            update_replaces_what_it_may_and_keeps_the_rest,
            names_are_unique_per_owner,
            concurrent_inserts_of_one_name_let_exactly_one_win,
            capped_inserts_never_overshoot_the_limit,
            concurrent_updates_of_one_version_let_exactly_one_win,
            duplicate_ids_and_secrets_are_refused,
            lookup_by_secret_hash,
            list_pages_newest_first_without_gaps_or_duplicates,
            list_is_stable_while_tokens_are_inserted,
            owners_never_see_each_others_tokens,
            deleted_tokens_are_gone_everywhere,
            last_use_only_moves_forward_and_is_not_a_change,
            sealed_secrets_are_walked_in_id_order,
            sealed_secrets_are_replaced_only_if_unchanged,
            connections_belong_to_existing_orgs,
            users_and_their_keys,
            the_org_boundary,
            rolls_replace_the_value_and_keep_the_previous_one,
            every_change_is_stored_with_its_event_and_refusals_with_none,
            the_log_pages_newest_first_within_its_scope,
            org_policies_are_replaced_only_from_the_version_read,
            admins_reach_every_token_of_their_org_and_no_other
        }
    };
}

/// Expands to one `#[tokio::test]` per case of [`cases`], each on a fresh
/// store made by `$factory`, an async closure returning [`Stores`].
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::__with_cases!(__suite_cases($factory));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_cases {
    (($factory:expr) $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let stores: $crate::Stores = ($factory)().await;
                stores.run(|stores| async move { $crate::cases::$case(&stores).await }).await;
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __case_names {
    ($($case:ident),* $(,)?) => {
        &[$(stringify!($case)),*]
    };
}

/// The name of every case, in the order they run.
pub const CASES: &[&str] = __with_cases!(__case_names);

#[cfg(test)]
mod tests {
    /// The case functions a list leaves out, and the names it lists that
    /// are no case function.
    fn unlisted(source: &str, listed: &[&str]) -> (Vec<String>, Vec<String>) {
        let defined: Vec<&str> = source
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split('(').next())
            .collect();
        let left_out = defined.iter().filter(|d| !listed.contains(d)).map(|d| (*d).to_owned()).collect();
        let unknown = listed.iter().filter(|l| !defined.contains(l)).map(|l| (*l).to_owned()).collect();
        (left_out, unknown)
    }

    /// A case added to `cases.rs` but not listed would never run.
    #[test]
    fn the_list_is_the_functions_of_cases() {
        assert_eq!(unlisted(include_str!("cases.rs"), super::CASES), (vec![], vec![]));
    }

    /// The check notices a case left out, and a name that is no case.
    #[test]
    fn the_check_notices_drift() {
        let source = include_str!("cases.rs");
        assert_eq!(unlisted(source, &super::CASES[1..]).0, [super::CASES[0]]);
        let mut extra = super::CASES.to_vec();
        extra.push("a_case_nobody_wrote");
        assert_eq!(unlisted(source, &extra).1, ["a_case_nobody_wrote"]);
    }
}
