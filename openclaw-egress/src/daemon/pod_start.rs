//! Pods enforced from their first packet (DaemonSet mode).
//!
//! The watcher reports a pod bound to this node as `Awaiting` until the
//! kubelet has made its cgroup. While some policy selects an awaited pod,
//! the pod gate on the kubepods root is armed (see
//! `openclaw_egress_common::pod_gate`): every pod cgroup made from then on
//! is held, in the kernel, from its `mkdir`. The kubepods tree is watched
//! with inotify; the moment the pod's directory appears its instances are
//! built and attached, and only then is it marked to pass. Cgroups of pods
//! no policy selects are marked at once.
//!
//! What this cannot cover: a pod whose cgroup the kubelet made before the
//! daemon heard of the pod (both watch the API server, and the kubelet may
//! hear first) is enforced from the moment the daemon hears, milliseconds
//! later; the kubelet mounts volumes and starts the sandbox and its network
//! before any container. Raw frames (AF_PACKET) of a pod holding
//! CAP_NET_RAW are judged on its veth, which exists only once the sandbox
//! has its network (see `pods`).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::Daemon;
use crate::{
    datapath::pod_gate::{self, Mark},
    error_text::full_message,
    k8s::{self, DirEvent, KubepodsWatch, PodRef, WorkloadEvent},
};

/// A pod bound to this node whose cgroup is not there yet.
#[derive(Clone, Debug)]
struct AwaitingPod {
    pod: PodRef,
    labels: BTreeMap<String, String>,
}

/// The awaited pods a policy selects, as [`Daemon::update_gate`] found them.
#[derive(Default)]
pub struct SelectedAwaited {
    root: Option<PathBuf>,
    pods: Vec<AwaitingPod>,
}

impl SelectedAwaited {
    /// `Running` for each pod whose cgroup exists already (made before
    /// the gate was armed, or before the daemon heard of the pod, so not
    /// held): to be enforced at once. Reads the kubepods tree.
    pub(super) fn already_made(self) -> Vec<WorkloadEvent> {
        let Some(root) = self.root else {
            return Vec::new();
        };
        self.pods
            .into_iter()
            .filter_map(|awaiting| {
                let cgroup = find_pod_dir(&root, &awaiting.pod.uid)?;
                Some(WorkloadEvent::Running {
                    pod: awaiting.pod,
                    labels: awaiting.labels,
                    cgroup,
                })
            })
            .collect()
    }
}

#[derive(Default)]
pub struct PodStart {
    /// The kubepods root the gate is attached to; `None`: no gate.
    root: Option<PathBuf>,
    awaiting: BTreeMap<String, AwaitingPod>,
    /// The cgroups marked, by path, so that their marks go with them.
    marked: BTreeMap<PathBuf, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PodGateError {
    #[error("the kubepods cgroup {root} is not below the cgroup2 mount {mount}")]
    OutsideMount { root: PathBuf, mount: PathBuf },
    #[error("watching {root} for new pod cgroups: {source}")]
    Watch {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("attaching the pod gate: {0}")]
    Datapath(#[from] crate::datapath::DatapathError),
}

impl Daemon {
    /// Attaches the pod gate to `root` (the kubepods cgroup, below `mount`)
    /// and starts watching it for pod cgroups.
    pub(super) fn start_pod_gate(
        &self,
        mount: &Path,
        root: &Path,
    ) -> Result<KubepodsWatch, PodGateError> {
        let level = root
            .strip_prefix(mount)
            .map_err(|_| PodGateError::OutsideMount {
                root: root.to_path_buf(),
                mount: mount.to_path_buf(),
            })?
            .components()
            .count() as u32;
        let watch_error = |source| PodGateError::Watch {
            root: root.to_path_buf(),
            source,
        };
        let mut watch = KubepodsWatch::new(root).map_err(watch_error)?;
        let gate = self.datapath.pod_gate();
        gate.attach(root, level, Some(&pod_gate::pin_path(&self.pins_root)))?;
        let mut start = self.pod_start.lock().expect("pod start lock");
        start.root = Some(root.to_path_buf());
        for dir in subdirectories(root) {
            if dir_name(&dir).is_some_and(k8s::is_qos_dir) {
                watch.watch(&dir).map_err(watch_error)?;
                start.mark(gate_of(self), &dir, Mark::Descend);
            }
        }
        tracing::info!(
            root = %root.display(),
            armed = gate.is_armed(),
            "pod gate attached: selected pods are held from their first packet until their \
             policy is in force"
        );
        Ok(watch)
    }

    /// A pod bound to this node whose cgroup is not there yet.
    pub(super) async fn pod_awaited(
        self: &Arc<Self>,
        pod: PodRef,
        labels: BTreeMap<String, String>,
    ) {
        let found = {
            let _serialized = self.apply_lock.lock().await;
            let uid = pod.uid.clone();
            self.pod_start
                .lock()
                .expect("pod start lock")
                .awaiting
                .insert(uid, AwaitingPod { pod, labels });
            self.update_gate()
        }
        .already_made();
        for running in found {
            // (Boxed: `pod_event` is what called this.)
            Box::pin(Arc::clone(self).pod_event(running)).await;
        }
    }

    /// Forgets an awaited pod (gone, or now running), and disarms the gate
    /// if no selected pod is awaited any more (also when an earlier daemon
    /// left it armed).
    pub(super) fn pod_no_longer_awaited(&self, uid: &str) {
        self.pod_start
            .lock()
            .expect("pod start lock")
            .awaiting
            .remove(uid);
        self.update_gate();
    }

    /// Arms the gate while a policy selects an awaited pod, disarms it
    /// otherwise; returns those pods. Called with the apply lock held,
    /// after anything that changes which awaited pods are selected.
    pub(super) fn update_gate(&self) -> SelectedAwaited {
        let start = self.pod_start.lock().expect("pod start lock");
        let Some(root) = start.root.clone() else {
            return SelectedAwaited::default();
        };
        let selected: Vec<AwaitingPod> = {
            let policies = self.policies.read().expect("policies lock");
            start
                .awaiting
                .values()
                .filter(|awaiting| {
                    policies
                        .values()
                        .any(|active| k8s::selects_pod(&active.policy, &awaiting.labels))
                })
                .cloned()
                .collect()
        };
        drop(start);
        let gate = self.datapath.pod_gate();
        if selected.is_empty() {
            if gate.is_armed() {
                match gate.disarm() {
                    Ok(()) => tracing::info!("pod gate disarmed: no selected pod is awaited"),
                    Err(error) => {
                        tracing::error!("disarming the pod gate: {}", full_message(&error))
                    }
                }
            }
            return SelectedAwaited::default();
        }
        if !gate.is_armed() {
            let armed = pod_gate::newest_cgroup_id(&root)
                .map_err(|error| error.to_string())
                .and_then(|newest| gate.arm(newest).map_err(|error| full_message(&error)));
            match armed {
                Ok(watermark) => tracing::info!(
                    watermark,
                    pods = ?selected.iter().map(|a| a.pod.to_string()).collect::<Vec<_>>(),
                    "pod gate armed: new pod cgroups are held until their policy is in force"
                ),
                Err(error) => tracing::error!(
                    "arming the pod gate (a selected pod's first packets are not held): {error}"
                ),
            }
        }
        SelectedAwaited {
            root: Some(root),
            pods: selected,
        }
    }

    /// Lets a pod's cgroup pass the gate: its policies are in force (or
    /// none selects it).
    pub(super) fn pod_started(&self, cgroup: &Path) {
        let mut start = self.pod_start.lock().expect("pod start lock");
        if start
            .root
            .as_ref()
            .is_some_and(|root| cgroup.starts_with(root))
        {
            start.mark(gate_of(self), cgroup, Mark::Pass);
        }
    }

    /// Reacts to a directory made or removed in the kubepods tree.
    pub(super) async fn cgroup_dir_event(
        self: &Arc<Self>,
        event: DirEvent,
        watch: &mut KubepodsWatch,
    ) {
        match event {
            DirEvent::Created(dir) => self.cgroup_dir_created(dir, watch).await,
            DirEvent::Removed(dir) => {
                let mut start = self.pod_start.lock().expect("pod start lock");
                if let Some(id) = start.marked.remove(&dir) {
                    self.datapath.pod_gate().unmark(id);
                }
            }
            DirEvent::Overflow => {
                tracing::warn!("the kubepods watch lost events; looking at the whole tree");
                let root = self.pod_start.lock().expect("pod start lock").root.clone();
                let Some(root) = root else { return };
                for dir in subdirectories(&root) {
                    let qos = dir_name(&dir).is_some_and(k8s::is_qos_dir);
                    let pods = if qos {
                        subdirectories(&dir)
                    } else {
                        Vec::new()
                    };
                    Box::pin(self.cgroup_dir_created(dir, watch)).await;
                    for pod in pods {
                        Box::pin(self.cgroup_dir_created(pod, watch)).await;
                    }
                }
            }
        }
    }

    async fn cgroup_dir_created(self: &Arc<Self>, dir: PathBuf, watch: &mut KubepodsWatch) {
        let Some(name) = dir_name(&dir) else { return };
        let awaited = {
            let mut start = self.pod_start.lock().expect("pod start lock");
            let Some(root) = start.root.clone() else {
                return;
            };
            if dir.parent() == Some(&root) && k8s::is_qos_dir(name) {
                if let Err(error) = watch.watch(&dir) {
                    tracing::error!(dir = %dir.display(), "watching a QoS-class cgroup: {error}");
                }
                start.mark(gate_of(self), &dir, Mark::Descend);
                return;
            }
            let Some(uid) = k8s::pod_uid_of_dir(name) else {
                return;
            };
            let awaited = start.awaiting.get(&uid).cloned();
            if awaited.is_none() && self.datapath.pod_gate().is_armed() {
                // No policy waits for this pod: let it go at once.
                start.mark(gate_of(self), &dir, Mark::Pass);
            }
            awaited
        };
        if let Some(awaited) = awaited {
            tracing::info!(pod = %awaited.pod, cgroup = %dir.display(), "the kubelet made the pod's cgroup");
            Arc::clone(self)
                .pod_event(WorkloadEvent::Running {
                    pod: awaited.pod,
                    labels: awaited.labels,
                    cgroup: dir,
                })
                .await;
        }
    }
}

fn gate_of(daemon: &Daemon) -> &pod_gate::PodGate {
    daemon.datapath.pod_gate()
}

impl PodStart {
    fn mark(&mut self, gate: &pod_gate::PodGate, dir: &Path, mark: Mark) {
        let marked = pod_gate::cgroup_id(dir)
            .map_err(|error| error.to_string())
            .and_then(|id| {
                gate.mark(id, mark)
                    .map(|()| id)
                    .map_err(|error| full_message(&error))
            });
        match marked {
            Ok(id) => {
                self.marked.insert(dir.to_path_buf(), id);
            }
            // Fail closed: an unmarked new pod stays held.
            Err(error) => {
                tracing::error!(dir = %dir.display(), ?mark, "marking a cgroup for the pod gate: {error}")
            }
        }
    }
}

/// The pod cgroup of `uid` below `root` (directly, or below a QoS class).
fn find_pod_dir(root: &Path, uid: &str) -> Option<PathBuf> {
    let is_pod =
        |dir: &PathBuf| dir_name(dir).and_then(k8s::pod_uid_of_dir).as_deref() == Some(uid);
    let top = subdirectories(root);
    if let Some(found) = top.iter().find(|dir| is_pod(dir)) {
        return Some(found.clone());
    }
    top.iter()
        .filter(|dir| dir_name(dir).is_some_and(k8s::is_qos_dir))
        .flat_map(|qos| subdirectories(qos))
        .find(is_pod)
}

fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .collect()
}

fn dir_name(dir: &Path) -> Option<&str> {
    dir.file_name()?.to_str()
}
