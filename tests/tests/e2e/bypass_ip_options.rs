//! Issue 8, the attacker's side: source routes. An IPv4 packet with a
//! loose source route (LSRR), or an IPv6 packet with a routing header (a
//! segment routing header), names an allowed host as its header
//! destination, which is all an enforcer reading the header checks, and
//! the forbidden host in the route. A world that honours source routes
//! (here: `accept_source_route` and `seg6_enabled` turned on in the world
//! netns) delivers it to the forbidden host. Such packets must be dropped
//! with the new reason `ip_options`, on both layers of a policy selecting
//! the sandbox cgroup and the host side of its veth.
//!
//! Variants: through the socket API (setsockopt `IP_OPTIONS` /
//! `IPV6_RTHDR` on a UDP socket, sendto the forbidden host), through a raw
//! IP socket (header included; the cgroup hook sees it), and as frames on a
//! packet socket (only the veth sees them). Each is first shown to reach
//! the forbidden host without a policy; plain traffic to the allowed host
//! keeps working.
//!
//! Today (before the fix) both tests fail at the first attack after the
//! policy: the datagram with a source route set through setsockopt is sent
//! (`expected the source-routed send ... to fail with EPERM, got ok`) and
//! reaches the forbidden host, since both layers check only the header's
//! destination (the allowed host) and walk past IPv6 routing headers. The
//! raw-socket and packet-socket variants get through today as well.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use common::{
    PolicyYaml, Rig,
    bypass::{assert_arrived, assert_not_arrived, drop_from_port, marker, port_of},
    skip_unless_root,
};
use openclaw_egress_e2e::{DropEvent, ProbeOutcome, WorldConfig, probe_error};

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .udp("203.0.113.10:7000")
        .udp("[2001:db8:1::10]:7000")
        .udp_sink("203.0.113.99:7000")
        .udp_sink("[2001:db8:1::99]:7000")
}

fn policy(rig: &Rig) -> PolicyYaml {
    rig.policy()
        .cidr("203.0.113.10/32", &["7000/udp"])
        .cidr("2001:db8:1::10/128", &["7000/udp"])
}

/// A rig (both layers) whose world honours source routes, so that the
/// attacks below are real bypasses when not dropped.
fn rig() -> Rig {
    let rig = Rig::start_both(&world());
    for key in [
        "net.ipv4.conf.all.accept_source_route",
        "net.ipv4.conf.eth0.accept_source_route",
        "net.ipv6.conf.all.seg6_enabled",
        "net.ipv6.conf.eth0.seg6_enabled",
    ] {
        rig.sandbox
            .world_sysctl(key, "1")
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    rig
}

/// One source-routed attack: its probe arguments (without the payload) and
/// whether only the veth sees it (a packet socket).
struct Attack {
    what: &'static str,
    args: Vec<String>,
    frame: bool,
}

impl Attack {
    fn run(&self, rig: &Rig, payload: &str) -> ProbeOutcome {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(["--payload", payload]);
        rig.sandbox
            .probe(&args)
            .unwrap_or_else(|e| panic!("{}: oce-probe {args:?}: {e:#}", self.what))
    }
}

fn attacks(mac: &str, v6: bool) -> Vec<Attack> {
    let (forbidden, allowed, src, route) = if v6 {
        (
            "[2001:db8:1::99]:7000",
            "2001:db8:1::10",
            "fd77::2",
            "--srh",
        )
    } else {
        ("203.0.113.99:7000", "203.0.113.10", "10.77.0.2", "--lsrr")
    };
    let own = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let packet = [
        "packet-send",
        "--dst-mac",
        mac,
        "--proto",
        "udp",
        "--src",
        src,
        "--dst",
        forbidden,
        route,
        allowed,
    ];
    vec![
        Attack {
            what: "a UDP socket with a source route (setsockopt)",
            args: own(&["udp-srcroute", forbidden, "--via", allowed]),
            frame: false,
        },
        Attack {
            what: "a raw IP socket, header included",
            args: own(&[&packet[..], &["--raw-ip"]].concat()),
            frame: false,
        },
        Attack {
            what: "a frame on a packet socket",
            args: own(&packet),
            frame: true,
        },
    ]
}

/// The attacks of one family: each reaches the forbidden host without a
/// policy, none with it; the cgroup layer refuses what goes through a
/// socket of the cgroup (EPERM), the veth drops the frame; the reason is
/// `ip_options`.
fn check_family(v6: bool) {
    let rig = rig();
    let mac = rig.sandbox.world_mac().unwrap();
    let echo = if v6 {
        "[2001:db8:1::10]:7000"
    } else {
        "203.0.113.10:7000"
    };
    for attack in attacks(&mac, v6) {
        let payload = marker("srcroute-baseline");
        let sent = attack.run(&rig, &payload);
        assert!(sent.ok, "baseline, {}: {sent:?}", attack.what);
        assert_arrived(&rig.world, &payload, &format!("baseline, {}", attack.what));
    }

    rig.apply(&policy(&rig), "both.yaml");
    // Positive control: the allowed host, without a source route.
    let reply = rig.assert_allowed(&["udp", echo, "--payload", "plain"]);
    assert_eq!(reply.detail.as_deref(), Some("plain"));

    for attack in attacks(&mac, v6) {
        eprintln!("attack: {}", attack.what);
        let payload = marker("srcroute-attack");
        let sent = attack.run(&rig, &payload);
        let event: DropEvent = if attack.frame {
            sent.assert_ok();
            let event = drop_from_port(&rig, attack.what, port_of(&sent));
            assert_eq!(event.cgroup_id, 0, "dropped on the veth: {event:?}");
            event
        } else {
            assert!(
                !sent.ok && sent.error.as_deref() == Some(probe_error::PERMISSION_DENIED),
                "expected the source-routed send ({}) to fail with EPERM, got {sent:?}",
                attack.what
            );
            drop_from_port(&rig, attack.what, port_of(&sent))
        };
        assert_not_arrived(&rig.world, &payload, attack.what);
        // The socket API names the forbidden host as the destination of
        // sendto(2), so the cgroup layer may refuse it for that (no_rule)
        // before looking at the option; a header naming the allowed host
        // can only be refused for its source route.
        let reasons: &[&str] = if attack.args[0] == "udp-srcroute" {
            &["ip_options", "no_rule"]
        } else {
            &["ip_options"]
        };
        assert!(
            reasons.contains(&event.reason.as_str()),
            "{}: expected a drop for {reasons:?}, got {event:?}",
            attack.what
        );
    }
    // And the allowed host still answers.
    rig.assert_allowed(&["udp", echo, "--payload", "plain-again"]);
}

#[test]
fn ipv4_source_routes_are_dropped_as_ip_options() {
    if skip_unless_root() {
        return;
    }
    check_family(false);
}

#[test]
fn ipv6_routing_headers_are_dropped_as_ip_options() {
    if skip_unless_root() {
        return;
    }
    check_family(true);
}
