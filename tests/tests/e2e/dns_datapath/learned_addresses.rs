//! The per-name cap on learned addresses, and learned addresses surviving a policy re-apply.

use super::*;

// ---------------------------------------------------------------------------
// 6. The per-name cap.
// ---------------------------------------------------------------------------

#[test]
fn a_name_opens_at_most_max_ips_per_name_addresses() {
    if skip_unless_root() {
        return;
    }
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("three.cap.test", "203.0.113.61")
        .record("three.cap.test", "203.0.113.62")
        .record("three.cap.test", "203.0.113.63")
        .record("other.cap.test", "203.0.113.64")
        .tcp("203.0.113.61:443")
        .tcp("203.0.113.62:443")
        .tcp("203.0.113.63:443")
        .tcp("203.0.113.64:443");
    let rig = Rig::start(&world);
    let all = ["203.0.113.61", "203.0.113.62", "203.0.113.63"];
    rig.apply(
        &rig.policy()
            .max_ips_per_name(2)
            .fqdn_pattern("*.cap.test", &["443/tcp"]),
        "policy.yaml",
    );
    let cap = || rig.counter(DNS_REFUSED_TOTAL, &[("reason", "cap")]);
    let cap_before = cap();

    // The agent gets the whole answer; two of its addresses are opened.
    rig.lookup("10.77.0.1", "three.cap.test", "A", &all);
    let connectable = |rig: &Rig| -> BTreeSet<IpAddr> {
        all.iter()
            .filter(|ip| {
                let outcome = rig.probe(&[
                    "tcp",
                    &format!("{ip}:443"),
                    "--timeout-ms",
                    DROPPED_TCP_TIMEOUT_MS,
                ]);
                if !outcome.ok {
                    let event = rig.wait_for_drop_event(outcome.local.expect("local address"));
                    assert_eq!(event["reason"], "no_rule", "{event}");
                }
                outcome.ok
            })
            .map(|ip| ip.parse().unwrap())
            .collect()
    };
    let open = connectable(&rig);
    assert_eq!(
        open.len(),
        2,
        "exactly two of {all:?} should be open, got {open:?}"
    );
    assert_eq!(cap() - cap_before, 1);

    // Asking again changes nothing: the two open addresses cost nothing,
    // the third is refused again.
    rig.lookup("10.77.0.1", "three.cap.test", "A", &all);
    assert_eq!(connectable(&rig), open);
    assert_eq!(cap() - cap_before, 2);

    // The cap is per name: another name under the same pattern has its own.
    rig.lookup("10.77.0.1", "other.cap.test", "A", &["203.0.113.64"]);
    rig.assert_allowed(&["tcp", "203.0.113.64:443"]);
    let mut shown = open.clone();
    shown.insert("203.0.113.64".parse().unwrap());
    assert_eq!(rig.status_addresses("*.cap.test"), shown);
}

// ---------------------------------------------------------------------------
// 9. Re-applying a policy keeps what the agent learned.
// ---------------------------------------------------------------------------

#[test]
fn reapplying_a_policy_keeps_the_addresses_the_agent_learned() {
    if skip_unless_root() {
        return;
    }
    let world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("mirror.pkg.test", "203.0.113.50")
        .record("api.example.com", "203.0.113.10")
        .tcp("203.0.113.50:443")
        .tcp("203.0.113.50:8443")
        .tcp("203.0.113.10:443");
    let rig = Rig::start(&world);
    const LEARNED: &str = "203.0.113.50:443";
    let policy = rig.policy().fqdn_pattern("*.pkg.test", &["443/tcp"]);
    let path = rig.apply(&policy, "policy.yaml");
    rig.lookup("10.77.0.1", "mirror.pkg.test", "A", &["203.0.113.50"]);
    rig.assert_allowed(&["tcp", LEARNED]);

    // The same file again.
    rig.daemon
        .apply(&path)
        .unwrap_or_else(|e| panic!("re-applying: {e:#}"));
    rig.assert_allowed(&["tcp", LEARNED]);
    assert_eq!(rig.status_addresses("*.pkg.test"), ips(&["203.0.113.50"]));

    // A new version with an extra rule, and an extra port for the pattern:
    // the address is carried over to it too.
    let extended = rig
        .policy()
        .fqdn("api.example.com", &["443/tcp"])
        .fqdn_pattern("*.pkg.test", &["443/tcp", "8443/tcp"]);
    rig.apply(&extended, "extended.yaml");
    rig.assert_allowed(&["tcp", LEARNED]);
    rig.assert_allowed(&["tcp", "203.0.113.50:8443"]);
    rig.assert_allowed(&["tcp", "203.0.113.10:443"]);

    // A version without the pattern forgets it.
    rig.apply(
        &rig.policy().fqdn("api.example.com", &["443/tcp"]),
        "without-pattern.yaml",
    );
    rig.assert_tcp_dropped(LEARNED, "no_rule");

    // No lookup of the name happened after the first: the address came
    // from the agent's one answer, carried over each time.
    let asked = rig
        .world
        .dns_queries()
        .iter()
        .filter(|q| q.name == "mirror.pkg.test.")
        .count();
    assert_eq!(asked, 1, "{:?}", rig.world.dns_queries());
}
