//! The real watcher (kube's client and runtime, our plumbing) against a fake
//! API server: a tower service that answers the watcher's requests with the
//! recorded responses in `fixtures/k8s/`, in the order a real API server
//! would. No network: the client never opens a connection.

mod k8s_common;
mod k8s_fake_api;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_common::*;
use k8s_fake_api::{Seen, fake_api_server};
use k8s_openapi::api::rbac::v1::ClusterRole;
use openclaw_egress::k8s::{CgroupLayout, PodWatcher, WatchError, WorkloadEvent};

/// Answers, in order: the list, a watch that ends with 410 Expired, the
/// relist, then a watch that stays open without events (as a quiet API
/// server's would).
fn pods_answer(request: &Seen, lists: usize, watches: usize) -> Option<String> {
    match (request.is_watch(), lists, watches) {
        (false, 1, _) => Some(fixture("pods-list.json")),
        (true, _, 1) => Some(fixture("pods-watch.jsonl") + &fixture("pods-watch-expired.jsonl")),
        (false, 2, _) => Some(fixture("pods-relist.json")),
        _ => None,
    }
}

/// Runs the watcher until it has produced `count` items (or a minute has
/// passed, which fails the test).
async fn first_items(
    tree: &CgroupTree,
    seen: Arc<Mutex<Vec<Seen>>>,
    count: usize,
) -> (
    Vec<Result<WorkloadEvent, WatchError>>,
    impl futures::Stream<Item = Result<WorkloadEvent, WatchError>>,
) {
    let client = kube::Client::new(fake_api_server(seen, pods_answer), "default");
    let watcher = PodWatcher::new(client, NODE, CgroupLayout::detect(tree.mount()))
        .cgroup_retry(Duration::from_secs(3600));
    let mut events = Box::pin(watcher.events());
    let mut items = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while items.len() < count {
            items.push(events.next().await.expect("the stream never ends"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} items: {items:?}", items.len()));
    (items, events)
}

#[tokio::test]
async fn k8s_watcher_turns_recorded_responses_into_events() {
    let tree = CgroupTree::new(Layout::Systemd);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let expected = expected_story(&tree);
    // The story's events, with the expired watch's error among them.
    let (items, mut rest) = first_items(&tree, seen.clone(), expected.len() + 1).await;

    let error_at = items
        .iter()
        .position(Result::is_err)
        .expect("the 410 is reported");
    assert!(
        items[error_at]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("node-a"),
        "{:?}",
        items[error_at]
    );
    let events: Vec<WorkloadEvent> = items.into_iter().filter_map(Result::ok).collect();
    assert_eq!(events, expected);
    // The error comes after the watch's events and before the relist's.
    assert_eq!(error_at, expected.len() - 1);

    // Nothing more: the second watch is open and quiet.
    let more = tokio::time::timeout(Duration::from_millis(300), rest.next()).await;
    assert!(more.is_err(), "unexpected item {more:?}");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(Seen::is_watch).collect::<Vec<_>>(),
        [false, true, false, true],
        "list, watch, relist, watch: {seen:#?}"
    );
    for request in &seen {
        assert_eq!(request.method, "GET", "{request:?}");
        // All namespaces: policies select pods wherever they run.
        assert_eq!(request.path, "/api/v1/pods", "{request:?}");
        assert_eq!(
            request.query.get("fieldSelector").map(String::as_str),
            Some("spec.nodeName=node-a"),
            "only this node's pods: {request:?}"
        );
        assert!(!request.query.contains_key("labelSelector"));
    }
    // Lists come from the API server's cache (as the kubelet's do), not a
    // quorum read from etcd; the cache does not page.
    for list in [&seen[0], &seen[2]] {
        assert_eq!(
            list.query.get("resourceVersion").map(String::as_str),
            Some("0")
        );
        assert_eq!(
            list.query.get("resourceVersionMatch").map(String::as_str),
            Some("NotOlderThan")
        );
        assert!(!list.query.contains_key("limit"), "{list:?}");
    }
    // Watches resume from the list they follow.
    assert_eq!(
        seen[1].query.get("resourceVersion").map(String::as_str),
        Some("1000")
    );
    assert_eq!(
        seen[3].query.get("resourceVersion").map(String::as_str),
        Some("2000")
    );
}

#[tokio::test]
async fn k8s_watcher_needs_nothing_the_cluster_role_does_not_grant() {
    let tree = CgroupTree::new(Layout::Cgroupfs);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let expected = expected_story(&tree).len() + 1;
    let _ = first_items(&tree, seen.clone(), expected).await;

    let role: ClusterRole = yaml_documents(&deploy_dir().join("rbac.yaml"))
        .into_iter()
        .find(|doc| doc["kind"] == "ClusterRole")
        .map(|doc| serde_json::from_value(doc).unwrap())
        .expect("a ClusterRole in deploy/rbac.yaml");
    let allowed = |verb: &str, resource: &str| {
        role.rules.iter().flatten().any(|rule| {
            rule.api_groups.iter().flatten().any(|g| g.is_empty())
                && rule.resources.iter().flatten().any(|r| r == resource)
                && rule.verbs.iter().any(|v| v == verb)
        })
    };
    for request in seen.lock().unwrap().iter() {
        // `/api/v1/pods` is the core group's pods, across namespaces: a
        // cluster-wide list or watch.
        assert_eq!(request.path, "/api/v1/pods");
        let verb = if request.is_watch() { "watch" } else { "list" };
        assert!(
            allowed(verb, "pods"),
            "{verb} pods is not granted: {request:?}"
        );
    }
}

#[tokio::test]
async fn k8s_watcher_client_has_a_tls_stack() {
    // kube is built with rustls and ring only (no aws-lc-rs, no openssl):
    // building an HTTPS client must find that crypto provider. No request
    // is made.
    let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    config.root_cert = None;
    let client = kube::Client::try_from(config).expect("an HTTPS client");
    assert_eq!(client.default_namespace(), "default");
}
