//! Enforcement outlives the daemon: a killed (SIGKILL) or stopped (SIGTERM)
//! daemon leaves every policy attached and pinned, a restarted daemon on the
//! same state and pin directories adopts it (learned addresses, counters,
//! pending drop events) with no moment where traffic is open, leftovers of
//! an unfinished swap are detached, and `uninstall` (with a daemon or
//! without) removes everything.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    thread,
    time::Duration,
};

use common::{
    DROPPED_TCP_TIMEOUT_MS, EVENT_TIMEOUT, POLICY, PolicyYaml, Rig, is_drop_event_from, poll_until,
    restart_daemon, skip_unless_root,
};
use openclaw_egress_e2e::{ProbeOutcome, Sandbox, WorldConfig, probe_error};
use serde_json::Value;

/// An fqdn name with TCP and UDP servers (x), names under `*.pkg.test` for
/// the agent to look up (mirror, late, after), a name no rule allows (evil)
/// and an address no rule allows (w).
fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("x.example.com", "203.0.113.10")
        .tcp("203.0.113.10:443")
        .udp("203.0.113.10:7")
        .record("mirror.pkg.test", "203.0.113.50")
        .record("late.pkg.test", "203.0.113.51")
        .record("after.pkg.test", "203.0.113.52")
        .tcp("203.0.113.50:443")
        .tcp("203.0.113.51:443")
        .tcp("203.0.113.52:443")
        .record("evil.example", "203.0.113.98")
        .tcp("203.0.113.99:443")
        .udp("203.0.113.99:7")
}

const X_TCP: &str = "203.0.113.10:443";
const X_UDP: &str = "203.0.113.10:7";
const MIRROR: &str = "203.0.113.50:443";
const LATE: &str = "203.0.113.51:443";
const AFTER: &str = "203.0.113.52:443";
const W_TCP: &str = "203.0.113.99:443";
const W_UDP: &str = "203.0.113.99:7";

/// The fqdn rule (resolved by the daemon) and the pattern (learned by the
/// kernel from the agent's own lookups).
fn policy(sandbox: &Sandbox) -> PolicyYaml {
    PolicyYaml::for_sandbox(sandbox)
        .fqdn("x.example.com", &["443/tcp", "7/udp"])
        .fqdn_pattern("*.pkg.test", &["443/tcp"])
}

/// oce-probe in the sandbox cgroup. (The helpers take the sandbox, not the
/// rig, so that they work while the rig's daemon is being replaced.)
#[track_caller]
fn probe(sandbox: &Sandbox, args: &[&str]) -> ProbeOutcome {
    sandbox
        .probe(args)
        .unwrap_or_else(|e| panic!("oce-probe {args:?}: {e:#}"))
}

#[track_caller]
fn assert_allowed(sandbox: &Sandbox, args: &[&str]) {
    let outcome = probe(sandbox, args);
    assert!(
        outcome.ok,
        "expected {args:?} to be allowed, got {outcome:?}"
    );
}

/// Looks `name` up through the policy's resolver from inside the cgroup
/// and checks the answer (the kernel learns it on the way in).
#[track_caller]
fn lookup(sandbox: &Sandbox, name: &str, expected: &str) {
    let outcome = probe(sandbox, &["dns", "10.77.0.1", name]);
    assert!(
        outcome.ok && outcome.answers == [expected],
        "looking up {name}: expected [{expected}], got {outcome:?}"
    );
}

/// A UDP datagram to w, which must be refused (a drop: EPERM at send);
/// returns the probe's local address, to find its drop event.
#[track_caller]
fn udp_drop(sandbox: &Sandbox) -> SocketAddr {
    let outcome = probe(sandbox, &["udp", W_UDP, "--payload", "w"]);
    outcome.assert_error(probe_error::PERMISSION_DENIED);
    outcome.local.expect("the dropped probe's local address")
}

/// What the policy must do whether or not a daemon runs: x (TCP and UDP)
/// and the learned mirror address pass; w (TCP and UDP) and a query for a
/// name no rule allows are dropped.
#[track_caller]
fn assert_enforced(sandbox: &Sandbox) {
    assert_allowed(sandbox, &["tcp", X_TCP]);
    assert_allowed(sandbox, &["udp", X_UDP, "--payload", "x"]);
    assert_allowed(sandbox, &["tcp", MIRROR]);
    udp_drop(sandbox);
    probe(
        sandbox,
        &["tcp", W_TCP, "--timeout-ms", DROPPED_TCP_TIMEOUT_MS],
    )
    .assert_error(probe_error::PERMISSION_DENIED);
    probe(
        sandbox,
        &["dns", "10.77.0.1", "evil.example", "--timeout-ms", "500"],
    )
    .assert_error(probe_error::PERMISSION_DENIED);
}

/// The one applied policy in `status --json`.
#[track_caller]
fn only_policy(rig: &Rig) -> Value {
    match &rig.status_policies()[..] {
        [policy] => policy.clone(),
        other => panic!("expected exactly one applied policy, got {other:#?}"),
    }
}

/// The addresses and their expiries `status --json` lists under the name
/// rule `name` of `policy`.
#[track_caller]
fn addresses(policy: &Value, name: &str) -> Vec<(IpAddr, u64)> {
    let entry = policy["names"]
        .as_array()
        .and_then(|names| names.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no name rule {name:?} in {policy:#}"));
    entry["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("no addresses in {entry:#}"))
        .iter()
        .map(|a| {
            (
                a["ip"].as_str().unwrap().parse().unwrap(),
                a["expires_in_secs"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[track_caller]
fn ips(policy: &Value, name: &str) -> BTreeSet<IpAddr> {
    addresses(policy, name)
        .into_iter()
        .map(|(ip, _)| ip)
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The policy record files (`<state>/policies/*.json`).
fn records(sandbox: &Sandbox) -> Vec<PathBuf> {
    std::fs::read_dir(sandbox.state_dir().join("policies"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything under the pin directory, for assertions that it is empty
/// (or gone).
fn pins(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

/// In which phase of the test a prober round started and ended.
const ALIVE: u8 = 0;
const DEAD: u8 = 1;
const RESTARTED: u8 = 2;

#[test]
fn sigkill_leaves_enforcement_and_a_restart_adopts_it_without_a_gap() {
    if skip_unless_root() {
        return;
    }
    let mut rig = Rig::start(&world());
    // Everything the policy blocks is there: a drop can only be the
    // policy's doing.
    for target in [W_TCP, MIRROR, LATE, AFTER] {
        rig.assert_reachable_without_policy(&["tcp", target]);
    }
    rig.assert_reachable_without_policy(&["udp", W_UDP, "--payload", "w"]);
    let source = rig.apply(&policy(&rig.sandbox), "policy.yaml");

    // The pattern opens nothing before a lookup; the agent's lookup opens
    // the address it got.
    rig.assert_tcp_dropped(MIRROR, "no_rule");
    lookup(&rig.sandbox, "mirror.pkg.test", "203.0.113.50");
    assert_enforced(&rig.sandbox);
    let before = only_policy(&rig);
    assert_eq!(before["source"], source.display().to_string());
    assert!(ips(&before, "*.pkg.test").contains(&ip("203.0.113.50")));
    let metrics_before = rig.metrics();
    assert!(metrics_before.drops(POLICY, "no_rule", "egress") >= 2);

    // A prober runs across the kill and the restart: w must never get
    // through, x and the learned mirror address must never fail.
    let phase = AtomicU8::new(ALIVE);
    let stop = AtomicBool::new(false);
    let rounds: Mutex<Vec<(u8, u8)>> = Mutex::new(Vec::new());
    let count_rounds = |from: u8, to: u8| {
        rounds
            .lock()
            .unwrap()
            .iter()
            .filter(|r| **r == (from, to))
            .count()
    };
    // Everything in the scope uses the sandbox only, so the daemon can be
    // replaced meanwhile.
    let sandbox = &rig.sandbox;
    let daemon = &mut rig.daemon;
    let old_daemon = thread::scope(|scope| {
        let prober = scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let start = phase.load(Ordering::SeqCst);
                let round = rounds.lock().unwrap().len();
                let w = probe(sandbox, &["udp", W_UDP, "--payload", "prober"]);
                assert_eq!(
                    w.error.as_deref(),
                    Some(probe_error::PERMISSION_DENIED),
                    "round {round} (phase {start}): w was not dropped: {w:?}"
                );
                let x = probe(sandbox, &["udp", X_UDP, "--payload", "prober"]);
                assert!(x.ok, "round {round} (phase {start}): x failed: {x:?}");
                let mirror = probe(sandbox, &["tcp", MIRROR]);
                assert!(
                    mirror.ok,
                    "round {round} (phase {start}): the learned address failed: {mirror:?}"
                );
                let end = phase.load(Ordering::SeqCst);
                rounds.lock().unwrap().push((start, end));
            }
        });
        // Fails the test with the prober's own message if it stopped.
        let check_prober = |what: &str| {
            if prober.is_finished() {
                panic!("the prober stopped early, {what}");
            }
        };
        poll_until("a first prober round", Duration::from_secs(10), || {
            check_prober("before the kill");
            (count_rounds(ALIVE, ALIVE) > 0)
                .then_some(())
                .ok_or_else(|| "no round yet".to_owned())
        });

        let status = daemon.kill().expect("the daemon's exit status");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        phase.store(DEAD, Ordering::SeqCst);

        // Nothing runs in userspace now; the kernel enforces alone.
        assert_enforced(sandbox);
        let dead_drop = udp_drop(sandbox);
        // The kernel learns from the agent's answers by itself, too.
        lookup(sandbox, "late.pkg.test", "203.0.113.51");
        assert_allowed(sandbox, &["tcp", LATE]);
        poll_until(
            "a prober round while the daemon is dead",
            Duration::from_secs(20),
            || {
                check_prober("while the daemon was dead");
                (count_rounds(DEAD, DEAD) > 0)
                    .then_some(())
                    .ok_or_else(|| format!("rounds {:?}", rounds.lock().unwrap()))
            },
        );

        let old_daemon = restart_daemon(sandbox, daemon);
        phase.store(RESTARTED, Ordering::SeqCst);
        poll_until(
            "a prober round after the restart",
            Duration::from_secs(20),
            || {
                check_prober("after the restart");
                (count_rounds(RESTARTED, RESTARTED) > 0)
                    .then_some(())
                    .ok_or_else(|| format!("rounds {:?}", rounds.lock().unwrap()))
            },
        );
        stop.store(true, Ordering::SeqCst);
        if let Err(panic) = prober.join() {
            std::panic::resume_unwind(panic);
        }

        // The drop of w while no daemon ran waited in the pinned ring
        // buffer and reaches the new daemon's log.
        let event = daemon
            .wait_for_log(|v| is_drop_event_from(v, dead_drop), EVENT_TIMEOUT)
            .unwrap_or_else(|e| {
                panic!("the drop from {dead_drop} while the daemon was dead: {e:#}")
            });
        assert_eq!(event["policy"], POLICY, "{event}");
        assert_eq!(event["reason"], "no_rule", "{event}");
        assert_eq!(event["dst"], "203.0.113.99", "{event}");
        old_daemon
    });
    let rounds = rounds.into_inner().unwrap();
    eprintln!("prober rounds (start phase, end phase): {rounds:?}");
    drop(old_daemon);

    // The new daemon adopted the policy, as it was.
    rig.daemon
        .wait_for_log(
            |v| v["message"] == "adopted policy left enforcing by an earlier daemon",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let after = only_policy(&rig);
    for field in ["name", "mode", "source", "rules", "workloads"] {
        assert_eq!(after[field], before[field], "status field {field}");
    }
    // The record keeps whole seconds: the adopted policy's time of apply is
    // the same second (the milliseconds are lost).
    let second = |policy: &Value| {
        let time = policy["applied_at"]
            .as_str()
            .expect("applied_at")
            .to_owned();
        time.split('.').next().unwrap_or_default().to_owned()
    };
    assert_eq!(second(&after), second(&before), "status field applied_at");
    // What the kernel learned before and during the outage is listed, with
    // time left.
    let learned = addresses(&after, "*.pkg.test");
    for wanted in ["203.0.113.50", "203.0.113.51"] {
        assert!(
            learned.iter().any(|(a, exp)| *a == ip(wanted) && *exp > 0),
            "{wanted} not listed (with time left) under *.pkg.test: {learned:?}"
        );
    }
    assert!(ips(&after, "x.example.com").contains(&ip("203.0.113.10")));
    // Counters kept counting in the kernel: no series went back, and the
    // drops while the daemon was dead are in.
    let metrics_after = rig.metrics();
    for (key, old) in metrics_before.drop_series() {
        let new = metrics_after.drop_series()[&key];
        assert!(new >= old, "{key:?} went backwards: {old} -> {new}");
    }
    let no_rule = |m: &common::Metrics| m.drops(POLICY, "no_rule", "egress");
    let dead_rounds = rounds.iter().filter(|r| r.0 == DEAD).count() as u64;
    assert!(
        no_rule(&metrics_after) >= no_rule(&metrics_before) + 3 + dead_rounds,
        "no_rule {} -> {} with at least {} drops while the daemon was dead",
        no_rule(&metrics_before),
        no_rule(&metrics_after),
        3 + dead_rounds
    );

    // Enforcement and learning go on under the new daemon.
    assert_enforced(&rig.sandbox);
    rig.assert_tcp_dropped(AFTER, "no_rule");
    lookup(&rig.sandbox, "after.pkg.test", "203.0.113.52");
    rig.assert_allowed(&["tcp", AFTER]);
    assert!(ips(&only_policy(&rig), "*.pkg.test").contains(&ip("203.0.113.52")));

    // The adopted instance is still pinned (not merely held open by the new
    // daemon): it outlives the next crash too.
    rig.daemon.kill();
    assert_enforced(&rig.sandbox);
    assert_allowed(&rig.sandbox, &["tcp", AFTER]);
}

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
