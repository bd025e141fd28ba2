//! Replacing a policy: an invalid one is refused and the old one keeps enforcing, a new version replaces it atomically.

use super::*;

#[test]
fn invalid_policy_is_refused_and_the_old_one_keeps_enforcing() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    let scratch = rig.sandbox.scratch_dir();
    let good = PolicyYaml::for_sandbox(&rig.sandbox).fqdn("x.example.com", &["443/tcp"]);
    let good_path = rig.apply(&good, "good.yaml");
    assert_x_policy_enforced(&rig, true);
    let before = only_policy(&rig);
    assert_eq!(before["source"], good_path.display().to_string());

    // Each broken policy has the same name and, were it applied, would
    // open what the good one blocks (y, w) and close x: a partial apply,
    // or the old policy retired before the new one failed, would show.
    let opening = PolicyYaml::for_sandbox(&rig.sandbox)
        .fqdn("y.example.com", &["443/tcp"])
        .cidr("203.0.113.99/32", &["7/udp"]);
    let opening_yaml = opening.to_yaml();
    let line_of = |needle: &str| {
        1 + opening_yaml
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {opening_yaml}"))
    };
    let missing_cgroup = rig
        .sandbox
        .cgroup_path()
        .with_file_name(format!("{}-missing", rig.sandbox.cgroup_relative()));
    let resolvers_line = line_of("resolvers:");
    let cidr_line = line_of("cidr:");
    let ports_line = line_of("ports: [\"7/udp\"]");
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            // An unclosed flow sequence.
            "syntax.yaml",
            opening_yaml.replace("\"fd77::1\"]", "\"fd77::1\""),
            vec![format!(":{}:", resolvers_line + 1), "invalid YAML".into()],
        ),
        (
            "unknown-field.yaml",
            opening_yaml.replace("      ports: [\"7/udp\"]", "      portz: [\"7/udp\"]"),
            vec![format!(
                ":{ports_line}:7: spec.egress[1].portz: unknown field `portz`"
            )],
        ),
        (
            "bad-cidr.yaml",
            opening_yaml.replace("203.0.113.99/32", "203.0.113.99/33"),
            vec![format!(":{cidr_line}:13: spec.egress[1].cidr: ")],
        ),
        (
            // Valid YAML and schema: only the daemon can find this out.
            "missing-cgroup.yaml",
            opening
                .clone()
                .cgroup_path(&missing_cgroup.display().to_string())
                .to_yaml(),
            vec![
                ": spec.selector.cgroupPath: ".into(),
                missing_cgroup.display().to_string(),
                "does not exist".into(),
            ],
        ),
    ];
    for (file, yaml, expected) in &cases {
        let path = write_file(scratch, file, yaml);
        let output = rig
            .daemon
            .cli(&["apply", &path.display().to_string()])
            .unwrap_or_else(|e| panic!("apply {file}: {e:#}"));
        let stderr = text(&output.stderr);
        assert!(
            !output.status.success(),
            "apply {file} should fail, got {:?}: {}{stderr}",
            output.status,
            text(&output.stdout)
        );
        assert!(
            output.status.signal().is_none(),
            "apply {file} crashed: {:?}",
            output.status
        );
        // The message names the file, then (for parse errors) the line.
        let file_and_rest = format!("{}{}", path.display(), expected[0]);
        assert!(
            stderr.contains(&file_and_rest),
            "apply {file}: expected {file_and_rest:?} in the error, got:\n{stderr}"
        );
        for part in &expected[1..] {
            assert!(
                stderr.contains(part.as_str()),
                "apply {file}: expected {part:?} in the error, got:\n{stderr}"
            );
        }

        // The old policy still enforces, and is still the one in status.
        assert_x_policy_enforced(&rig, false);
        let now = only_policy(&rig);
        for field in ["name", "source", "applied_at", "cgroup", "rules", "mode"] {
            assert_eq!(
                now[field], before[field],
                "after {file}: status field {field}"
            );
        }
    }
    assert_x_policy_enforced(&rig, true);
}

#[test]
fn new_version_of_a_policy_replaces_the_old_one_atomically() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    let a = PolicyYaml::for_sandbox(&rig.sandbox)
        .fqdn("x.example.com", &["443/tcp"])
        .fqdn("z.example.com", &["7/udp"]);
    rig.apply(&a, "a.yaml");
    rig.assert_allowed(&["tcp", X]);
    rig.assert_allowed(&["udp", Z_UDP, "--payload", "z"]);
    rig.assert_tcp_dropped(Y, "no_rule");
    // More drops under A than B will see, so that losing A's counts at the
    // swap would show as a counter going backwards.
    for _ in 0..5 {
        rig.assert_udp_dropped(W_UDP, "no_rule");
    }
    let before = rig.metrics();
    assert!(
        before.drops(POLICY, "no_rule", "egress") >= 6,
        "{before:#?}"
    );

    // While B goes in, z (allowed by both) must never fail and w (allowed
    // by neither) must never pass: there is no moment with both or neither
    // policy's verdicts missing.
    let b = PolicyYaml::for_sandbox(&rig.sandbox)
        .fqdn("y.example.com", &["443/tcp"])
        .fqdn("z.example.com", &["7/udp"]);
    let b_path = b
        .write(rig.sandbox.scratch_dir(), "b.yaml")
        .expect("writing b.yaml");
    let swapped = AtomicBool::new(false);
    let (rounds, apply_output) = std::thread::scope(|scope| {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (rig, swapped) = (&rig, &swapped);
        let prober = scope.spawn(move || {
            let mut rounds = 0u64;
            loop {
                // Read before probing, so the last round starts after the
                // swap finished and the loop covers the whole apply.
                let done = swapped.load(std::sync::atomic::Ordering::SeqCst);
                let z = rig.probe(&["udp", Z_UDP, "--payload", "z"]);
                assert!(z.ok, "round {rounds}: z failed during the swap: {z:?}");
                let w = rig.probe(&["udp", W_UDP, "--payload", "w"]);
                assert_eq!(
                    w.error.as_deref(),
                    Some(probe_error::PERMISSION_DENIED),
                    "round {rounds}: w was not dropped during the swap: {w:?}"
                );
                rounds += 1;
                let _ = started_tx.send(());
                if done {
                    return rounds;
                }
            }
        });
        if started_rx.recv().is_err() {
            // The prober failed in its first round: show its panic.
            std::panic::resume_unwind(prober.join().expect_err("the prober stopped early"));
        }
        let output = rig
            .daemon
            .apply(&b_path)
            .unwrap_or_else(|e| panic!("applying b.yaml: {e:#}"));
        swapped.store(true, std::sync::atomic::Ordering::SeqCst);
        (
            prober
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            output,
        )
    });
    assert!(rounds >= 2, "{rounds}");
    assert!(
        apply_output.contains(&format!("policy {POLICY} replaced")),
        "{apply_output}"
    );

    // B is in force: x closed, y open.
    let event = rig.assert_tcp_dropped(X, "no_rule");
    assert_eq!(event["policy"], POLICY, "{event}");
    rig.assert_allowed(&["tcp", Y]);
    rig.assert_allowed(&["udp", Z_UDP, "--payload", "z"]);

    let policy = only_policy(&rig);
    assert_eq!(policy["name"], POLICY);
    assert_eq!(policy["source"], b_path.display().to_string());

    // Counters of the replaced instance are carried over: no series went
    // backwards, and the no_rule count grew by at least the w probes of the
    // swap loop and the x drop.
    let after = rig.metrics();
    let (before_series, after_series) = (before.drop_series(), after.drop_series());
    assert_eq!(
        before_series.keys().collect::<Vec<_>>(),
        after_series.keys().collect::<Vec<_>>(),
        "the set of drop series changed"
    );
    for (key, old) in &before_series {
        assert!(
            after_series[key] >= *old,
            "{key:?} went backwards: {old} -> {}",
            after_series[key]
        );
    }
    let no_rule = |m: &common::Metrics| m.drops(POLICY, "no_rule", "egress");
    assert!(
        no_rule(&after) > no_rule(&before) + rounds,
        "no_rule {} -> {} after {rounds} dropped w probes and an x drop",
        no_rule(&before),
        no_rule(&after)
    );
    let info = after.series("openclaw_egress_policy_info");
    assert_eq!(info.len(), 1, "{info:?}");
}
