//! DaemonSet mode with `--cluster-network-policy`: the upstream
//! ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) allowlist shape
//! (Accept domainNames and the DNS service, deny the rest) enforced by the
//! datapath, through the fake API server. Their `*.example.com` is any
//! depth below example.com (our `**.`).
//!
//! Root-only; skipped with a message otherwise.

mod common;

use std::time::Duration;

use common::{poll_until, skip_unless_root};
use openclaw_egress_e2e::{
    Daemon, ResolveConnectReport, WorldConfig, binary_path,
    kube::{FakeKubeApi, running_pod},
    probe_error,
};
use serde_json::{Value, json};

const NODE: &str = "e2e-node";

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

fn workloads(daemon: &Daemon) -> Vec<String> {
    let status = daemon.status_json().unwrap();
    status["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["workloads"].as_array().cloned().unwrap_or_default())
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_cluster_network_policy_with_domain_names_is_enforced() {
    if skip_unless_root() {
        return;
    }
    let sandbox = openclaw_egress_e2e::Sandbox::new().expect("creating the sandbox");
    let _world = sandbox
        .start_world(&world())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let uid = format!("{}-agent", sandbox.id());
    let cgroup = sandbox.create_cgroup(&format!("pod{uid}")).unwrap();
    let listener = sandbox
        .bind_tcp_in_agent("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let api = FakeKubeApi::serve(listener).unwrap();
    api.apply_pod(running_pod(
        "agents",
        "agent",
        &uid,
        NODE,
        &[("app", "openclaw")],
    ));
    api.apply_cluster_network_policy(cluster_network_policy());
    let kubeconfig = api.write_kubeconfig(sandbox.scratch_dir()).unwrap();
    let daemon = sandbox
        .spawn_daemon_with_env(
            &binary_path("openclaw-egress"),
            &[
                "--kubernetes",
                "--cluster-network-policy",
                "--cluster-dns",
                "10.77.0.1",
            ],
            &[
                ("KUBECONFIG", kubeconfig.to_str().unwrap()),
                ("NODE_NAME", NODE),
            ],
        )
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
    poll_until(
        "the policy attached",
        Duration::from_secs(30),
        || match workloads(&daemon) {
            w if w == ["pod agents/agent"] => Ok(()),
            w => Err(format!("workloads {w:?}")),
        },
    );
    let status = daemon.status_json().unwrap();
    assert_eq!(status["policies"][0]["name"], "cnp-agents-egress");
    assert_eq!(
        status["policies"][0]["source"],
        "clusternetworkpolicy/agents-egress"
    );

    // By name, through the cluster DNS: the name, a name two levels below
    // the wildcard's parent, and nothing else.
    let connects = |name: &str| {
        let report: ResolveConnectReport = sandbox
            .probe_json_in_cgroup(
                &cgroup,
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
        .probe_in_cgroup(&cgroup, &["tcp", "203.0.113.99:443"])
        .unwrap()
        .assert_error(probe_error::PERMISSION_DENIED);

    // Deleted: removed.
    assert!(api.delete_cluster_network_policy("agents-egress"));
    poll_until(
        "the policy removed",
        Duration::from_secs(30),
        || match workloads(&daemon) {
            w if w.is_empty() => Ok(()),
            w => Err(format!("workloads {w:?}")),
        },
    );
    // It never wrote anything: that API's status is not ours.
    assert!(api.requests().iter().all(|r| r.method == "GET"));
}
