//! Shared by the k8s_* tests: the fixtures' pods, fake cgroup trees and
//! the expected events of the recorded story (`fixtures/k8s/README.md`).

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    core::{ObjectList, WatchEvent},
    runtime::watcher,
};
use openclaw_egress::k8s::{PodRef, WorkloadEvent};

/// The node the fixtures' story is watched from.
pub const NODE: &str = "node-a";

/// A pod of the fixtures and its cgroup directory (relative to the
/// cgroup2 mount) in each layout, written out by hand rather than computed
/// by the code under test.
pub struct FixturePod {
    pub namespace: &'static str,
    pub name: &'static str,
    pub uid: &'static str,
    pub systemd: &'static str,
    pub cgroupfs: &'static str,
    /// kind's systemd tree (cgroupRoot `/kubelet`), found only by search.
    pub kind: &'static str,
}

impl FixturePod {
    pub fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.into(),
            name: self.name.into(),
            uid: self.uid.into(),
        }
    }
}

/// Burstable, running on node-a.
pub const CODING: FixturePod = FixturePod {
    namespace: "agents",
    name: "coding-agent-7c9d5b6f4-x2x8q",
    uid: "3f2a6c1e-8b4d-4e7a-9c1f-2d5e8a7b9c01",
    systemd: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f2a6c1e_8b4d_4e7a_9c1f_2d5e8a7b9c01.slice",
    cgroupfs: "kubepods/burstable/pod3f2a6c1e-8b4d-4e7a-9c1f-2d5e8a7b9c01",
    kind: "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod3f2a6c1e_8b4d_4e7a_9c1f_2d5e8a7b9c01.slice",
};
/// Guaranteed, running on node-a; fails (OOM) during the watch.
pub const RESEARCH: FixturePod = FixturePod {
    namespace: "agents",
    name: "research-agent-0",
    uid: "9b1e4d2c-6a3f-4c8e-b5d7-1e2f3a4b5c6d",
    systemd: "kubepods.slice/kubepods-pod9b1e4d2c_6a3f_4c8e_b5d7_1e2f3a4b5c6d.slice",
    cgroupfs: "kubepods/pod9b1e4d2c-6a3f-4c8e-b5d7-1e2f3a4b5c6d",
    kind: "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod9b1e4d2c_6a3f_4c8e_b5d7_1e2f3a4b5c6d.slice",
};
/// BestEffort, running on node-a, labels that no agent policy selects;
/// deleted during the watch.
pub const WEB: FixturePod = FixturePod {
    namespace: "default",
    name: "web-5f6d8c7b9-kq4zt",
    uid: "c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f",
    systemd: "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc4d5e6f7_a8b9_4c0d_9e1f_2a3b4c5d6e7f.slice",
    cgroupfs: "kubepods/besteffort/podc4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f",
    kind: "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-podc4d5e6f7_a8b9_4c0d_9e1f_2a3b4c5d6e7f.slice",
};
/// Burstable, Pending in the list, Running in the watch.
pub const BATCH: FixturePod = FixturePod {
    namespace: "agents",
    name: "batch-agent-28xk9",
    uid: "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
    systemd: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5e6f7a8b_9c0d_4e1f_8a2b_3c4d5e6f7a8b.slice",
    cgroupfs: "kubepods/burstable/pod5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
    kind: "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod5e6f7a8b_9c0d_4e1f_8a2b_3c4d5e6f7a8b.slice",
};
/// Running, but on node-b (its cgroup exists in the fake tree anyway).
pub const OTHER_NODE: FixturePod = FixturePod {
    namespace: "agents",
    name: "coding-agent-7c9d5b6f4-m3n4p",
    uid: "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
    systemd: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7a8b9c0d_1e2f_4a3b_8c4d_5e6f7a8b9c0d.slice",
    cgroupfs: "kubepods/burstable/pod7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
    kind: "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod7a8b9c0d_1e2f_4a3b_8c4d_5e6f7a8b9c0d.slice",
};
/// The static pod's hash from `kubernetes.io/config.mirror`.
pub const ETCD_MIRROR_HASH: &str = "8f14e45fceea167a5a36dedd4bea2543";
/// A mirror pod: its cgroup is named after the static pod's UID (the
/// annotation), not after `metadata.uid`.
pub const ETCD: FixturePod = FixturePod {
    namespace: "kube-system",
    name: "etcd-node-a",
    uid: "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    systemd: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f14e45fceea167a5a36dedd4bea2543.slice",
    cgroupfs: "kubepods/burstable/pod8f14e45fceea167a5a36dedd4bea2543",
    kind: "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod8f14e45fceea167a5a36dedd4bea2543.slice",
};
/// A Succeeded job pod (BestEffort).
pub const REPORT: FixturePod = FixturePod {
    namespace: "agents",
    name: "nightly-report-29071080-q7w2e",
    uid: "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b",
    systemd: "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pode1f2a3b4_c5d6_4e7f_8a9b_0c1d2e3f4a5b.slice",
    cgroupfs: "kubepods/besteffort/pode1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b",
    kind: "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pode1f2a3b4_c5d6_4e7f_8a9b_0c1d2e3f4a5b.slice",
};
/// Added (Pending) during the watch, Running in the relist.
pub const NEW_CODING: FixturePod = FixturePod {
    namespace: "agents",
    name: "coding-agent-7c9d5b6f4-z9y8x",
    uid: "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
    systemd: "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod2b3c4d5e_6f7a_4b8c_9d0e_1f2a3b4c5d6e.slice",
    cgroupfs: "kubepods/burstable/pod2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
    kind: "kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod2b3c4d5e_6f7a_4b8c_9d0e_1f2a3b4c5d6e.slice",
};

pub const ALL_PODS: [&FixturePod; 8] = [
    &CODING,
    &RESEARCH,
    &WEB,
    &BATCH,
    &OTHER_NODE,
    &ETCD,
    &REPORT,
    &NEW_CODING,
];

pub const CODING_LABELS: &[(&str, &str)] = &[
    ("app", "openclaw"),
    ("pod-template-hash", "7c9d5b6f4"),
    ("role", "coding-agent"),
];
pub const CODING_LABELS_RELABELLED: &[(&str, &str)] = &[
    ("app", "openclaw"),
    ("openclaw.io/sandbox", "strict"),
    ("pod-template-hash", "7c9d5b6f4"),
    ("role", "coding-agent"),
];
pub const RESEARCH_LABELS: &[(&str, &str)] = &[
    ("app", "openclaw"),
    ("apps.kubernetes.io/pod-index", "0"),
    ("controller-revision-hash", "research-agent-5d8f7b9c6d"),
    ("role", "research-agent"),
    ("statefulset.kubernetes.io/pod-name", "research-agent-0"),
];
pub const WEB_LABELS: &[(&str, &str)] = &[("app", "web"), ("pod-template-hash", "5f6d8c7b9")];
pub const BATCH_LABELS: &[(&str, &str)] = &[
    ("app", "openclaw"),
    (
        "batch.kubernetes.io/controller-uid",
        "6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c",
    ),
    ("batch.kubernetes.io/job-name", "batch-agent"),
    ("controller-uid", "6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c"),
    ("job-name", "batch-agent"),
    ("role", "batch-agent"),
];
pub const ETCD_LABELS: &[(&str, &str)] = &[("component", "etcd"), ("tier", "control-plane")];

#[derive(Clone, Copy, Debug)]
pub enum Layout {
    Systemd,
    Cgroupfs,
    KindSystemd,
}

/// A fake cgroup2 mount with a pod cgroup for every pod of the fixtures
/// (so a pod left out of the events is left out for its phase or node,
/// never because its cgroup is missing), each with a container below it
/// as the kubelet would make it.
pub struct CgroupTree {
    dir: tempfile::TempDir,
    layout: Layout,
}

impl CgroupTree {
    pub fn new(layout: Layout) -> CgroupTree {
        let dir = tempfile::tempdir().unwrap();
        let tree = CgroupTree { dir, layout };
        let mount = tree.mount();
        // Cgroups that are not pods', as on a real node.
        for other in [
            "system.slice/containerd.service",
            "user.slice",
            "init.scope",
        ] {
            fs::create_dir_all(mount.join(other)).unwrap();
        }
        fs::write(mount.join("cgroup.procs"), "").unwrap();
        for pod in ALL_PODS {
            let dir = mount.join(tree.relative(pod));
            fs::create_dir_all(dir.join("cri-containerd-0123abcd.scope")).unwrap();
            fs::write(dir.join("cgroup.procs"), "").unwrap();
        }
        tree
    }

    pub fn mount(&self) -> &Path {
        self.dir.path()
    }

    pub fn relative(&self, pod: &FixturePod) -> &'static str {
        match self.layout {
            Layout::Systemd => pod.systemd,
            Layout::Cgroupfs => pod.cgroupfs,
            Layout::KindSystemd => pod.kind,
        }
    }

    pub fn cgroup(&self, pod: &FixturePod) -> PathBuf {
        self.mount().join(self.relative(pod))
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn running(tree: &CgroupTree, pod: &FixturePod, pod_labels: &[(&str, &str)]) -> WorkloadEvent {
    WorkloadEvent::Running {
        pod: pod.pod_ref(),
        labels: labels(pod_labels),
        cgroup: tree.cgroup(pod),
    }
}

pub fn awaiting(pod: &FixturePod, pod_labels: &[(&str, &str)]) -> WorkloadEvent {
    WorkloadEvent::Awaiting {
        pod: pod.pod_ref(),
        labels: labels(pod_labels),
    }
}

pub fn gone(pod: &FixturePod) -> WorkloadEvent {
    WorkloadEvent::Gone { pod: pod.pod_ref() }
}

/// Every event of the story, in order: the list, the watch, the relist
/// after the watch expired.
pub fn expected_story(tree: &CgroupTree) -> Vec<WorkloadEvent> {
    vec![
        // The list. BATCH is Pending, but its cgroup exists: its init
        // containers may run.
        running(tree, &CODING, CODING_LABELS),
        running(tree, &RESEARCH, RESEARCH_LABELS),
        running(tree, &WEB, WEB_LABELS),
        running(tree, &BATCH, BATCH_LABELS),
        running(tree, &ETCD, ETCD_LABELS),
        // The watch (BATCH turning Running changes nothing).
        running(tree, &CODING, CODING_LABELS_RELABELLED),
        gone(&WEB),
        gone(&RESEARCH),
        // The new pod, Pending, with its cgroup already made.
        running(tree, &NEW_CODING, CODING_LABELS),
        // The relist: CODING was deleted meanwhile.
        gone(&CODING),
    ]
}

/// `deploy/` at the repository root.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of a YAML file (`---` separated), as JSON values.
pub fn yaml_documents(path: &Path) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::to_value(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        // A trailing `---` or a comment-only document is no object.
        .filter(|doc| !doc.is_null())
        .collect()
}

pub fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/k8s/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> String {
    fs::read_to_string(fixture_path(name)).unwrap()
}

pub fn pod_list(name: &str) -> Vec<Pod> {
    serde_json::from_str::<ObjectList<Pod>>(&fixture(name))
        .unwrap()
        .items
}

pub fn find_pod(list: &str, uid: &str) -> Pod {
    pod_list(list)
        .into_iter()
        .find(|pod| pod.metadata.uid.as_deref() == Some(uid))
        .unwrap()
}

pub fn watch_events(name: &str) -> Vec<WatchEvent<Pod>> {
    fixture(name)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// What kube's watcher turns a list into.
pub fn list_events(name: &str) -> Vec<watcher::Event<Pod>> {
    let mut events = vec![watcher::Event::Init];
    events.extend(pod_list(name).into_iter().map(watcher::Event::InitApply));
    events.push(watcher::Event::InitDone);
    events
}

/// What kube's watcher turns a watch event into (bookmarks and errors are
/// its own business).
pub fn watcher_event(event: WatchEvent<Pod>) -> Option<watcher::Event<Pod>> {
    match event {
        WatchEvent::Added(pod) | WatchEvent::Modified(pod) => Some(watcher::Event::Apply(pod)),
        WatchEvent::Deleted(pod) => Some(watcher::Event::Delete(pod)),
        WatchEvent::Bookmark(_) | WatchEvent::Error(_) => None,
    }
}

/// The story as kube's watcher delivers it: list, watch, and (after the
/// watch expired with 410 Gone) the relist.
pub fn watcher_events() -> Vec<watcher::Event<Pod>> {
    let mut events = list_events("pods-list.json");
    events.extend(
        watch_events("pods-watch.jsonl")
            .into_iter()
            .filter_map(watcher_event),
    );
    let expired = watch_events("pods-watch-expired.jsonl");
    assert!(matches!(&expired[..], [WatchEvent::Error(e)] if e.code == 410));
    events.extend(list_events("pods-relist.json"));
    events
}
