//! DaemonSet mode with policies as `EgressPolicy` objects: the real daemon
//! with `--kubernetes` against the fake API server, which serves pods and
//! policies and takes the daemon's status writes. A policy object is
//! applied to the pods it selects, a new version replaces it, a version the
//! daemon refuses leaves the one before enforcing and says why in the
//! status, and a deleted object is removed.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::time::Duration;

use common::{
    PolicyYaml,
    kube::{NODE, OnePod},
    poll_until, skip_unless_root,
};
use openclaw_egress_e2e::{
    Sandbox, WorldConfig,
    kube::{EGRESS_POLICIES, FakeKubeApi},
    probe_error,
};
use serde_json::Value;
const X_TCP: &str = "203.0.113.10:443";
const W_TCP: &str = "203.0.113.99:443";
const POLICY: &str = "coding-agents";

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("x.example.com", "203.0.113.10")
        .tcp(X_TCP)
        .tcp(W_TCP)
}

/// The policy as an API object: pods labelled app=openclaw may reach x
/// (and `more`).
fn policy_object(more: PolicyYaml) -> Value {
    let yaml = more
        .name(POLICY)
        .pod_labels(&[("app", "openclaw")])
        .fqdn("x.example.com", &["443/tcp"])
        .to_yaml();
    serde_yaml::from_str(&yaml).unwrap()
}

/// This node's entry of the policy's status, once it satisfies `check`.
#[track_caller]
fn wait_for_status(api: &FakeKubeApi, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut found = Value::Null;
    poll_until(what, Duration::from_secs(30), || {
        let entry = api
            .egress_policy(POLICY)
            .and_then(|p| p["status"]["nodes"].as_array().cloned())
            .and_then(|nodes| nodes.into_iter().find(|n| n["node"] == NODE));
        match entry {
            Some(entry) if check(&entry) => {
                found = entry;
                Ok(())
            }
            other => Err(format!("status {other:?}")),
        }
    });
    found
}

#[track_caller]
fn probe(sandbox: &Sandbox, cgroup: &std::path::Path, target: &str) -> bool {
    let outcome = sandbox
        .probe_in_cgroup(cgroup, &["tcp", target, "--timeout-ms", "1000"])
        .unwrap();
    if !outcome.ok {
        outcome.assert_error(probe_error::PERMISSION_DENIED);
    }
    outcome.ok
}

#[test]
fn egress_policy_objects_are_applied_replaced_refused_and_removed() {
    if skip_unless_root() {
        return;
    }
    let pod = OnePod::start(&world(), &["--status-interval", "1s"], |_| {});
    let (sandbox, daemon, api, cgroup) = (&pod.sandbox, &pod.daemon, &pod.api, &pod.cgroup);

    // The object appears: applied to the pod it selects.
    api.apply_egress_policy(policy_object(PolicyYaml::for_interfaces(&[])));
    pod.wait_for_workloads("the policy attached", POLICY, &["pod agents/agent"]);
    assert!(probe(sandbox, cgroup, X_TCP));
    assert!(!probe(sandbox, cgroup, W_TCP));
    let status = daemon.status_json().unwrap();
    assert_eq!(
        status["policies"][0]["source"],
        format!("egresspolicy/{POLICY}")
    );
    // Its status: this node's entry, with the drop just made.
    let entry = wait_for_status(api, "ready with a drop", |e| {
        e["ready"] == true && e["drops"].as_u64() >= Some(1)
    });
    assert_eq!(entry["selectedPods"], 1, "{entry}");
    assert_eq!(entry["attachedPods"], 1, "{entry}");
    assert_eq!(entry["observedGeneration"], 1, "{entry}");
    assert!(entry.get("lastError").is_none(), "{entry}");

    // A new version (generation 2) replaces it; the status writes did not
    // count as versions.
    api.apply_egress_policy(policy_object(
        PolicyYaml::for_interfaces(&[]).cidr("203.0.113.99/32", &["443/tcp"]),
    ));
    poll_until("w allowed", Duration::from_secs(30), || {
        if probe(sandbox, cgroup, W_TCP) {
            Ok(())
        } else {
            Err("w still dropped".into())
        }
    });
    wait_for_status(api, "generation 2", |e| e["observedGeneration"] == 2);

    // A version the daemon refuses: the status says why, and generation 2
    // keeps enforcing.
    api.apply_egress_policy(policy_object(
        PolicyYaml::for_interfaces(&[]).cidr("203.0.113.99/33", &["443/tcp"]),
    ));
    let entry = wait_for_status(api, "the refusal", |e| e["observedGeneration"] == 3);
    assert_eq!(entry["ready"], false, "{entry}");
    let error = entry["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("spec.egress[0].cidr"), "{entry}");
    assert!(probe(sandbox, cgroup, W_TCP));
    assert!(probe(sandbox, cgroup, X_TCP));

    // An object may select pods only: not a cgroup of the host.
    api.apply_egress_policy(policy_object(
        PolicyYaml::for_interfaces(&[]).cgroup_path("/"),
    ));
    let entry = wait_for_status(api, "the refusal", |e| e["observedGeneration"] == 4);
    let error = entry["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("podLabels only"), "{entry}");
    assert!(probe(sandbox, cgroup, W_TCP), "generation 2 enforces");

    // Deleted: removed, the pod is not filtered any more.
    assert!(api.delete_egress_policy(POLICY));
    pod.wait_for_workloads("the policy removed", POLICY, &[]);

    // All the daemon ever wrote: its own entry of the status.
    for request in api.requests() {
        if request.method != "GET" {
            assert_eq!(request.method, "PATCH", "{request}");
            assert_eq!(
                request.path,
                format!("{EGRESS_POLICIES}/{POLICY}/status"),
                "{request}"
            );
            assert_eq!(
                request.query.get("fieldManager").map(String::as_str),
                Some(format!("openclaw-egress/{NODE}").as_str())
            );
        }
    }
}
