//! Issue 8, the attacker's side: a workload holding CAP_NET_RAW and
//! CAP_NET_ADMIN in its netns sends packets that no socket of its cgroup
//! ever sees: frames written to a packet socket, packets its kernel
//! forwards from a TUN device, packets a netdev-egress rule rewrites after
//! the cgroup hook. The policy selects the sandbox cgroup AND the host side
//! of its veth (`cgroupPath` + `interfaces: [eth0]`, the daemon in the
//! world netns); every one of these packets crosses the veth, where it must
//! be judged: nothing reaches the forbidden world host, and the drop event
//! comes from the TC layer (cgroup id 0). Each attack is first shown to
//! reach the forbidden host without a policy; allowed traffic keeps
//! working. (DaemonSet mode, where the daemon must find the veth itself, is
//! `bypass_daemonset.rs`; source routes are `bypass_ip_options.rs`.)
//!
//! Today (before the fix) all three tests PASS: with both selectors the
//! TC instance already judges every packet on the veth, whatever made it.
//! They guard that the fixes keep it so; the failing-today cases of item 3
//! are the source routes and DaemonSet mode.
//!
//! About the rewrite: the kernel here has neither `act_pedit` nor
//! `act_nat` (only `act_mirred`), so the attacker's rewrite is an
//! nftables rule on the netdev egress hook of `eth0` (`ip daddr set`),
//! which runs at the same point as a TC egress filter: in
//! `__dev_queue_xmit`, after the cgroup hook.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use common::{
    PolicyYaml, Rig,
    bypass::{
        assert_arrived, assert_dropped_on_veth, assert_not_arrived, drop_from_port, marker, port_of,
    },
    skip_unless_root,
};
use openclaw_egress_e2e::{Sandbox, WorldConfig, probe_error};

const ALLOWED_ECHO: &str = "203.0.113.10:7000";
const ALLOWED_SINK: &str = "203.0.113.10:7001";
const FORBIDDEN_SINK: &str = "203.0.113.99:7000";
const FORBIDDEN_SINK_2: &str = "203.0.113.99:7001";

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .udp(ALLOWED_ECHO)
        .udp_sink(ALLOWED_SINK)
        .tcp("203.0.113.10:443")
        .udp_sink(FORBIDDEN_SINK)
        .udp_sink(FORBIDDEN_SINK_2)
        .tcp("203.0.113.99:443")
        .tcp_syn_log()
}

fn policy(rig: &Rig) -> PolicyYaml {
    rig.policy()
        .cidr("203.0.113.10/32", &["7000/udp", "7001/udp", "443/tcp"])
}

/// The allowed host still answers, through sockets of the cgroup.
#[track_caller]
fn assert_allowed_traffic_works(rig: &Rig) {
    let echo = rig.assert_allowed(&["udp", ALLOWED_ECHO, "--payload", "still-allowed"]);
    assert_eq!(echo.detail.as_deref(), Some("still-allowed"));
    rig.assert_allowed(&["tcp", "203.0.113.10:443"]);
}

/// `packet-send` arguments for one UDP datagram in a frame to the world.
fn frame_args(mac: &str, dst: &str, payload: &str) -> Vec<String> {
    [
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
    ]
    .map(str::to_owned)
    .to_vec()
}

#[track_caller]
fn probe(sandbox: &Sandbox, args: &[String]) -> openclaw_egress_e2e::ProbeOutcome {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox
        .probe(&args)
        .unwrap_or_else(|e| panic!("oce-probe {args:?}: {e:#}"))
}

#[test]
fn packet_socket_frames_are_judged_on_the_veth() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start_both(&world());
    let mac = rig.sandbox.world_mac().unwrap();
    // Without a policy a frame from the cgroup reaches the forbidden host,
    // as does a SYN.
    let payload = marker("frame-baseline");
    probe(&rig.sandbox, &frame_args(&mac, FORBIDDEN_SINK, &payload)).assert_ok();
    assert_arrived(&rig.world, &payload, "baseline");
    let syn_args = [
        "packet-send",
        "--dst-mac",
        &mac,
        "--proto",
        "tcp",
        "--src",
        "10.77.0.2",
        "--dst",
        "203.0.113.99:443",
    ];
    let syn = rig.sandbox.probe(&syn_args).unwrap();
    syn.assert_ok();
    common::poll_until("the baseline SYN arrives", common::EVENT_TIMEOUT, || {
        let port = port_of(&syn);
        rig.world
            .tcp_syns()
            .iter()
            .any(|s| s.src.port() == port)
            .then_some(())
            .ok_or_else(|| format!("{:?}", rig.world.tcp_syns()))
    });

    rig.apply(&policy(&rig), "both.yaml");
    assert_allowed_traffic_works(&rig);
    // A frame to an allowed destination passes: the veth judges frames by
    // the policy, it does not refuse packet sockets as such.
    let allowed = marker("frame-allowed");
    probe(&rig.sandbox, &frame_args(&mac, ALLOWED_SINK, &allowed)).assert_ok();
    assert_arrived(&rig.world, &allowed, "a frame to the allowed host");

    // The attack: the frame leaves the agent (a packet socket has no
    // cgroup hook), and the host side of the veth drops it.
    let payload = marker("frame-attack");
    let sent = probe(&rig.sandbox, &frame_args(&mac, FORBIDDEN_SINK, &payload));
    sent.assert_ok();
    assert_not_arrived(&rig.world, &payload, "a UDP frame to the forbidden host");
    let event = drop_from_port(&rig, "the UDP frame", port_of(&sent));
    assert_eq!(
        event.dst_addr(),
        Some(FORBIDDEN_SINK.parse().unwrap()),
        "{event:?}"
    );
    assert_dropped_on_veth(&event);

    let syn = rig.sandbox.probe(&syn_args).unwrap();
    syn.assert_ok();
    let event = drop_from_port(&rig, "the SYN frame", port_of(&syn));
    assert_eq!(
        (event.reason.as_str(), event.cgroup_id, event.proto.as_str()),
        ("no_rule", 0, "tcp"),
        "{event:?}"
    );
    let syns = rig.world.tcp_syns();
    assert!(
        !syns.iter().any(|s| s.src.port() == port_of(&syn)),
        "the SYN reached the world: {syns:?}"
    );
}

#[test]
fn packets_forwarded_from_a_tun_device_are_judged_on_the_veth() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start_both(&world());
    // The agent makes its netns a router: a TUN device, forwarding on,
    // and a packet written into the device with a source on the veth's
    // subnet, forwarded out of eth0 by the kernel, no socket involved.
    let tun = |payload: &str| {
        [
            "tun-forward",
            "--src",
            "10.77.0.3:40123",
            "--dst",
            FORBIDDEN_SINK,
            "--payload",
            payload,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let payload = marker("tun-baseline");
    probe(&rig.sandbox, &tun(&payload)).assert_ok();
    assert_arrived(&rig.world, &payload, "baseline");

    rig.apply(&policy(&rig), "both.yaml");
    assert_allowed_traffic_works(&rig);

    let payload = marker("tun-attack");
    probe(&rig.sandbox, &tun(&payload)).assert_ok();
    assert_not_arrived(
        &rig.world,
        &payload,
        "a packet forwarded from the TUN device",
    );
    let event = common::bypass::wait_for_drop(&rig, "the forwarded packet", |e| {
        e.src == "10.77.0.3" && e.src_port == 40123
    });
    assert_dropped_on_veth(&event);
}

#[test]
fn a_destination_rewritten_after_the_cgroup_hook_is_judged_on_the_veth() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start_both(&world());
    // The agent installs a rule on eth0's egress hook that turns datagrams
    // to the allowed sink into datagrams to the forbidden host: the cgroup
    // hook sees the allowed destination, the wire the forbidden one.
    let rules = "table netdev oce_rewrite {\n\
         \x20 chain out {\n\
         \x20   type filter hook egress device \"eth0\" priority 0;\n\
         \x20   ip daddr 203.0.113.10 udp dport 7001 ip daddr set 203.0.113.99\n\
         \x20 }\n\
         }\n";
    let file = common::write_file(rig.sandbox.scratch_dir(), "rewrite.nft", rules);
    let mut nft = rig
        .sandbox
        .command_in_cgroup(
            rig.sandbox.cgroup_path(),
            "nft",
            ["-f", file.to_str().unwrap()],
        )
        .unwrap();
    let output =
        openclaw_egress_e2e::run_with_deadline(&mut nft, std::time::Duration::from_secs(10))
            .unwrap();
    assert!(
        output.status.success(),
        "nft -f rewrite.nft in the agent netns: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let send = |payload: &str| {
        [
            "socket-op",
            "udp",
            "sendto",
            ALLOWED_SINK,
            "--payload",
            payload,
            "--timeout-ms",
            "200",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    // Without a policy the rewritten datagram reaches the forbidden host.
    let payload = marker("rewrite-baseline");
    let baseline = probe(&rig.sandbox, &send(&payload));
    assert_eq!(
        baseline.stage.as_deref(),
        Some("recv"),
        "sent: {baseline:?}"
    );
    let got = rig
        .world
        .wait_for_udp_payload(&payload, common::bypass::ARRIVAL_TIMEOUT)
        .expect("baseline: the rewritten datagram arrived");
    assert_eq!(
        got.local,
        FORBIDDEN_SINK_2.parse().unwrap(),
        "rewritten: {got:?}"
    );

    rig.apply(&policy(&rig), "both.yaml");
    assert_allowed_traffic_works(&rig);

    // The cgroup layer lets the datagram out (its destination is allowed:
    // send succeeds, the sink just never answers)...
    let payload = marker("rewrite-attack");
    let sent = probe(&rig.sandbox, &send(&payload));
    assert!(
        sent.stage.as_deref() == Some("recv")
            && sent.error.as_deref() == Some(probe_error::TIMEOUT),
        "the cgroup layer let the allowed destination out: {sent:?}"
    );
    // ...and the veth drops what it became.
    assert_not_arrived(&rig.world, &payload, "the rewritten datagram");
    let event = drop_from_port(&rig, "the rewritten datagram", port_of(&sent));
    assert_eq!(
        event.dst_addr(),
        Some(FORBIDDEN_SINK_2.parse().unwrap()),
        "{event:?}"
    );
    assert_dropped_on_veth(&event);
}
