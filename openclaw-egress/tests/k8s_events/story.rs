//! The fixtures' story, whole and step by step: relists, pods waiting for their cgroup, static pods, QoS classes.

use std::{fs, path::Path};

use kube::runtime::watcher;
use openclaw_egress::k8s::{
    CgroupDriver, CgroupLayout, NotRunning, PodCgroupError, PodTracker, WorkloadEvent, event_for,
    running_pod,
};

use super::{feed, k8s_common::*, story_events};

#[test]
fn k8s_events_story_systemd() {
    let tree = CgroupTree::new(Layout::Systemd);
    let layout = CgroupLayout::detect(tree.mount());
    assert_eq!(layout.driver(), Some(CgroupDriver::Systemd));
    assert_eq!(story_events(layout), expected_story(&tree));
}

#[test]
fn k8s_events_story_cgroupfs() {
    let tree = CgroupTree::new(Layout::Cgroupfs);
    let layout = CgroupLayout::detect(tree.mount());
    assert_eq!(layout.driver(), Some(CgroupDriver::Cgroupfs));
    assert_eq!(story_events(layout), expected_story(&tree));
}

#[test]
fn k8s_events_story_kind_layout_found_by_search() {
    let tree = CgroupTree::new(Layout::KindSystemd);
    let layout = CgroupLayout::detect(tree.mount());
    assert_eq!(layout.driver(), None, "kind's cgroupRoot hides the driver");
    assert_eq!(story_events(layout), expected_story(&tree));
}

/// The story step by step, so a failure names the step.
#[test]
fn k8s_events_each_step_of_the_story() {
    let tree = CgroupTree::new(Layout::Systemd);
    let mut tracker = PodTracker::new(NODE, CgroupLayout::detect(tree.mount()));
    assert_eq!(tracker.handle(watcher::Event::Init), []);
    let mut listed = Vec::new();
    for pod in pod_list("pods-list.json") {
        listed.extend(tracker.handle(watcher::Event::InitApply(pod)));
    }
    assert_eq!(
        listed,
        [
            running(&tree, &CODING, CODING_LABELS),
            running(&tree, &RESEARCH, RESEARCH_LABELS),
            running(&tree, &WEB, WEB_LABELS),
            running(&tree, &BATCH, BATCH_LABELS),
            running(&tree, &ETCD, ETCD_LABELS),
        ],
        "pods of this node that run or are about to (Pending with a cgroup: init \
         containers); not node-b, not Succeeded"
    );
    assert_eq!(tracker.handle(watcher::Event::InitDone), []);

    let mut watch = watch_events("pods-watch.jsonl").into_iter();
    // `None` for a bookmark: the watcher's business, it never reaches the
    // tracker.
    let mut next =
        || watcher_event(watch.next().expect("a watch event")).map(|event| tracker.handle(event));
    assert_eq!(next(), Some(vec![]), "Pending -> Running: already filtered");
    assert_eq!(next(), Some(vec![]), "a status-only update");
    assert_eq!(
        next(),
        Some(vec![running(&tree, &CODING, CODING_LABELS_RELABELLED)]),
        "a label added to a running pod"
    );
    assert_eq!(
        next(),
        Some(vec![]),
        "deletionTimestamp set: still running, still filtered"
    );
    assert_eq!(next(), Some(vec![gone(&WEB)]), "deleted");
    assert_eq!(next(), Some(vec![gone(&RESEARCH)]), "phase Failed");
    assert_eq!(next(), None, "the bookmark");
    assert_eq!(
        next(),
        Some(vec![running(&tree, &NEW_CODING, CODING_LABELS)]),
        "a new pod, still Pending, its cgroup made"
    );
    assert_eq!(
        next(),
        Some(vec![]),
        "a Succeeded pod deleted: it was never reported"
    );
}

#[test]
fn k8s_events_relist_reports_pods_deleted_while_the_watch_was_down() {
    let tree = CgroupTree::new(Layout::Cgroupfs);
    let mut tracker = PodTracker::new(NODE, CgroupLayout::detect(tree.mount()));
    feed(&mut tracker, list_events("pods-list.json"));
    // The relist arrives before any watch event: CODING and WEB are
    // missing from it, RESEARCH failed, BATCH and the new pod run, ETCD is
    // unchanged.
    let events = feed(&mut tracker, list_events("pods-relist.json"));
    assert_eq!(
        events,
        [
            // Listed, but Failed now.
            gone(&RESEARCH),
            // (BATCH was filtered from the first list on.)
            running(&tree, &NEW_CODING, CODING_LABELS),
            // Not listed: Gone at InitDone only (in UID order), since a
            // pod further down the list is not gone.
            gone(&CODING),
            gone(&WEB),
        ]
    );
    assert_eq!(tracker.running().len(), 3);
    // Relisting the same again changes nothing.
    assert_eq!(feed(&mut tracker, list_events("pods-relist.json")), []);
}

#[test]
fn k8s_events_a_running_pod_without_cgroup_waits_for_it() {
    let tree = CgroupTree::new(Layout::Systemd);
    let coding_dir = tree.mount().join(CODING.systemd);
    fs::remove_dir_all(&coding_dir).unwrap();

    let mut tracker = PodTracker::new(NODE, CgroupLayout::detect(tree.mount()));
    let events = feed(&mut tracker, list_events("pods-list.json"));
    let coding: Vec<&WorkloadEvent> = events
        .iter()
        .filter(|e| e.pod().uid == CODING.uid)
        .collect();
    assert_eq!(
        coding,
        [&awaiting(&CODING, CODING_LABELS)],
        "awaited, not Running, before the cgroup exists"
    );
    assert_eq!(tracker.missing_cgroups(), 1);
    assert_eq!(tracker.retry_missing_cgroups(), [], "still missing");

    fs::create_dir(&coding_dir).unwrap();
    assert_eq!(
        tracker.retry_missing_cgroups(),
        [running(&tree, &CODING, CODING_LABELS)]
    );
    assert_eq!(tracker.missing_cgroups(), 0);
    assert_eq!(tracker.retry_missing_cgroups(), []);

    // A cgroup that disappears under a running pod: Gone now, Running
    // again once it is back (a recreated sandbox needs a new attach).
    fs::remove_dir_all(&coding_dir).unwrap();
    let coding = find_pod("pods-list.json", CODING.uid);
    assert_eq!(
        tracker.handle(watcher::Event::Apply(coding)),
        [gone(&CODING), awaiting(&CODING, CODING_LABELS)]
    );
    fs::create_dir(&coding_dir).unwrap();
    assert_eq!(
        tracker.retry_missing_cgroups(),
        [running(&tree, &CODING, CODING_LABELS)]
    );

    // A pod deleted while it waited is forgotten.
    fs::remove_dir_all(&coding_dir).unwrap();
    let coding = find_pod("pods-list.json", CODING.uid);
    tracker.handle(watcher::Event::Apply(coding.clone()));
    assert_eq!(tracker.missing_cgroups(), 1);
    assert_eq!(
        tracker.handle(watcher::Event::Delete(coding)),
        [gone(&CODING)],
        "an awaited pod is Gone too"
    );
    assert_eq!(tracker.missing_cgroups(), 0);
}

#[test]
fn k8s_events_event_for_each_listed_pod() {
    let tree = CgroupTree::new(Layout::Systemd);
    let layout = CgroupLayout::detect(tree.mount());
    let reason =
        |uid: &str| running_pod(&find_pod("pods-list.json", uid), NODE, &layout).unwrap_err();

    let event = |uid: &str| event_for(&find_pod("pods-list.json", uid), NODE, &layout);
    assert_eq!(
        event(CODING.uid),
        Some(running(&tree, &CODING, CODING_LABELS))
    );
    assert_eq!(
        event(RESEARCH.uid),
        Some(running(&tree, &RESEARCH, RESEARCH_LABELS))
    );
    assert_eq!(event(WEB.uid), Some(running(&tree, &WEB, WEB_LABELS)));
    assert_eq!(event(ETCD.uid), Some(running(&tree, &ETCD, ETCD_LABELS)));

    // Pending with its cgroup: init containers may run.
    assert_eq!(event(BATCH.uid), Some(running(&tree, &BATCH, BATCH_LABELS)));
    // Every pod below has a cgroup in the tree: only the reason given
    // keeps it out.
    assert_eq!(event(OTHER_NODE.uid), None);
    assert!(matches!(reason(OTHER_NODE.uid), NotRunning::OtherNode(Some(n)) if n == "node-b"));
    assert_eq!(event(REPORT.uid), None);
    assert!(matches!(reason(REPORT.uid), NotRunning::Phase(Some(p)) if p == "Succeeded"));
    // The same pod seen from node-b.
    assert!(
        event_for(
            &find_pod("pods-list.json", OTHER_NODE.uid),
            "node-b",
            &layout
        )
        .is_some()
    );
}

#[test]
fn k8s_events_static_pods_use_the_mirror_annotation() {
    // etcd's mirror pod: metadata.uid is the API server's, the cgroup is
    // named after kubernetes.io/config.mirror.
    let tree = CgroupTree::new(Layout::Cgroupfs);
    let layout = CgroupLayout::detect(tree.mount());
    let etcd = find_pod("pods-list.json", ETCD.uid);
    let mount = tree.mount();
    assert!(mount.join(ETCD.cgroupfs).is_dir());
    assert!(ETCD.cgroupfs.contains(ETCD_MIRROR_HASH));
    fs::create_dir(mount.join(format!("kubepods/burstable/pod{}", ETCD.uid))).unwrap();
    fs::remove_dir_all(mount.join(ETCD.cgroupfs)).unwrap();
    assert!(
        matches!(
            running_pod(&etcd, NODE, &layout),
            Err(NotRunning::Cgroup(PodCgroupError::NotFound { .. }))
        ),
        "a directory named after metadata.uid is not the static pod's"
    );
}

#[test]
fn k8s_events_missing_qos_class_tries_every_class() {
    let tree = CgroupTree::new(Layout::Systemd);
    let layout = CgroupLayout::detect(tree.mount());
    for (pod, labels) in [
        (&RESEARCH, RESEARCH_LABELS),
        (&CODING, CODING_LABELS),
        (&WEB, WEB_LABELS),
    ] {
        let mut object = find_pod("pods-list.json", pod.uid);
        object.status.as_mut().unwrap().qos_class = None;
        assert_eq!(
            event_for(&object, NODE, &layout),
            Some(running(&tree, pod, labels)),
            "{}",
            pod.name
        );
    }
}

#[test]
fn k8s_events_fixtures_are_what_the_api_server_sends() {
    // Items of a list carry no kind/apiVersion (the list has them), watch
    // objects do; a fixture edited into another shape would test less.
    let list: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(fixture_path("pods-list.json")).unwrap()).unwrap();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    assert!(list["metadata"]["resourceVersion"].is_string());
    for item in list["items"].as_array().unwrap() {
        assert!(item.get("kind").is_none());
        assert!(item["metadata"]["uid"].is_string());
    }
    let watch = fs::read_to_string(fixture_path("pods-watch.jsonl")).unwrap();
    for line in watch.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            ["ADDED", "MODIFIED", "DELETED", "BOOKMARK"].contains(&event["type"].as_str().unwrap())
        );
        assert_eq!(event["object"]["kind"], "Pod");
    }
    assert!(Path::new(&fixture_path("README.md")).is_file());
}
