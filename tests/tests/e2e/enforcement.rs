//! What the enforcer lets through and what it drops, with real packets
//! through the real programs: FQDN rules (IPv4 and IPv6), DNS resolvers,
//! CIDR rules.
//!
//! Every blocked target has a server behind it, and each test first shows
//! that the target answers from outside the cgroup: a failure inside the
//! cgroup is then the policy's doing, which the drop event (matched by the
//! probe's source port) confirms with its reason.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use common::{PolicyYaml, Rig, skip_unless_root};
use openclaw_egress_e2e::{AGENT_IPV4, AGENT_IPV6, WorldConfig, probe_error};

/// The allowed name has an A and an AAAA record; everything else is a
/// neighbour of it that the policy must not open.
fn fqdn_world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("api.example.com", "203.0.113.10")
        .record("api.example.com", "2001:db8:1::10")
        // The allowed port, on both addresses.
        .tcp("203.0.113.10:443")
        .tcp("[2001:db8:1::10]:443")
        // Same address, another port.
        .tcp("203.0.113.10:8443")
        .tcp("[2001:db8:1::10]:8443")
        // The allowed port over UDP (the rule says 443/tcp).
        .udp("203.0.113.10:443")
        // Addresses no rule mentions.
        .tcp("203.0.113.99:443")
        .tcp("[2001:db8:1::99]:443")
        .udp("203.0.113.99:7")
}

#[test]
fn fqdn_rule_allows_its_addresses_on_its_port_and_nothing_else() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&fqdn_world());
    let blocked_tcp = [
        "203.0.113.10:8443",
        "[2001:db8:1::10]:8443",
        "203.0.113.99:443",
        "[2001:db8:1::99]:443",
    ];
    for target in blocked_tcp {
        rig.assert_reachable_without_policy(&["tcp", target]);
    }
    for target in ["203.0.113.10:443", "203.0.113.99:7"] {
        rig.assert_reachable_without_policy(&["udp", target, "--payload", "x"]);
    }

    // The world's servers speak plain TCP: no TLS server name to check.
    let policy = PolicyYaml::for_sandbox(&rig.sandbox)
        .fqdn("api.example.com", &["443/tcp"])
        .rule_field("tls", "[]");
    rig.apply(&policy, "policy.yaml");

    // Both families of the name work, each from the agent's own address.
    let v4 = rig.assert_allowed(&["tcp", "203.0.113.10:443"]);
    assert_eq!(v4.detail.as_deref(), Some("hello from 203.0.113.10:443"));
    assert_eq!(v4.local.map(|a| a.ip()), Some(AGENT_IPV4.into()));
    let v6 = rig.assert_allowed(&["tcp", "[2001:db8:1::10]:443", "--send", "ping"]);
    assert_eq!(v6.detail.as_deref(), Some("ping"), "the echo came back");
    assert_eq!(v6.local.map(|a| a.ip()), Some(AGENT_IPV6.into()));

    // The name's addresses on another port, and addresses of no rule. (The
    // drop event is checked against each probe: policy, proto, destination.)
    for target in blocked_tcp {
        rig.assert_tcp_dropped(target, "no_rule");
    }
    // The rule is TCP-only: UDP to the same address and port is dropped.
    rig.assert_udp_dropped("203.0.113.10:443", "no_rule");
    rig.assert_udp_dropped("203.0.113.99:7", "no_rule");

    // Dropping did not break the allowed flows (no verdict is sticky per
    // address).
    rig.assert_allowed(&["tcp", "203.0.113.10:443"]);
    rig.assert_allowed(&["tcp", "[2001:db8:1::10]:443"]);
}

#[test]
fn dns_goes_only_to_the_listed_resolvers() {
    if skip_unless_root() {
        return;
    }
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        // Two servers the policy does not list: DNS to them would be a way
        // around the policy's resolvers (and, later, its name checks).
        .dns("203.0.113.53:53")
        .dns("[2001:db8:53::53]:53")
        .record("api.example.com", "203.0.113.10")
        .record("api.example.com", "2001:db8:1::10")
        .tcp("203.0.113.10:443");
    let rig = Rig::start(&world);
    let rogue = [
        &["dns", "203.0.113.53", "api.example.com"][..],
        &["dns", "203.0.113.53", "api.example.com", "--tcp"][..],
        &["dns", "[2001:db8:53::53]:53", "api.example.com"][..],
        &["dns", "[2001:db8:53::53]:53", "api.example.com", "--tcp"][..],
    ];
    for query in rogue {
        rig.assert_reachable_without_policy(query);
    }

    let policy = PolicyYaml::for_sandbox(&rig.sandbox).fqdn("api.example.com", &["443/tcp"]);
    rig.apply(&policy, "policy.yaml");

    // The listed resolvers answer (the answer made it back into the
    // cgroup), over UDP and TCP, on both families. The name asked is an
    // allowed one, so this holds also once query names are checked.
    for query in [
        &["dns", "10.77.0.1", "api.example.com"][..],
        &["dns", "10.77.0.1", "api.example.com", "--tcp"][..],
        &["dns", "[fd77::1]:53", "api.example.com", "--type", "AAAA"][..],
        &[
            "dns",
            "[fd77::1]:53",
            "api.example.com",
            "--type",
            "AAAA",
            "--tcp",
        ][..],
    ] {
        let answer = rig.assert_allowed(query);
        assert_eq!(
            answer.rcode.as_deref(),
            Some("NOERROR"),
            "{query:?}: {answer:?}"
        );
        let expected = if query.contains(&"AAAA") {
            "2001:db8:1::10"
        } else {
            "203.0.113.10"
        };
        assert_eq!(answer.answers, [expected], "{query:?}: {answer:?}");
    }

    // Any other server: refused at connect() (EPERM: nothing left; the
    // drop event says the policy is the reason), over UDP and TCP.
    for query in rogue {
        let args = [query, &["--timeout-ms", "2000"][..]].concat();
        let event = rig.assert_dropped(&args, probe_error::PERMISSION_DENIED, "dns_resolver");
        assert_eq!(event["stage"], "connect", "{query:?}: {event}");
    }
}

#[test]
fn cidr_rule_allows_its_range_on_its_port_and_nothing_else() {
    if skip_unless_root() {
        return;
    }
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        // Near both ends of 198.51.100.0/28, on the allowed port.
        .tcp("198.51.100.1:8443")
        .tcp("198.51.100.15:8443")
        // Inside the range, another port; and the same port over UDP.
        .tcp("198.51.100.1:8444")
        .udp("198.51.100.1:8443")
        // Just outside the range, on the allowed port.
        .tcp("198.51.100.16:8443")
        // The IPv6 range and its neighbour.
        .tcp("[2001:db8:2::1]:8443")
        .tcp("[2001:db8:3::1]:8443");
    let rig = Rig::start(&world);
    let blocked_tcp = [
        "198.51.100.1:8444",
        "198.51.100.16:8443",
        "[2001:db8:3::1]:8443",
    ];
    for target in blocked_tcp {
        rig.assert_reachable_without_policy(&["tcp", target]);
    }
    rig.assert_reachable_without_policy(&["udp", "198.51.100.1:8443", "--payload", "x"]);

    let policy = PolicyYaml::for_sandbox(&rig.sandbox)
        .resolvers(&["10.77.0.1"])
        .cidr("198.51.100.0/28", &["8443/tcp"])
        .cidr("2001:db8:2::/48", &["8443/tcp"]);
    rig.apply(&policy, "policy.yaml");

    for target in [
        "198.51.100.1:8443",
        "198.51.100.15:8443",
        "[2001:db8:2::1]:8443",
    ] {
        rig.assert_allowed(&["tcp", target]);
    }
    for target in blocked_tcp {
        rig.assert_tcp_dropped(target, "no_rule");
    }
    rig.assert_udp_dropped("198.51.100.1:8443", "no_rule");
}
