//! DaemonSet mode: pods come and go, and every applied policy whose
//! `podLabels` match a running pod on this node enforces it with instances
//! of its own (per-workload maps: one pod's DNS answers open nothing for
//! another pod of the same policy): one on the pod's cgroup, and one on the
//! host side of each of its veths, so that what a pod with CAP_NET_RAW or
//! CAP_NET_ADMIN sends past its sockets is judged too (see `pod_network`).
//! A packet must pass both. The veth layer learns only from DNS answers that
//! cross the veth, so nothing forged inside the pod opens it.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use futures::StreamExt as _;

use super::{
    Daemon,
    active::ActivePolicy,
    error::ApplyError,
    instance::{Filling, Instance},
    node_pods::Pod,
    workload::Workload,
};
use crate::{
    cgroup,
    datapath::encode,
    error_text::full_message,
    fqdn::names,
    k8s::{self, CgroupLayout, DirEvent, KubepodsWatch, PodWatcher, WorkloadEvent},
    pod_network::{self, PodNetwork, PodNetworkError},
};

/// How often a pod whose network is not known yet (no process in its cgroup)
/// is looked at again.
const NETWORK_RETRY: Duration = Duration::from_secs(2);

/// The next events of the kubepods watch; never, without one.
async fn next_dirs(watch: Option<&mut KubepodsWatch>) -> std::io::Result<Vec<DirEvent>> {
    match watch {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}

/// The network of the pod in `cgroup`, looked up off the async threads (it
/// reads /proc and runs a thread in the pod's namespace).
async fn network_of(cgroup: PathBuf) -> Result<PodNetwork, PodNetworkError> {
    tokio::task::spawn_blocking(move || pod_network::of_cgroup(&cgroup))
        .await
        .unwrap_or_else(|error| {
            Err(PodNetworkError::Links(std::io::Error::other(
                error.to_string(),
            )))
        })
}

impl Daemon {
    /// Follows this node's pods until the daemon stops. `kubepods` is where
    /// the kubelet makes pod cgroups, when it is not where its cgroup driver
    /// puts them by default (a custom cgroupRoot).
    pub async fn watch_pods(self: Arc<Self>, kubepods: Option<PathBuf>) -> anyhow::Result<()> {
        let node = k8s::node_name_from_env()?;
        let client = k8s::default_client().await?;
        let mount = cgroup::cgroup2_mount()?;
        let layout = match &kubepods {
            // Pods are found by searching below the given root.
            Some(root) => CgroupLayout::searching(root),
            None => CgroupLayout::detect(&mount),
        };
        let mut gate = match kubepods.clone().or_else(|| layout.kubepods_root()) {
            Some(root) => match self.start_pod_gate(&mount, &root) {
                Ok(watch) => Some(watch),
                Err(error) => {
                    tracing::error!(
                        "no pod gate: a selected pod is enforced only from the moment the daemon \
                         attaches its policy, not from its first packet: {}",
                        full_message(&error)
                    );
                    None
                }
            },
            None => {
                tracing::warn!(
                    "no kubepods cgroup found (kubepods.slice or kubepods below {}): a selected \
                     pod is enforced from the moment the daemon attaches its policy, not from its \
                     first packet; give --kubepods-cgroup for a kubelet with a custom cgroupRoot",
                    mount.display()
                );
                None
            }
        };
        tracing::info!(node, driver = ?layout.driver(), "watching this node's pods");
        let mut events = Box::pin(PodWatcher::new(client, node, layout).events());
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(event)) => Arc::clone(&self).pod_event(event).await,
                    Some(Err(error)) => tracing::warn!("pod watch: {}", full_message(&error)),
                    None => return Ok(()),
                },
                dirs = next_dirs(gate.as_mut()) => match dirs {
                    Ok(dirs) => {
                        let watch = gate.as_mut().expect("only polled with a watch");
                        for dir in dirs {
                            self.cgroup_dir_event(dir, watch).await;
                        }
                    }
                    Err(error) => {
                        tracing::error!(
                            "the kubepods watch failed ({error}); new pods are enforced from when \
                             the pod watch reports them"
                        );
                        gate = None;
                    }
                },
            }
        }
    }

    /// Records the pod's new state and attaches or detaches instances so
    /// that exactly the policies selecting it enforce it.
    pub async fn pod_event(self: Arc<Self>, event: WorkloadEvent) {
        let pod = match event {
            WorkloadEvent::Awaiting { pod, labels } => {
                self.pod_awaited(pod, labels).await;
                return;
            }
            WorkloadEvent::Running {
                pod,
                labels,
                cgroup,
            } => {
                let network = match network_of(cgroup.clone()).await {
                    Ok(network) => {
                        if network == PodNetwork::NoVeth {
                            tracing::warn!(
                                pod = %format!("{}/{}", pod.namespace, pod.name),
                                "no veth in the daemon's network namespace leads to the pod's \
                                 (is its network a veth? does the daemon run with hostNetwork?): \
                                 only its cgroup is enforced, so raw packets of a pod holding \
                                 CAP_NET_RAW are not"
                            );
                        }
                        Some(network)
                    }
                    Err(error) => {
                        tracing::warn!(
                            pod = %format!("{}/{}", pod.namespace, pod.name),
                            "its veth is not enforced yet: {error}; retrying"
                        );
                        tokio::spawn(Arc::clone(&self).retry_network(pod.uid.clone()));
                        None
                    }
                };
                Ok(Pod {
                    namespace: pod.namespace,
                    name: pod.name,
                    uid: pod.uid,
                    labels,
                    cgroup,
                    network,
                })
            }
            WorkloadEvent::Gone { pod } => Err(pod.uid),
        };
        let _serialized = self.apply_lock.lock().await;
        let uid = match &pod {
            Ok(pod) => pod.uid.clone(),
            Err(uid) => uid.clone(),
        };
        {
            let mut pods = self.pods.write().expect("pods lock");
            let pods = pods.get_or_insert_with(BTreeMap::new);
            match &pod {
                Ok(pod) => pods.insert(uid.clone(), pod.clone()),
                Err(_) => pods.remove(&uid),
            };
        }
        let in_force = self.reconcile_pod(&uid, pod.as_ref().ok()).await;
        if let Ok(pod) = &pod
            && in_force
        {
            self.pod_started(&pod.cgroup);
        }
        // Only now: the gate holds the pod until its policy is in force.
        self.pod_no_longer_awaited(&uid);
    }

    /// Looks for the network of a pod that had no process yet, until it is
    /// found or the pod is gone, and then attaches its veth layer.
    async fn retry_network(self: Arc<Self>, uid: String) {
        loop {
            tokio::time::sleep(NETWORK_RETRY).await;
            let pod = self
                .pods
                .read()
                .expect("pods lock")
                .as_ref()
                .and_then(|pods| pods.get(&uid).cloned());
            let Some(mut pod) = pod else {
                return; // Gone.
            };
            if pod.network.is_some() {
                return; // Found by a later event.
            }
            let Ok(network) = network_of(pod.cgroup.clone()).await else {
                continue;
            };
            let _serialized = self.apply_lock.lock().await;
            pod.network = Some(network);
            let current = {
                let mut pods = self.pods.write().expect("pods lock");
                let Some(current) = pods.as_mut().and_then(|pods| pods.get_mut(&uid)) else {
                    return;
                };
                // Keep what a newer event said about labels and cgroup.
                current.network = pod.network.clone();
                current.clone()
            };
            tracing::info!(pod = %format!("{}/{}", current.namespace, current.name), "found its network");
            self.reconcile_pod(&uid, Some(&current)).await;
            return;
        }
    }

    /// Makes the instances of pod `uid` match what the policies say of it
    /// (`pod` is its state, `None` once it is gone). Called with the apply
    /// lock held. `false` if an instance could not be attached.
    async fn reconcile_pod(&self, uid: &str, pod: Option<&Pod>) -> bool {
        let mut in_force = true;
        let policies: Vec<Arc<ActivePolicy>> = self
            .policies
            .read()
            .expect("policies lock")
            .values()
            .cloned()
            .collect();
        for active in policies {
            let wanted: Vec<Workload> = pod
                .filter(|pod| pod.is_selected_by(&active.policy))
                .map(Pod::workloads)
                .unwrap_or_default();
            let current: Vec<Arc<Instance>> = active
                .instances()
                .into_iter()
                .filter(|instance| instance.workload.pod_uid() == Some(uid))
                .collect();
            for instance in &current {
                if !wanted.contains(&instance.workload) {
                    self.remove_instance(&active, instance);
                }
            }
            for workload in wanted {
                if current.iter().any(|instance| instance.workload == workload) {
                    continue;
                }
                if let Err(error) = self.add_instance(&active, &workload) {
                    in_force = false;
                    tracing::error!(
                        policy = %active.policy.name,
                        workload = %workload,
                        "cannot attach: {}",
                        full_message(&error)
                    );
                }
            }
        }
        in_force
    }

    /// Builds and attaches an instance of an applied policy for one more
    /// workload. It starts with the addresses the daemon resolved for the
    /// policy's names (what other workloads learned from their own DNS
    /// answers is theirs and is not copied).
    fn add_instance(&self, active: &ActivePolicy, workload: &Workload) -> Result<(), ApplyError> {
        let policy = &active.policy;
        let entries = encode::static_entries(policy).map_err(|error| ApplyError::Encode {
            source_name: active.source.clone(),
            error,
        })?;
        let allow = names::allow_entries(policy, &active.names);
        let filling = Filling {
            entries: &entries,
            allow: &allow,
            flows: &[],
            record: self.recording.bits(&policy.name),
        };
        let instance =
            Instance::build(policy, workload, &self.datapath, &filling, &self.slot_names)?;
        active
            .instances
            .write()
            .expect("instances lock")
            .push(instance);
        if let Err(error) = self.record(active) {
            tracing::error!(policy = %policy.name, "{}", full_message(&error));
        }
        tracing::info!(policy = %policy.name, workload = %workload, "attached");
        Ok(())
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
}
