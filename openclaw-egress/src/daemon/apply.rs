//! Applying a policy: everything that can fail happens before the new
//! versions are put in force, the new state is recorded once they are, and
//! the old versions are ended only after that. A failed apply therefore
//! changes nothing (a version that was put in force gives way to the one
//! before it again), and a successful one never leaves a moment where a
//! workload is unfiltered: on each workload one atomic store replaces the
//! old version with the new.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::SystemTime,
};

use openclaw_egress_common::{AllowKey, AllowValue};

use super::{
    Daemon,
    active::ActivePolicy,
    error::ApplyError,
    heap,
    instance::{Filling, Instance, Instances},
    name_refresher, node_pods,
    state::{PolicyRecord, unix_millis},
    targets,
    workload::{self, Workload},
};
use crate::{
    api::{ApplyReport, Overrides},
    datapath::{StaticEntries, encode},
    fqdn::{
        learned, lookups,
        names::{self, Names},
        resolve::NameResolver,
    },
    policy::{self, Policy, Selector},
};

impl Daemon {
    pub async fn apply(
        &self,
        source: &str,
        yaml: &str,
        overrides: &Overrides,
    ) -> Result<ApplyReport, ApplyError> {
        // Never trust the client's validation: parse again here.
        let mut policy = policy::parse_str(source, yaml)?;
        apply_overrides(&mut policy, overrides)?;
        let policy = Arc::new(policy);
        let pods = node_pods::selected(&self.pods, &policy);
        let workloads = targets::workloads_of(source, &policy, pods)?;
        let entries = encode::static_entries(&policy).map_err(|error| ApplyError::Encode {
            source_name: source.into(),
            error,
        })?;
        let resolver =
            NameResolver::new(&policy.dns.resolvers).map_err(|error| ApplyError::Resolver {
                source_name: source.into(),
                error: Box::new(error),
            })?;

        // One apply at a time: the conflict check below must still hold when
        // the new instances are inserted.
        let _serialized = self.apply_lock.lock().await;
        self.check_conflicts(source, &policy, &workloads)?;
        let old = self
            .policies
            .read()
            .expect("policies lock")
            .get(&policy.name)
            .cloned();

        let names: Names = Arc::new(Mutex::new(names::names_of(&policy)));
        let (resolved, warnings) = lookups::resolve_all(&resolver, &policy, &names).await;
        let instances =
            self.build_instances(&policy, &workloads, &entries, &resolved, old.as_deref())?;

        // The refresher picks up where the first resolutions left off.
        let resolver_task = name_refresher::spawn(resolver, &policy, &names, &instances);
        let active = Arc::new(ActivePolicy {
            policy: Arc::clone(&policy),
            source: source.into(),
            yaml: yaml.into(),
            applied_at: SystemTime::now(),
            instances,
            names,
            resolver_task,
        });
        self.record(&active)?;
        self.policies
            .write()
            .expect("policies lock")
            .insert(policy.name.clone(), Arc::clone(&active));
        let replaced = old.is_some();
        if let Some(old) = old {
            self.retire(&old, true);
        }
        // Pods it selects that are awaited: held from their first packet
        // now; any whose cgroup is there already, enforced at once.
        let found = self.update_gate().already_made();
        if let Some(this) = self.this.upgrade() {
            for running in found {
                tokio::spawn(Arc::clone(&this).pod_event(running));
            }
        }
        tracing::info!(
            policy = %policy.name,
            source,
            workloads = ?active.workloads(),
            replaced,
            "policy applied"
        );
        let (cgroup, interfaces) = workload::cgroup_and_interfaces(&active.workloads());
        heap::give_back_freed();
        Ok(ApplyReport {
            name: policy.name.clone(),
            replaced,
            cgroup,
            interfaces,
            names: active.name_status(),
            warnings,
        })
    }

    /// Builds and attaches one instance per workload (see
    /// [`Instance::build`]), each holding the resolved names and what the
    /// workload learned under `old`. On failure the ones already built are
    /// detached again.
    fn build_instances(
        &self,
        policy: &Policy,
        workloads: &[Workload],
        entries: &StaticEntries,
        resolved: &[(AllowKey, AllowValue)],
        old: Option<&ActivePolicy>,
    ) -> Result<Instances, ApplyError> {
        let mut built: Vec<Arc<Instance>> = Vec::new();
        for workload in workloads {
            let previous = old.and_then(|old| {
                old.instances()
                    .into_iter()
                    .find(|previous| previous.workload == *workload)
                    .map(|previous| (old, previous))
            });
            let carried = previous
                .as_ref()
                .map(|(old, previous)| {
                    learned::carried_over(&old.policy, &previous.allow_entries(), policy)
                })
                .unwrap_or_default();
            let allow = [resolved, &carried].concat();
            let flows = previous
                .as_ref()
                .map(|(_, previous)| {
                    learned::flows_still_allowed(&previous.allowed_flows(), &allow, policy)
                })
                .unwrap_or_default();
            let filling = Filling {
                entries,
                allow: &allow,
                flows: &flows,
                record: self.recording.bits(&policy.name),
            };
            match Instance::build(policy, workload, &self.datapath, &filling, &self.slot_names) {
                Ok(instance) => built.push(instance),
                Err(error) => {
                    for instance in &built {
                        instance.retire(true);
                    }
                    return Err(error);
                }
            }
        }
        Ok(Arc::new(RwLock::new(built)))
    }

    /// Writes the policy's record, so a restarted daemon adopts it.
    pub(super) fn record(&self, active: &ActivePolicy) -> Result<(), ApplyError> {
        let record = PolicyRecord {
            name: active.policy.name.clone(),
            source: active.source.clone(),
            yaml: active.yaml.clone(),
            applied_at_ms: unix_millis(active.applied_at),
            instances: active
                .instances()
                .iter()
                .filter_map(|instance| instance.record())
                .collect(),
        };
        self.state.save(&record).map_err(|error| ApplyError::State {
            name: record.name.clone(),
            dir: format!("{:?}", self.state),
            error,
        })
    }

    /// Refuses a policy whose workloads another policy already filters.
    fn check_conflicts(
        &self,
        source: &str,
        policy: &Policy,
        workloads: &[Workload],
    ) -> Result<(), ApplyError> {
        let policies = self.policies.read().expect("policies lock");
        for other in policies
            .values()
            .filter(|other| other.policy.name != policy.name)
        {
            if let Some(shared) = targets::overlap(workloads, &other.workloads()) {
                return Err(ApplyError::Selector {
                    source_name: source.into(),
                    message: format!(
                        "{shared} is already selected by policy {} (from {}); remove it first",
                        other.policy.name, other.source
                    ),
                });
            }
        }
        Ok(())
    }
}

fn apply_overrides(policy: &mut Policy, overrides: &Overrides) -> Result<(), ApplyError> {
    if let Some(name) = &overrides.name {
        policy::check_name(name).map_err(ApplyError::Invalid)?;
        policy.name = name.clone();
    }
    if let Some(cgroup) = &overrides.cgroup {
        if !cgroup.is_absolute() {
            return Err(ApplyError::Invalid(format!(
                "cgroup override {} is not an absolute path",
                cgroup.display()
            )));
        }
        policy.selector = Selector {
            cgroup_path: Some(cgroup.clone()),
            ..Selector::default()
        };
    }
    if overrides.audit {
        policy.mode = crate::policy::Mode::Audit;
    }
    Ok(())
}
