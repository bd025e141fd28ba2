//! `mode: audit`: the policy drops nothing, but everything it would have
//! dropped is counted (`openclaw_egress_audit_would_drop_total`) and
//! reported as an event with verdict `audited`.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use common::{
    AUDIT_WOULD_DROP_TOTAL, DNS_QUERIES_TOTAL, DROPS_TOTAL, POLICY, Rig, skip_unless_root,
};
use openclaw_egress_e2e::WorldConfig;

#[test]
fn audit_mode_lets_everything_through_and_reports_what_it_would_drop() {
    if skip_unless_root() {
        return;
    }
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        // A resolver the policy does not list.
        .dns("203.0.113.53:53")
        .record("api.example.com", "203.0.113.10")
        .record("x.attacker.example", "203.0.113.66")
        .tcp("203.0.113.10:443")
        .tcp("203.0.113.99:443")
        .udp("203.0.113.99:7");
    let rig = Rig::start(&world);
    rig.apply(
        &rig.policy()
            .mode("audit")
            .resolvers(&["10.77.0.1"])
            .fqdn("api.example.com", &["443/tcp"]),
        "audit.yaml",
    );
    let audited = |reason: &str| {
        rig.counter(
            AUDIT_WOULD_DROP_TOTAL,
            &[("reason", reason), ("direction", "egress")],
        )
    };

    // What the policy allows works, and is not reported.
    rig.assert_allowed(&["tcp", "203.0.113.10:443"]);
    assert_eq!(rig.counter(AUDIT_WOULD_DROP_TOTAL, &[]), 0);

    // A denied name is answered, and reported with the name.
    let event = rig.assert_audited(&["dns", "10.77.0.1", "x.attacker.example"], "dns_denied");
    assert_eq!(event["dns_name"], "x.attacker.example", "{event}");
    let answer = rig.probe(&["dns", "10.77.0.1", "x.attacker.example"]);
    assert_eq!(answer.answers, ["203.0.113.66"], "{answer:?}");
    // DNS to another resolver is answered too.
    let rogue = rig.assert_audited(&["dns", "203.0.113.53", "api.example.com"], "dns_resolver");
    assert_eq!(rogue["dst"], "203.0.113.53", "{rogue}");
    // Unlisted destinations are reachable: UDP (one datagram, one count)
    // and TCP (every packet of the connection counts: none is cached as
    // allowed on the socket).
    let udp = rig.assert_audited(&["udp", "203.0.113.99:7", "--payload", "x"], "no_rule");
    assert_eq!(udp["proto"], "udp", "{udp}");
    let tcp = rig.assert_audited(&["tcp", "203.0.113.99:443"], "no_rule");
    assert_eq!(tcp["proto"], "tcp", "{tcp}");

    assert_eq!(audited("dns_denied"), 2, "two queries for the denied name");
    assert_eq!(audited("dns_resolver"), 1);
    assert!(audited("no_rule") >= 2, "{}", audited("no_rule"));
    assert_eq!(rig.counter(DNS_QUERIES_TOTAL, &[("verdict", "denied")]), 2);
    // Nothing was dropped.
    let metrics = rig.metrics();
    assert_eq!(
        metrics.sum(DROPS_TOTAL, &[("policy", POLICY)]),
        0,
        "{:?}",
        metrics.drop_series()
    );
    assert_eq!(
        metrics.value(
            "openclaw_egress_policy_info",
            &[("policy", POLICY), ("mode", "audit")]
        ),
        Some(1.0)
    );
    // Every event was `audited`, none `dropped`.
    let events = rig.daemon.drop_events();
    assert!(events.len() >= 5, "{events:#?}");
    assert!(events.iter().all(|e| e.verdict == "audited"), "{events:#?}");

    // status agrees: the policy is in audit mode and its counts are
    // audited ones.
    let status = rig.status_policies();
    assert_eq!(status[0]["mode"], "audit", "{status:#?}");
    let drops = status[0]["drops"].as_array().expect("drops is a list");
    assert!(!drops.is_empty(), "{status:#?}");
    assert!(
        drops.iter().all(|d| d["verdict"] == "audited"),
        "{drops:#?}"
    );
}
