//! Turning the watcher's stream of pod objects into [`WorkloadEvent`]s.
//!
//! The API server says what a pod looks like now, not what changed for us:
//! a pod that stops running arrives as a modified object, a relist after a
//! lost watch simply omits pods deleted in the meantime. The tracker keeps
//! the pods it reported as running and reports the difference, so the
//! daemon sees each `Running` once per change and a `Gone` for every pod it
//! was told about, however the API server phrased it. No I/O here apart
//! from the cgroup lookups in [`running_pod`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;

use super::{
    cgroup_path::CgroupLayout,
    workload::{NotRunning, PodRef, RunningPod, WorkloadEvent, pod_ref, running_pod},
};

/// The pods of one node as last reported, keyed by UID.
#[derive(Debug)]
pub struct PodTracker {
    node: String,
    cgroups: CgroupLayout,
    running: BTreeMap<String, RunningPod>,
    /// Bound to this node, but the cgroup was not found: a pod the kubelet
    /// is about to start (it creates the pod cgroup before the first
    /// container), or, rarely, a lookup racing a pod sandbox being
    /// recreated. The API server may not send the pod again for a while,
    /// so it is kept here and looked up again by
    /// [`PodTracker::retry_missing_cgroups`] (the daemon also watches the
    /// cgroup tree, and is faster).
    missing_cgroup: BTreeMap<String, Pod>,
    /// The pods reported `Awaiting` (with the labels reported), by UID.
    awaiting: BTreeMap<String, (PodRef, BTreeMap<String, String>)>,
    /// Between `Init` and `InitDone` (a (re)list): the UIDs listed so far.
    relisted: Option<BTreeSet<String>>,
}

impl PodTracker {
    pub fn new(node: impl Into<String>, cgroups: CgroupLayout) -> PodTracker {
        PodTracker {
            node: node.into(),
            cgroups,
            running: BTreeMap::new(),
            missing_cgroup: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            relisted: None,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn cgroups(&self) -> &CgroupLayout {
        &self.cgroups
    }

    /// The pods currently reported as running, by UID.
    pub fn running(&self) -> &BTreeMap<String, RunningPod> {
        &self.running
    }

    /// Feeds one event of [`kube::runtime::watcher()`] and returns what the
    /// daemon has to do about it (often nothing: most pod updates are
    /// status changes that leave labels and cgroup alone).
    pub fn handle(&mut self, event: watcher::Event<Pod>) -> Vec<WorkloadEvent> {
        match event {
            watcher::Event::Init => {
                self.relisted = Some(BTreeSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(pod) => {
                if let (Some(relisted), Some(uid)) = (&mut self.relisted, &pod.metadata.uid) {
                    relisted.insert(uid.clone());
                }
                self.update(pod)
            }
            // Pods reported before the relist but not in it were deleted
            // while the watch was down; no Delete event will ever come.
            watcher::Event::InitDone => {
                let Some(relisted) = self.relisted.take() else {
                    return Vec::new();
                };
                self.missing_cgroup.retain(|uid, _| relisted.contains(uid));
                let gone: Vec<String> = self
                    .running
                    .keys()
                    .chain(self.awaiting.keys())
                    .filter(|uid| !relisted.contains(*uid))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|uid| self.forget(&uid))
                    .collect()
            }
            watcher::Event::Apply(pod) => self.update(pod),
            watcher::Event::Delete(pod) => match &pod.metadata.uid {
                Some(uid) => self.forget(uid).into_iter().collect(),
                None => Vec::new(),
            },
        }
    }

    /// Looks up the cgroups that were missing again; `Running` for each one
    /// found now. (A pod without one stays `Awaiting`: nothing is reported
    /// again for it.)
    pub fn retry_missing_cgroups(&mut self) -> Vec<WorkloadEvent> {
        let waiting = std::mem::take(&mut self.missing_cgroup);
        waiting
            .into_values()
            .flat_map(|pod| self.update(pod))
            .collect()
    }

    /// The number of running pods whose cgroup was not found yet.
    pub fn missing_cgroups(&self) -> usize {
        self.missing_cgroup.len()
    }

    fn update(&mut self, pod: Pod) -> Vec<WorkloadEvent> {
        let Ok(pod_ref) = pod_ref(&pod) else {
            return Vec::new();
        };
        let uid = pod_ref.uid.clone();
        match running_pod(&pod, &self.node, &self.cgroups) {
            Ok(running) => {
                self.missing_cgroup.remove(&uid);
                self.awaiting.remove(&uid);
                if self.running.get(&uid) == Some(&running) {
                    return Vec::new();
                }
                self.running.insert(uid, running.clone());
                vec![running.into()]
            }
            Err(NotRunning::Cgroup(error)) => {
                tracing::debug!(pod = %pod_ref, %error, "pod without a cgroup (yet)");
                // A cgroup that vanished under a running pod: Gone first (a
                // recreated one needs a new attach), then Awaiting.
                let mut events: Vec<WorkloadEvent> = self
                    .running
                    .remove(&uid)
                    .map(|running| WorkloadEvent::Gone { pod: running.pod })
                    .into_iter()
                    .collect();
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                if self.awaiting.get(&uid).map(|(_, reported)| reported) != Some(&labels) {
                    self.awaiting
                        .insert(uid.clone(), (pod_ref.clone(), labels.clone()));
                    events.push(WorkloadEvent::Awaiting {
                        pod: pod_ref,
                        labels,
                    });
                }
                self.missing_cgroup.insert(uid, pod);
                events
            }
            Err(_) => self.forget(&uid).into_iter().collect(),
        }
    }

    /// Drops everything known about the pod; `Gone` if it was reported
    /// running or awaiting.
    fn forget(&mut self, uid: &str) -> Option<WorkloadEvent> {
        self.missing_cgroup.remove(uid);
        let awaited = self.awaiting.remove(uid);
        match self.running.remove(uid) {
            Some(running) => Some(WorkloadEvent::Gone { pod: running.pod }),
            None => awaited.map(|(pod, _)| WorkloadEvent::Gone { pod }),
        }
    }
}
