//! The task that keeps an applied policy's names resolved in its instances
//! for as long as it is applied: `fqdn` decides what the `ALLOW` maps need
//! (`lookups`, `names`) and what expired (`learned`), and this writes it
//! into every instance (the only part of name keeping that touches maps).

use std::sync::Arc;

use openclaw_egress_common::{AllowKey, AllowValue};

use super::instance::Instances;
use crate::{
    clock,
    fqdn::{
        learned, lookups,
        names::{self, Names},
        resolve::NameResolver,
    },
    policy::Policy,
};

/// Starts [`keep_resolved`] for an applied policy; the handle stops it.
pub fn spawn(
    resolver: NameResolver,
    policy: &Arc<Policy>,
    names: &Names,
    instances: &Instances,
) -> tokio::task::AbortHandle {
    tokio::spawn(keep_resolved(
        resolver,
        Arc::clone(policy),
        Arc::clone(names),
        Arc::clone(instances),
    ))
    .abort_handle()
}

/// Runs for the life of an applied policy (it is aborted when the policy
/// goes): re-resolves names when due (all of them at once when it starts
/// from scratch) and garbage-collects expired entries.
async fn keep_resolved(
    resolver: NameResolver,
    policy: Arc<Policy>,
    names: Names,
    instances: Instances,
) {
    loop {
        let (entries, warnings) = lookups::refresh_due(&resolver, &policy, &names).await;
        for warning in warnings {
            tracing::warn!(policy = %policy.name, "{warning}");
        }
        install(&policy.name, &instances, &entries);
        collect_garbage(&instances);
        tokio::time::sleep(names::until_next_due(&names)).await;
    }
}

/// Writes `entries` into every instance; failures are logged (a missing
/// entry keeps its destination closed).
fn install(policy: &str, instances: &Instances, entries: &[(AllowKey, AllowValue)]) {
    if entries.is_empty() {
        return;
    }
    for instance in instances.read().expect("instances lock").iter() {
        if let Some(Err(error)) = instance.with(|datapath| datapath.upsert_allow(entries)) {
            tracing::error!(
                policy,
                workload = %instance.workload,
                "cannot allow resolved addresses: {error}"
            );
        }
    }
}

/// Removes from every instance the entries [`learned::expired`] says
/// are gone, whether the daemon or the kernel (from a DNS answer) put them
/// there.
fn collect_garbage(instances: &Instances) {
    let now = clock::monotonic_ns();
    for instance in instances.read().expect("instances lock").iter() {
        instance.with(|datapath| {
            for key in learned::expired(&datapath.allow_entries(), now) {
                if let Err(error) = datapath.remove_allow(&key) {
                    tracing::error!("garbage collection: {error}");
                }
            }
        });
    }
}
