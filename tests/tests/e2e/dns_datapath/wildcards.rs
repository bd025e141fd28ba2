//! Wildcard patterns open what the agent's own lookups return (CNAME chains included).

use super::*;

// ---------------------------------------------------------------------------
// 2. Wildcards work through the agent's own answers.
// ---------------------------------------------------------------------------

/// Names under `*.pkg.test` and `**.cdn.test`, names just outside them, a
/// CNAME chain out of the pattern, all with a server on 443.
fn wildcard_world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("mirror.pkg.test", "203.0.113.50")
        .record("mirror.pkg.test", "2001:db8:50::50")
        .record("a.b.pkg.test", "203.0.113.51")
        .record("pkg.test", "203.0.113.52")
        .record("x.cdn.test", "203.0.113.53")
        .record("a.b.cdn.test", "203.0.113.54")
        .record("cdn.test", "203.0.113.55")
        .cname("www.pkg.test", "edge.elsewhere.test")
        .record("edge.elsewhere.test", "203.0.113.56")
        .record("other.pkg.test", "203.0.113.57")
        .tcp("203.0.113.50:443")
        .tcp("203.0.113.50:8443")
        .tcp("[2001:db8:50::50]:443")
        .tcp("203.0.113.51:443")
        .tcp("203.0.113.52:443")
        .tcp("203.0.113.53:443")
        .tcp("203.0.113.54:443")
        .tcp("203.0.113.55:443")
        .tcp("203.0.113.56:443")
        .tcp("203.0.113.57:443")
}

#[test]
fn wildcard_patterns_open_what_the_agents_own_lookups_return() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&wildcard_world());
    for target in ["203.0.113.50:443", "203.0.113.54:443", "203.0.113.57:443"] {
        rig.assert_reachable_without_policy(&["tcp", target]);
    }
    rig.apply(
        &rig.policy()
            .fqdn_pattern("*.pkg.test", &["443/tcp"])
            .fqdn_pattern("**.cdn.test", &["443/tcp"]),
        "policy.yaml",
    );
    let learned_before = rig.counter(DNS_LEARNED_TOTAL, &[]);

    // Nothing is open before the agent looks a name up: a pattern cannot be
    // resolved ahead of time.
    rig.assert_tcp_dropped("203.0.113.50:443", "no_rule");
    rig.assert_tcp_dropped("203.0.113.54:443", "no_rule");

    // `*.` is one label (any case), on both families.
    rig.lookup("10.77.0.1", "MIRROR.Pkg.Test", "A", &["203.0.113.50"]);
    rig.lookup(
        "[fd77::1]:53",
        "mirror.pkg.test",
        "AAAA",
        &["2001:db8:50::50"],
    );
    let greeting = rig.assert_allowed(&["tcp", "203.0.113.50:443"]);
    assert_eq!(
        greeting.detail.as_deref(),
        Some("hello from 203.0.113.50:443")
    );
    rig.assert_allowed(&["tcp", "[2001:db8:50::50]:443"]);
    // Only on the rule's port.
    rig.assert_tcp_dropped("203.0.113.50:8443", "no_rule");
    // Two labels, or none, are not `*.`: not even asked.
    assert_query_denied(&rig, "10.77.0.1", "a.b.pkg.test", false);
    assert_query_denied(&rig, "10.77.0.1", "pkg.test", false);

    // `**.` is one or more labels.
    rig.lookup("10.77.0.1", "x.cdn.test", "A", &["203.0.113.53"]);
    rig.lookup("10.77.0.1", "a.b.cdn.test", "A", &["203.0.113.54"]);
    rig.assert_allowed(&["tcp", "203.0.113.53:443"]);
    rig.assert_allowed(&["tcp", "203.0.113.54:443"]);
    assert_query_denied(&rig, "10.77.0.1", "cdn.test", false);

    // A CNAME chain: the allowed question's answer opens the address at the
    // end of the chain, although its own name is not allowed.
    let chain = rig.lookup("10.77.0.1", "www.pkg.test", "A", &["203.0.113.56"]);
    assert_eq!(chain.cnames, ["edge.elsewhere.test."], "{chain:?}");
    rig.assert_allowed(&["tcp", "203.0.113.56:443"]);
    assert_query_denied(&rig, "10.77.0.1", "edge.elsewhere.test", false);

    // Nothing a denied query would have returned is open.
    for target in ["203.0.113.51:443", "203.0.113.52:443", "203.0.113.55:443"] {
        rig.assert_tcp_dropped(target, "no_rule");
    }
    // A lookup by a process outside the workload's cgroup opens nothing
    // for the workload.
    rig.assert_reachable_without_policy(&["dns", "10.77.0.1", "other.pkg.test"]);
    rig.assert_tcp_dropped("203.0.113.57:443", "no_rule");

    // status shows each address under the pattern that let it in.
    assert_eq!(
        rig.status_addresses("*.pkg.test"),
        ips(&["203.0.113.50", "2001:db8:50::50", "203.0.113.56"])
    );
    assert_eq!(
        rig.status_addresses("**.cdn.test"),
        ips(&["203.0.113.53", "203.0.113.54"])
    );
    assert_eq!(rig.counter(DNS_LEARNED_TOTAL, &[]) - learned_before, 5);
}
