//! Kubernetes (DaemonSet mode): which pods on this node a policy's
//! `podLabels` selects, and where their cgroups are.
//!
//! - [`watcher`]: kube-rs list+watch of this node's pods, as a stream of
//!   [`WorkloadEvent`]s (a running pod and its cgroup, or a pod gone);
//! - [`tracker`] and [`workload`]: the pure logic behind it (pod objects
//!   in, events out), tested with recorded API responses;
//! - [`cgroup_path`]: a pod's cgroup directory for either kubelet cgroup
//!   driver, detected from the cgroup tree;
//! - [`kubepods`]: the pod cgroups the kubelet makes, as it makes them
//!   (inotify), so a pod's policy is in force before its first container;
//! - [`selector`]: `podLabels` matching;
//! - [`policy_dir`]: policies from a mounted ConfigMap;
//! - [`egress_policy`] and [`policy_watcher`]: policies as `EgressPolicy`
//!   custom resources, and their status.
//!
//! The daemon combines them: for each `Running` pod, every policy whose
//! `podLabels` match its labels is attached to its cgroup; on `Gone` (or
//! when labels stop matching) it is detached.

pub mod cgroup_path;
pub mod cluster_network_policy;
pub mod egress_policy;
pub mod kubepods;
pub mod policy_dir;
pub mod policy_watcher;
pub mod selector;
pub mod tracker;
pub mod watcher;
pub mod workload;

pub use cgroup_path::{CgroupDriver, CgroupLayout, PodCgroupError, QosClass};
pub use egress_policy::{EgressPolicy, EgressPolicySpec, EgressPolicyStatus, NodeStatus};
pub use kubepods::{DirEvent, KubepodsWatch, is_qos_dir, pod_uid_of_dir};
pub use policy_dir::{
    DEFAULT_POLICY_DIR, PolicyChange, PolicyDir, PolicyDirError, PolicyFileError,
};
pub use policy_watcher::{ApiPolicyChange, PolicyObject, PolicyTracker, Translated};
pub use selector::{pod_labels_match, policies_for_pod, selects_pod};
pub use tracker::PodTracker;
pub use watcher::{NODE_NAME_ENV, PodWatcher, WatchError, default_client, node_name_from_env};
pub use workload::{NotRunning, PodRef, RunningPod, WorkloadEvent, event_for, running_pod};
