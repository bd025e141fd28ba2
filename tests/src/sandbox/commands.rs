//! Commands, background processes and TCP listeners placed in a sandbox netns and cgroup.

use std::{
    ffi::OsStr,
    fs::File,
    net::{SocketAddr, TcpListener},
    os::fd::AsRawFd as _,
    path::Path,
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, Result};

use super::Sandbox;
use crate::{background::Background, placement::Placement, process::ChildGuard};

impl Sandbox {
    /// A command that runs `program args` as `ip netns exec <agent> program
    /// args`, inside the sandbox cgroup (e.g. curl in the demo).
    ///
    /// `ip netns exec` also bind-mounts the sandbox's resolv.conf (names
    /// resolve through the world's DNS) and a fresh /sys (so /sys/fs/cgroup
    /// and /sys/fs/bpf are not visible to the program).
    pub fn command_in_agent(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> Result<Command> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.agent.name()])
            .arg(program)
            .args(args);
        Placement {
            cgroup_procs: Some(self.cgroup.open_procs()?),
            netns: None,
        }
        .apply(&mut command);
        Ok(command)
    }

    /// A command that runs `program args` in the agent netns but outside
    /// the sandbox cgroup (no cgroup policy applies to it), e.g. curl for
    /// the daemon's metrics or a look at the agent's /proc/net.
    ///
    /// Entered with setns(2) like [`Sandbox::command_in_world`], not `ip
    /// netns exec`: /sys and /etc/resolv.conf stay the host's.
    pub fn command_in_agent_outside_cgroup(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> Result<Command> {
        let mut command = Command::new(program);
        command.args(args);
        Placement {
            cgroup_procs: None,
            netns: Some(self.agent.open()?),
        }
        .apply(&mut command);
        Ok(command)
    }

    /// A command that runs `program args` in the agent netns inside
    /// `cgroup` (an absolute cgroup directory, e.g. one made by
    /// [`Sandbox::create_cgroup`]). Entered with setns(2), so /sys and
    /// /etc/resolv.conf stay the host's.
    pub fn command_in_cgroup(
        &self,
        cgroup: &Path,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> Result<Command> {
        let mut command = Command::new(program);
        command.args(args);
        Placement {
            cgroup_procs: Some(open_procs(cgroup)?),
            netns: Some(self.agent.open()?),
        }
        .apply(&mut command);
        Ok(command)
    }

    /// A command that runs `program args` in the world netns (not in the
    /// cgroup), e.g. to inspect it with `ip`/`ss`.
    pub fn command_in_world(
        &self,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> Result<Command> {
        let mut command = Command::new(program);
        command.args(args);
        Placement {
            cgroup_procs: None,
            netns: Some(self.world.open()?),
        }
        .apply(&mut command);
        Ok(command)
    }

    /// Starts `program args` in the agent netns inside `cgroup` and keeps
    /// it running (until the returned guard drops): e.g. a pod's "pause"
    /// process, through which a daemon can find the pod's network
    /// namespace.
    pub fn spawn_in_cgroup(
        &self,
        cgroup: &Path,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    ) -> Result<Background> {
        let mut command = self.command_in_cgroup(cgroup, program, args)?;
        let child = ChildGuard::spawn("background process", &mut command, Duration::from_secs(2))?;
        Ok(Background { child })
    }

    /// Binds a TCP listener on `addr` in the agent netns (e.g.
    /// `127.0.0.1:0`), for servers the daemon talks to, such as a fake
    /// Kubernetes API server. The socket belongs to the agent netns for
    /// good; it can be served from any thread.
    pub fn bind_tcp_in_agent(&self, addr: SocketAddr) -> Result<TcpListener> {
        let netns = self.agent.open()?;
        // setns(2) with CLONE_NEWNET changes only the calling thread's
        // namespace: a short-lived thread binds, the test's own threads stay
        // where they are.
        std::thread::spawn(move || -> Result<TcpListener> {
            // SAFETY: setns(2) on an fd we own, for this thread only.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("setns into the agent netns");
            }
            TcpListener::bind(addr).with_context(|| format!("binding {addr} in the agent netns"))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the binding thread panicked"))?
    }

    /// [`Sandbox::bind_tcp_in_agent`] in the WORLD netns, e.g. for a fake
    /// Kubernetes API server that a daemon running in the world netns
    /// reaches on its loopback.
    pub fn bind_tcp_in_world(&self, addr: SocketAddr) -> Result<TcpListener> {
        let netns = self.world.open()?;
        std::thread::spawn(move || -> Result<TcpListener> {
            // SAFETY: setns(2) on an fd we own, for this thread only.
            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error()).context("setns into the world netns");
            }
            TcpListener::bind(addr).with_context(|| format!("binding {addr} in the world netns"))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the binding thread panicked"))?
    }
}

/// `cgroup.procs` of `cgroup`, open for writing (see `placement.rs`).
pub(super) fn open_procs(cgroup: &Path) -> Result<File> {
    let procs = cgroup.join("cgroup.procs");
    File::options()
        .write(true)
        .open(&procs)
        .with_context(|| format!("opening {} for writing", procs.display()))
}
