//! Adopting what an earlier daemon left enforcing.
//!
//! For each policy record: re-parse its text, take over each workload's
//! pinned hooks and the maps of the version in force there, and resume its
//! tasks. Nothing is detached while this happens, so there is no moment
//! where traffic is open. What no record mentions:
//! - versions left by an apply the daemon did not finish: the record says
//!   which version is in force (and it is again); the others' slots are
//!   emptied;
//! - workloads of no recorded policy: left in place (enforcing what was in
//!   force) and reported; `openclaw-egress uninstall` removes them.

use std::sync::{Arc, Mutex, RwLock};

use super::{
    Daemon,
    active::ActivePolicy,
    error::DaemonError,
    events::SlotPolicy,
    instance::{Instance, Instances},
    name_refresher,
    state::PolicyRecord,
};
use crate::{
    datapath::PolicyDatapath,
    fqdn::{names, resolve::NameResolver},
    policy,
};

pub fn adopt_all(daemon: &Arc<Daemon>) {
    let (records, unreadable) = daemon.state.load_all();
    for (path, error) in unreadable {
        tracing::error!(path = %path.display(), "unreadable policy record, ignored: {error}");
    }
    for record in records {
        match adopt(daemon, &record) {
            Ok(active) => {
                tracing::info!(
                    policy = %record.name,
                    instances = active.instances().len(),
                    "adopted policy left enforcing by an earlier daemon"
                );
                daemon
                    .policies
                    .write()
                    .expect("policies lock")
                    .insert(record.name.clone(), active);
            }
            Err(error) => tracing::error!(
                policy = %record.name,
                "cannot adopt this policy: {error}; whatever of it is still pinned keeps \
                 enforcing, `openclaw-egress uninstall` removes it"
            ),
        }
    }
    for workload in daemon.datapath.sweep_unadopted() {
        tracing::warn!(
            workload,
            "a workload attached without a policy record: left enforcing; \
             `openclaw-egress uninstall` removes it"
        );
    }
    report_other_datapaths(daemon);
}

fn adopt(daemon: &Daemon, record: &PolicyRecord) -> Result<Arc<ActivePolicy>, DaemonError> {
    let mut policy = policy::parse_str(&record.source, &record.yaml)?;
    // The record's name wins: it may be an override (e.g. `exec`).
    policy.name = record.name.clone();
    let policy = Arc::new(policy);
    let resolver = NameResolver::new(&policy.dns.resolvers)?;
    let instances: Instances = Arc::new(RwLock::new(Vec::new()));
    for instance in &record.instances {
        let adopted = PolicyDatapath::adopt(
            &daemon.datapath,
            &instance.workload.key(),
            instance.number,
            instance.slot,
            instance.epoch,
        );
        match adopted {
            Ok(datapath) => {
                daemon
                    .slot_names
                    .name(instance.slot, SlotPolicy::new(&policy.name, &policy.egress));
                // What the daemon records now (say, no more `--flow-log`),
                // not what the one before it did.
                let bits = daemon.recording.bits(&policy.name);
                if let Err(error) = datapath.set_record(bits) {
                    tracing::error!(policy = %record.name, "setting what is recorded: {error}");
                }
                instances
                    .write()
                    .expect("instances lock")
                    .push(Instance::start(instance.workload.clone(), datapath));
            }
            // Keep the others: one missing workload (say, a deleted pod's
            // cgroup) must not cost the rest their enforcement.
            Err(error) => tracing::error!(
                policy = %record.name,
                workload = %instance.workload,
                number = instance.number,
                "cannot adopt this workload: {error}"
            ),
        }
    }
    let names = Arc::new(Mutex::new(names::names_of(&policy)));
    // Every name is due at once: the refresher resolves them right away.
    let resolver_task = name_refresher::spawn(resolver, &policy, &names, &instances);
    Ok(Arc::new(ActivePolicy {
        policy,
        source: record.source.clone(),
        yaml: record.yaml.clone(),
        applied_at: record.applied_at(),
        instances,
        names,
        resolver_task,
    }))
}

/// Pins of datapaths of other builds (an upgrade): what they attach keeps
/// enforcing, but this daemon cannot adopt it.
fn report_other_datapaths(daemon: &Daemon) {
    let Ok(entries) = std::fs::read_dir(&daemon.pins_root) else {
        return;
    };
    let ours = daemon.datapath.pin_dir().map(std::path::Path::to_path_buf);
    for entry in entries.flatten() {
        let path = entry.path();
        if Some(&path) != ours.as_ref() {
            tracing::warn!(
                dir = %path.display(),
                "pins of another build of openclaw-egress: what they attach keeps enforcing \
                 and is not adopted; re-apply its policies here, then remove the directory \
                 (or run `openclaw-egress uninstall`)"
            );
        }
    }
}
