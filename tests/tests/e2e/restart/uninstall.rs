//! A SIGTERMed daemon keeps enforcing, and `uninstall`, through a daemon or offline, removes everything.

use super::*;

#[test]
fn sigterm_keeps_enforcement_and_uninstall_through_the_daemon_removes_everything() {
    if skip_unless_root() {
        return;
    }
    let mut rig = Rig::start(&world());
    rig.assert_reachable_without_policy(&["udp", W_UDP, "--payload", "w"]);
    let source = rig.apply(&policy(&rig.sandbox), "policy.yaml");
    lookup(&rig.sandbox, "mirror.pkg.test", "203.0.113.50");
    assert_enforced(&rig.sandbox);

    let status = rig.daemon.terminate().expect("the daemon's exit status");
    assert!(status.success(), "SIGTERM: {status:?}");
    rig.daemon
        .wait_for_log(
            |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("every policy stays enforced"))
            },
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_enforced(&rig.sandbox);
    assert!(!records(&rig.sandbox).is_empty(), "the record is kept");

    rig.restart_daemon();
    assert_eq!(
        only_policy(&rig)["source"],
        source.display().to_string(),
        "adopted after SIGTERM"
    );
    assert_enforced(&rig.sandbox);

    let sandbox = &rig.sandbox;
    let output = rig
        .daemon
        .cli_ok(&[
            "uninstall",
            "--state-dir",
            sandbox.state_dir().to_str().unwrap(),
            "--bpffs-dir",
            sandbox.pins_dir().to_str().unwrap(),
        ])
        .unwrap_or_else(|e| panic!("uninstall: {e:#}"));
    assert_eq!(
        output.trim(),
        format!("removed {POLICY} and stopped the daemon")
    );
    let status = rig
        .daemon
        .wait_exit(Duration::from_secs(10))
        .expect("the daemon exits after uninstall");
    assert!(status.success(), "after uninstall: {status:?}");

    // Nothing filters any more.
    for target in [W_TCP, LATE, AFTER] {
        rig.assert_allowed(&["tcp", target]);
    }
    rig.assert_allowed(&["udp", W_UDP, "--payload", "w"]);
    rig.assert_allowed(&["dns", "10.77.0.1", "evil.example"]);
    let left = pins(rig.sandbox.pins_dir());
    assert!(left.is_empty(), "pins left after uninstall: {left:?}");
    assert!(
        records(&rig.sandbox).is_empty(),
        "records left after uninstall: {:?}",
        records(&rig.sandbox)
    );
    assert!(!rig.daemon.socket().exists(), "the API socket is left");
}

#[test]
fn offline_uninstall_detaches_what_a_killed_daemon_left() {
    if skip_unless_root() {
        return;
    }
    let mut rig = Rig::start(&world());
    rig.assert_reachable_without_policy(&["udp", W_UDP, "--payload", "w"]);
    rig.apply(&policy(&rig.sandbox), "policy.yaml");
    lookup(&rig.sandbox, "mirror.pkg.test", "203.0.113.50");
    assert_enforced(&rig.sandbox);
    rig.daemon.kill();
    assert_enforced(&rig.sandbox);
    assert!(
        !pins(rig.sandbox.pins_dir()).is_empty(),
        "the killed daemon's pins"
    );

    // No daemon answers on the socket (its file is still there).
    let sandbox = &rig.sandbox;
    let output = rig
        .daemon
        .cli(&[
            "uninstall",
            "--state-dir",
            sandbox.state_dir().to_str().unwrap(),
            "--bpffs-dir",
            sandbox.pins_dir().to_str().unwrap(),
        ])
        .expect("running uninstall");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "offline uninstall: {:?}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("no daemon answers"), "{stdout}");

    rig.assert_allowed(&["udp", W_UDP, "--payload", "w"]);
    rig.assert_allowed(&["tcp", W_TCP]);
    rig.assert_allowed(&["dns", "10.77.0.1", "evil.example"]);
    let left = pins(rig.sandbox.pins_dir());
    assert!(left.is_empty(), "pins left after uninstall: {left:?}");
    assert!(records(&rig.sandbox).is_empty());

    // A daemon started now has nothing to adopt.
    rig.restart_daemon();
    assert_eq!(rig.status()["policies"], Value::Array(vec![]));
    rig.assert_allowed(&["udp", W_UDP, "--payload", "w"]);
}
