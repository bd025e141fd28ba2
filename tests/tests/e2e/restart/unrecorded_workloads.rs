//! A restart keeps workloads without a policy record enforcing, and reports them.

use super::*;

#[test]
fn a_restart_keeps_workloads_without_a_record_enforcing_and_reports_them() {
    if skip_unless_root() {
        return;
    }
    let mut rig = Rig::start(&world());
    // Two workloads, one policy each.
    let a = rig.sandbox.create_cgroup("a").expect("cgroup a");
    let b = rig.sandbox.create_cgroup("b").expect("cgroup b");
    let relative = |cgroup: &Path| {
        format!(
            "{}/{}",
            rig.sandbox.cgroup_relative(),
            cgroup.file_name().unwrap().to_str().unwrap()
        )
    };
    let policy_a = PolicyYaml::for_sandbox(&rig.sandbox)
        .cgroup_path(&relative(&a))
        .fqdn("x.example.com", &["7/udp"]);
    let policy_b = policy_a.clone().name("other").cgroup_path(&relative(&b));
    rig.apply(&policy_a, "a.yaml");
    let probe_in = |cgroup: &Path, target: &str| -> ProbeOutcome {
        rig.sandbox
            .probe_in_cgroup(cgroup, &["udp", target, "--payload", "p"])
            .unwrap_or_else(|e| panic!("probe in {}: {e:#}", cgroup.display()))
    };
    let assert_filtered = |cgroup: &Path, filtered: bool| {
        probe_in(cgroup, X_UDP).assert_ok();
        let w = probe_in(cgroup, W_UDP);
        if filtered {
            w.assert_error(probe_error::PERMISSION_DENIED);
        } else {
            w.assert_ok();
        }
    };
    assert_filtered(&a, true);
    assert_filtered(&b, false);

    // Pins of a policy without any record (say, its record was lost) are
    // left enforcing, and reported.
    rig.apply(&policy_b, "b.yaml");
    assert_filtered(&b, true);
    rig.daemon.kill();
    std::fs::remove_file(rig.sandbox.state_dir().join("policies/other.json")).unwrap();
    restart_daemon(&rig.sandbox, &mut rig.daemon);
    rig.daemon
        .wait_for_log(
            |v| {
                v["message"].as_str().is_some_and(|m| {
                    m.starts_with("a workload attached without a policy record: left enforcing")
                })
            },
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_filtered(&b, true);
    assert_filtered(&a, true);
    assert_eq!(only_policy(&rig)["name"], POLICY);

    // uninstall removes those too.
    rig.daemon
        .cli_ok(&["uninstall"])
        .unwrap_or_else(|e| panic!("uninstall: {e:#}"));
    rig.daemon
        .wait_exit(Duration::from_secs(10))
        .expect("the daemon exits after uninstall");
    assert_filtered(&a, false);
    assert_filtered(&b, false);
    assert!(pins(rig.sandbox.pins_dir()).is_empty());
}
