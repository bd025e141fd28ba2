//! DaemonSet mode, a pod's first instant: the scheduler binds a pod to this
//! node, the kubelet makes its cgroup and starts a container that talks at
//! once. The daemon follows the pod from its binding (Pending), arms the
//! pod gate on the kubepods cgroup and attaches the pod's policy when the
//! cgroup appears; not one packet the policy forbids may leave meanwhile.
//!
//! A simulated kubelet: `mkdir` of the pod cgroup (as the kubelet names it,
//! below a QoS-class directory) and, at once, a process in it that sends a
//! datagram and opens a connection over and over. The world logs every SYN
//! and datagram it receives.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{path::PathBuf, time::Duration};

use common::{PolicyYaml, poll_until, skip_unless_root};
use openclaw_egress_e2e::{
    Daemon, Sandbox, WorldConfig, binary_path,
    kube::{FakeKubeApi, pending_pod, running_pod},
};
use serde_json::Value;

const NODE: &str = "e2e-node";
const NAMESPACE: &str = "agents";
const X_TCP: &str = "203.0.113.10:443";
const W_TCP: &str = "203.0.113.99:443";
const W_UDP: &str = "203.0.113.99:7";
const W: &str = "203.0.113.99";

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("x.example.com", "203.0.113.10")
        .tcp(X_TCP)
        .tcp(W_TCP)
        .udp_sink(W_UDP)
        .tcp_syn_log()
}

/// The policy: pods labelled app=openclaw may reach x only.
fn policy() -> PolicyYaml {
    PolicyYaml::for_interfaces(&[])
        .pod_labels(&[("app", "openclaw")])
        .fqdn("x.example.com", &["443/tcp"])
}

struct Rig {
    daemon: Daemon,
    /// The daemon's arguments and environment, for a restart.
    args: Vec<String>,
    env: Vec<(String, String)>,
    api: FakeKubeApi,
    world: openclaw_egress_e2e::World,
    /// `<sandbox>/kubepods`, given as `--kubepods-cgroup`.
    kubepods: PathBuf,
    sandbox: Sandbox,
}

/// Starts the daemon and waits until its policy is applied.
fn spawn_daemon(sandbox: &Sandbox, args: &[String], env: &[(String, String)]) -> Daemon {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let daemon = sandbox
        .spawn_daemon_with_env(&binary_path("openclaw-egress"), &args, &env)
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
    daemon
        .wait_for_log(
            |v| v["message"] == "policy applied",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    daemon
}

/// Waits for the daemon's log to say the gate is armed.
fn wait_armed(daemon: &Daemon) {
    daemon
        .wait_for_log(
            |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("pod gate armed"))
            },
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
}

impl Rig {
    fn start() -> Self {
        let sandbox = Sandbox::new().expect("creating the sandbox");
        let world = sandbox
            .start_world(&world())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let kubepods = sandbox
            .create_cgroup("kubepods")
            .unwrap_or_else(|e| panic!("{e:#}"));
        // The kubelet makes its QoS-class cgroups at start-up.
        std::fs::create_dir(kubepods.join("besteffort")).unwrap();
        let listener = sandbox
            .bind_tcp_in_agent("127.0.0.1:0".parse().unwrap())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let api = FakeKubeApi::serve(listener).unwrap_or_else(|e| panic!("{e:#}"));
        let kubeconfig = api
            .write_kubeconfig(sandbox.scratch_dir())
            .unwrap_or_else(|e| panic!("{e:#}"));
        let policies = sandbox.scratch_dir().join("policies");
        std::fs::create_dir(&policies).unwrap();
        policy().write(&policies, "agent.yaml").unwrap();
        let args: Vec<String> = [
            "--kubernetes",
            "--kubepods-cgroup",
            kubepods.to_str().unwrap(),
            "--policy-dir",
            policies.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .into();
        let env = vec![
            ("KUBECONFIG".to_owned(), kubeconfig.display().to_string()),
            ("NODE_NAME".to_owned(), NODE.to_owned()),
        ];
        let daemon = spawn_daemon(&sandbox, &args, &env);
        Self {
            daemon,
            args,
            env,
            api,
            world,
            kubepods,
            sandbox,
        }
    }

    /// The scheduler binds the selected pod `agent` here (Pending, no
    /// cgroup yet) and the daemon arms the gate for it; returns its UID.
    fn bind_agent(&self) -> String {
        let agent = self.uid("agent");
        self.api.apply_pod(pending_pod(
            NAMESPACE,
            "agent",
            &agent,
            NODE,
            &[("app", "openclaw")],
        ));
        wait_armed(&self.daemon);
        agent
    }

    /// A UID unique to this sandbox (the cgroup tree is shared).
    fn uid(&self, name: &str) -> String {
        format!("{}-{name}", self.sandbox.id())
    }

    /// Where the kubelet makes the pod cgroup (cgroupfs names): below the
    /// BestEffort directory or, for a Guaranteed pod, right below the root.
    fn pod_cgroup(&self, uid: &str, guaranteed: bool) -> PathBuf {
        let parent = if guaranteed {
            self.kubepods.clone()
        } else {
            self.kubepods.join("besteffort")
        };
        parent.join(format!("pod{uid}"))
    }

    /// The kubelet makes `cgroup` and a container in it talks from its
    /// first instant, for `seconds`: one process that makes the cgroup,
    /// moves itself in and sends at once.
    fn start_talking_pod(&self, cgroup: &std::path::Path, seconds: &str) -> Value {
        let args = [
            "knock",
            W_UDP,
            W_TCP,
            "--seconds",
            seconds,
            "--new-cgroup",
            cgroup.to_str().unwrap(),
        ];
        self.sandbox
            .probe_json_outside_cgroup(&args)
            .unwrap_or_else(|e| panic!("knock: {e:#}"))
    }

    fn metric(&self, name: &str) -> f64 {
        self.daemon
            .metrics()
            .unwrap_or_else(|e| panic!("{e:#}"))
            .value(name, &[])
            .unwrap_or_else(|| panic!("no {name}"))
    }

    /// What reached w from the agent side: SYNs and datagrams.
    fn reached_w(&self) -> (usize, usize) {
        let syns = self
            .world
            .tcp_syns()
            .iter()
            .filter(|syn| syn.dst.ip().to_string() == W)
            .count();
        let datagrams = self.world.udp_received().len();
        (syns, datagrams)
    }
}

#[test]
fn a_selected_pod_sends_nothing_before_its_policy_is_in_force() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start();

    // The scheduler binds the pod here: Pending, no cgroup yet.
    let agent = rig.bind_agent();
    assert_eq!(rig.metric("openclaw_egress_pod_gate_armed"), 1.0);

    // The kubelet makes the cgroup and the container talks at once.
    let cgroup = rig.pod_cgroup(&agent, false);
    let knocks = rig.start_talking_pod(&cgroup, "1.5");
    eprintln!("agent: {knocks}");
    assert_eq!(knocks["udp_sent"], 0, "{knocks}");
    assert_eq!(knocks["tcp_connected"], 0, "{knocks}");
    assert_eq!(rig.reached_w(), (0, 0), "packets to w left the pod");
    // The gate held its first packets (the policy was not in force yet),
    // and the policy dropped the rest.
    assert!(
        rig.metric("openclaw_egress_pod_gate_held_packets_total") > 0.0,
        "the gate held nothing: the test did not race the attach; log: {:#?}",
        rig.daemon.log_lines()
    );
    let status = rig.daemon.status_json().unwrap();
    let workloads = status["policies"][0]["workloads"].to_string();
    assert!(workloads.contains("pod agents/agent"), "{status}");
    // What the policy allows works once it is in force.
    rig.sandbox
        .probe_in_cgroup(&cgroup, &["tcp", X_TCP])
        .unwrap()
        .assert_ok();
    // Nothing awaited any more: disarmed.
    poll_until("the gate disarmed", Duration::from_secs(10), || {
        match rig.metric("openclaw_egress_pod_gate_armed") {
            0.0 => Ok(()),
            armed => Err(format!("armed: {armed}")),
        }
    });
}

#[test]
fn pods_no_policy_selects_are_let_go_at_once() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start();
    // A selected pod is awaited: the gate is armed ...
    rig.bind_agent();

    // ... when another pod, which no policy selects, starts: a Guaranteed
    // one (right below the root), known to the API server or not yet.
    for (name, known) in [("web", true), ("static", false)] {
        let uid = rig.uid(name);
        if known {
            rig.api
                .apply_pod(pending_pod(NAMESPACE, name, &uid, NODE, &[("app", "web")]));
        }
        let cgroup = rig.pod_cgroup(&uid, true);
        let knocks = rig.start_talking_pod(&cgroup, "1");
        eprintln!("{name}: {knocks}");
        let first = knocks["first_udp_sent_ms"].as_f64();
        assert!(
            first.is_some_and(|ms| ms < 500.0),
            "pod {name} was held too long (or for good): {knocks}"
        );
        // Running now, as the API server reports it; nothing changes.
        rig.api
            .apply_pod(running_pod(NAMESPACE, name, &uid, NODE, &[("app", "web")]));
    }
    let (_, datagrams) = rig.reached_w();
    assert!(datagrams > 0, "nothing of the unselected pods reached w");
}

#[test]
fn a_pod_that_starts_while_the_daemon_is_down_is_held_until_it_is_back() {
    if skip_unless_root() {
        return;
    }
    let mut rig = Rig::start();
    let agent = rig.bind_agent();

    // The daemon stops (an upgrade, a crash): the gate stays pinned and
    // armed, and the pod that starts meanwhile is held.
    rig.daemon.terminate();
    let cgroup = rig.pod_cgroup(&agent, false);
    let knocks = rig.start_talking_pod(&cgroup, "0.5");
    eprintln!("agent, daemon down: {knocks}");
    assert_eq!(knocks["udp_sent"], 0, "{knocks}");
    assert_eq!(knocks["tcp_connected"], 0, "{knocks}");

    // Back: it finds the pod (Running now) and enforces its policy.
    rig.api.apply_pod(running_pod(
        NAMESPACE,
        "agent",
        &agent,
        NODE,
        &[("app", "openclaw")],
    ));
    rig.daemon = spawn_daemon(&rig.sandbox, &rig.args, &rig.env);
    poll_until("the pod attached again", Duration::from_secs(30), || {
        let status = rig.daemon.status_json().map_err(|e| format!("{e:#}"))?;
        let workloads = status["policies"][0]["workloads"].to_string();
        if workloads.contains("pod agents/agent") {
            Ok(())
        } else {
            Err(status.to_string())
        }
    });
    rig.sandbox
        .probe_in_cgroup(&cgroup, &["tcp", X_TCP])
        .unwrap()
        .assert_ok();
    assert_eq!(rig.reached_w(), (0, 0), "packets to w left the pod");
    poll_until("the gate disarmed", Duration::from_secs(10), || {
        match rig.metric("openclaw_egress_pod_gate_armed") {
            0.0 => Ok(()),
            armed => Err(format!("armed: {armed}")),
        }
    });
}
