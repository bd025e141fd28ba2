//! This node's running pods as the pod watcher last reported them, and
//! which of them a policy selects. Apart from the watcher (`pods`) because
//! an apply asks it too: both read the list from here, and neither imports
//! the other.

use std::{collections::BTreeMap, path::PathBuf, sync::RwLock};

use super::{Daemon, workload::Workload};
use crate::{k8s, pod_network::PodNetwork, policy::Policy};

/// A running pod on this node, as last reported by the watcher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub cgroup: PathBuf,
    /// `None` while it could not be found out (the pod has no process yet).
    pub network: Option<PodNetwork>,
}

impl Pod {
    /// Whether `policy`'s `podLabels` select it.
    pub fn is_selected_by(&self, policy: &Policy) -> bool {
        k8s::selects_pod(policy, &self.labels)
    }

    /// The workloads that enforce a policy on the pod: its cgroup, and the
    /// host side of each of its veths.
    pub fn workloads(&self) -> Vec<Workload> {
        let mut workloads = vec![Workload::Pod {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            cgroup: self.cgroup.clone(),
        }];
        if let Some(PodNetwork::Veths(interfaces)) = &self.network {
            workloads.extend(interfaces.iter().map(|interface| Workload::PodInterface {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                uid: self.uid.clone(),
                interface: interface.clone(),
            }));
        }
        workloads
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
            .filter(|pod| pod.is_selected_by(policy))
            .flat_map(Pod::workloads)
            .collect(),
    )
}

impl Daemon {
    /// How many running pods of this node `policy` selects.
    pub(super) fn pods_selected(&self, policy: &Policy) -> u32 {
        let pods = self.pods.read().expect("pods lock");
        pods.as_ref().map_or(0, |pods| {
            pods.values()
                .filter(|pod| pod.is_selected_by(policy))
                .count() as u32
        })
    }
}
