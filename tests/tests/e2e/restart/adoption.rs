//! A SIGKILLed daemon leaves enforcement in place and a restarted one adopts it without a gap.

use super::*;

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
