//! `exec` cannot shed its sandbox: its command runs without the capabilities
//! that could undo enforcement and with no_new_privs, cannot write itself
//! into another cgroup even as uid 0 (the cgroup2 mount is read-only in its
//! mount namespace), cannot unlink the daemon's pins, and the daemon refuses
//! its API requests (from inside any filtered cgroup, descendants
//! included). `--keep-capabilities` keeps the capabilities, not the rest.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use common::{DROPPED_TCP_TIMEOUT_MS, POLICY, PolicyYaml, Rig, skip_unless_root, spawn_and_wait};
use openclaw_egress_e2e::{ProbeOutcome, WorldConfig, binary_path, cgroup2_mount, probe_error};

const X: &str = "203.0.113.10:443";
const Y: &str = "203.0.113.20:443";

/// The capabilities exec's command loses, by number.
const DROPPED: &[(u32, &str)] = &[
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (16, "CAP_SYS_MODULE"),
    (17, "CAP_SYS_RAWIO"),
    (19, "CAP_SYS_PTRACE"),
    (21, "CAP_SYS_ADMIN"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("x.example.com", "203.0.113.10")
        .tcp(X)
        .tcp(Y)
}

/// A rig and an exec policy allowing `x.example.com` on 443/tcp.
fn rig() -> (Rig, PathBuf) {
    let rig = Rig::start(&world());
    let policy = PolicyYaml::for_sandbox(&rig.sandbox)
        .fqdn("x.example.com", &["443/tcp"])
        .write(rig.sandbox.scratch_dir(), "exec.yaml")
        .unwrap();
    (rig, policy)
}

struct Run {
    pid: u32,
    output: Output,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    #[track_caller]
    fn assert_success(&self) -> &Self {
        assert!(
            self.output.status.success(),
            "exec: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.output.status,
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// `openclaw-egress exec [flags] --policy <policy> -- sh -c <script>` in
/// the agent netns, outside the sandbox cgroup.
#[track_caller]
fn exec_sh(rig: &Rig, policy: &Path, flags: &[&str], script: &str) -> Run {
    let mut args: Vec<String> = vec!["exec".into(), "--socket".into()];
    args.push(rig.daemon.socket().display().to_string());
    args.extend(flags.iter().map(|f| (*f).to_owned()));
    args.extend(["--policy".into(), policy.display().to_string(), "--".into()]);
    args.extend(["sh".into(), "-c".into(), script.to_owned()]);
    let mut command = rig
        .sandbox
        .command_in_agent_outside_cgroup(binary_path("openclaw-egress"), &args)
        .unwrap();
    let (pid, output) = spawn_and_wait(&mut command, Duration::from_secs(60));
    Run { pid, output }
}

/// The `Cap*` sets of a `/proc/<pid>/status` text, and `NoNewPrivs`.
fn capability_sets(status: &str) -> (Vec<(String, u64)>, Option<String>) {
    let sets = status
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let set = u64::from_str_radix(value.trim(), 16).ok()?;
            name.starts_with("Cap").then(|| (name.to_owned(), set))
        })
        .collect();
    let no_new_privs = status
        .lines()
        .find_map(|l| l.strip_prefix("NoNewPrivs:"))
        .map(|v| v.trim().to_owned());
    (sets, no_new_privs)
}

#[test]
fn the_command_runs_without_the_capabilities_that_undo_enforcement() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let (rig, policy) = rig();
    let run = exec_sh(
        &rig,
        &policy,
        &[],
        "grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
    );
    run.assert_success();
    let (sets, no_new_privs) = capability_sets(&run.stdout());
    assert_eq!(sets.len(), 5, "{}", run.stdout());
    for (set, bits) in &sets {
        for (cap, name) in DROPPED {
            assert_eq!(bits & (1 << cap), 0, "{name} is in {set}: {}", run.stdout());
        }
    }
    // Root keeps the rest, e.g. CAP_DAC_OVERRIDE (1).
    let effective = sets.iter().find(|(s, _)| s == "CapEff").unwrap().1;
    assert_ne!(effective & (1 << 1), 0, "{}", run.stdout());
    assert_eq!(no_new_privs.as_deref(), Some("1"), "{}", run.stdout());
}

#[test]
fn keep_capabilities_keeps_them_but_not_the_way_out() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let (rig, policy) = rig();
    let mount = cgroup2_mount().unwrap();
    let script = format!(
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; \
         echo $$ > {}/cgroup.procs && echo moved",
        mount.display()
    );
    let run = exec_sh(&rig, &policy, &["--keep-capabilities"], &script);
    let (sets, no_new_privs) = capability_sets(&run.stdout());
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let (our_sets, _) = capability_sets(&ours);
    let ours = our_sets.iter().find(|(s, _)| s == "CapEff").unwrap().1;
    assert_eq!(sets, [("CapEff".to_owned(), ours)], "{}", run.stdout());
    assert_ne!(ours & (1 << 21), 0, "the test itself lacks CAP_SYS_ADMIN");
    assert_eq!(no_new_privs.as_deref(), Some("1"));
    assert!(!run.stdout().contains("moved"), "{}", run.stdout());
    assert!(
        run.stderr().contains("Read-only file system"),
        "{}",
        run.stderr()
    );
}

#[test]
fn the_command_cannot_leave_its_cgroup_and_stays_filtered() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let (rig, policy) = rig();
    rig.assert_reachable_without_policy(&["tcp", Y]);
    let mount = cgroup2_mount().unwrap();
    let probe = binary_path("oce-probe");
    let script = format!(
        "echo $$ > {root}/cgroup.procs && echo moved to the root; \
         echo $$ > {sandbox}/cgroup.procs && echo moved to the sandbox; \
         cat /proc/self/cgroup; \
         exec {probe} tcp {Y} --timeout-ms {DROPPED_TCP_TIMEOUT_MS}",
        root = mount.display(),
        sandbox = rig.sandbox.cgroup_path().display(),
        probe = probe.display(),
    );
    let run = exec_sh(&rig, &policy, &[], &script);
    run.assert_success();
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert!(!stdout.contains("moved"), "{stdout}");
    assert_eq!(
        stderr.matches("Read-only file system").count(),
        2,
        "{stderr}"
    );
    // Its own cgroup namespace: its cgroup is the root of what it sees.
    assert!(stdout.lines().any(|l| l == "0::/"), "{stdout}");
    let outcome = ProbeOutcome::parse(&stdout).unwrap();
    // Refused at connect(): the exec rig filters with cgroup hooks only.
    outcome.assert_error(probe_error::PERMISSION_DENIED);
    let event = rig.wait_for_drop_event(outcome.local.unwrap());
    assert_eq!(
        event["policy"],
        format!("{POLICY}-exec-{}", run.pid),
        "{event}"
    );
    assert_eq!(event["dst"], "203.0.113.20", "{event}");
}

#[test]
fn the_daemon_refuses_requests_from_inside_a_filtered_cgroup() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let (rig, policy) = rig();
    let bin = binary_path("openclaw-egress");
    let socket = rig.daemon.socket().display().to_string();
    let script = format!(
        "{bin} status --socket {socket}; echo status=$?; \
         {bin} remove {POLICY}-exec-$PPID --socket {socket}; echo remove=$?",
        bin = bin.display(),
    );
    let run = exec_sh(&rig, &policy, &[], &script);
    run.assert_success();
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert!(
        stdout.contains("status=1") && stdout.contains("remove=1"),
        "{stdout}"
    );
    let cgroup = cgroup2_mount()
        .unwrap()
        .join(format!("openclaw-egress-exec-{}", run.pid));
    let refusal = format!(
        "refused: this client runs in cgroup {}, under policy {POLICY}-exec-{}",
        cgroup.display(),
        run.pid
    );
    assert_eq!(stderr.matches(&refusal).count(), 2, "{stderr}");
    // exec itself, outside, removed its policy at the end as usual.
    assert!(!stderr.contains("removing policy"), "{stderr}");
    assert!(rig.policy_names().is_empty(), "{:?}", rig.policy_names());

    // The same for a process in a cgroup below one a policy filters, and
    // not for one outside.
    rig.apply(
        &rig.policy().fqdn("x.example.com", &["443/tcp"]),
        "policy.yaml",
    );
    let child = rig.sandbox.create_cgroup("child").unwrap();
    let mut status = rig
        .sandbox
        .command_in_cgroup(&child, &bin, ["status", "--socket", &socket])
        .unwrap();
    let output =
        openclaw_egress_e2e::run_with_deadline(&mut status, Duration::from_secs(30)).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "refused: this client runs in cgroup {}, under policy {POLICY} (on {})",
            child.display(),
            rig.sandbox.cgroup_path().display()
        )),
        "{stderr}"
    );
    assert_eq!(rig.policy_names(), [POLICY]);
}

#[test]
fn the_command_cannot_unlink_the_daemons_pins() {
    if skip_unless_root() {
        return;
    }
    let _turn = crate::common::exec_turn();
    let (rig, policy) = rig();
    rig.apply(
        &rig.policy().fqdn("x.example.com", &["443/tcp"]),
        "policy.yaml",
    );
    let pins = rig.sandbox.pins_dir();
    let pin = find_file(pins).unwrap_or_else(|| panic!("no pin under {}", pins.display()));
    let script = format!(
        "rm -f {pin} && echo unlinked; touch {dir}/new && echo created; exit 0",
        pin = pin.display(),
        dir = pin.parent().unwrap().display()
    );
    let run = exec_sh(&rig, &policy, &[], &script);
    run.assert_success();
    assert!(!run.stdout().contains("unlinked"), "{}", run.stdout());
    assert!(!run.stdout().contains("created"), "{}", run.stdout());
    assert!(
        run.stderr().contains("Read-only file system"),
        "{}",
        run.stderr()
    );
    assert!(pin.exists(), "{} is gone", pin.display());
    // Enforcement is intact.
    rig.assert_tcp_dropped(Y, "no_rule");
    rig.assert_allowed(&["tcp", X]);
}

/// Some regular file below `dir`.
fn find_file(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let path = entry.path();
        let kind = entry.file_type().ok()?;
        if kind.is_dir() {
            if let Some(found) = find_file(&path) {
                return Some(found);
            }
        } else if kind.is_file() {
            return Some(path);
        }
    }
    None
}
