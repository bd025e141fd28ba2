//! The systemd unit (`deploy/systemd/openclaw-egress.service`): systemd
//! accepts it (`systemd-analyze verify`), its capabilities are the ones
//! `openclaw-egress/tests/k8s_capabilities.rs` proves enough and each needed
//! (the DaemonSet's; that test also runs the daemon with the unit's own set
//! on a host), it restarts on failure and reloads with SIGHUP; and the
//! daemon takes SIGHUP as "read the policy directory now".
//!
//! The unit checks need no root (but `systemd-analyze` and a built daemon:
//! `cargo build --bins`); the SIGHUP tests run the real daemon, root-only,
//! skipped with a message otherwise.

use crate::common;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{PolicyYaml, TempDir, poll_until, skip_unless_root};
use openclaw_egress_e2e::{Daemon, Sandbox, binary_path};

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";
/// Where the unit expects the binary.
const INSTALLED_BINARY: &str = "/usr/bin/openclaw-egress";
/// What the daemon logs on each SIGHUP with a policy directory.
const REREAD: &str = "re-reading the policy directory (SIGHUP)";
/// How long a policy file may take to be applied once the daemon reads it.
const APPLY_TIMEOUT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unit_path() -> PathBuf {
    repo_root().join("deploy/systemd/openclaw-egress.service")
}

fn unit_text() -> String {
    let path = unit_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values of `key` in `section` (`[Service]` etc.), in order. The unit
/// has no continuation lines (checked), so a setting is one line.
fn settings(unit: &str, section: &str, key: &str) -> Vec<String> {
    let mut current = "";
    let mut values = Vec::new();
    for line in unit.lines().map(str::trim) {
        assert!(!line.ends_with('\\'), "continuation line: {line}");
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            current = line;
        } else if current == section
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            values.push(v.trim().to_owned());
        }
    }
    values
}

/// The one value of `key` in `[Service]`.
#[track_caller]
fn service_setting(unit: &str, key: &str) -> String {
    let values = settings(unit, "[Service]", key);
    let [value] = &values[..] else {
        panic!("expected one {key}= in [Service], got {values:?}");
    };
    value.clone()
}

/// A capability list as a set of names without `CAP_`, upper case (the
/// DaemonSet's spelling).
fn capability_set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names
        .into_iter()
        .map(|name| name.trim_start_matches("CAP_").to_uppercase())
        .collect()
}

/// `capabilities.add` of the DaemonSet's container: the set
/// `openclaw-egress/tests/k8s_capabilities.rs` runs the daemon with, then
/// without each one.
fn daemonset_capabilities() -> BTreeSet<String> {
    let path = repo_root().join("deploy/daemonset.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let daemon_set: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let security = &daemon_set["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(
        security["capabilities"]["drop"],
        serde_yaml::to_value(["ALL"]).unwrap()
    );
    let added = security["capabilities"]["add"]
        .as_sequence()
        .expect("capabilities.add is a list");
    capability_set(added.iter().map(|c| c.as_str().expect("a capability name")))
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    assert!(
        Path::new(SYSTEMD_ANALYZE).is_file(),
        "{SYSTEMD_ANALYZE} is missing: install systemd to run this test"
    );
    let binary = binary_path("openclaw-egress");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --bins` first (or set OPENCLAW_EGRESS_BIN_DIR)",
        binary.display()
    );
    // verify checks that ExecStart's binary exists: a copy of the unit (same
    // name) that runs the one just built.
    let unit = unit_text();
    let exec_start = service_setting(&unit, "ExecStart");
    assert!(
        exec_start.starts_with(&format!("{INSTALLED_BINARY} ")),
        "{exec_start}"
    );
    let copy = unit.replace(
        &format!("ExecStart={INSTALLED_BINARY} "),
        &format!("ExecStart={} ", binary.display()),
    );
    let dir = TempDir::new("systemd-unit");
    let copy_path = dir.path().join("openclaw-egress.service");
    std::fs::write(&copy_path, copy).unwrap();
    let output = Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(&copy_path)
        .output()
        .unwrap_or_else(|e| panic!("running {SYSTEMD_ANALYZE}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify: {}\n{stderr}",
        output.status
    );
    // Warnings (an unknown or misspelt setting, a bad value) do not change
    // the exit status; they name the unit.
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("openclaw-egress.service"))
        .collect();
    assert!(warnings.is_empty(), "systemd-analyze verify: {warnings:#?}");
}

#[test]
fn unit_capabilities_are_the_proven_set() {
    let unit = unit_text();
    let bounding = service_setting(&unit, "CapabilityBoundingSet");
    let bounding = capability_set(bounding.split_whitespace());
    assert_eq!(
        bounding,
        daemonset_capabilities(),
        "the unit's CapabilityBoundingSet= is not the set \
         openclaw-egress/tests/k8s_capabilities.rs proves enough and each needed"
    );
    let ambient = service_setting(&unit, "AmbientCapabilities");
    assert_eq!(capability_set(ambient.split_whitespace()), bounding);
    // Without these, the set above would not be all it has.
    assert_eq!(service_setting(&unit, "NoNewPrivileges"), "yes");
    assert!(settings(&unit, "[Service]", "User").is_empty());
}

#[test]
fn unit_restarts_on_failure_and_reloads_with_sighup() {
    let unit = unit_text();
    assert_eq!(service_setting(&unit, "Restart"), "on-failure");
    // Killed by a SIGHUP that came before the daemon's handler: restarted
    // too (systemd counts death by SIGHUP as a clean exit).
    let force = service_setting(&unit, "RestartForceExitStatus");
    assert!(force.split_whitespace().any(|s| s == "SIGHUP"), "{force}");
    let reload = service_setting(&unit, "ExecReload");
    let words: Vec<&str> = reload.split_whitespace().collect();
    assert!(
        matches!(words[..], [kill, "-HUP", "$MAINPID"] if kill.ends_with("/kill")),
        "ExecReload= must send SIGHUP to the daemon: {reload}"
    );
    // The daemon's defaults the sandbox is built around.
    let exec_start = service_setting(&unit, "ExecStart");
    assert_eq!(
        exec_start,
        format!("{INSTALLED_BINARY} daemon --policy-dir /etc/openclaw-egress/policies")
    );
    assert_eq!(
        service_setting(&unit, "RuntimeDirectory"),
        "openclaw-egress"
    );
    assert_eq!(service_setting(&unit, "RuntimeDirectoryPreserve"), "yes");
    assert_eq!(
        service_setting(&unit, "ReadWritePaths"),
        "-/sys/fs/bpf/openclaw-egress"
    );
}

/// The agent's policy file, not applied yet.
fn write_policy(sandbox: &Sandbox, dir: &Path) {
    PolicyYaml::for_sandbox(sandbox)
        .cidr("203.0.113.0/24", &["443/tcp"])
        .write(dir, "agent.yaml")
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The names of the applied policies.
#[track_caller]
fn applied(daemon: &Daemon) -> Vec<String> {
    let status = daemon
        .status_json()
        .unwrap_or_else(|e| panic!("status --json: {e:#}"));
    status["policies"]
        .as_array()
        .unwrap_or_else(|| panic!("status --json: no policies list: {status}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Sends SIGHUP to the daemon.
fn hangup(daemon: &Daemon) {
    // SAFETY: kill(2) on the daemon's pid, our child.
    let rc = unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill -HUP {}", daemon.pid());
}

fn count_log(daemon: &Daemon, message: &str) -> usize {
    daemon
        .log_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.text).ok())
        .filter(|v| v["message"] == message)
        .count()
}

#[test]
fn sighup_rereads_the_policy_directory() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().expect("creating the sandbox");
    let policies = sandbox.scratch_dir().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let mut daemon = sandbox
        .spawn_daemon_with_args(
            &binary_path("openclaw-egress"),
            &["--policy-dir", policies.to_str().unwrap()],
        )
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
    assert!(applied(&daemon).is_empty());

    // `systemctl reload` after an edit: the file is read on the signal.
    write_policy(&sandbox, &policies);
    hangup(&daemon);
    daemon
        .wait_for_log(|v| v["message"] == REREAD, APPLY_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    poll_until("the policy applied", APPLY_TIMEOUT, || {
        let names = applied(&daemon);
        if names == [common::POLICY] {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });

    // More reloads: each one is a re-read, none is fatal.
    for _ in 0..3 {
        hangup(&daemon);
    }
    // Signals sent close together may be delivered as one.
    poll_until("another re-read", APPLY_TIMEOUT, || {
        match count_log(&daemon, REREAD) {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} re-reads logged")),
        }
    });
    assert_eq!(daemon.exit_status(), None, "SIGHUP stopped the daemon");
    assert_eq!(applied(&daemon), [common::POLICY]);

    // And removing the file, then reloading, removes the policy.
    std::fs::remove_file(policies.join("agent.yaml")).unwrap();
    hangup(&daemon);
    poll_until("the policy removed", APPLY_TIMEOUT, || {
        let names = applied(&daemon);
        if names.is_empty() {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    });
}

#[test]
fn sighup_without_a_policy_directory_is_harmless() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().expect("creating the sandbox");
    let mut daemon = sandbox
        .spawn_daemon(&binary_path("openclaw-egress"))
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
    hangup(&daemon);
    daemon
        .wait_for_log(
            |v| {
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("nothing to re-read"))
            },
            APPLY_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(daemon.exit_status(), None, "SIGHUP stopped the daemon");
    assert!(applied(&daemon).is_empty());
}
