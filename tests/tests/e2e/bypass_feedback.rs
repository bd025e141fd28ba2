//! Issue 8: agents learn at once that they are blocked. On a cgroup policy
//! a TCP connect(2) to a forbidden destination fails with EPERM (not a
//! timeout after SYN retransmissions), so does a UDP connect(2), and so
//! does an unconnected UDP sendto(2). Each produces a drop event (`no_rule`,
//! or `dns_resolver` for port 53 to a server that is not a resolver) whose
//! `src_port` is the socket's port: the probe binds each socket to the
//! unspecified address, port 0, before connecting, so the port exists
//! before any packet does, and the event's `src` is then `0.0.0.0` / `::`
//! (the refusal comes before the kernel picks a source address). Nothing
//! reaches the world. Allowed destinations still connect; in audit mode the
//! connect succeeds and the packet-level `audited` event appears as before.
//!
//! Today (before the fix):
//! - `forbidden_destinations_fail_at_the_socket_call`: the TCP connect to
//!   203.0.113.99:443 times out (`expected connect(2) ... to fail with
//!   EPERM, got ... error: "timeout"`): the cgroup egress program drops the
//!   SYN and the kernel retransmits it;
//! - `in_audit_mode_the_connect_succeeds_and_is_reported`: PASSES (it is
//!   the unchanged audit behaviour, kept as a guard).
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use common::{
    Rig,
    bypass::{drop_from_port, port_of},
    poll_until, skip_unless_root,
};
use openclaw_egress_e2e::{ProbeOutcome, WorldConfig, probe_error};

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        // A DNS server the policy does not list.
        .dns("203.0.113.53:53")
        .tcp("203.0.113.10:443")
        .udp("203.0.113.10:7")
        .tcp("203.0.113.99:443")
        .tcp("[2001:db8:1::99]:443")
        .udp("203.0.113.99:7")
        .udp("[2001:db8:1::99]:7")
        .tcp_syn_log()
}

/// `socket-op PROTO OP TARGET` from inside the cgroup.
#[track_caller]
fn socket_op(rig: &Rig, proto: &str, op: &str, target: &str) -> ProbeOutcome {
    rig.probe(&[
        "socket-op",
        proto,
        op,
        target,
        "--payload",
        "blocked?",
        "--timeout-ms",
        common::DROPPED_TCP_TIMEOUT_MS,
    ])
}

#[test]
fn forbidden_destinations_fail_at_the_socket_call() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    let cases = [
        // (proto, op, target, the step that must fail, reason)
        ("tcp", "connect", "203.0.113.99:443", "connect", "no_rule"),
        (
            "tcp",
            "connect",
            "[2001:db8:1::99]:443",
            "connect",
            "no_rule",
        ),
        ("udp", "connect", "203.0.113.99:7", "connect", "no_rule"),
        ("udp", "connect", "[2001:db8:1::99]:7", "connect", "no_rule"),
        ("udp", "sendto", "203.0.113.99:7", "send", "no_rule"),
        ("udp", "sendto", "[2001:db8:1::99]:7", "send", "no_rule"),
        (
            "tcp",
            "connect",
            "203.0.113.53:53",
            "connect",
            "dns_resolver",
        ),
        ("udp", "sendto", "203.0.113.53:53", "send", "dns_resolver"),
    ];
    for (proto, _, target, _, _) in cases {
        let baseline: &[&str] = match (proto, target.ends_with(":53")) {
            (_, true) if proto == "tcp" => &["dns", "203.0.113.53", "x.example", "--tcp"],
            (_, true) => &["dns", "203.0.113.53", "x.example"],
            ("tcp", false) => &["tcp", target],
            _ => &["udp", target, "--payload", "x"],
        };
        rig.assert_reachable_without_policy(baseline);
    }
    rig.apply(
        &rig.policy().cidr("203.0.113.10/32", &["443/tcp", "7/udp"]),
        "policy.yaml",
    );

    // Positive control: the same calls to the allowed host work.
    socket_op(&rig, "tcp", "connect", "203.0.113.10:443").assert_ok();
    socket_op(&rig, "udp", "connect", "203.0.113.10:7").assert_ok();
    socket_op(&rig, "udp", "sendto", "203.0.113.10:7").assert_ok();

    for (proto, op, target, stage, reason) in cases {
        let outcome = socket_op(&rig, proto, op, target);
        // The call itself fails, at once: no SYN retransmitted for
        // seconds, no datagram gone missing.
        assert!(
            !outcome.ok
                && outcome.error.as_deref() == Some(probe_error::PERMISSION_DENIED)
                && outcome.stage.as_deref() == Some(stage),
            "expected {op}(2) of {proto} to {target} to fail with EPERM at {stage}, got {outcome:?}"
        );
        let port = port_of(&outcome);
        let local = outcome.local.expect("bound first");
        let event = drop_from_port(&rig, &format!("{proto} {op} {target}"), port);
        let unspecified = local.ip().to_string();
        for (field, got, want) in [
            ("src", event.src.as_str(), unspecified.as_str()),
            ("reason", &event.reason, reason),
            ("verdict", &event.verdict, "dropped"),
            ("direction", &event.direction, "egress"),
            ("proto", &event.proto, proto),
        ] {
            assert_eq!(got, want, "{proto} {op} {target}: `{field}` of {event:?}");
        }
        assert_eq!(event.dst_addr(), Some(target.parse().unwrap()), "{event:?}");
        if proto == "tcp" {
            let syns = rig.world.tcp_syns();
            assert!(
                !syns.iter().any(|s| s.src.port() == port),
                "a SYN of the refused connect reached the world: {syns:?}"
            );
        }
    }
}

#[test]
fn in_audit_mode_the_connect_succeeds_and_is_reported() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    rig.apply(
        &rig.policy()
            .mode("audit")
            .cidr("203.0.113.10/32", &["443/tcp", "7/udp"]),
        "audit.yaml",
    );
    for (proto, op, target) in [
        ("tcp", "connect", "203.0.113.99:443"),
        ("udp", "connect", "203.0.113.99:7"),
        ("udp", "sendto", "203.0.113.99:7"),
    ] {
        let outcome = socket_op(&rig, proto, op, target);
        assert!(
            outcome.ok,
            "audit mode lets {proto} {op} {target} through: {outcome:?}"
        );
        let port = port_of(&outcome);
        // The packet-level event: its source is the packet's.
        let event = poll_until("the audited event", common::EVENT_TIMEOUT, || {
            rig.daemon
                .drop_events()
                .into_iter()
                .find(|e| e.src_port == port)
                .ok_or_else(|| format!("{:#?}", rig.daemon.drop_events()))
        });
        assert_eq!(
            (event.verdict.as_str(), event.reason.as_str()),
            ("audited", "no_rule"),
            "{event:?}"
        );
        assert_eq!(event.dst_addr(), Some(target.parse().unwrap()), "{event:?}");
    }
}
