//! `metrics` as `promtool check metrics` sees it, with policies and drops.

use super::*;

/// Runs `promtool check metrics` on `text`; panics with promtool's output
/// (and the text) unless it passes.
#[track_caller]
fn promtool_check(what: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("running promtool (Debian package prometheus; `cargo xtask setup`): {e}")
        });
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let output = child.wait_with_output().expect("waiting for promtool");
    assert!(
        output.status.success(),
        "promtool check metrics failed on {what} ({:?}):\n{}{}\n--- the metrics ---\n{text}",
        output.status,
        text_of(&output.stdout),
        text_of(&output.stderr)
    );
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn promtool_accepts_the_metrics_with_policies_and_drops() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    // Two policies, one enforcing and one auditing, so that every family
    // has series of more than one policy.
    rig.apply(
        &PolicyYaml::for_sandbox(&rig.sandbox)
            .fqdn("x.example.com", &["443/tcp"])
            .fqdn_pattern("*.pkg.test", &["443/tcp"]),
        "policy.yaml",
    );
    let child = rig.sandbox.create_cgroup("audited").unwrap();
    let audit = PolicyYaml::for_sandbox(&rig.sandbox)
        .name("audited")
        .mode("audit")
        .cgroup_path(&format!("{}/audited", rig.sandbox.cgroup_relative()))
        .fqdn("x.example.com", &["443/tcp"]);
    rig.apply(&audit, "audit.yaml");
    rig.probe(&["dns", "10.77.0.1", "mirror.pkg.test"])
        .assert_ok();
    rig.assert_udp_dropped(W_UDP, "no_rule");
    rig.assert_dropped(
        &["dns", "10.77.0.1", "evil.example", "--timeout-ms", "500"],
        probe_error::PERMISSION_DENIED,
        "dns_denied",
    );
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
    // In the child cgroup both apply: the audit policy counts a would-be
    // drop. (To an address the enforcing policy learned above and the audit
    // policy did not: a destination the enforcing policy refuses would be
    // refused at connect(), before the audit policy sees a packet.)
    let outcome = rig
        .sandbox
        .probe_in_cgroup(&child, &["tcp", "203.0.113.50:443"])
        .unwrap();
    outcome.assert_ok();

    let text = poll_until("metrics with drops", Duration::from_secs(5), || {
        let text = rig.daemon.metrics_text().map_err(|e| format!("{e:#}"))?;
        let metrics = common::Metrics::parse(&text).map_err(|e| format!("{e:#}"))?;
        let drops = metrics.sum(common::DROPS_TOTAL, &[("policy", POLICY)]);
        let audited = metrics.sum(common::AUDIT_WOULD_DROP_TOTAL, &[("policy", "audited")]);
        if drops >= 3 && audited >= 1 {
            Ok(text)
        } else {
            Err(format!("drops {drops}, audited {audited}:\n{text}"))
        }
    });
    promtool_check("`openclaw-egress metrics`", &text);

    // The HTTP endpoint serves the same exposition.
    let url = format!("http://{}/metrics", Daemon::METRICS_ADDR);
    let mut curl = rig
        .sandbox
        .command_in_agent_outside_cgroup("curl", ["-sS", "--max-time", "10", &url])
        .unwrap();
    let output = openclaw_egress_e2e::run_with_deadline(&mut curl, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("curl: {e:#}"));
    assert!(output.status.success(), "curl {url}: {output:?}");
    promtool_check("GET /metrics", &text_of(&output.stdout));
}
