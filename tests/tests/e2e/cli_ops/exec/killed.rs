//! An exec killed before it can clean up: what it leaves keeps enforcing until the next exec removes it.

use super::*;

#[test]
fn what_a_killed_exec_leaves_keeps_enforcing_until_the_next_exec_removes_it() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let (rig, policy) = rig_with_exec_policy();
    let socket = rig.daemon.socket();
    let probe = binary_path("oce-probe");
    let probe = probe.to_str().unwrap();

    // An exec whose command outlives it: SIGKILL leaves exec no chance to
    // clean up. (No pipes: the orphaned command would hold them open.)
    let mut killed = exec_command(&rig.sandbox, socket, &policy, &["sleep", "600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = killed.id();
    let name = format!("{POLICY}-exec-{pid}");
    poll_until("the exec's policy in status", EVENT_TIMEOUT, || {
        let names = rig.policy_names();
        names
            .contains(&name)
            .then_some(())
            .ok_or(format!("{names:?}"))
    });
    // The policy shows before the command is in the cgroup: wait for the
    // command, or the kill would leave an empty cgroup (which the next exec
    // rightly removes with its policy).
    let its_cgroup = cgroup2_mount()
        .expect("the cgroup2 mount")
        .join(format!("openclaw-egress-exec-{pid}"));
    poll_until("the exec's command in its cgroup", EVENT_TIMEOUT, || {
        let procs = std::fs::read_to_string(its_cgroup.join("cgroup.procs")).unwrap_or_default();
        (!procs.trim().is_empty())
            .then_some(())
            .ok_or(format!("{procs:?}"))
    });
    // SAFETY: kill(2) has no memory-safety preconditions; the child is not
    // reaped yet, so the pid is still exec's.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let output = Output {
        status: killed.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let killed = ExecRun { pid, output };
    assert_eq!(killed.output.status.signal(), Some(libc::SIGKILL));
    let cgroup = killed.cgroup();
    let _orphans = RemoveOnDrop(cgroup.clone());

    // Its command still runs, in its cgroup, under its policy: a later exec
    // leaves both alone.
    let run = exec(&rig.sandbox, socket, &policy, &[probe, "tcp", X]);
    run.assert_code(0);
    run.probe_outcome().assert_ok();
    assert!(
        cgroup.exists(),
        "{} was removed under a running command",
        cgroup.display()
    );
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    assert!(!procs.trim().is_empty(), "the orphaned command is gone");
    assert_eq!(rig.policy_names(), [name.as_str()]);
    assert!(!run.stderr().contains("left behind"), "{}", run.stderr());

    // Once the command is gone too, the next exec removes what is left, and
    // says so.
    std::fs::write(cgroup.join("cgroup.kill"), "1").unwrap();
    poll_until("the killed exec's cgroup to empty", EVENT_TIMEOUT, || {
        let events = std::fs::read_to_string(cgroup.join("cgroup.events")).unwrap();
        events
            .lines()
            .any(|l| l == "populated 0")
            .then_some(())
            .ok_or(events)
    });
    let run = exec(&rig.sandbox, socket, &policy, &["true"]);
    run.assert_code(0);
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!(
            "removed what exec {pid} left behind: policy {name}, cgroup {}",
            cgroup.display()
        )),
        "{stderr}"
    );
    assert_exec_cleaned_up(&rig, &killed);
    assert_exec_cleaned_up(&rig, &run);
}

/// Kills whatever is left in a cgroup and removes it, should a test fail
/// before it does so itself.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(error) = remove_cgroup(&self.0) {
            eprintln!("cleanup: {error:#}");
        }
    }
}
