//! The DaemonSet's capabilities are enough, and each one is needed: the
//! real daemon runs with exactly the capability set of
//! `deploy/daemonset.yaml` (as the container runtime would give it: uid 0,
//! bounding set = the added capabilities, no_new_privs) and applies a policy
//! to a fresh cgroup; then once more without each capability, and the
//! apply must fail.
//!
//! Needs root (it creates a cgroup and loads programs), like the kernel
//! tests, and `setpriv` (util-linux). The policy has no `fqdn` rules, so
//! the daemon sends no DNS query.

mod k8s_common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
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

/// A cgroup v2 directory that is removed again.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new() -> TestCgroup {
        let mount = openclaw_egress::cgroup::cgroup2_mount().expect("cgroup v2 is mounted");
        let path = mount.join(format!("openclaw-k8s-caps-{}", std::process::id()));
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
}

impl Daemon {
    /// The daemon running with only `capabilities`, or what it printed
    /// when it could not start (it loads the datapath at start).
    fn start(dir: &Path, capabilities: &[String]) -> Result<Daemon, String> {
        let socket = dir.join("api.sock");
        let log = dir.join("daemon.log");
        let _ = std::fs::remove_file(&socket);
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
        let bounding: String = std::iter::once("-all".to_owned())
            .chain(
                capabilities
                    .iter()
                    .map(|c| format!("+{}", c.to_lowercase())),
            )
            .collect::<Vec<_>>()
            .join(",");
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
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
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
        })
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
        let _ = std::fs::remove_dir_all(&self.pins);
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

/// Applies a policy on a fresh cgroup with only `capabilities`; the CLI's
/// output on failure.
fn apply_with(capabilities: &[String]) -> Result<(), String> {
    let scratch = tempfile::tempdir().unwrap();
    let cgroup = TestCgroup::new();
    let name = format!("k8s-caps-{}", std::process::id());
    let policy = scratch.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: openclaw.io/v1\nkind: EgressPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  selector: {{cgroupPath: {}}}\n  dns: {{resolvers: [127.0.0.1]}}\n  \
             egress:\n    - cidr: 203.0.113.0/24\n      ports: [443/tcp]\n    \
             - fqdnPattern: \"*.example.test\"\n      ports: [443/tcp]\n",
            cgroup.0.display()
        ),
    )
    .unwrap();
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
