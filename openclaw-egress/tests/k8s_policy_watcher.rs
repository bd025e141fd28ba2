//! `EgressPolicy` objects through kube's real client and runtime against a
//! fake API server answering with recorded responses
//! (`fixtures/k8s/egresspolicies-*`): what the daemon is told to apply and
//! remove, and the status it writes.

mod k8s_common;
mod k8s_fake_api;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_common::fixture;
use k8s_fake_api::{Seen, fake_api_server};
use openclaw_egress::{
    k8s::{ApiPolicyChange, NodeStatus, policy_watcher},
    policy,
};

/// The list, then the recorded watch, then a quiet watch.
fn answer(request: &Seen, lists: usize, watches: usize) -> Option<String> {
    match (request.method.as_str(), request.is_watch(), lists, watches) {
        ("GET", false, 1, _) => Some(fixture("egresspolicies-list.json")),
        ("GET", true, _, 1) => Some(fixture("egresspolicies-watch.jsonl")),
        // The object as it is after the patch: the listed one will do.
        ("PATCH", ..) => {
            let list: serde_json::Value =
                serde_json::from_str(&fixture("egresspolicies-list.json")).unwrap();
            Some(list["items"][0].to_string())
        }
        _ => None,
    }
}

fn client(seen: &Arc<Mutex<Vec<Seen>>>) -> kube::Client {
    kube::Client::new(fake_api_server(Arc::clone(seen), answer), "default")
}

#[tokio::test]
async fn k8s_policy_watcher_turns_objects_into_policies_to_apply_and_remove() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut changes = Box::pin(policy_watcher::changes(
        client(&seen),
        policy_watcher::egress_policy,
    ));
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while got.len() < 5 {
            got.push(changes.next().await.unwrap().unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {got:#?}"));

    let applied = |change: &ApiPolicyChange| match change {
        ApiPolicyChange::Apply {
            name,
            source,
            yaml,
            generation,
        } => {
            assert_eq!(source, &format!("egresspolicy/{name}"));
            let yaml = yaml.as_ref().expect("a policy document");
            (name.clone(), *generation, policy::parse_str(source, yaml))
        }
        other => panic!("expected an apply: {other:?}"),
    };
    // The list: both policies, as the files they amount to.
    let (name, generation, coding) = applied(&got[0]);
    assert_eq!((name.as_str(), generation), ("coding-agents", Some(1)));
    let coding = coding.unwrap();
    assert_eq!(coding.name, "coding-agents");
    assert_eq!(coding.egress.len(), 2);
    assert_eq!(coding.selector.pod_labels["role"], "coding-agent");
    let (name, _, research) = applied(&got[1]);
    assert_eq!(name, "research");
    assert_eq!(research.unwrap().mode, policy::Mode::Audit);
    // The watch: a status-only update (generation 1 again: another node's
    // daemon wrote its status) is nothing to do; the spec change is.
    let (name, generation, coding) = applied(&got[2]);
    assert_eq!((name.as_str(), generation), ("coding-agents", Some(2)));
    assert_eq!(coding.unwrap().egress.len(), 3);
    // A new object the API server admitted but the daemon refuses, with
    // the field named (the same message as for a file).
    let (name, _, web) = applied(&got[3]);
    assert_eq!(name, "web");
    let error = web.unwrap_err().to_string();
    assert!(
        error.contains("spec.egress[0].ports[0]") && error.contains("out of range"),
        "{error}"
    );
    // Deleted.
    assert_eq!(
        got[4],
        ApiPolicyChange::Remove {
            name: "research".into(),
            source: "egresspolicy/research".into()
        }
    );
    // Nothing more: the bookmark and the status update changed nothing.
    let more = tokio::time::timeout(Duration::from_millis(300), changes.next()).await;
    assert!(more.is_err(), "unexpected {more:?}");

    // Cluster-wide (the objects are cluster-scoped), from the cache.
    let seen = seen.lock().unwrap().clone();
    for request in &seen {
        assert_eq!(request.path, "/apis/openclaw.io/v1/egresspolicies");
        assert!(!request.query.contains_key("labelSelector"));
    }
    assert_eq!(
        seen[0].query.get("resourceVersion").map(String::as_str),
        Some("0")
    );
}

#[tokio::test]
async fn k8s_policy_watcher_writes_its_own_nodes_status_only() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let status = NodeStatus {
        node: "node-a".into(),
        ready: false,
        selected_pods: 2,
        attached_pods: 1,
        drops: 12,
        last_error: Some("spec.egress[0].ports[0]: port 99999 is out of range".into()),
        observed_generation: Some(2),
    };
    policy_watcher::write_status(&client(&seen), "coding-agents", &status)
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    let patch = &seen[0];
    assert_eq!(patch.method, "PATCH");
    // The status subresource: a daemon's writes cannot touch a spec.
    assert_eq!(
        patch.path,
        "/apis/openclaw.io/v1/egresspolicies/coding-agents/status"
    );
    // Server-side apply under a manager of its own: this node's entry of
    // the list keyed by node is this daemon's, and no other's.
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        patch.query.get("fieldManager").map(String::as_str),
        Some("openclaw-egress/node-a")
    );
    assert_eq!(patch.query.get("force").map(String::as_str), Some("true"));
    let body: serde_json::Value = serde_json::from_str(&patch.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "apiVersion": "openclaw.io/v1",
            "kind": "EgressPolicy",
            "status": {"nodes": [{
                "node": "node-a",
                "ready": false,
                "selectedPods": 2,
                "attachedPods": 1,
                "drops": 12,
                "lastError": "spec.egress[0].ports[0]: port 99999 is out of range",
                "observedGeneration": 2,
            }]},
        })
    );
}
