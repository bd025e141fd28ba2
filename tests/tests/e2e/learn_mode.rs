//! Learn mode end to end: a scripted agent (several names under one parent,
//! one more name, one direct-IP connection, a name that does not exist)
//! runs under `exec --learn`; the proposed policy is checked rule by rule,
//! passes `validate`, and the same agent run again under it is dropped
//! nothing. `learn --policy` does the same on an applied policy.
//!
//! Root-only.

use crate::common;

use std::{path::Path, process::Output, time::Duration};

use common::{EVENT_TIMEOUT, Rig, skip_unless_root, spawn_and_wait};
use openclaw_egress_e2e::{WorldConfig, binary_path};
use serde_yaml::Value;

const CDN_NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

fn world() -> WorldConfig {
    let mut world = WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("api.example.test", "203.0.113.20")
        .tcp("203.0.113.20:8443")
        .tcp("203.0.113.50:9000");
    for (i, label) in CDN_NAMES.iter().enumerate() {
        let ip = format!("203.0.113.{}", 11 + i);
        world = world
            .record(&format!("{label}.cdn.test"), &ip)
            .tcp(&format!("{ip}:8443"));
    }
    world
}

/// The agent: what it does, as one shell script of probes (each prints a
/// JSON line); every step must work under the learned policy too.
fn agent_script() -> String {
    let probe = binary_path("oce-probe").display().to_string();
    let mut steps: Vec<String> = CDN_NAMES
        .iter()
        .map(|label| format!("{probe} resolve-connect 10.77.0.1 {label}.cdn.test 8443"))
        .collect();
    steps.push(format!(
        "{probe} resolve-connect 10.77.0.1 api.example.test 8443"
    ));
    steps.push(format!("{probe} tcp 203.0.113.50:9000"));
    steps.push(format!("{probe} dns 10.77.0.1 ghost.example.test"));
    steps.join("; ")
}

/// `openclaw-egress <args> -- sh -c <agent>` in the agent netns, outside
/// the sandbox cgroup.
fn exec(rig: &Rig, args: &[&str]) -> Output {
    let socket = rig.daemon.socket().display().to_string();
    let mut all: Vec<String> = vec!["exec".into(), "--socket".into(), socket];
    all.extend(args.iter().map(|a| (*a).to_string()));
    all.extend(["--".into(), "sh".into(), "-c".into(), agent_script()]);
    let mut command = rig
        .sandbox
        .command_in_agent_outside_cgroup(binary_path("openclaw-egress"), &all)
        .unwrap();
    let (_, output) = spawn_and_wait(&mut command, Duration::from_secs(120));
    assert!(
        output.status.success(),
        "exec {args:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Every probe of the agent worked: each connection got its greeting, the
/// lookups their answers (the missing name its NXDOMAIN).
#[track_caller]
fn assert_agent_worked(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    // (With --merge, the difference follows the agent's lines.)
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(lines.len(), CDN_NAMES.len() + 3, "{stdout}");
    for line in &lines[..=CDN_NAMES.len()] {
        assert_eq!(line["connects_ok"], 1, "{line}");
    }
    assert_eq!(lines[CDN_NAMES.len() + 1]["ok"], true, "{stdout}");
    let ghost = &lines[CDN_NAMES.len() + 2];
    assert!(
        ghost["error"].is_null() || ghost["error"] != "timeout",
        "the missing name's lookup must be answered, not dropped: {ghost}"
    );
}

/// The egress rules of a proposal, as (key, value, ports, dnsOnly).
fn rules(policy: &Value) -> Vec<(String, String, Vec<String>, bool)> {
    let mut rules: Vec<_> = policy["spec"]["egress"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|rule| {
            let key = ["fqdn", "fqdnPattern", "cidr"]
                .into_iter()
                .find(|key| rule.get(*key).is_some())
                .unwrap_or_else(|| panic!("rule without a target: {rule:?}"));
            let ports = rule
                .get("ports")
                .and_then(Value::as_sequence)
                .map(|ports| {
                    ports
                        .iter()
                        .map(|p| match p {
                            Value::String(s) => s.clone(),
                            Value::Number(n) => n.to_string(),
                            other => panic!("port {other:?}"),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let dns_only = rule.get("dnsOnly").and_then(Value::as_bool) == Some(true);
            (
                key.to_string(),
                rule[key].as_str().unwrap().to_string(),
                ports,
                dns_only,
            )
        })
        .collect();
    rules.sort();
    rules
}

#[track_caller]
fn assert_proposal(text: &str) -> Value {
    let policy: Value = serde_yaml::from_str(text).unwrap();
    assert_eq!(policy["spec"]["mode"], "enforce", "{text}");
    assert_eq!(policy["spec"]["dns"]["resolvers"][0], "10.77.0.1", "{text}");
    let s = |v: &str| v.to_string();
    assert_eq!(
        rules(&policy),
        [
            (s("cidr"), s("203.0.113.50/32"), vec![s("9000/tcp")], false),
            (s("fqdn"), s("api.example.test"), vec![s("8443/tcp")], false),
            (s("fqdn"), s("ghost.example.test"), vec![], true),
            (
                s("fqdnPattern"),
                s("*.cdn.test"),
                vec![s("8443/tcp")],
                false
            ),
        ],
        "{text}"
    );
    // The direct-IP rule is marked for review, right above it.
    let cidr_line = text
        .lines()
        .position(|l| l.contains("203.0.113.50/32"))
        .unwrap();
    let above = text.lines().take(cidr_line).collect::<Vec<_>>().join("\n");
    let comment = above
        .lines()
        .rev()
        .take_while(|l| l.trim_start().starts_with('#'));
    assert!(
        comment
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
            .contains("direct"),
        "{text}"
    );
    policy
}

#[track_caller]
fn assert_valid(rig: &Rig, file: &Path) {
    let out = rig
        .daemon
        .cli(&["validate", &file.display().to_string()])
        .unwrap();
    assert!(out.status.success(), "validate: {out:?}");
}

/// No drop (or audited drop) after the first `before` the daemon logged.
#[track_caller]
fn assert_no_drops_since(rig: &Rig, before: usize) {
    std::thread::sleep(Duration::from_millis(500));
    let drops: Vec<_> = rig.daemon.drop_events().into_iter().skip(before).collect();
    assert!(drops.is_empty(), "{drops:#?}");
}

#[test]
fn exec_learn_proposes_a_policy_the_agent_runs_under_without_a_drop() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let rig = Rig::start(&world());
    let dir = rig.sandbox.scratch_dir();
    // Learned with the sandbox's resolver (the exec runs in the agent netns
    // with the host's resolv.conf): a policy that allows nothing.
    let base = rig.policy().name("agent").write(dir, "base.yaml").unwrap();
    let out = dir.join("learned.yaml");
    let learned = exec(
        &rig,
        &[
            "--learn",
            &out.display().to_string(),
            "--policy",
            &base.display().to_string(),
        ],
    );
    // Learning is audit mode: the agent worked the first time too.
    assert_agent_worked(&learned);
    let text = std::fs::read_to_string(&out).unwrap();
    let policy = assert_proposal(&text);
    assert_eq!(policy["metadata"]["name"], "agent");
    assert_valid(&rig, &out);

    // Learning's own (audited) drops are in the log already.
    std::thread::sleep(Duration::from_millis(500));
    let before = rig.daemon.drop_events().len();
    let rerun = exec(&rig, &["--policy", &out.display().to_string()]);
    assert_agent_worked(&rerun);
    assert_no_drops_since(&rig, before);
}

#[test]
fn learn_watches_an_applied_policy_for_a_while() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    let audit = rig.policy().mode("audit");
    rig.apply(&audit, "audit.yaml");
    let out = rig.sandbox.scratch_dir().join("watched.yaml");
    let mut learn = rig.daemon.cli_command(&[
        "learn",
        "--policy",
        common::POLICY,
        "--duration",
        "8s",
        "-o",
        &out.display().to_string(),
    ]);
    let learner = learn.spawn().unwrap();
    // Recording starts once the daemon has the learner.
    rig.daemon
        .wait_for_log(
            |v| v["message"] == "learning: recording every flow and DNS question",
            EVENT_TIMEOUT,
        )
        .unwrap();
    let mut agent = rig
        .sandbox
        .command_in_agent("sh", ["-c", &agent_script()])
        .unwrap();
    let output =
        openclaw_egress_e2e::run_with_deadline(&mut agent, Duration::from_secs(60)).unwrap();
    assert_agent_worked(&output);
    let finished = learner.wait_with_output().unwrap();
    assert!(finished.status.success(), "learn: {finished:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let policy = assert_proposal(&text);
    // The applied policy's selector is the proposal's.
    let applied: Value = serde_yaml::from_str(&audit.to_yaml()).unwrap();
    assert_eq!(
        policy["spec"]["selector"], applied["spec"]["selector"],
        "{text}"
    );
    assert_valid(&rig, &out);
    // Once the learner is gone, nothing is recorded any more.
    rig.daemon
        .wait_for_log(|v| v["message"] == "learning stopped", EVENT_TIMEOUT)
        .unwrap();
}

#[test]
fn merge_proposes_only_what_a_policy_lacks_and_prints_the_difference() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let rig = Rig::start(&world());
    let dir = rig.sandbox.scratch_dir();
    let existing = rig
        .policy()
        .name("agent")
        .fqdn("api.example.test", &["8443/tcp"])
        .write(dir, "existing.yaml")
        .unwrap();
    let before = std::fs::read_to_string(&existing).unwrap();
    let out = dir.join("merged.yaml");
    let learned = exec(
        &rig,
        &[
            "--learn",
            &out.display().to_string(),
            "--policy",
            &existing.display().to_string(),
            "--merge",
            &existing.display().to_string(),
        ],
    );
    assert_agent_worked(&learned);
    let merged = std::fs::read_to_string(&out).unwrap();
    // The existing text is kept, the rest appended; the diff shows only
    // additions (the agent's own output comes first on stdout).
    assert!(merged.starts_with(before.trim_end()), "{merged}");
    assert_proposal(&merged);
    let stdout = String::from_utf8_lossy(&learned.stdout);
    let diff: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with('+') || line.starts_with('-'))
        .filter(|line| !line.starts_with("+++") && !line.starts_with("---"))
        .collect();
    assert!(diff.iter().all(|line| line.starts_with('+')), "{stdout}");
    assert!(
        diff.iter().any(|line| line.contains("*.cdn.test")),
        "{stdout}"
    );
    assert!(
        !diff.iter().any(|line| line.contains("api.example.test")),
        "{stdout}"
    );
    assert_valid(&rig, &out);
}
