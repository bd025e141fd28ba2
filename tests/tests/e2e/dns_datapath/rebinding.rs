//! Rebinding protection: names resolving to internal addresses open nothing unless a CIDR rule covers them.

use super::*;

// ---------------------------------------------------------------------------
// 5. DNS rebinding.
// ---------------------------------------------------------------------------

/// Names under `*.rebind.test` that resolve to internal addresses (all
/// routable from the agent, with servers, except its own loopback), and a
/// public control.
fn rebinding_world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("private.rebind.test", "10.1.2.3")
        .record("loop.rebind.test", "127.0.0.1")
        .record("meta.rebind.test", "169.254.169.254")
        .record("ula.rebind.test", "fd12:3456::3")
        .record("public.rebind.test", "203.0.113.80")
        .tcp("10.1.2.3:443")
        .tcp("169.254.169.254:443")
        .tcp("[fd12:3456::3]:443")
        .tcp("203.0.113.80:443")
}

#[test]
fn names_resolving_to_internal_addresses_open_nothing_unless_a_cidr_rule_covers_them() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&rebinding_world());
    let internal = ["10.1.2.3:443", "169.254.169.254:443", "[fd12:3456::3]:443"];
    for target in internal {
        rig.assert_reachable_without_policy(&["tcp", target]);
    }
    // Nothing listens on the agent's own loopback: a reset, i.e. the SYN
    // got there.
    rig.sandbox
        .probe_outside_cgroup(&["tcp", "127.0.0.1:443"])
        .unwrap()
        .assert_error(probe_error::REFUSED);

    let policy = rig.policy().fqdn_pattern("*.rebind.test", &["443/tcp"]);
    rig.apply(&policy, "policy.yaml");
    let refused_before = rig.counter(DNS_REFUSED_TOTAL, &[("reason", "internal")]);
    let learned_before = rig.counter(DNS_LEARNED_TOTAL, &[]);

    // The names are allowed, so the answers reach the agent...
    for (server, name, qtype, address) in [
        ("10.77.0.1", "private.rebind.test", "A", "10.1.2.3"),
        ("10.77.0.1", "loop.rebind.test", "A", "127.0.0.1"),
        ("10.77.0.1", "meta.rebind.test", "A", "169.254.169.254"),
        ("[fd77::1]:53", "ula.rebind.test", "AAAA", "fd12:3456::3"),
        ("10.77.0.1", "public.rebind.test", "A", "203.0.113.80"),
    ] {
        rig.lookup(server, name, qtype, &[address]);
    }
    // ...but only the public address opened.
    rig.assert_allowed(&["tcp", "203.0.113.80:443"]);
    for target in internal.into_iter().chain(["127.0.0.1:443"]) {
        rig.assert_tcp_dropped(target, "no_rule");
    }
    assert_eq!(
        rig.counter(DNS_REFUSED_TOTAL, &[("reason", "internal")]) - refused_before,
        4
    );
    assert_eq!(rig.counter(DNS_LEARNED_TOTAL, &[]) - learned_before, 1);
    assert_eq!(
        rig.status_addresses("*.rebind.test"),
        ips(&["203.0.113.80"])
    );

    // A CIDR rule covering 10.1.2.0/24 (on another port, so that it does
    // not open 10.1.2.3:443 by itself) makes the address learnable.
    rig.apply(
        &policy.cidr("10.1.2.0/24", &["5432/tcp"]),
        "policy-with-cidr.yaml",
    );
    rig.assert_tcp_dropped("10.1.2.3:443", "no_rule");
    let refused_before = rig.counter(DNS_REFUSED_TOTAL, &[("reason", "internal")]);
    rig.lookup("10.77.0.1", "private.rebind.test", "A", &["10.1.2.3"]);
    rig.assert_allowed(&["tcp", "10.1.2.3:443"]);
    // The others stay refused.
    for (name, address) in [
        ("loop.rebind.test", "127.0.0.1"),
        ("meta.rebind.test", "169.254.169.254"),
    ] {
        rig.lookup("10.77.0.1", name, "A", &[address]);
    }
    for target in ["127.0.0.1:443", "169.254.169.254:443"] {
        rig.assert_tcp_dropped(target, "no_rule");
    }
    assert_eq!(
        rig.counter(DNS_REFUSED_TOTAL, &[("reason", "internal")]) - refused_before,
        2
    );
    assert_eq!(
        rig.status_addresses("*.rebind.test"),
        ips(&["203.0.113.80", "10.1.2.3"])
    );
}
