//! Resolving a policy's names against its own resolvers, many at once, and
//! recording each answer in the name's state (see `names`). What comes back
//! is the `ALLOW` entries to write and the warnings to show; writing them
//! into the policy's instances is the daemon's (see `daemon::name_refresher`).

use std::sync::Arc;

use openclaw_egress_common::{AllowKey, AllowValue};
use tokio::{sync::Semaphore, task::JoinSet};

use super::{
    names::{self, Names},
    resolve::NameResolver,
};
use crate::{
    clock,
    policy::{Fqdn, Policy},
};

/// Lookups in flight at once (each asks for A and AAAA).
const MAX_CONCURRENT_LOOKUPS: usize = 64;

/// `ALLOW` entries to write into every instance of a policy.
pub type Entries = Vec<(AllowKey, AllowValue)>;

/// Resolves `name` once and records the result in `names`. Returns the
/// `ALLOW` entries to write into every instance (none when the resolution
/// failed: the addresses of the last one stay until they expire), and a
/// warning for the person applying the policy when something is off.
pub async fn refresh(
    resolver: &NameResolver,
    policy: &Policy,
    name: &Fqdn,
    names: &Names,
) -> (Entries, Option<String>) {
    let result = resolver.resolve(name).await;
    let now = clock::monotonic_ns();
    let mut names = names.lock().expect("names lock");
    let Some(state) = names.get_mut(name) else {
        return (Vec::new(), None);
    };
    match result {
        Ok(resolution) => state.record_answer(name, resolution, policy, now),
        Err(error) => (Vec::new(), Some(state.record_failure(&error, now))),
    }
}

/// Resolves every name of the policy (each recorded in `names`); returns
/// the entries to install and the warnings, sorted.
pub async fn resolve_all(
    resolver: &NameResolver,
    policy: &Arc<Policy>,
    names: &Names,
) -> (Entries, Vec<String>) {
    let all: Vec<_> = names.lock().expect("names lock").keys().cloned().collect();
    let (entries, mut warnings) = refresh_concurrently(resolver, policy, all, names).await;
    warnings.sort();
    (entries, warnings)
}

/// Resolves the names that are due now (all of them, when nothing was
/// resolved yet); returns the entries to install and the warnings.
pub async fn refresh_due(
    resolver: &NameResolver,
    policy: &Arc<Policy>,
    names: &Names,
) -> (Entries, Vec<String>) {
    let due = names::due(names, clock::monotonic_ns());
    refresh_concurrently(resolver, policy, due, names).await
}

/// [`refresh`]es `due`, at most [`MAX_CONCURRENT_LOOKUPS`] at a time: a
/// policy of 10 000 names is resolved in parallel without 20 000 queries
/// in flight at once (which a resolver would drop, and retries would make
/// slower than waiting).
async fn refresh_concurrently(
    resolver: &NameResolver,
    policy: &Arc<Policy>,
    due: Vec<Fqdn>,
    names: &Names,
) -> (Entries, Vec<String>) {
    let resolver = Arc::new(resolver.clone());
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_LOOKUPS));
    let mut lookups = JoinSet::new();
    for name in due {
        let (resolver, policy, names, permits) = (
            Arc::clone(&resolver),
            Arc::clone(policy),
            Arc::clone(names),
            Arc::clone(&permits),
        );
        lookups.spawn(async move {
            // The semaphore is never closed.
            let _permit = permits.acquire_owned().await.expect("open semaphore");
            refresh(&resolver, &policy, &name, &names).await
        });
    }
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for (found, warning) in lookups.join_all().await {
        entries.extend(found);
        warnings.extend(warning);
    }
    (entries, warnings)
}
