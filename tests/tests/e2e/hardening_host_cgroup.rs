//! The host cannot be selected by mistake: a policy whose `cgroupPath` is
//! the cgroup2 root, the daemon's own cgroup or one of its ancestors is
//! refused, however the path is written, and changes nothing, unless the
//! daemon runs with `--allow-host-cgroup`.
//!
//! The daemon runs in a child cgroup of the sandbox cgroup, so its own
//! cgroup and its parent are the test's and not the host's. Every policy is
//! in audit mode: should one be accepted by mistake (as it was before this
//! check), it drops nothing, and the test removes it before failing.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::path::PathBuf;

use common::{PolicyYaml, skip_unless_root};
use openclaw_egress_e2e::{Daemon, Sandbox, binary_path, cgroup2_mount, run_with_deadline};

/// A daemon in `<sandbox>/daemon`, and a sibling cgroup `<sandbox>/sibling`.
struct Setup {
    daemon: Daemon,
    sandbox: Sandbox,
}

fn start(extra_args: &[&str]) -> Setup {
    let sandbox = Sandbox::new().expect("creating the sandbox");
    let own = sandbox.create_cgroup("daemon").unwrap();
    sandbox.create_cgroup("sibling").unwrap();
    let daemon = sandbox
        .spawn_daemon_in_cgroup(&binary_path("openclaw-egress"), &own, extra_args)
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
    let procs = std::fs::read_to_string(own.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == daemon.pid().to_string()),
        "the daemon is not in {}: {procs}",
        own.display()
    );
    Setup { daemon, sandbox }
}

/// An audit policy named `name` selecting `cgroup_path`, written to the
/// scratch dir.
fn audit_policy(sandbox: &Sandbox, name: &str, cgroup_path: &str) -> PathBuf {
    PolicyYaml::for_sandbox(sandbox)
        .name(name)
        .mode("audit")
        .cgroup_path(cgroup_path)
        .write(sandbox.scratch_dir(), &format!("{name}.yaml"))
        .unwrap()
}

/// The names of the applied policies and the cgroup of each.
fn applied(daemon: &Daemon) -> Vec<(String, String)> {
    let status = daemon.status_json().unwrap();
    status["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["cgroup"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Applies an audit policy on `cgroup_path` and asserts that the daemon
/// refuses it with a message naming the path and `why`.
#[track_caller]
fn assert_refused(setup: &Setup, name: &str, cgroup_path: &str, why: &str) {
    let file = audit_policy(&setup.sandbox, name, cgroup_path);
    let output = setup
        .daemon
        .cli(&["apply", file.to_str().unwrap()])
        .unwrap();
    if output.status.success() {
        // Never leave a policy on a host cgroup behind, audit or not.
        let _ = setup.daemon.cli(&["remove", name]);
        panic!(
            "cgroupPath {cgroup_path} was accepted: {}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "spec.selector: cgroupPath: ",
        cgroup_path.trim_end_matches('/'),
        why,
        "--allow-host-cgroup",
    ] {
        assert!(
            stderr.contains(expected),
            "cgroupPath {cgroup_path}: {expected:?} not in the error:\n{stderr}"
        );
    }
}

#[test]
fn policies_on_the_root_the_daemons_cgroup_or_its_ancestors_are_refused() {
    if skip_unless_root() {
        return;
    }
    let setup = start(&[]);
    let sandbox = &setup.sandbox;
    let mount = cgroup2_mount().unwrap();
    let relative = sandbox.cgroup_relative();
    let own = sandbox.cgroup_path().join("daemon");
    let parent = sandbox.cgroup_path().display().to_string();
    let link = sandbox.scratch_dir().join("parent-link");
    std::os::unix::fs::symlink(sandbox.cgroup_path(), &link).unwrap();

    let own_why = "is the daemon's own cgroup";
    let ancestor_why = format!(
        "is an ancestor of the daemon's own cgroup {}",
        own.display()
    );
    let root_why = "is the cgroup2 root";
    let cases = [
        (own.display().to_string(), own_why.to_owned()),
        (format!("{relative}/daemon/"), own_why.to_owned()),
        (parent.clone(), ancestor_why.clone()),
        (format!("{relative}/"), ancestor_why.clone()),
        (link.display().to_string(), ancestor_why.clone()),
        (mount.display().to_string(), root_why.to_owned()),
        (format!("{}/", mount.display()), root_why.to_owned()),
        (".".to_owned(), root_why.to_owned()),
    ];
    for (path, why) in &cases {
        assert_refused(&setup, "host", path, why);
    }
    // The symlink is named, and what it leads to.
    let file = audit_policy(sandbox, "host", &link.display().to_string());
    let output = setup
        .daemon
        .cli(&["apply", file.to_str().unwrap()])
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{} (that is {parent})", link.display())),
        "{stderr}"
    );
    assert_eq!(applied(&setup.daemon), []);

    // A sibling of the daemon's cgroup is no host cgroup.
    let sibling = sandbox.cgroup_path().join("sibling");
    let file = audit_policy(sandbox, "agent", &format!("{relative}/sibling"));
    setup.daemon.apply(&file).unwrap();
    assert_eq!(
        applied(&setup.daemon),
        [("agent".to_owned(), sibling.display().to_string())]
    );
    // Replacing it with a version on a host cgroup changes nothing.
    assert_refused(&setup, "agent", &parent, &ancestor_why);
    assert_eq!(
        applied(&setup.daemon),
        [("agent".to_owned(), sibling.display().to_string())]
    );
}

#[test]
fn allow_host_cgroup_lets_the_daemon_select_its_parent() {
    if skip_unless_root() {
        return;
    }
    let setup = start(&["--allow-host-cgroup"]);
    let parent = setup.sandbox.cgroup_path();
    let file = audit_policy(&setup.sandbox, "parent", &parent.display().to_string());
    let output = setup
        .daemon
        .apply(&file)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(output.contains("policy parent applied"), "{output}");
    assert_eq!(
        applied(&setup.daemon),
        [("parent".to_owned(), parent.display().to_string())]
    );
    // A client under it may still use the API (the daemon refuses requests
    // from filtered workloads, but this policy filters the host, the
    // operator included: refusing would leave no way to remove it).
    let sibling = parent.join("sibling");
    let socket = setup.daemon.socket().display().to_string();
    let mut status = setup
        .sandbox
        .command_in_cgroup(
            &sibling,
            binary_path("openclaw-egress"),
            ["status", "--socket", &socket],
        )
        .unwrap();
    let output = run_with_deadline(&mut status, Daemon::CLI_TIMEOUT).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    setup
        .daemon
        .cli_ok(&["remove", "parent"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(applied(&setup.daemon), []);
}
