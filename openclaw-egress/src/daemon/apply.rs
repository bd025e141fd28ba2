//! Applying a policy: everything that can fail happens before the new
//! instance is attached, and the old instance is detached only after the new
//! one is attached. A failed apply therefore changes nothing, and a
//! successful one never leaves a moment where the workload is unfiltered.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::task::JoinSet;

use openclaw_egress_common::{AllowKey, AllowValue};

use super::{
    Daemon,
    active::ActivePolicy,
    learned,
    names::{self, Names},
    targets::Targets,
};
use crate::{
    api::ApplyReport,
    cgroup::CgroupError,
    datapath::{DatapathError, EncodeError, PolicyDatapath, encode},
    events,
    policy::{self, Policy, PolicyError},
    resolve::{NameResolver, ResolveError},
};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{source_name}: spec.selector: {message}")]
    Selector {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: spec.selector.cgroupPath: {error}")]
    Cgroup {
        source_name: String,
        #[source]
        error: CgroupError,
    },
    #[error("{source_name}: spec.dns.resolvers: {error}")]
    Resolver {
        source_name: String,
        #[source]
        error: Box<ResolveError>,
    },
    #[error("{source_name}: spec.egress: {error}")]
    Encode {
        source_name: String,
        #[source]
        error: EncodeError,
    },
    #[error("loading the datapath for policy {name}: {error}")]
    Datapath {
        name: String,
        #[source]
        error: Box<DatapathError>,
    },
}

impl Daemon {
    pub async fn apply(&self, source: &str, yaml: &str) -> Result<ApplyReport, ApplyError> {
        // Never trust the client's validation: parse again here.
        let policy = Arc::new(policy::parse_str(source, yaml)?);
        let (targets, cgroup_file) = Targets::of(source, &policy)?;
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
        // the new instance is inserted.
        let _serialized = self.apply_lock.lock().await;
        self.check_conflicts(source, &policy, &targets)?;

        let datapath_error = |error| ApplyError::Datapath {
            name: policy.name.clone(),
            error: Box::new(error),
        };
        let mut datapath = PolicyDatapath::load(targets.hooks()).map_err(datapath_error)?;
        let ring = datapath
            .take_events()
            .expect("a fresh datapath has its ring buffer");
        let datapath = Arc::new(Mutex::new(Some(datapath)));
        let names: Names = Arc::new(Mutex::new(names::names_of(&policy)));
        let warnings = resolve_all(&resolver, &policy, &names, &datapath).await;
        let carried = self.carried_over(&policy);
        {
            let mut guard = datapath.lock().expect("datapath lock");
            let datapath = guard.as_mut().expect("not retired");
            datapath.upsert_allow(&carried).map_err(datapath_error)?;
            datapath.install_static(&entries).map_err(datapath_error)?;
            if let Some(cgroup) = &cgroup_file {
                datapath.attach_cgroup(cgroup).map_err(datapath_error)?;
            }
            for interface in &targets.interfaces {
                datapath
                    .attach_interface(interface)
                    .map_err(datapath_error)?;
            }
        }

        let tasks = vec![
            tokio::spawn(events::forward(
                ring,
                policy.name.clone(),
                self.events.clone(),
            ))
            .abort_handle(),
            tokio::spawn(names::keep_resolved(
                resolver,
                Arc::clone(&policy),
                Arc::clone(&names),
                Arc::clone(&datapath),
            ))
            .abort_handle(),
        ];
        let active = Arc::new(ActivePolicy {
            policy: Arc::clone(&policy),
            source: source.into(),
            targets: targets.clone(),
            applied_at: SystemTime::now(),
            datapath,
            names,
            tasks,
        });
        let old = self
            .policies
            .write()
            .expect("policies lock")
            .insert(policy.name.clone(), Arc::clone(&active));
        let replaced = old.is_some();
        if let Some(old) = old {
            self.retire(&old);
        }
        tracing::info!(policy = %policy.name, source, targets = ?targets, replaced, "policy applied");
        Ok(ApplyReport {
            name: policy.name.clone(),
            replaced,
            cgroup: targets.cgroup,
            interfaces: targets.interfaces,
            names: active.name_status(),
            warnings,
        })
    }

    /// What the instance being replaced (if any) learned that the new policy
    /// still allows (see `learned::carried_over`).
    fn carried_over(&self, policy: &Policy) -> Vec<(AllowKey, AllowValue)> {
        let old = self
            .policies
            .read()
            .expect("policies lock")
            .get(&policy.name)
            .cloned();
        old.map(|old| learned::carried_over(&old.policy, &old.allow_entries(), policy))
            .unwrap_or_default()
    }

    /// Refuses a policy whose workloads another policy already filters.
    fn check_conflicts(
        &self,
        source: &str,
        policy: &Policy,
        targets: &Targets,
    ) -> Result<(), ApplyError> {
        let policies = self.policies.read().expect("policies lock");
        for other in policies
            .values()
            .filter(|other| other.policy.name != policy.name)
        {
            if let Some(shared) = targets.overlap(&other.targets) {
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

/// Resolves every name of the policy concurrently and installs the results.
async fn resolve_all(
    resolver: &NameResolver,
    policy: &Arc<Policy>,
    names: &Names,
    datapath: &Arc<Mutex<Option<PolicyDatapath>>>,
) -> Vec<String> {
    let all: Vec<_> = names.lock().expect("names lock").keys().cloned().collect();
    let resolver = Arc::new(resolver.clone());
    let mut lookups = JoinSet::new();
    for name in all {
        let (resolver, policy, names, datapath) = (
            Arc::clone(&resolver),
            Arc::clone(policy),
            Arc::clone(names),
            Arc::clone(datapath),
        );
        lookups.spawn(
            async move { names::refresh(&resolver, &policy, &name, &names, &datapath).await },
        );
    }
    let mut warnings: Vec<String> = lookups.join_all().await.into_iter().flatten().collect();
    warnings.sort();
    warnings
}
