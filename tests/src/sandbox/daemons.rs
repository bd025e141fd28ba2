//! Spawning `openclaw-egress daemon` in the agent or world netns, on the sandbox's directories.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Result;

use super::{Sandbox, commands::open_procs};
use crate::{daemon::Daemon, netns::NetnsGuard, placement::Placement, process::ChildGuard};

impl Sandbox {
    /// Starts `bin daemon` in the agent netns (not in the cgroup), with its
    /// API socket in the scratch dir, and waits until it listens.
    ///
    /// The agent netns because the daemon resolves names through the
    /// policy's resolvers (10.77.0.1), reachable only from there. Entered
    /// with setns, not `ip netns exec`, which would hide /sys/fs/bpf and
    /// /sys/fs/cgroup behind a fresh /sys.
    pub fn spawn_daemon(&self, bin: &Path) -> Result<Daemon> {
        self.spawn_daemon_with_args(bin, &[])
    }

    /// Where this sandbox's daemons pin their programs and maps (on bpffs;
    /// removed, which detaches them, when the sandbox is dropped).
    pub fn pins_dir(&self) -> &Path {
        &self.pins.0
    }

    /// [`Sandbox::spawn_daemon`] with extra daemon arguments.
    pub fn spawn_daemon_with_args(&self, bin: &Path, extra_args: &[&str]) -> Result<Daemon> {
        self.spawn_daemon_in(&self.agent, bin, extra_args, &[])
    }

    /// [`Sandbox::spawn_daemon_with_args`], with the daemon placed in
    /// `cgroup` (an absolute cgroup directory, e.g. one made by
    /// [`Sandbox::create_cgroup`]) before it execs: its own cgroup and its
    /// ancestors are then the test's, not the host's.
    pub fn spawn_daemon_in_cgroup(
        &self,
        bin: &Path,
        cgroup: &Path,
        extra_args: &[&str],
    ) -> Result<Daemon> {
        let placement = Placement {
            cgroup_procs: Some(open_procs(cgroup)?),
            netns: Some(self.agent.open()?),
        };
        self.spawn_daemon_placed(placement, bin, extra_args, &[])
    }

    /// [`Sandbox::spawn_daemon_with_args`] with extra environment variables
    /// (e.g. `KUBECONFIG` and `NODE_NAME` for `--kubernetes`). Proxy and
    /// in-cluster variables of the test's own environment are removed, so
    /// that the daemon talks to exactly the servers the test set up.
    pub fn spawn_daemon_with_env(
        &self,
        bin: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        self.spawn_daemon_in(&self.agent, bin, extra_args, env)
    }

    /// Where this sandbox's daemons keep their policy records
    /// (`--state-dir`, in the scratch dir): a restarted daemon finds its
    /// predecessor's records there.
    pub fn state_dir(&self) -> PathBuf {
        self.scratch_dir().join("state")
    }

    /// Starts `bin daemon` in the WORLD netns, with its API socket in the
    /// scratch dir, and waits until it listens.
    ///
    /// For interface (TC) policies: the world's `eth0` then plays the host
    /// side of the workload's veth (what the agent sends arrives there as
    /// ingress, what it receives leaves there as egress), and the policy's
    /// resolver 10.77.0.1 is the world's own address. Its metrics listener
    /// is on the world's loopback.
    pub fn spawn_daemon_in_world(&self, bin: &Path, extra_args: &[&str]) -> Result<Daemon> {
        self.spawn_daemon_in(&self.world, bin, extra_args, &[])
    }

    /// [`Sandbox::spawn_daemon_in_world`] with extra environment variables
    /// (as [`Sandbox::spawn_daemon_with_env`]), e.g. a `--kubernetes`
    /// daemon that attaches TC on the host side of pods' veths.
    pub fn spawn_daemon_in_world_with_env(
        &self,
        bin: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        self.spawn_daemon_in(&self.world, bin, extra_args, env)
    }

    fn spawn_daemon_in(
        &self,
        netns: &NetnsGuard,
        bin: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let placement = Placement {
            cgroup_procs: None,
            netns: Some(netns.open()?),
        };
        self.spawn_daemon_placed(placement, bin, extra_args, env)
    }

    fn spawn_daemon_placed(
        &self,
        placement: Placement,
        bin: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon> {
        let socket = self.scratch_dir().join("api.sock");
        // A previous daemon of this sandbox may have left its socket behind.
        let _ = std::fs::remove_file(&socket);
        let state = self.state_dir();
        let mut command = Daemon::command(bin, &socket, &state, self.pins_dir(), extra_args);
        if !env.is_empty() {
            for name in PROXY_AND_CLUSTER_ENV {
                command.env_remove(name);
            }
            command.envs(env.iter().copied());
        }
        placement.apply(&mut command);
        let child = ChildGuard::spawn(
            "openclaw-egress daemon",
            &mut command,
            Duration::from_secs(5),
        )?;
        Daemon::wait_ready(bin, &socket, child)
    }
}

/// Variables that would send the daemon's HTTP clients elsewhere than the
/// test's own servers (see [`Sandbox::spawn_daemon_with_env`]).
const PROXY_AND_CLUSTER_ENV: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
];
