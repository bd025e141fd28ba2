//! From recorded API responses to workload events, without a cluster: the
//! pod list, watch events and relist in `fixtures/k8s/` go through the
//! same pure functions the watcher uses, against fake cgroup trees in a
//! temporary directory, for both kubelet cgroup drivers and for the search
//! fallback. The story the fixtures tell is in `fixtures/k8s/README.md`.

#[path = "../k8s_common/mod.rs"]
mod k8s_common;

mod cgroup_layout;
mod story;

use k8s_common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use openclaw_egress::k8s::{CgroupLayout, PodTracker, WorkloadEvent};

fn feed(tracker: &mut PodTracker, events: Vec<watcher::Event<Pod>>) -> Vec<WorkloadEvent> {
    events.into_iter().flat_map(|e| tracker.handle(e)).collect()
}

/// The whole story through a tracker, as kube's watcher would deliver it.
fn story_events(layout: CgroupLayout) -> Vec<WorkloadEvent> {
    feed(&mut PodTracker::new(NODE, layout), watcher_events())
}
