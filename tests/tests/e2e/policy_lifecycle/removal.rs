//! Removing a policy lets traffic flow again.

use super::*;

#[test]
fn removing_a_policy_lets_traffic_flow_again() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    let policy = PolicyYaml::for_sandbox(&rig.sandbox).fqdn("x.example.com", &["443/tcp"]);
    rig.apply(&policy, "policy.yaml");
    assert_x_policy_enforced(&rig, true);
    rig.assert_dropped(
        &[
            "dns",
            "203.0.113.99",
            "x.example.com",
            "--timeout-ms",
            "500",
        ],
        probe_error::PERMISSION_DENIED,
        "dns_resolver",
    );

    let output = rig
        .daemon
        .cli_ok(&["remove", POLICY])
        .unwrap_or_else(|e| panic!("remove: {e:#}"));
    assert_eq!(output.trim(), format!("policy {POLICY} removed"));

    // Nothing filters the cgroup any more.
    for target in [X, X_OTHER_PORT, Y] {
        rig.assert_allowed(&["tcp", target]);
    }
    rig.assert_allowed(&["udp", W_UDP, "--payload", "w"]);
    let status = rig.status();
    assert_eq!(status["policies"], Value::Array(vec![]), "{status:#}");
    let human = rig
        .daemon
        .cli_ok(&["status"])
        .unwrap_or_else(|e| panic!("status: {e:#}"));
    assert!(human.contains("no policies applied"), "{human}");
    // Its metric series are gone too, rather than frozen.
    let metrics = rig.metrics();
    let stale: Vec<_> = metrics
        .samples
        .iter()
        .filter(|s| s.labels.get("policy").is_some_and(|p| p == POLICY))
        .collect();
    assert!(stale.is_empty(), "series of the removed policy: {stale:?}");

    // Removing it again is an error that says why.
    let again = rig.daemon.cli(&["remove", POLICY]).expect("running remove");
    assert!(!again.status.success(), "{again:?}");
    let stderr = text(&again.stderr);
    assert!(
        stderr.contains(&format!("no policy named {POLICY}")),
        "{stderr}"
    );
}
