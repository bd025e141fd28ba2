//! DaemonSet mode end to end, without a cluster: the real daemon with
//! `--kubernetes` (kube-rs list+watch of this node's pods) against a fake
//! API server (`openclaw_egress_e2e::kube`), policies from a directory
//! (`--policy-dir`, as a mounted ConfigMap), and "pods" that are cgroups
//! inside the sandbox cgroup, named the way the kubelet names them so that
//! the daemon's search by pod UID finds them.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{
    net::SocketAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use common::{
    DROPPED_TCP_TIMEOUT_MS, EVENT_TIMEOUT, POLICY, PolicyYaml, is_drop_event_from, poll_until,
    skip_unless_root,
};
use openclaw_egress_e2e::{
    Daemon, ProbeOutcome, Sandbox, WorldConfig, binary_path,
    kube::{ApiRequest, FakeKubeApi, running_pod},
    probe_error,
};
use serde_json::Value;

const NODE: &str = "e2e-node";
const NAMESPACE: &str = "agents";

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("x.example.com", "203.0.113.10")
        .tcp("203.0.113.10:443")
        .udp("203.0.113.10:7")
        .tcp("203.0.113.99:443")
        .udp("203.0.113.99:7")
}

const X_TCP: &str = "203.0.113.10:443";
const X_UDP: &str = "203.0.113.10:7";
const W_TCP: &str = "203.0.113.99:443";
const W_UDP: &str = "203.0.113.99:7";

/// A fake pod: its API object's identity and its cgroup.
struct Pod {
    name: &'static str,
    uid: String,
    cgroup: PathBuf,
}

impl Pod {
    /// Creates the pod's cgroup inside the sandbox cgroup, named as the
    /// kubelet names it with the cgroupfs driver (`pod<uid>`) or the
    /// systemd driver (`kubepods-besteffort-pod<uid with _>.slice`).
    fn create(sandbox: &Sandbox, name: &'static str, systemd: bool) -> Self {
        // Unique per sandbox: the daemon searches the whole cgroup tree,
        // where other tests' pods may be.
        let uid = format!("{}-{name}", sandbox.id());
        let dir = if systemd {
            format!("kubepods-besteffort-pod{}.slice", uid.replace('-', "_"))
        } else {
            format!("pod{uid}")
        };
        let cgroup = sandbox
            .create_cgroup(&dir)
            .unwrap_or_else(|e| panic!("{e:#}"));
        Self { name, uid, cgroup }
    }

    fn object(&self, node: &str, labels: &[(&str, &str)]) -> Value {
        running_pod(NAMESPACE, self.name, &self.uid, node, labels)
    }

    fn workload(&self) -> String {
        format!("pod {NAMESPACE}/{}", self.name)
    }
}

#[track_caller]
fn probe(sandbox: &Sandbox, pod: &Pod, args: &[&str]) -> ProbeOutcome {
    sandbox
        .probe_in_cgroup(&pod.cgroup, args)
        .unwrap_or_else(|e| panic!("oce-probe {args:?} in pod {}: {e:#}", pod.name))
}

/// Asserts that the policy filters `pod` (x passes, w is dropped) or that
/// nothing does (both pass). Returns the local address of the dropped UDP
/// probe, if it was.
#[track_caller]
fn assert_filtered(sandbox: &Sandbox, pod: &Pod, filtered: bool) -> Option<SocketAddr> {
    probe(sandbox, pod, &["tcp", X_TCP]).assert_ok();
    probe(sandbox, pod, &["udp", X_UDP, "--payload", "x"]).assert_ok();
    let w = probe(sandbox, pod, &["udp", W_UDP, "--payload", "w"]);
    if filtered {
        w.assert_error(probe_error::PERMISSION_DENIED);
        w.local
    } else {
        assert!(w.ok, "pod {}: expected w to pass, got {w:?}", pod.name);
        None
    }
}

/// The workloads of the policy named [`POLICY`] in `status --json`
/// (`None` while it is not applied).
fn workloads(daemon: &Daemon) -> Result<Option<Vec<String>>, String> {
    let status = daemon.status_json().map_err(|e| format!("{e:#}"))?;
    let policies = status["policies"].as_array().cloned().unwrap_or_default();
    Ok(policies.iter().find(|p| p["name"] == POLICY).map(|p| {
        p["workloads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect()
    }))
}

/// Waits until the policy's workloads are exactly `expected` (sorted).
#[track_caller]
fn wait_for_workloads(daemon: &Daemon, api: &FakeKubeApi, expected: &[String]) {
    let mut expected = expected.to_vec();
    expected.sort();
    poll_until(
        &format!("the policy attached to exactly {expected:?}"),
        Duration::from_secs(30),
        || match workloads(daemon)?.map(|mut now| {
            now.sort();
            now
        }) {
            Some(now) if now == expected => Ok(()),
            other => Err(format!(
                "workloads {other:?}; requests so far: {:#?}",
                api.requests()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            )),
        },
    );
}

fn print_requests(api: &FakeKubeApi) {
    eprintln!("requests the daemon made to the fake API server:");
    for request in api.requests() {
        eprintln!("  {request}");
    }
}

/// A sandbox with three fake pods, a fake API server that knows them and a
/// daemon following them. Fields drop in declaration order: the daemon
/// first, then the API server, the world and the sandbox (with the pods'
/// cgroups).
struct KubeRig {
    daemon: Daemon,
    api: FakeKubeApi,
    _world: openclaw_egress_e2e::World,
    /// Labels app=openclaw, on this node.
    agent: Pod,
    /// Labels app=other, on this node.
    other: Pod,
    /// Labels app=openclaw, on another node.
    elsewhere: Pod,
    /// The policy directory (`--policy-dir`, a ConfigMap's mount).
    policies: PathBuf,
    sandbox: Sandbox,
}

impl KubeRig {
    /// The policy: pods labelled app=openclaw may reach x only.
    fn policy() -> PolicyYaml {
        PolicyYaml::for_interfaces(&[])
            .pod_labels(&[("app", "openclaw")])
            .fqdn("x.example.com", &["443/tcp", "7/udp"])
    }

    /// Starts everything; with `policy_at_start`, the policy file is in the
    /// directory before the daemon starts (else the directory is empty).
    fn start(policy_at_start: bool) -> Self {
        let sandbox = Sandbox::new().expect("creating the sandbox");
        let world = sandbox
            .start_world(&world())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let agent = Pod::create(&sandbox, "agent-a", false);
        let other = Pod::create(&sandbox, "other-b", true);
        let elsewhere = Pod::create(&sandbox, "elsewhere-c", false);
        for pod in [&agent, &other, &elsewhere] {
            assert_filtered(&sandbox, pod, false);
        }

        let listener = sandbox
            .bind_tcp_in_agent("127.0.0.1:0".parse().unwrap())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let api = FakeKubeApi::serve(listener).unwrap_or_else(|e| panic!("{e:#}"));
        api.apply_pod(agent.object(NODE, &[("app", "openclaw"), ("role", "agent")]));
        api.apply_pod(other.object(NODE, &[("app", "other")]));
        // Matching labels, but on another node: never this daemon's business.
        api.apply_pod(elsewhere.object("other-node", &[("app", "openclaw")]));
        let kubeconfig = api
            .write_kubeconfig(sandbox.scratch_dir())
            .unwrap_or_else(|e| panic!("{e:#}"));

        let policies = sandbox.scratch_dir().join("policies");
        std::fs::create_dir(&policies).unwrap();
        if policy_at_start {
            Self::policy().write(&policies, "agent.yaml").unwrap();
        }
        let daemon = sandbox
            .spawn_daemon_with_env(
                &binary_path("openclaw-egress"),
                &["--kubernetes", "--policy-dir", policies.to_str().unwrap()],
                &[
                    ("KUBECONFIG", kubeconfig.to_str().unwrap()),
                    ("NODE_NAME", NODE),
                ],
            )
            .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
        Self {
            daemon,
            api,
            _world: world,
            agent,
            other,
            elsewhere,
            policies,
            sandbox,
        }
    }

    /// Waits until the daemon watches this node's pods (it listed them
    /// before).
    fn wait_for_watch(&self) {
        self.api
            .wait_for_request(
                |r| is_pods_of_node(r) && r.is_watch(),
                Duration::from_secs(30),
            )
            .unwrap_or_else(|| {
                panic!(
                    "no watch of this node's pods; requests: {:#?}\ndaemon log: {:#?}",
                    self.api.requests(),
                    self.daemon.log_lines()
                )
            });
    }
}

fn is_pods_of_node(r: &ApiRequest) -> bool {
    r.method == "GET" && r.path == "/api/v1/pods" && r.node_selector() == Some(NODE)
}

#[test]
fn pods_selected_by_labels_are_filtered_until_they_go() {
    if skip_unless_root() {
        return;
    }
    let rig = KubeRig::start(false);
    let (sandbox, daemon, api) = (&rig.sandbox, &rig.daemon, &rig.api);
    let (agent, other, elsewhere) = (&rig.agent, &rig.other, &rig.elsewhere);

    // What the daemon asks: this node's pods (a field selector, no label
    // selector: policies can change), listed, then watched from the list's
    // resource version.
    rig.wait_for_watch();
    let list = api
        .wait_for_request(
            |r| is_pods_of_node(r) && !r.is_watch(),
            Duration::from_secs(1),
        )
        .expect("a list of this node's pods");
    assert!(!list.query.contains_key("labelSelector"), "{list}");

    // The policy arrives in the directory (a ConfigMap edit): attached to
    // the matching pod of this node only.
    let policy_file = KubeRig::policy()
        .write(&rig.policies, "agent.yaml")
        .unwrap();
    wait_for_workloads(daemon, api, &[agent.workload()]);
    print_requests(api);
    let status = daemon.status_json().unwrap();
    let applied = &status["policies"][0];
    assert_eq!(applied["source"], policy_file.display().to_string());

    // The pod is filtered, its drops name the policy and its cgroup.
    let dropped = assert_filtered(sandbox, agent, true).expect("a drop");
    probe(
        sandbox,
        agent,
        &["tcp", W_TCP, "--timeout-ms", DROPPED_TCP_TIMEOUT_MS],
    )
    .assert_error(probe_error::PERMISSION_DENIED);
    let event = daemon
        .wait_for_log(|v| is_drop_event_from(v, dropped), EVENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(event["policy"], POLICY, "{event}");
    assert_eq!(event["reason"], "no_rule", "{event}");
    let inode = |path: &Path| std::fs::metadata(path).unwrap().ino();
    assert_eq!(event["cgroup_id"], inode(&agent.cgroup), "{event}");
    // The others are not.
    assert_filtered(sandbox, other, false);
    assert_filtered(sandbox, elsewhere, false);

    // A label change that makes a pod match attaches it (a MODIFIED
    // event), with its own instance.
    api.apply_pod(other.object(NODE, &[("app", "openclaw")]));
    wait_for_workloads(daemon, api, &[agent.workload(), other.workload()]);
    assert_filtered(sandbox, other, true);
    assert_filtered(sandbox, agent, true);

    // A deleted pod (a DELETED event) is detached; traffic flows again.
    assert!(api.delete_pod(NAMESPACE, agent.name));
    wait_for_workloads(daemon, api, &[other.workload()]);
    assert_filtered(sandbox, agent, false);
    assert_filtered(sandbox, other, true);
    let left: Vec<String> = walk(&sandbox.pins_dir().join(POLICY))
        .into_iter()
        .filter(|p| p.contains(&agent.uid))
        .collect();
    assert!(left.is_empty(), "pins of the deleted pod: {left:?}");

    // The policy file goes (the ConfigMap key removed): the policy goes.
    std::fs::remove_file(&policy_file).unwrap();
    poll_until(
        "the policy removed",
        Duration::from_secs(30),
        || match workloads(daemon)? {
            None => Ok(()),
            Some(w) => Err(format!("still applied on {w:?}")),
        },
    );
    assert_filtered(sandbox, other, false);
    print_requests(api);
}

#[test]
fn a_pod_policy_in_the_directory_at_startup_is_applied() {
    if skip_unless_root() {
        return;
    }
    // As in a DaemonSet: the ConfigMap is mounted before the daemon starts.
    let rig = KubeRig::start(true);
    rig.wait_for_watch();
    wait_for_workloads(&rig.daemon, &rig.api, &[rig.agent.workload()]);
    assert_filtered(&rig.sandbox, &rig.agent, true);
    assert_filtered(&rig.sandbox, &rig.other, false);
}

/// Every path under `dir`, as text.
fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
            found.push(entry.path().display().to_string());
        }
    }
    found
}
