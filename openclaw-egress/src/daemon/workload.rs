//! What one policy instance filters: a cgroup, a host-side interface, or a
//! Kubernetes pod (through its cgroup or its veth). Every workload gets
//! maps of its own, so a DNS answer one workload receives opens nothing for
//! another.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    cgroup::{self, CgroupError},
    datapath::{DatapathError, Hooks, Place, PolicyDatapath},
};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Workload {
    /// A cgroup v2 directory (absolute path).
    Cgroup { path: PathBuf },
    /// A host-side interface in the daemon's network namespace.
    Interface { name: String },
    /// A pod on this node, filtered through its cgroup.
    Pod {
        namespace: String,
        name: String,
        uid: String,
        cgroup: PathBuf,
    },
    /// The host side of a pod's veth: what the pod sends past its sockets.
    PodInterface {
        namespace: String,
        name: String,
        uid: String,
        interface: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

impl Workload {
    pub fn hooks(&self) -> Hooks {
        match self {
            Self::Cgroup { .. } | Self::Pod { .. } => Hooks::CGROUP,
            Self::Interface { .. } | Self::PodInterface { .. } => Hooks::INTERFACES,
        }
    }

    pub fn cgroup(&self) -> Option<&Path> {
        match self {
            Self::Cgroup { path } | Self::Pod { cgroup: path, .. } => Some(path),
            Self::Interface { .. } | Self::PodInterface { .. } => None,
        }
    }

    /// The UID of the pod this workload enforces, if it is one of a pod's.
    pub fn pod_uid(&self) -> Option<&str> {
        match self {
            Self::Pod { uid, .. } | Self::PodInterface { uid, .. } => Some(uid),
            Self::Cgroup { .. } | Self::Interface { .. } => None,
        }
    }

    /// Where the workload is, for the datapath.
    pub fn place(&self) -> Place {
        match self {
            Self::Cgroup { path } | Self::Pod { cgroup: path, .. } => Place::Cgroup(path.clone()),
            Self::Interface { name }
            | Self::PodInterface {
                interface: name, ..
            } => Place::Interface(name.clone()),
        }
    }

    /// What the datapath knows the workload by: its place (a pod's cgroup
    /// is the same workload as that cgroup selected by path).
    pub fn key(&self) -> String {
        match self.place() {
            Place::Cgroup(path) => format!("cgroup:{}", path.display()),
            Place::Interface(name) => format!("interface:{name}"),
        }
    }

    /// Puts a policy version in force on the workload (attaching it if
    /// nothing does yet).
    pub fn attach(&self, datapath: &mut PolicyDatapath) -> Result<(), AttachError> {
        if let Some(path) = self.cgroup() {
            // Checked first for a clear error (not a cgroup v2 directory...).
            drop(cgroup::open(path)?);
        }
        datapath.attach(&self.key(), &self.place())?;
        Ok(())
    }
}

/// The cgroup and the interfaces among `workloads`, as the API reports a
/// policy's attachment points (pods are listed with the workloads).
pub fn cgroup_and_interfaces(workloads: &[Workload]) -> (Option<PathBuf>, Vec<String>) {
    let cgroup = workloads.iter().find_map(|workload| match workload {
        Workload::Cgroup { path } => Some(path.clone()),
        _ => None,
    });
    let interfaces = workloads
        .iter()
        .filter_map(|workload| match workload {
            Workload::Interface { name } => Some(name.clone()),
            _ => None,
        })
        .collect();
    (cgroup, interfaces)
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cgroup { path } => write!(f, "cgroup {}", path.display()),
            Self::Interface { name } => write!(f, "interface {name}"),
            Self::Pod {
                namespace, name, ..
            } => write!(f, "pod {namespace}/{name}"),
            Self::PodInterface {
                namespace,
                name,
                interface,
                ..
            } => write!(f, "pod {namespace}/{name} via interface {interface}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_and_its_cgroup_are_one_workload_to_the_datapath() {
        let cgroup = Workload::Cgroup {
            path: "/sys/fs/cgroup/kubepods.slice/x".into(),
        };
        let pod = Workload::Pod {
            namespace: "agents".into(),
            name: "claw-0".into(),
            uid: "1f2e".into(),
            cgroup: "/sys/fs/cgroup/kubepods.slice/x".into(),
        };
        assert_eq!(cgroup.key(), pod.key());
        let interface = Workload::Interface {
            name: "veth1234".into(),
        };
        assert_eq!(interface.key(), "interface:veth1234");
    }

    #[test]
    fn workloads_round_trip_through_json() {
        let pod = Workload::Pod {
            namespace: "agents".into(),
            name: "claw-0".into(),
            uid: "1f2e".into(),
            cgroup: "/sys/fs/cgroup/kubepods.slice/x".into(),
        };
        let json = serde_json::to_string(&pod).unwrap();
        assert_eq!(serde_json::from_str::<Workload>(&json).unwrap(), pod);
    }
}
