//! Applying a policy: everything that can fail happens before the new
//! instance is attached, and the old instance is detached only after the new
//! one is attached. A failed apply therefore changes nothing, and a
//! successful one never leaves a moment where the workload is unfiltered.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::task::JoinSet;

use super::{
    Daemon,
    active::ActivePolicy,
    names::{self, Names},
};
use crate::{
    api::ApplyReport,
    cgroup::{self, CgroupError},
    datapath::{DatapathError, PolicyDatapath, encode},
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
        let cgroup = self.target_cgroup(source, &policy)?;
        let cgroup_file = cgroup::open(&cgroup).map_err(|error| ApplyError::Cgroup {
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
        self.check_conflicts(source, &policy, &cgroup)?;

        let datapath_error = |error| ApplyError::Datapath {
            name: policy.name.clone(),
            error: Box::new(error),
        };
        let mut datapath = PolicyDatapath::load().map_err(datapath_error)?;
        let ring = datapath
            .take_events()
            .expect("a fresh datapath has its ring buffer");
        let datapath = Arc::new(Mutex::new(Some(datapath)));
        let names: Names = Arc::new(Mutex::new(names::names_of(&policy)));
        let warnings = resolve_all(&resolver, &policy, &names, &datapath).await;
        {
            let mut guard = datapath.lock().expect("datapath lock");
            let datapath = guard.as_mut().expect("not retired");
            datapath
                .install_static(&encode::static_entries(&policy))
                .map_err(datapath_error)?;
            datapath
                .attach_cgroup(&cgroup_file)
                .map_err(datapath_error)?;
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
            cgroup: cgroup.clone(),
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
        tracing::info!(policy = %policy.name, source, cgroup = %cgroup.display(), replaced, "policy applied");
        Ok(ApplyReport {
            name: policy.name.clone(),
            replaced,
            cgroup,
            names: names::status(&active.names),
            warnings,
        })
    }

    /// The cgroup a policy attaches to. This daemon attaches to cgroups; the
    /// other selectors are refused rather than silently ignored.
    fn target_cgroup(&self, source: &str, policy: &Policy) -> Result<PathBuf, ApplyError> {
        let selector_error = |message: &str| ApplyError::Selector {
            source_name: source.into(),
            message: message.into(),
        };
        if !policy.selector.interfaces.is_empty() {
            return Err(selector_error(
                "interfaces: TC attachment is not supported by this daemon yet; use cgroupPath",
            ));
        }
        if !policy.selector.pod_labels.is_empty() {
            return Err(selector_error(
                "podLabels: Kubernetes pod selection is not supported by this daemon yet; use cgroupPath",
            ));
        }
        let path = policy
            .selector
            .cgroup_path
            .as_deref()
            .ok_or_else(|| selector_error("cgroupPath is required"))?;
        cgroup::resolve(path).map_err(|error| ApplyError::Cgroup {
            source_name: source.into(),
            error,
        })
    }

    /// Two policies on one cgroup would both have to allow a packet, which is
    /// never what anyone means: refuse it.
    fn check_conflicts(
        &self,
        source: &str,
        policy: &Policy,
        cgroup: &PathBuf,
    ) -> Result<(), ApplyError> {
        let policies = self.policies.read().expect("policies lock");
        let same = |other: &PathBuf| {
            other == cgroup
                || matches!(
                    (other.canonicalize(), cgroup.canonicalize()),
                    (Ok(a), Ok(b)) if a == b
                )
        };
        match policies
            .values()
            .find(|active| active.policy.name != policy.name && same(&active.cgroup))
        {
            Some(other) => Err(ApplyError::Selector {
                source_name: source.into(),
                message: format!(
                    "cgroupPath: {} is already selected by policy {} (from {}); remove it first",
                    cgroup.display(),
                    other.policy.name,
                    other.source
                ),
            }),
            None => Ok(()),
        }
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
