//! Issue 8, the attacker's side, in DaemonSet mode: a pod holding
//! CAP_NET_RAW writes frames to a packet socket, which no cgroup hook sees.
//! The fixed daemon attaches both layers to every selected pod: the cgroup
//! hooks to the pod's cgroup, and TC to the host-side peer of the pod's
//! veth, which it finds through the network namespace of a process in the
//! pod's cgroup; `status` lists the two as `pod <ns>/<name>` and
//! `pod <ns>/<name> via interface <veth>`. (A pod sharing the daemon's netns, i.e. hostNetwork, gets
//! the cgroup layer only; not tested here.)
//!
//! The daemon runs with `--kubernetes` in the world netns, which plays the
//! node: the world's `eth0` is the host side of the pod's veth, and the
//! fake API server (`openclaw_egress_e2e::kube`) listens on the world's
//! loopback. The pod is a cgroup named as the kubelet names it, holding a
//! long-running "pause" process placed in the agent netns before the pod
//! is reported Running.
//!
//! Today (before the fix) the test fails at the attack: the daemon attaches
//! the pod's cgroup only, so the frame reaches the forbidden host
//! (`a frame from the pod to the forbidden host: the datagram reached the
//! world`).
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{path::PathBuf, time::Duration};

use common::{
    POLICY, PolicyYaml,
    bypass::{assert_arrived, assert_not_arrived, marker, port_of},
    poll_until, skip_unless_root,
};
use openclaw_egress_e2e::{
    Background, Daemon, DropEvent, ProbeOutcome, Sandbox, World, WorldConfig, binary_path,
    kube::{FakeKubeApi, running_pod},
    probe_error,
};

const NODE: &str = "e2e-node";
const NAMESPACE: &str = "agents";
const POD: &str = "agent";
const FORBIDDEN_SINK: &str = "203.0.113.99:7000";
const ALLOWED_SINK: &str = "203.0.113.10:7001";

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .udp("203.0.113.10:7000")
        .udp_sink(ALLOWED_SINK)
        .tcp("203.0.113.10:443")
        .udp_sink(FORBIDDEN_SINK)
}

/// Everything of one test. Fields drop in declaration order: the daemon
/// first, then the API server, the world, the pause process and the
/// sandbox (with the pod's cgroup).
struct PodRig {
    daemon: Daemon,
    api: FakeKubeApi,
    world: World,
    _pause: Background,
    cgroup: PathBuf,
    uid: String,
    sandbox: Sandbox,
}

impl PodRig {
    #[track_caller]
    fn probe(&self, args: &[&str]) -> ProbeOutcome {
        self.sandbox
            .probe_in_cgroup(&self.cgroup, args)
            .unwrap_or_else(|e| panic!("oce-probe {args:?} in the pod: {e:#}"))
    }

    /// A UDP datagram to `dst` in a frame written to a packet socket on the
    /// pod's eth0.
    #[track_caller]
    fn frame(&self, mac: &str, dst: &str, payload: &str) -> ProbeOutcome {
        let sent = self.probe(&[
            "packet-send",
            "--dst-mac",
            mac,
            "--proto",
            "udp",
            "--src",
            "10.77.0.2",
            "--dst",
            dst,
            "--payload",
            payload,
        ]);
        sent.assert_ok();
        sent
    }

    /// The workloads of the policy in `status --json`.
    fn workloads(&self) -> Result<Vec<String>, String> {
        let status = self.daemon.status_json().map_err(|e| format!("{e:#}"))?;
        let policies = status["policies"].as_array().cloned().unwrap_or_default();
        let policy = policies
            .iter()
            .find(|p| p["name"] == POLICY)
            .ok_or_else(|| format!("policy not applied: {status}"))?;
        Ok(policy["workloads"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect())
    }
}

/// Starts the sandbox, the world, the pod's cgroup and pause process, the
/// fake API server and the daemon; the pod is not reported yet. Also shows
/// that before anything is attached a frame from the pod reaches the
/// forbidden host.
fn start() -> PodRig {
    let sandbox = Sandbox::new().expect("creating the sandbox");
    let world = sandbox
        .start_world(&world())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let uid = format!("{}-{POD}", sandbox.id());
    let cgroup = sandbox
        .create_cgroup(&format!("pod{uid}"))
        .unwrap_or_else(|e| panic!("{e:#}"));
    // The pod's first process, in the pod's network namespace (the agent
    // netns), as the container runtime starts it before the kubelet says
    // Running.
    let pause = sandbox
        .spawn_in_cgroup(&cgroup, "sleep", ["600"])
        .unwrap_or_else(|e| panic!("{e:#}"));

    let listener = sandbox
        .bind_tcp_in_world("127.0.0.1:0".parse().unwrap())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let api = FakeKubeApi::serve(listener).unwrap_or_else(|e| panic!("{e:#}"));
    let kubeconfig = api
        .write_kubeconfig(sandbox.scratch_dir())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let policies = sandbox.scratch_dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    PolicyYaml::for_interfaces(&[])
        .pod_labels(&[("app", "openclaw")])
        .cidr("203.0.113.10/32", &["7000/udp", "7001/udp", "443/tcp"])
        .write(&policies, "agent.yaml")
        .unwrap();
    let daemon = sandbox
        .spawn_daemon_in_world_with_env(
            &binary_path("openclaw-egress"),
            &["--kubernetes", "--policy-dir", policies.to_str().unwrap()],
            &[
                ("KUBECONFIG", kubeconfig.to_str().unwrap()),
                ("NODE_NAME", NODE),
            ],
        )
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
    PodRig {
        daemon,
        api,
        world,
        _pause: pause,
        cgroup,
        uid,
        sandbox,
    }
}

#[test]
fn a_pods_packet_socket_frames_are_judged_on_its_veth() {
    if skip_unless_root() {
        return;
    }
    let rig = start();
    let mac = rig.sandbox.world_mac().unwrap();
    let payload = marker("pod-baseline");
    rig.frame(&mac, FORBIDDEN_SINK, &payload);
    assert_arrived(&rig.world, &payload, "baseline, before the pod is attached");

    rig.api.apply_pod(running_pod(
        NAMESPACE,
        POD,
        &rig.uid,
        NODE,
        &[("app", "openclaw")],
    ));
    // Both layers: the pod's cgroup, and the host side of its veth (the
    // world's eth0), each an instance of its own.
    let expected = [
        format!("pod {NAMESPACE}/{POD}"),
        format!("pod {NAMESPACE}/{POD} via interface eth0"),
    ];
    poll_until(
        "the policy attached to the pod",
        Duration::from_secs(30),
        || match rig.workloads() {
            Ok(w) if expected.iter().all(|e| w.contains(e)) => Ok(()),
            other => Err(format!(
                "{other:?}; daemon log: {:#?}",
                rig.daemon.log_lines()
            )),
        },
    );

    // Positive control: the allowed host works, from sockets and from a
    // frame (the veth judges frames by the policy).
    let echo = rig.probe(&["udp", "203.0.113.10:7000", "--payload", "allowed"]);
    assert_eq!(echo.detail.as_deref(), Some("allowed"), "{echo:?}");
    rig.probe(&["tcp", "203.0.113.10:443"]).assert_ok();
    let allowed = marker("pod-allowed");
    rig.frame(&mac, ALLOWED_SINK, &allowed);
    assert_arrived(&rig.world, &allowed, "a frame to the allowed host");
    // The cgroup layer: a socket to the forbidden host fails at send.
    rig.probe(&["udp", FORBIDDEN_SINK, "--payload", "socket"])
        .assert_error(probe_error::PERMISSION_DENIED);

    // The attack: a frame on a packet socket, which only the host side of
    // the pod's veth can judge.
    let payload = marker("pod-attack");
    let sent = rig.frame(&mac, FORBIDDEN_SINK, &payload);
    assert_not_arrived(
        &rig.world,
        &payload,
        "a frame from the pod to the forbidden host",
    );
    let port = port_of(&sent);
    let event: DropEvent = rig
        .daemon
        .wait_for_drop_event(|e| e.src_port == port, common::EVENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("no drop event for the frame: {e:#}"));
    assert_eq!(
        (
            event.reason.as_str(),
            event.cgroup_id,
            event.policy.as_str()
        ),
        ("no_rule", 0, POLICY),
        "dropped on the pod's veth: {event:?}"
    );

    // status lists the pod, on both layers.
    let workloads = rig.workloads().unwrap();
    assert_eq!(workloads, expected, "{workloads:?}");
}
