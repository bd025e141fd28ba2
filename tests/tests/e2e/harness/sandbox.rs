//! The sandbox itself: probes placed in its cgroup, sandboxes isolated
//! from each other, child cgroups, and teardown (also after a panic).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use openclaw_egress_e2e::{Sandbox, WorldConfig, probe_error, skip_unless_root};

use super::{basic_world, probe};

#[test]
fn probes_run_inside_the_sandbox_cgroup() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let expected = format!("/{}", sandbox.cgroup_relative());
    assert_eq!(sandbox.cgroup_path(), sandbox_cgroup_abs(&sandbox));

    let inside = probe(&sandbox, &["cgroup"]);
    assert_eq!(inside.detail.as_deref(), Some(expected.as_str()));
    let outside = sandbox.probe_outside_cgroup(&["cgroup"]).unwrap();
    assert_ne!(outside.detail.as_deref(), Some(expected.as_str()));

    // command_in_agent: in the cgroup and in the agent netns, through `ip
    // netns exec`.
    let output = sandbox
        .command_in_agent("cat", ["/proc/self/cgroup"])
        .unwrap()
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let cgroup = String::from_utf8(output.stdout).unwrap();
    assert!(
        cgroup.lines().any(|l| l == format!("0::{expected}")),
        "{cgroup}"
    );
}

fn sandbox_cgroup_abs(sandbox: &Sandbox) -> PathBuf {
    openclaw_egress_e2e::cgroup2_mount()
        .unwrap()
        .join(sandbox.cgroup_relative())
}

#[test]
fn parallel_sandboxes_are_isolated() {
    if skip_unless_root() {
        return;
    }
    let one = Sandbox::new().unwrap();
    let two = Sandbox::new().unwrap();
    assert_ne!(one.agent_netns(), two.agent_netns());
    assert_ne!(one.cgroup_path(), two.cgroup_path());
    // Same addresses in both, different servers.
    let _w1 = one
        .start_world(&WorldConfig::new().tcp("203.0.113.10:7"))
        .unwrap();
    probe(&one, &["tcp", "203.0.113.10:7"]).assert_ok();
    // The same host in sandbox two's world has no server.
    two.add_world_host("203.0.113.10".parse().unwrap()).unwrap();
    probe(&two, &["tcp", "203.0.113.10:7"]).assert_error(probe_error::REFUSED);
}

#[test]
fn child_cgroups_take_probes_and_go_with_the_sandbox() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();
    let child = sandbox.create_cgroup("pod-x").unwrap();
    assert_eq!(child, sandbox.cgroup_path().join("pod-x"));
    assert!(sandbox.create_cgroup("../escape").is_err());

    // A probe placed in the child cgroup, in the agent netns.
    let expected = format!("/{}/pod-x", sandbox.cgroup_relative());
    let inside = sandbox.probe_in_cgroup(&child, &["cgroup"]).unwrap();
    assert_eq!(inside.detail.as_deref(), Some(expected.as_str()));
    sandbox
        .probe_in_cgroup(&child, &["tcp", "203.0.113.10:7"])
        .unwrap()
        .assert_ok();
    let output = sandbox
        .command_in_cgroup(&child, "cat", ["/proc/self/cgroup"])
        .unwrap()
        .output()
        .unwrap();
    let cgroups = String::from_utf8(output.stdout).unwrap();
    assert!(
        cgroups.lines().any(|l| l == format!("0::{expected}")),
        "{cgroups}"
    );

    // A process left in the child: dropping the sandbox kills it and
    // removes both cgroups.
    let mut sleeper = sandbox
        .command_in_cgroup(&child, "sleep", ["600"])
        .unwrap()
        .spawn()
        .unwrap();
    let parent = sandbox.cgroup_path().to_path_buf();
    drop(sandbox);
    assert!(!child.exists() && !parent.exists(), "{}", child.display());
    assert!(!sleeper.wait().unwrap().success());
}

/// What a sandbox leaves on the machine, for the teardown tests.
struct Footprint {
    netns: Vec<String>,
    cgroup: PathBuf,
    resolv_dir: PathBuf,
    scratch: PathBuf,
}

impl Footprint {
    fn of(sandbox: &Sandbox) -> Self {
        Self {
            netns: vec![
                sandbox.agent_netns().to_owned(),
                sandbox.world_netns().to_owned(),
            ],
            cgroup: sandbox.cgroup_path().to_owned(),
            resolv_dir: Path::new("/etc/netns").join(sandbox.agent_netns()),
            scratch: sandbox.scratch_dir().to_owned(),
        }
    }

    #[track_caller]
    fn assert_present(&self) {
        let listed = netns_list();
        for ns in &self.netns {
            assert!(listed.contains(ns), "{ns} missing from {listed:?}");
        }
        assert!(self.cgroup.is_dir());
        assert!(self.resolv_dir.join("resolv.conf").is_file());
        assert!(self.scratch.is_dir());
    }

    #[track_caller]
    fn assert_gone(&self) {
        let listed = netns_list();
        for ns in &self.netns {
            assert!(!listed.contains(ns), "{ns} still in {listed:?}");
        }
        assert!(
            !self.cgroup.exists(),
            "{} still exists",
            self.cgroup.display()
        );
        assert!(
            !self.resolv_dir.exists(),
            "{} still exists",
            self.resolv_dir.display()
        );
        assert!(
            !self.scratch.exists(),
            "{} still exists",
            self.scratch.display()
        );
    }
}

fn netns_list() -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn drop_removes_everything_and_kills_leftovers() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let footprint = Footprint::of(&sandbox);
    footprint.assert_present();

    let world = sandbox.start_world(&basic_world()).unwrap();
    // A process left running in the cgroup, and a world server whose guard
    // is leaked: dropping the sandbox must kill both.
    let mut sleeper = sandbox
        .command_in_agent("sleep", ["600"])
        .unwrap()
        .spawn()
        .unwrap();
    std::mem::forget(world);
    assert!(!sandbox.cgroup_pids().is_empty());

    drop(sandbox);
    footprint.assert_gone();
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "sleep should have been killed: {status}");
}

#[test]
fn drop_cleans_up_after_a_panic() {
    if skip_unless_root() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let sandbox = Sandbox::new().unwrap();
        let _world = sandbox.start_world(&basic_world()).unwrap();
        tx.send(Footprint::of(&sandbox)).unwrap();
        panic!("deliberate panic while the sandbox is alive");
    })
    .join();
    assert!(result.is_err(), "the thread should have panicked");
    rx.recv().unwrap().assert_gone();
}
