//! The DaemonSet's capabilities are enough, and each one is needed: the
//! real daemon runs with exactly the capability set of
//! `deploy/daemonset.yaml` (as the container runtime would give it: uid 0,
//! bounding set = the added capabilities, no_new_privs) and applies a policy
//! to a fresh cgroup; then once more without each capability, and the
//! apply must fail.
//!
//! The systemd unit's (`deploy/systemd/openclaw-egress.service`) are enough
//! on a host too: the daemon runs as the unit runs it (uid 0, bounding set =
//! `CapabilityBoundingSet=`, no_new_privs, `--policy-dir`), applies the
//! cgroup policy it finds there, re-reads the directory on SIGHUP and
//! mounts nothing. (Each one is needed: `tests/tests/e2e/systemd_unit.rs` checks
//! that the set is the DaemonSet's.)
//!
//! Needs root (it creates a cgroup and loads programs), like the kernel
//! tests, and `setpriv` (util-linux). The policy has no `fqdn` rules, so
//! the daemon sends no DNS query.

mod k8s_common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    thread,
    time::{Duration, Instant},
};

use k8s_common::{deploy_dir, yaml_documents};
use k8s_openapi::api::apps::v1::DaemonSet;

const DAEMON: &str = env!("CARGO_BIN_EXE_openclaw-egress");

fn daemonset_capabilities() -> Vec<String> {
    let doc = yaml_documents(&deploy_dir().join("daemonset.yaml")).remove(0);
    let daemon_set: DaemonSet = serde_json::from_value(doc).unwrap();
    let pod = daemon_set.spec.unwrap().template.spec.unwrap();
    let security = pod.containers[0].security_context.clone().unwrap();
    let capabilities = security.capabilities.unwrap();
    assert_eq!(capabilities.drop, Some(vec!["ALL".to_owned()]));
    capabilities.add.unwrap()
}

/// The unit's `CapabilityBoundingSet=`, spelt as in the DaemonSet (no
/// `CAP_`); its `AmbientCapabilities=` must be the same set.
fn unit_capabilities() -> Vec<String> {
    let path = deploy_dir().join("systemd/openclaw-egress.service");
    let unit = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let setting = |key: &str| -> Vec<String> {
        let lines: Vec<&str> = unit
            .lines()
            .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .collect();
        let [value] = lines[..] else {
            panic!(
                "{}: expected one {key}= line, got {lines:?}",
                path.display()
            );
        };
        value
            .split_whitespace()
            .map(|cap| cap.strip_prefix("CAP_").unwrap_or(cap).to_owned())
            .collect()
    };
    let bounding = setting("CapabilityBoundingSet");
    assert_eq!(setting("AmbientCapabilities"), bounding);
    bounding
}

/// A cgroup v2 directory that is removed again.
struct TestCgroup(PathBuf);

impl TestCgroup {
    /// `openclaw-<tag>-<pid>`: each test its own (they run in parallel).
    fn new(tag: &str) -> TestCgroup {
        let mount = openclaw_egress::cgroup::cgroup2_mount().expect("cgroup v2 is mounted");
        let path = mount.join(format!("openclaw-{tag}-{}", std::process::id()));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("creating {} (needs root): {e}", path.display()));
        TestCgroup(path)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The daemon, started under `setpriv` with only `capabilities`.
struct Daemon {
    child: Child,
    socket: PathBuf,
    pins: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// The daemon running with only `capabilities`, or what it printed
    /// when it could not start (it loads the datapath at start).
    fn start(dir: &Path, capabilities: &[String]) -> Result<Daemon, String> {
        Self::start_with(dir, capabilities, &[])
    }

    /// [`Daemon::start`] with more daemon arguments.
    fn start_with(dir: &Path, capabilities: &[String], args: &[&str]) -> Result<Daemon, String> {
        // Its own state and pin directories: nothing of the host's default
        // ones is touched. bpffs itself must be mounted by the host (the
        // DaemonSet mounts /sys/fs/bpf from it; mounting needs SYS_ADMIN).
        mount_bpffs();
        // (bpffs names cannot contain dots, so not the temp dir's name.)
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let pins = Path::new("/sys/fs/bpf").join(format!(
            "oce-k8s-caps-{}-{}",
            std::process::id(),
            STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        Self::start_on(dir, pins, capabilities, args)
    }

    /// Stops the daemon (SIGTERM: everything stays pinned) and starts
    /// another on the same state and pins, as a restart does.
    fn restart(
        mut self,
        dir: &Path,
        capabilities: &[String],
        args: &[&str],
    ) -> Result<Daemon, String> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        // Keep the pins from `drop`: they are the restarted daemon's.
        let pins = std::mem::take(&mut self.pins);
        drop(self);
        Self::start_on(dir, pins, capabilities, args)
    }

    fn start_on(
        dir: &Path,
        pins: PathBuf,
        capabilities: &[String],
        args: &[&str],
    ) -> Result<Daemon, String> {
        let socket = dir.join("api.sock");
        let log = dir.join("daemon.log");
        let _ = std::fs::remove_file(&socket);
        let bounding: String = std::iter::once("-all".to_owned())
            .chain(
                capabilities
                    .iter()
                    .map(|c| format!("+{}", c.to_lowercase())),
            )
            .collect::<Vec<_>>()
            .join(",");
        // Its log (stdout) and errors (stderr), in one file.
        let output = std::fs::File::create(&log).unwrap();
        let mut child = Command::new("setpriv")
            .args([
                "--bounding-set",
                &bounding,
                "--inh-caps",
                "-all",
                "--no-new-privs",
                "--",
            ])
            .arg(DAEMON)
            .arg("--socket")
            .arg(&socket)
            .args(["daemon", "--metrics-addr", "none", "--state-dir"])
            .arg(dir.join("state"))
            .arg("--bpffs-dir")
            .arg(&pins)
            .args(args)
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("setpriv (util-linux) runs");
        let started = Instant::now();
        while !socket.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                let _ = std::fs::remove_dir_all(&pins);
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("the daemon exited ({status}): {output}"));
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the daemon did not start with {capabilities:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
        Ok(Daemon {
            child,
            socket,
            pins,
            log,
        })
    }

    /// What it printed so far (text log format).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 30 s for `done` to hold of its log.
    fn wait_for_log(&self, what: &str, done: impl Fn(&str) -> bool) {
        let started = Instant::now();
        while !done(&self.log()) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: not in the daemon's log: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(DAEMON)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM stops the daemon; what it pinned stays enforcing until
        // the pins go (the policy was removed already; this is for failures).
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
        if !self.pins.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.pins);
        }
    }
}

/// Mounts bpffs at /sys/fs/bpf unless something is mounted there already.
fn mount_bpffs() {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    if !mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        let status = Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status()
            .unwrap();
        assert!(status.success(), "mounting bpffs: {status}");
    }
}

/// A policy named `name` on `cgroup`.
fn policy_yaml(name: &str, cgroup: &Path) -> String {
    format!(
        "apiVersion: openclaw.io/v1\nkind: EgressPolicy\nmetadata: {{name: {name}}}\n\
         spec:\n  selector: {{cgroupPath: {}}}\n  dns: {{resolvers: [127.0.0.1]}}\n  \
         egress:\n    - cidr: 203.0.113.0/24\n      ports: [443/tcp]\n    \
         - fqdnPattern: \"*.example.test\"\n      ports: [443/tcp]\n",
        cgroup.display()
    )
}

/// Applies a policy on a fresh cgroup with only `capabilities`; the CLI's
/// output on failure.
fn apply_with(capabilities: &[String]) -> Result<(), String> {
    let scratch = tempfile::tempdir().unwrap();
    let cgroup = TestCgroup::new("k8s-caps");
    let name = format!("k8s-caps-{}", std::process::id());
    let policy = scratch.path().join("policy.yaml");
    std::fs::write(&policy, policy_yaml(&name, &cgroup.0)).unwrap();
    let daemon = Daemon::start(scratch.path(), capabilities)?;
    let applied = daemon.cli(&["apply", policy.to_str().unwrap()]);
    let result = if applied.status.success() {
        let status = daemon.cli(&["status"]);
        let status = String::from_utf8_lossy(&status.stdout);
        assert!(status.contains(&name), "{status}");
        let removed = daemon.cli(&["remove", &name]);
        assert!(removed.status.success(), "{removed:?}");
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&applied.stderr).into_owned())
    };
    drop(daemon);
    result
}

#[test]
fn k8s_capabilities_of_the_daemonset_are_enough_and_each_is_needed() {
    let capabilities = daemonset_capabilities();
    if let Err(error) = apply_with(&capabilities) {
        panic!("the daemon cannot apply a policy with {capabilities:?}: {error}");
    }
    for missing in &capabilities {
        let fewer: Vec<String> = capabilities
            .iter()
            .filter(|c| *c != missing)
            .cloned()
            .collect();
        let result = apply_with(&fewer);
        assert!(
            result.is_err(),
            "the daemon works without {missing}: drop it from deploy/daemonset.yaml"
        );
        let error = result.unwrap_err();
        // The failure is a permission error, not something unrelated.
        assert!(
            [
                "Operation not permitted",
                "Permission denied",
                "prohibited for !root"
            ]
            .iter()
            .any(|p| error.contains(p)),
            "without {missing}: {error}"
        );
    }
}

#[test]
fn systemd_unit_capabilities_are_enough_on_a_host() {
    let capabilities = unit_capabilities();
    let scratch = tempfile::tempdir().unwrap();
    let cgroup = TestCgroup::new("unit-caps");
    let name = format!("unit-caps-{}", std::process::id());
    let policies = scratch.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("agent.yaml"), policy_yaml(&name, &cgroup.0)).unwrap();
    let daemon = Daemon::start_with(
        scratch.path(),
        &capabilities,
        &["--policy-dir", policies.to_str().unwrap()],
    )
    .unwrap_or_else(|error| panic!("the daemon cannot start with {capabilities:?}: {error}"));
    daemon.wait_for_log("the policy file applied", |log| {
        assert!(
            !log.contains("policy not applied"),
            "with {capabilities:?}: {log}"
        );
        log.contains("policy applied")
    });
    let status = daemon.cli(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&name) && status.contains(&cgroup.0.display().to_string()),
        "{status}"
    );
    // `systemctl reload`: the directory is read again, the daemon lives on.
    // SAFETY: kill(2) on our own child's pid (setpriv execs the daemon).
    unsafe { libc::kill(daemon.child.id() as libc::pid_t, libc::SIGHUP) };
    daemon.wait_for_log("the re-read on SIGHUP", |log| {
        log.contains("re-reading the policy directory (SIGHUP)")
    });
    let log = daemon.log();
    // bpffs was there (as systemd mounts it at boot): nothing to mount, and
    // without CAP_SYS_ADMIN it could not have.
    assert!(!log.contains("mounted bpffs"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");

    // A restart (`Restart=on-failure`, an upgrade): the new daemon, with the
    // same capabilities, adopts what the old one left enforcing. (Its maps
    // are reopened from their pins: by id would take CAP_SYS_ADMIN.)
    let args = ["--policy-dir", policies.to_str().unwrap()];
    let daemon = daemon
        .restart(scratch.path(), &capabilities, &args)
        .unwrap_or_else(|error| panic!("the daemon cannot restart with {capabilities:?}: {error}"));
    daemon.wait_for_log("the policy adopted", |log| {
        assert!(
            !log.contains("cannot adopt"),
            "with {capabilities:?}: {log}"
        );
        log.contains("adopted policy left enforcing by an earlier daemon")
    });
    let log = daemon.log();
    assert!(!log.contains("without a policy record"), "{log}");
    // Managed again: the workload is the adopted instance's.
    let status = daemon.cli(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&name) && status.contains(&cgroup.0.display().to_string()),
        "{status}"
    );
    let removed = daemon.cli(&["remove", &name]);
    assert!(removed.status.success(), "{removed:?}");
    assert!(!daemon.log().contains("ERROR"), "{}", daemon.log());
}
