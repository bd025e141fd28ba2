//! DaemonSet mode: pods come and go, and every applied policy whose
//! `podLabels` match a running pod on this node gets its own instance on the
//! pod's cgroup (per-workload maps: one pod's DNS answers open nothing for
//! another pod of the same policy).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use futures::StreamExt as _;

use super::{
    Daemon,
    active::ActivePolicy,
    apply::resolve_all,
    instance::{Instance, Instances},
    names,
    workload::Workload,
};
use crate::{
    cgroup,
    datapath::{PolicyDatapath, encode},
    error_text::full_message,
    k8s::{self, CgroupLayout, PodWatcher, PolicyChange, PolicyDir, WorkloadEvent},
    policy::Policy,
    resolve::NameResolver,
};

/// How often the policy directory is checked for changes.
const POLICY_DIR_POLL: Duration = Duration::from_secs(2);

/// A running pod on this node, as last reported by the watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub cgroup: PathBuf,
}

impl Pod {
    pub fn workload(&self) -> Workload {
        Workload::Pod {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            cgroup: self.cgroup.clone(),
        }
    }
}

/// Running pods by UID; `None` unless the daemon runs with `--kubernetes`.
pub type Pods = RwLock<Option<BTreeMap<String, Pod>>>;

/// The pod workloads `policy` selects now.
pub fn selected(pods: &Pods, policy: &Policy) -> Option<Vec<Workload>> {
    let pods = pods.read().expect("pods lock");
    let pods = pods.as_ref()?;
    Some(
        pods.values()
            .filter(|pod| k8s::selects_pod(policy, &pod.labels))
            .map(Pod::workload)
            .collect(),
    )
}

impl Daemon {
    /// Follows this node's pods until the daemon stops.
    pub async fn watch_pods(self: Arc<Self>) -> anyhow::Result<()> {
        let node = k8s::node_name_from_env()?;
        let client = k8s::default_client().await?;
        let layout = CgroupLayout::detect(&cgroup::cgroup2_mount()?);
        tracing::info!(node, driver = ?layout.driver(), "watching this node's pods");
        let mut events = Box::pin(PodWatcher::new(client, node, layout).events());
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => self.pod_event(event).await,
                Err(error) => tracing::warn!("pod watch: {}", full_message(&error)),
            }
        }
        Ok(())
    }

    /// Records the pod's new state and attaches or detaches instances so
    /// that exactly the policies selecting it filter it.
    pub async fn pod_event(&self, event: WorkloadEvent) {
        let _serialized = self.apply_lock.lock().await;
        let uid = event.pod().uid.clone();
        let pod = match event {
            WorkloadEvent::Running {
                pod,
                labels,
                cgroup,
            } => Some(Pod {
                namespace: pod.namespace,
                name: pod.name,
                uid: pod.uid,
                labels,
                cgroup,
            }),
            WorkloadEvent::Gone { .. } => None,
        };
        {
            let mut pods = self.pods.write().expect("pods lock");
            let pods = pods.get_or_insert_with(BTreeMap::new);
            match &pod {
                Some(pod) => pods.insert(uid.clone(), pod.clone()),
                None => pods.remove(&uid),
            };
        }
        let policies: Vec<Arc<ActivePolicy>> = self
            .policies
            .read()
            .expect("policies lock")
            .values()
            .cloned()
            .collect();
        for active in policies {
            let wanted = pod
                .as_ref()
                .filter(|pod| k8s::selects_pod(&active.policy, &pod.labels))
                .map(Pod::workload);
            let current = active.instances().into_iter().find(
                |instance| matches!(&instance.workload, Workload::Pod { uid: u, .. } if *u == uid),
            );
            let up_to_date = match (&current, &wanted) {
                (Some(instance), Some(workload)) => instance.workload == *workload,
                (None, None) => true,
                _ => false,
            };
            if up_to_date {
                continue;
            }
            if let Some(instance) = current {
                self.remove_instance(&active, &instance);
            }
            if let Some(workload) = wanted
                && let Err(error) = self.add_instance(&active, workload.clone()).await
            {
                tracing::error!(
                    policy = %active.policy.name,
                    workload = %workload,
                    "cannot attach: {error}"
                );
            }
        }
    }

    /// Loads, fills and attaches an instance for one more workload of an
    /// applied policy.
    async fn add_instance(&self, active: &ActivePolicy, workload: Workload) -> Result<(), String> {
        let policy = &active.policy;
        let dir = self
            .pins_root
            .join(&policy.name)
            .join(&active.generation)
            .join(workload.slug());
        let datapath =
            PolicyDatapath::load_pinned(workload.hooks(), &dir).map_err(|e| full_message(&e))?;
        let instance = Instance::start(
            workload.clone(),
            datapath,
            &policy.name,
            self.events.clone(),
        );
        let filled = self.fill_one(policy, &instance).await;
        if let Err(error) = filled {
            instance.retire(true);
            return Err(error);
        }
        active
            .instances
            .write()
            .expect("instances lock")
            .push(Arc::clone(&instance));
        if let Err(error) = self.record(active) {
            tracing::error!(policy = %policy.name, "{}", full_message(&error));
        }
        tracing::info!(policy = %policy.name, workload = %workload, "attached");
        Ok(())
    }

    /// Resolves the policy's names for a new instance, then writes its static
    /// entries and attaches it. (Names resolved by the daemon are shared
    /// knowledge; what other workloads learned from their DNS answers is not
    /// copied.)
    async fn fill_one(&self, policy: &Arc<Policy>, instance: &Arc<Instance>) -> Result<(), String> {
        let entries = encode::static_entries(policy).map_err(|e| e.to_string())?;
        let resolver = NameResolver::new(&policy.dns.resolvers).map_err(|e| full_message(&e))?;
        let only: Instances = Arc::new(RwLock::new(vec![Arc::clone(instance)]));
        let names = Arc::new(Mutex::new(names::names_of(policy)));
        for warning in resolve_all(&resolver, policy, &names, &only).await {
            tracing::warn!(policy = %policy.name, workload = %instance.workload, "{warning}");
        }
        instance
            .with(|datapath| {
                datapath
                    .install_static(&entries)
                    .map_err(|e| full_message(&e))?;
                instance
                    .workload
                    .attach(datapath)
                    .map_err(|e| full_message(&e))
            })
            .unwrap_or_else(|| Err("retired".into()))
    }

    fn remove_instance(&self, active: &ActivePolicy, instance: &Arc<Instance>) {
        active
            .instances
            .write()
            .expect("instances lock")
            .retain(|other| !Arc::ptr_eq(other, instance));
        self.keep_counts(&active.policy.name, &instance.retire(true));
        if let Err(error) = self.record(active) {
            tracing::error!(policy = %active.policy.name, "{}", full_message(&error));
        }
        tracing::info!(policy = %active.policy.name, workload = %instance.workload, "detached");
    }

    /// Applies and removes policies as files appear, change and disappear in
    /// `dir` (a mounted ConfigMap in DaemonSet mode).
    pub async fn follow_policy_dir(self: Arc<Self>, dir: PathBuf) {
        let mut policies = PolicyDir::new(&dir);
        // The last failure per file, so a retried apply that keeps failing
        // is logged once, not every poll.
        let mut failures: BTreeMap<PathBuf, String> = BTreeMap::new();
        loop {
            match policies.poll() {
                Ok(changes) => {
                    for change in changes {
                        if let Some((name, file, error)) = self.policy_change(change).await {
                            if failures.get(&file) != Some(&error) {
                                tracing::error!(file = %file.display(), "policy not applied (retrying): {error}");
                                failures.insert(file, error);
                            }
                            policies.apply_failed(&name);
                        }
                    }
                }
                Err(error) => tracing::error!(dir = %dir.display(), "{}", full_message(&error)),
            }
            tokio::time::sleep(POLICY_DIR_POLL).await;
        }
    }

    /// Carries out one change; a failed apply comes back as (policy name,
    /// file, error) to be retried.
    async fn policy_change(&self, change: PolicyChange) -> Option<(String, PathBuf, String)> {
        match change {
            PolicyChange::Apply { file, policy } => {
                let source = file.display().to_string();
                let result = match std::fs::read_to_string(&file) {
                    Ok(yaml) => self
                        .apply(&source, &yaml, &Default::default())
                        .await
                        .map(drop)
                        .map_err(|e| full_message(&e)),
                    Err(error) => Err(error.to_string()),
                };
                return result.err().map(|error| (policy.name, file, error));
            }
            PolicyChange::Remove { file, name } => {
                if let Err(error) = self.remove(&name).await {
                    tracing::warn!(file = %file.display(), "{error}");
                }
            }
            PolicyChange::Rejected { file, error } => tracing::error!(
                file = %file.display(),
                "policy rejected (the version applied before stays): {}",
                full_message(&error)
            ),
        }
        None
    }
}
