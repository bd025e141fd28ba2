//! DaemonSet mode with `--cluster-network-policy`: the upstream
//! ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) allowlist shape
//! (Accept domainNames and the DNS service, deny the rest) enforced by the
//! datapath, through the fake API server. Their `*.example.com` is any
//! depth below example.com (our `**.`).
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use common::{kube::OnePod, skip_unless_root};
use openclaw_egress_e2e::{ResolveConnectReport, WorldConfig, probe_error};
use serde_json::{Value, json};

/// The policy the object becomes.
const POLICY: &str = "cnp-agents-egress";

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("x.example.com", "203.0.113.10")
        .record("a.b.cdn.test", "203.0.113.20")
        .record("w.other.test", "203.0.113.99")
        .tcp("203.0.113.10:443")
        .tcp("203.0.113.20:443")
        .tcp("203.0.113.99:443")
}

/// Pods labelled app=openclaw may reach x.example.com and anything below
/// cdn.test on 443, and ask the cluster DNS; the rest is denied.
fn cluster_network_policy() -> Value {
    json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "agents-egress"},
        "spec": {
            "tier": "Admin",
            "priority": 10,
            "subject": {"pods": {
                "namespaceSelector": {},
                "podSelector": {"matchLabels": {"app": "openclaw"}},
            }},
            "egress": [
                {
                    "name": "dns",
                    "action": "Accept",
                    "to": [{"networks": ["10.77.0.1/32"]}],
                    "protocols": [
                        {"udp": {"destinationPort": {"number": 53}}},
                        {"tcp": {"destinationPort": {"number": 53}}},
                    ],
                },
                {
                    "name": "names",
                    "action": "Accept",
                    "to": [{"domainNames": ["x.example.com", "*.cdn.test"]}],
                    "protocols": [{"tcp": {"destinationPort": {"number": 443}}}],
                },
                {
                    "name": "default-deny",
                    "action": "Deny",
                    "to": [{"networks": ["0.0.0.0/0", "::/0"]}],
                },
            ],
        },
    })
}

#[test]
fn a_cluster_network_policy_with_domain_names_is_enforced() {
    if skip_unless_root() {
        return;
    }
    let pod = OnePod::start(
        &world(),
        &["--cluster-network-policy", "--cluster-dns", "10.77.0.1"],
        |api| api.apply_cluster_network_policy(cluster_network_policy()),
    );
    let (sandbox, daemon, api, cgroup) = (&pod.sandbox, &pod.daemon, &pod.api, &pod.cgroup);
    pod.wait_for_workloads("the policy attached", POLICY, &["pod agents/agent"]);
    let status = daemon.status_json().unwrap();
    assert_eq!(status["policies"][0]["name"], POLICY);
    assert_eq!(
        status["policies"][0]["source"],
        "clusternetworkpolicy/agents-egress"
    );

    // By name, through the cluster DNS: the name, a name two levels below
    // the wildcard's parent, and nothing else.
    let connects = |name: &str| {
        let report: ResolveConnectReport = sandbox
            .probe_json_in_cgroup(
                cgroup,
                &[
                    "resolve-connect",
                    "10.77.0.1:53",
                    name,
                    "443",
                    "--timeout-ms",
                    "1000",
                ],
            )
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        report.connects_ok == 1
    };
    assert!(connects("x.example.com"));
    assert!(connects("a.b.cdn.test"));
    assert!(!connects("w.other.test"), "w.other.test reached");
    // Nor by address.
    sandbox
        .probe_in_cgroup(cgroup, &["tcp", "203.0.113.99:443"])
        .unwrap()
        .assert_error(probe_error::PERMISSION_DENIED);

    // Deleted: removed.
    assert!(api.delete_cluster_network_policy("agents-egress"));
    pod.wait_for_workloads("the policy removed", POLICY, &[]);
    // It never wrote anything: that API's status is not ours.
    assert!(api.requests().iter().all(|r| r.method == "GET"));
}
