//! The TC classifiers, end to end: a policy that selects an interface
//! (`spec.selector.interfaces`, no cgroup) enforced on the host side of the
//! workload's veth.
//!
//! The daemon runs in the world netns, whose `eth0` plays the host side of
//! the agent's veth: what the agent sends arrives there as ingress (checked),
//! what it receives leaves there as egress (DNS answers learned). Probes run
//! in the agent netns outside the sandbox cgroup, so only TC can stop them.
//! A dropped packet just disappears there (no EPERM as with a cgroup drop):
//! TCP and UDP probes alike time out, so timeouts are short.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use common::{
    DNS_LEARNED_TOTAL, DROPPED_TCP_TIMEOUT_MS, DROPPED_UDP_TIMEOUT_MS, Rig, skip_unless_root,
};
use openclaw_egress_e2e::{WorldConfig, probe_error};

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        // A resolver the policy does not list.
        .dns("203.0.113.53:53")
        .record("api.example.com", "203.0.113.10")
        .record("api.example.com", "2001:db8:1::10")
        .record("mirror.pkg.test", "203.0.113.50")
        .record("x.attacker.example", "203.0.113.66")
        .tcp("203.0.113.10:443")
        .tcp("[2001:db8:1::10]:443")
        .tcp("203.0.113.50:443")
        .tcp("203.0.113.99:443")
        .udp("203.0.113.99:7")
}

#[test]
fn interface_policy_enforces_names_resolvers_and_learning_on_the_veth() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start_tc(&world());
    for args in [
        &["tcp", "203.0.113.99:443"][..],
        &["tcp", "203.0.113.50:443"][..],
        &["udp", "203.0.113.99:7", "--payload", "x"][..],
        &["dns", "203.0.113.53", "api.example.com"][..],
        &["dns", "10.77.0.1", "baseline.x.attacker.example"][..],
    ] {
        rig.assert_reachable_without_policy(args);
    }

    // The world's servers speak plain TCP: no TLS server name to check.
    let policy = rig
        .policy()
        .fqdn("api.example.com", &["443/tcp"])
        .rule_field("tls", "[]")
        .fqdn_pattern("*.pkg.test", &["443/tcp"])
        .rule_field("tls", "[]");
    assert_eq!(policy.cgroup_path, None, "the policy selects no cgroup");
    rig.apply(&policy, "tc.yaml");
    let status = rig.status_policies();
    assert_eq!(
        status[0]["interfaces"],
        serde_json::json!(["eth0"]),
        "{status:#?}"
    );
    assert_eq!(status[0]["cgroup"], serde_json::Value::Null, "{status:#?}");

    // The fqdn rule, resolved by the daemon ahead of time: both families
    // (IPv6 needs neighbour discovery through the classifier as well).
    let v4 = rig.assert_allowed(&["tcp", "203.0.113.10:443"]);
    assert_eq!(v4.detail.as_deref(), Some("hello from 203.0.113.10:443"));
    rig.assert_allowed(&["tcp", "[2001:db8:1::10]:443", "--send", "ping"]);
    rig.assert_allowed(&["dns", "10.77.0.1", "api.example.com"]);

    // Unlisted destinations; the events come from TC (no socket, no cgroup).
    let tcp = rig.assert_tcp_dropped("203.0.113.99:443", "no_rule");
    assert_eq!(tcp["cgroup_id"], 0, "{tcp}");
    rig.assert_dropped(
        &[
            "udp",
            "203.0.113.99:7",
            "--payload",
            "x",
            "--timeout-ms",
            DROPPED_UDP_TIMEOUT_MS,
        ],
        probe_error::TIMEOUT,
        "no_rule",
    );
    // DNS to another server.
    rig.assert_dropped(
        &[
            "dns",
            "203.0.113.53",
            "api.example.com",
            "--timeout-ms",
            DROPPED_UDP_TIMEOUT_MS,
        ],
        probe_error::TIMEOUT,
        "dns_resolver",
    );
    // A name no rule allows, through the allowed resolver, over UDP and TCP.
    for (name, transport) in [
        (
            "udp.x.attacker.example",
            &["--timeout-ms", DROPPED_UDP_TIMEOUT_MS][..],
        ),
        (
            "tcp.x.attacker.example",
            &["--tcp", "--timeout-ms", DROPPED_TCP_TIMEOUT_MS][..],
        ),
    ] {
        let args = [&["dns", "10.77.0.1", name][..], transport].concat();
        let event = rig.assert_dropped(&args, probe_error::TIMEOUT, "dns_denied");
        assert_eq!(event["dns_name"], name, "{event}");
    }
    // Cgroup membership does not matter: from inside the sandbox cgroup,
    // the same.
    let inside = rig
        .sandbox
        .probe(&[
            "udp",
            "203.0.113.99:7",
            "--payload",
            "x",
            "--timeout-ms",
            DROPPED_UDP_TIMEOUT_MS,
        ])
        .unwrap();
    inside.assert_error(probe_error::TIMEOUT);

    // A wildcard is learned from the answer on its way to the agent.
    rig.assert_tcp_dropped("203.0.113.50:443", "no_rule");
    let learned_before = rig.counter(DNS_LEARNED_TOTAL, &[]);
    let answer = rig.assert_allowed(&["dns", "10.77.0.1", "mirror.pkg.test"]);
    assert_eq!(answer.answers, ["203.0.113.50"], "{answer:?}");
    rig.assert_allowed(&["tcp", "203.0.113.50:443"]);
    assert_eq!(rig.counter(DNS_LEARNED_TOTAL, &[]) - learned_before, 1);
    let expected: BTreeSet<IpAddr> = ["203.0.113.50".parse().unwrap()].into();
    assert_eq!(rig.status_addresses("*.pkg.test"), expected);

    // The denied queries never reached the world's DNS server (the last
    // allowed query was sent after them, so it is the sync point).
    rig.world
        .wait_for_dns_query("mirror.pkg.test", Duration::from_secs(5))
        .expect("the world logged the allowed query");
    let seen: Vec<String> = rig
        .world
        .dns_queries()
        .into_iter()
        .map(|q| q.name)
        .collect();
    for name in ["udp.x.attacker.example.", "tcp.x.attacker.example."] {
        assert!(
            !seen.iter().any(|s| s == name),
            "{name} reached the world: {seen:?}"
        );
    }
}
