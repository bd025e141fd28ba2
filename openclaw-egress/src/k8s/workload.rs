//! From one Pod object to what the daemon should do about it. Pure apart
//! from looking at the cgroup tree, so every case is testable with recorded
//! API objects and a temporary directory.

use std::{collections::BTreeMap, fmt, path::PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::cgroup_path::{CgroupLayout, PodCgroupError, QosClass};

/// The annotation the kubelet puts on the API server's copy (the "mirror
/// pod") of a static pod: the static pod's own UID. The mirror pod's
/// `metadata.uid` is a different UID, made up by the API server; the cgroup
/// is named after the static pod's. Honouring it gives a pod's author no
/// more than the labels already do: whoever can set a pod's annotations
/// can set its labels, and so choose whether a policy selects it at all.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Which pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// `metadata.uid`: names and namespaces are reused, a UID never is.
    pub uid: String,
}

impl fmt::Display for PodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.uid)
    }
}

/// What the watcher reports to the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadEvent {
    /// The pod runs on this node in `cgroup` (absolute path). Sent when the
    /// pod is first seen running, and again whenever its labels or cgroup
    /// change: treat it as "make this the state", not as "new pod".
    Running {
        pod: PodRef,
        labels: BTreeMap<String, String>,
        cgroup: PathBuf,
    },
    /// The pod is bound to this node and its containers will run (or run),
    /// but its cgroup is not there yet: the kubelet creates it in a moment.
    /// The daemon holds the pod's first packets until its policy is in
    /// force (see `openclaw_egress_common::pod_gate`). Sent once per change
    /// of labels, and followed by `Running` or `Gone`.
    Awaiting {
        pod: PodRef,
        labels: BTreeMap<String, String>,
    },
    /// A pod reported `Running` or `Awaiting` before has stopped, was
    /// deleted, or lost its cgroup. Only sent for pods that were reported.
    Gone { pod: PodRef },
}

impl WorkloadEvent {
    pub fn pod(&self) -> &PodRef {
        match self {
            WorkloadEvent::Running { pod, .. }
            | WorkloadEvent::Awaiting { pod, .. }
            | WorkloadEvent::Gone { pod } => pod,
        }
    }
}

/// A pod whose traffic the daemon can filter now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningPod {
    pub pod: PodRef,
    pub labels: BTreeMap<String, String>,
    pub cgroup: PathBuf,
}

impl From<RunningPod> for WorkloadEvent {
    fn from(running: RunningPod) -> WorkloadEvent {
        WorkloadEvent::Running {
            pod: running.pod,
            labels: running.labels,
            cgroup: running.cgroup,
        }
    }
}

/// Why a pod is not (or no longer) one to filter.
#[derive(Debug, thiserror::Error)]
pub enum NotRunning {
    /// The API server always sets these; an object without them is not a
    /// stored pod.
    #[error("the pod has no {0}")]
    NoIdentity(&'static str),
    /// The field selector already asks for this node's pods only; checking
    /// again costs nothing and keeps a wrong selector from attaching on the
    /// wrong node.
    #[error("the pod is scheduled on {}, not this node", .0.as_deref().unwrap_or("no node yet"))]
    OtherNode(Option<String>),
    /// Succeeded and Failed pods have no containers any more. Pending pods
    /// do count: their init containers run while the phase is Pending. A pod
    /// being deleted (`deletionTimestamp` set) is still Running and still
    /// filtered until its containers have stopped: its processes can still
    /// send.
    #[error("the pod's phase is {}", .0.as_deref().unwrap_or("not set"))]
    Phase(Option<String>),
    #[error(transparent)]
    Cgroup(PodCgroupError),
}

/// The pod as a workload to filter, if it is bound to `node`, not finished,
/// and its cgroup exists, or why not.
pub fn running_pod(
    pod: &Pod,
    node: &str,
    cgroups: &CgroupLayout,
) -> Result<RunningPod, NotRunning> {
    let pod_ref = pod_ref(pod)?;
    let scheduled_on = pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref());
    if scheduled_on != Some(node) {
        return Err(NotRunning::OtherNode(scheduled_on.map(str::to_owned)));
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|status| status.phase.as_deref());
    // A pod bound to a node is Pending (even with no status yet, as the
    // scheduler leaves it) until its containers have started.
    if !matches!(phase, Some("Pending" | "Running") | None) {
        return Err(NotRunning::Phase(phase.map(str::to_owned)));
    }
    let qos = status
        .and_then(|status| status.qos_class.as_deref())
        .and_then(QosClass::from_status);
    let cgroup = cgroups
        .pod_cgroup(cgroup_uid(pod).unwrap_or(&pod_ref.uid), qos)
        .map_err(NotRunning::Cgroup)?;
    Ok(RunningPod {
        pod: pod_ref,
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        cgroup,
    })
}

/// `WorkloadEvent::Running` for a pod to filter, `None` for any other pod.
/// Stateless: whether a `None` means `Gone` depends on what was reported
/// before, which [`super::PodTracker`] keeps.
pub fn event_for(pod: &Pod, node: &str, cgroups: &CgroupLayout) -> Option<WorkloadEvent> {
    running_pod(pod, node, cgroups)
        .ok()
        .map(WorkloadEvent::from)
}

/// Namespace, name and UID of a pod object.
pub fn pod_ref(pod: &Pod) -> Result<PodRef, NotRunning> {
    let meta = &pod.metadata;
    Ok(PodRef {
        namespace: meta
            .namespace
            .clone()
            .ok_or(NotRunning::NoIdentity("namespace"))?,
        name: meta.name.clone().ok_or(NotRunning::NoIdentity("name"))?,
        uid: meta.uid.clone().ok_or(NotRunning::NoIdentity("uid"))?,
    })
}

/// The UID the pod's cgroup is named after, when it is not `metadata.uid`:
/// a mirror pod's static pod UID.
fn cgroup_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(MIRROR_POD_ANNOTATION)
        .map(String::as_str)
}
