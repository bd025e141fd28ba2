//! The Rig (a sandbox, its world and a daemon on either side): starting it and restarting its daemon.

use super::*;

/// Where the daemon runs, and so which hooks a test's policy uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonSide {
    /// In the agent netns; policies select the sandbox cgroup and probes run
    /// inside it.
    Agent,
    /// In the world netns; policies select the world's `eth0` (TC) and
    /// probes run outside the sandbox cgroup, so only TC can stop them.
    World,
    /// In the world netns; policies select the sandbox cgroup AND the
    /// world's `eth0` (both layers), and probes run inside the cgroup: a
    /// workload whose every packet also crosses the host side of its veth.
    Both,
}

/// One test's world: a sandbox, the fake internet and a real daemon.
///
/// Fields drop in declaration order: the daemon first (detaching its
/// programs), then the world servers, then the namespaces and cgroup.
pub struct Rig {
    pub daemon: Daemon,
    pub world: World,
    pub sandbox: Sandbox,
    pub side: DaemonSide,
}

impl Rig {
    /// A sandbox running `world` and `openclaw-egress daemon` in the agent
    /// netns (no policy yet).
    pub fn start(world: &WorldConfig) -> Self {
        Self::start_on(world, DaemonSide::Agent)
    }

    /// A sandbox running `world` and `openclaw-egress daemon` in the world
    /// netns, for interface (TC) policies on the world's `eth0`.
    pub fn start_tc(world: &WorldConfig) -> Self {
        Self::start_on(world, DaemonSide::World)
    }

    /// A sandbox running `world` and `openclaw-egress daemon` in the world
    /// netns, for policies on the sandbox cgroup and the world's `eth0`
    /// together ([`DaemonSide::Both`]).
    pub fn start_both(world: &WorldConfig) -> Self {
        Self::start_on(world, DaemonSide::Both)
    }

    /// [`Rig::start`] with these daemon flags (e.g. `--flow-log`).
    pub fn start_with_args(world: &WorldConfig, daemon_args: &[&str]) -> Self {
        Self::start_with(world, DaemonSide::Agent, daemon_args)
    }

    fn start_on(world: &WorldConfig, side: DaemonSide) -> Self {
        Self::start_with(world, side, &[])
    }

    fn start_with(world: &WorldConfig, side: DaemonSide, daemon_args: &[&str]) -> Self {
        let sandbox = Sandbox::new().expect("creating the sandbox");
        let world = sandbox
            .start_world(world)
            .unwrap_or_else(|e| panic!("starting oce-world: {e:#}"));
        let bin = binary_path("openclaw-egress");
        assert!(
            bin.is_file(),
            "{} is missing: run `cargo build --bins` first (or set OPENCLAW_EGRESS_BIN_DIR)",
            bin.display()
        );
        let daemon = match side {
            DaemonSide::Agent => sandbox.spawn_daemon_with_args(&bin, daemon_args),
            DaemonSide::World | DaemonSide::Both => {
                sandbox.spawn_daemon_in_world(&bin, daemon_args)
            }
        }
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
        Self {
            daemon,
            world,
            sandbox,
            side,
        }
    }

    /// Starts another daemon on this sandbox's state and pin directories,
    /// as a restart would (the current one must have exited, e.g. after
    /// [`Daemon::kill`] or [`Daemon::terminate`]), and returns the old one,
    /// whose log stays readable.
    #[track_caller]
    pub fn restart_daemon(&mut self) -> Daemon {
        let bin = binary_path("openclaw-egress");
        let daemon = match self.side {
            DaemonSide::Agent => self.sandbox.spawn_daemon(&bin),
            DaemonSide::World | DaemonSide::Both => self.sandbox.spawn_daemon_in_world(&bin, &[]),
        }
        .unwrap_or_else(|e| panic!("restarting the daemon: {e:#}"));
        std::mem::replace(&mut self.daemon, daemon)
    }
}

/// [`Rig::restart_daemon`] for an agent-side rig, on its fields: usable
/// while other code holds on to the rig's sandbox (e.g. a prober thread).
#[track_caller]
pub fn restart_daemon(sandbox: &Sandbox, daemon: &mut Daemon) -> Daemon {
    let new = sandbox
        .spawn_daemon(&binary_path("openclaw-egress"))
        .unwrap_or_else(|e| panic!("restarting the daemon: {e:#}"));
    std::mem::replace(daemon, new)
}
