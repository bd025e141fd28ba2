//! `exec`: one command under a policy in a fresh cgroup, exit code passed through, nothing left behind.

use super::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One `openclaw-egress exec` run.
struct ExecRun {
    /// exec's pid, which names its cgroup and its policy.
    pid: u32,
    output: Output,
}

impl ExecRun {
    fn stdout(&self) -> String {
        text(&self.output.stdout)
    }

    fn stderr(&self) -> String {
        text(&self.output.stderr)
    }

    fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// `<name>-exec-<pid>`.
    fn policy_name(&self) -> String {
        format!("{POLICY}-exec-{}", self.pid)
    }

    fn cgroup(&self) -> PathBuf {
        cgroup2_mount()
            .expect("the cgroup2 mount")
            .join(format!("openclaw-egress-exec-{}", self.pid))
    }

    /// The probe's report: the last line of stdout.
    #[track_caller]
    fn probe_outcome(&self) -> ProbeOutcome {
        ProbeOutcome::parse(&self.stdout()).unwrap_or_else(|e| {
            panic!(
                "exec's stdout is not a probe report: {e:#}\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            )
        })
    }

    /// Panics, showing the whole run, unless exec exited with `code`.
    #[track_caller]
    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "exec: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Runs `openclaw-egress exec --socket <socket> --policy <policy> -- <command>`
/// in the agent netns, outside the sandbox cgroup: the command ends up in
/// exec's own cgroup, so only exec's policy applies to it.
#[track_caller]
fn exec(sandbox: &Sandbox, socket: &Path, policy: &Path, command: &[&str]) -> ExecRun {
    let mut cmd = exec_command(sandbox, socket, policy, command);
    let (pid, output) = spawn_and_wait(&mut cmd, Duration::from_secs(60));
    ExecRun { pid, output }
}

/// The command line of [`exec`], not started.
#[track_caller]
fn exec_command(sandbox: &Sandbox, socket: &Path, policy: &Path, command: &[&str]) -> Command {
    let mut args = vec![
        "exec".to_owned(),
        "--socket".to_owned(),
        socket.display().to_string(),
        "--policy".to_owned(),
        policy.display().to_string(),
        "--".to_owned(),
    ];
    args.extend(command.iter().map(|a| (*a).to_owned()));
    sandbox
        .command_in_agent_outside_cgroup(binary_path("openclaw-egress"), &args)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A rig, and a policy file for exec that allows `x.example.com` on
/// 443/tcp (nothing is applied yet).
fn rig_with_exec_policy() -> (Rig, PathBuf) {
    let rig = Rig::start(&world());
    let policy = PolicyYaml::for_sandbox(&rig.sandbox)
        .fqdn("x.example.com", &["443/tcp"])
        .write(rig.sandbox.scratch_dir(), "policy.yaml")
        .unwrap();
    (rig, policy)
}

/// Nothing of an exec run is left: its cgroup, its policy (in status, in
/// the pins, in the records).
#[track_caller]
fn assert_exec_cleaned_up(rig: &Rig, run: &ExecRun) {
    assert!(
        !run.cgroup().exists(),
        "exec's cgroup {} is left",
        run.cgroup().display()
    );
    let names = rig.policy_names();
    assert!(names.is_empty(), "policies left after exec: {names:?}");
    let pins = rig.sandbox.pins_dir().join(run.policy_name());
    assert!(!pins.exists(), "{} is left", pins.display());
    let record = rig
        .sandbox
        .state_dir()
        .join("policies")
        .join(format!("{}.json", run.policy_name()));
    assert!(!record.exists(), "{} is left", record.display());
}

#[test]
fn exec_runs_one_command_under_the_policy_and_passes_its_exit_code_through() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let (rig, policy) = rig_with_exec_policy();
    rig.assert_reachable_without_policy(&["tcp", Y]);
    let socket = rig.daemon.socket();
    let probe = binary_path("oce-probe");
    let probe = probe.to_str().unwrap();

    // Allowed: the probe's own report comes out on exec's stdout.
    let run = exec(&rig.sandbox, socket, &policy, &[probe, "tcp", X]);
    run.assert_code(0);
    let outcome = run.probe_outcome();
    outcome.assert_ok();
    assert_eq!(
        outcome.detail.as_deref(),
        Some("hello from 203.0.113.10:443")
    );
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!(
            "as {}, cgroup {}",
            run.policy_name(),
            run.cgroup().display()
        )),
        "{stderr}"
    );
    assert_exec_cleaned_up(&rig, &run);

    // Blocked: dropped under exec's policy (exec's name), from exec's cgroup.
    let run = exec(
        &rig.sandbox,
        socket,
        &policy,
        &[probe, "tcp", Y, "--timeout-ms", DROPPED_TCP_TIMEOUT_MS],
    );
    run.assert_code(0);
    let outcome = run.probe_outcome();
    outcome.assert_error(probe_error::PERMISSION_DENIED);
    let local = outcome.local.expect("the dropped probe's local address");
    let event = rig.wait_for_drop_event(local);
    assert_eq!(event["policy"], run.policy_name(), "{event}");
    assert_eq!(event["reason"], "no_rule", "{event}");
    assert_eq!(event["dst"], "203.0.113.20", "{event}");
    let sandbox_cgroup_id = std::fs::metadata(rig.sandbox.cgroup_path()).unwrap().ino();
    assert_ne!(event["cgroup_id"], 0, "{event}");
    assert_ne!(event["cgroup_id"], sandbox_cgroup_id, "{event}");
    assert_exec_cleaned_up(&rig, &run);

    // From the inside: the command runs in exec's cgroup, the root of its
    // own cgroup namespace (so `0::/` to itself), and the daemon shows exec's
    // policy on it while it runs (asked from outside: the daemon refuses
    // requests from inside a filtered cgroup, see hardening_exec.rs).
    let release = rig.sandbox.scratch_dir().join("release");
    let script = format!(
        "cat /proc/self/cgroup; grep -qx $$ {}/openclaw-egress-exec-$PPID/cgroup.procs && echo joined; \
         while [ ! -e {} ]; do sleep 0.05; done",
        cgroup2_mount().unwrap().display(),
        release.display()
    );
    let child = exec_command(&rig.sandbox, socket, &policy, &["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let name = format!("{POLICY}-exec-{pid}");
    let policy_status = poll_until("exec's policy in status", EVENT_TIMEOUT, || {
        let policies = rig.status_policies();
        policies
            .iter()
            .find(|p| p["name"] == name.as_str())
            .cloned()
            .ok_or(format!("{policies:#?}"))
    });
    std::fs::write(&release, "").unwrap();
    let run = ExecRun {
        pid,
        output: child.wait_with_output().unwrap(),
    };
    run.assert_code(0);
    let stdout = run.stdout();
    assert!(stdout.lines().any(|l| l == "0::/"), "{stdout}");
    assert!(
        stdout.lines().any(|l| l == "joined"),
        "the command is not in exec's cgroup: {stdout}"
    );
    assert_eq!(
        policy_status["source"],
        policy.display().to_string(),
        "{policy_status:#}"
    );
    assert_eq!(
        policy_status["workloads"],
        serde_json::json!([format!("cgroup {}", run.cgroup().display())]),
        "{policy_status:#}"
    );
    assert_exec_cleaned_up(&rig, &run);

    // Exit codes pass through; a signal becomes 128 + its number.
    let run = exec(&rig.sandbox, socket, &policy, &["sh", "-c", "exit 7"]);
    run.assert_code(7);
    assert_exec_cleaned_up(&rig, &run);
    let run = exec(
        &rig.sandbox,
        socket,
        &policy,
        &["sh", "-c", "kill -KILL $$"],
    );
    run.assert_code(128 + libc::SIGKILL);
    assert_exec_cleaned_up(&rig, &run);

    // A command that cannot be started: an error, and still nothing left.
    let run = exec(&rig.sandbox, socket, &policy, &["/nonexistent/command"]);
    assert!(
        !run.output.status.success() && run.output.status.signal().is_none(),
        "{:?}: {}",
        run.output.status,
        run.stderr()
    );
    assert!(
        run.stderr().contains("/nonexistent/command"),
        "{}",
        run.stderr()
    );
    assert_exec_cleaned_up(&rig, &run);
}

#[test]
fn exec_refuses_a_bad_policy_or_a_missing_daemon_without_running_the_command() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let sandbox = Sandbox::new().expect("creating the sandbox");
    let scratch = sandbox.scratch_dir();
    let marker = scratch.join("ran");
    let touch = format!("touch {}", marker.display());
    let good = PolicyYaml::for_sandbox(&sandbox).fqdn("x.example.com", &["443/tcp"]);
    let good_yaml = good.to_yaml();
    let line = 1 + good_yaml
        .lines()
        .position(|l| l.contains("ports:"))
        .unwrap();
    let bad = write_file(
        scratch,
        "bad.yaml",
        &good_yaml.replace("      ports:", "      portz:"),
    );
    // No daemon listens here.
    let socket = scratch.join("no-daemon.sock");

    // The policy is checked first, without a daemon.
    let run = exec(&sandbox, &socket, &bad, &["sh", "-c", &touch]);
    assert!(!run.output.status.success(), "{:?}", run.output);
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!(
            "{}:{line}:7: spec.egress[0].portz: unknown field `portz`",
            bad.display()
        )),
        "expected file:line:col: field: message, got:\n{stderr}"
    );
    assert!(!marker.exists(), "the command ran under a bad policy");
    assert!(!run.cgroup().exists(), "{} is left", run.cgroup().display());

    let good = good.write(scratch, "good.yaml").unwrap();
    let run = exec(&sandbox, &socket, &good, &["sh", "-c", &touch]);
    assert!(!run.output.status.success(), "{:?}", run.output);
    let stderr = run.stderr();
    assert!(
        stderr.contains(&format!("cannot reach the daemon at {}", socket.display()))
            && stderr.contains("is `openclaw-egress daemon` running?"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the command ran without a daemon");
    assert!(!run.cgroup().exists(), "{} is left", run.cgroup().display());
}

mod killed;
