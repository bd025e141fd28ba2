//! Adopting what an earlier daemon left enforcing.
//!
//! For each policy record: re-parse its text, re-open each instance's pinned
//! maps and links, and resume its tasks. Nothing is detached while this
//! happens, so there is no moment where traffic is open. Pinned instances no
//! record mentions are treated by their policy:
//! - a policy that has a record: an older or newer generation left by a swap
//!   the daemon did not finish; the record says which one is current, the
//!   other is detached;
//! - a policy without a record: left in place (failing closed) and reported;
//!   `openclaw-egress uninstall` removes it.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
};

use super::{
    Daemon,
    active::ActivePolicy,
    instance::{Instance, Instances},
    names,
    state::PolicyRecord,
};
use crate::{datapath::PolicyDatapath, policy, resolve::NameResolver};

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
        remove_stale_generations(&daemon.pins_root, &record);
    }
    report_unrecorded(daemon);
}

fn adopt(daemon: &Daemon, record: &PolicyRecord) -> Result<Arc<ActivePolicy>, String> {
    let mut policy = policy::parse_str(&record.source, &record.yaml).map_err(|e| e.to_string())?;
    // The record's name wins: it may be an override (e.g. `exec`).
    policy.name = record.name.clone();
    let policy = Arc::new(policy);
    let resolver = NameResolver::new(&policy.dns.resolvers).map_err(|e| e.to_string())?;
    let instances: Instances = Arc::new(RwLock::new(Vec::new()));
    for instance in &record.instances {
        match PolicyDatapath::adopt(&instance.pin_dir) {
            Ok(datapath) => instances
                .write()
                .expect("instances lock")
                .push(Instance::start(
                    instance.workload.clone(),
                    datapath,
                    &policy.name,
                    daemon.events.clone(),
                )),
            // Keep the others: one missing workload (say, a deleted pod's
            // cgroup) must not cost the rest their enforcement.
            Err(error) => tracing::error!(
                policy = %record.name,
                workload = %instance.workload,
                "cannot adopt instance at {}: {error}",
                instance.pin_dir.display()
            ),
        }
    }
    let names = Arc::new(Mutex::new(names::names_of(&policy)));
    // Every name is due at once: the refresher resolves them right away.
    let resolver_task = names::spawn_refresher(resolver, &policy, &names, &instances);
    Ok(Arc::new(ActivePolicy {
        policy,
        source: record.source.clone(),
        yaml: record.yaml.clone(),
        applied_at: record.applied_at(),
        generation: record.generation.clone(),
        instances,
        names,
        resolver_task,
    }))
}

/// Generation directories of the policy that its record does not use.
fn remove_stale_generations(pins_root: &Path, record: &PolicyRecord) {
    let current: BTreeSet<PathBuf> = record
        .instances
        .iter()
        .filter_map(|instance| instance.pin_dir.parent().map(Path::to_path_buf))
        .chain([pins_root.join(&record.name).join(&record.generation)])
        .collect();
    let Ok(generations) = std::fs::read_dir(pins_root.join(&record.name)) else {
        return;
    };
    for generation in generations.flatten().map(|entry| entry.path()) {
        if !current.contains(&generation) {
            tracing::warn!(
                policy = %record.name,
                dir = %generation.display(),
                "detaching instances of an unfinished swap"
            );
            if let Err(error) = std::fs::remove_dir_all(&generation) {
                tracing::error!(dir = %generation.display(), "{error}");
            }
        }
    }
}

fn report_unrecorded(daemon: &Daemon) {
    let Ok(entries) = std::fs::read_dir(&daemon.pins_root) else {
        return;
    };
    let known = daemon.policies.read().expect("policies lock");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !known.contains_key(&name) {
            tracing::warn!(
                policy = %name,
                dir = %entry.path().display(),
                "pinned instances without a policy record: left enforcing; \
                 `openclaw-egress uninstall` removes them"
            );
        }
    }
}
