//! The sandbox: agent netns + world netns + veth + cgroup, all torn down on
//! drop.

mod commands;
mod daemons;
mod probes;
mod snmp_counters;
mod stale_sandboxes;
mod world_side;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};

pub use self::stale_sandboxes::remove_stale_sandboxes;
use crate::{
    cgroup::{self, CgroupGuard},
    netns::{NetnsGuard, ip},
    root::is_root,
};

/// The agent's address on its `eth0`.
pub const AGENT_IPV4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const AGENT_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);
/// The world's address on its `eth0`: the agent's gateway and DNS server.
pub const WORLD_IPV4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const WORLD_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);

/// bpffs, where daemons pin (each sandbox's daemons under their own directory).
const BPFFS: &str = "/sys/fs/bpf";

/// Prefix of every name a sandbox creates; names are
/// `oce-<pid>-<counter>[-a|-w]`, unique per process and across processes.
const NAME_PREFIX: &str = "oce-";

/// Longest a probe may run; its own timeouts are much shorter.
const PROBE_DEADLINE: Duration = Duration::from_secs(30);

/// A directory removed on drop.
#[derive(Debug)]
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "openclaw-egress-e2e: cleanup: removing {}: {err}",
                self.0.display()
            );
        }
    }
}

/// An agent netns and a world netns joined by a veth pair, and a cgroup for
/// the workload. See the crate docs for the topology.
///
/// Dropping it kills everything left in the cgroup and in both namespaces
/// and removes them, the resolv.conf and the scratch directory.
#[derive(Debug)]
pub struct Sandbox {
    // Fields drop in declaration order: the daemon's pins first (unpinning
    // detaches what a daemon left enforcing: daemons keep enforcement when
    // they stop), then the cgroup (killing probes and curls), then the
    // namespaces (killing world servers and daemons that outlived their
    // guards), then files.
    pins: DirGuard,
    cgroup: CgroupGuard,
    agent: NetnsGuard,
    world: NetnsGuard,
    _resolv_conf: DirGuard,
    scratch: DirGuard,
    id: String,
}

impl Sandbox {
    /// Builds a new sandbox. Needs root.
    pub fn new() -> Result<Self> {
        if !is_root() {
            bail!("a sandbox needs root (network namespaces, cgroups)");
        }
        // A test binary killed by SIGKILL (a CI timeout) cannot clean up;
        // its leftovers are recognised by their dead pid.
        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| {
            if let Err(err) = remove_stale_sandboxes() {
                eprintln!("openclaw-egress-e2e: removing stale sandboxes: {err:#}");
            }
            // Mounted once here, rather than by whichever of several
            // parallel daemons gets there first (two racing mounts would
            // stack, hiding the first one's pins).
            if let Err(err) = mount_bpffs() {
                eprintln!("openclaw-egress-e2e: mounting bpffs: {err:#}");
            }
        });

        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );

        let scratch = DirGuard(std::env::temp_dir().join(&id));
        std::fs::create_dir(&scratch.0)
            .with_context(|| format!("creating {}", scratch.0.display()))?;
        let pins = DirGuard(Path::new(BPFFS).join(&id));
        let cgroup = CgroupGuard::create(&id)?;
        let agent = NetnsGuard::create(&format!("{id}-a"))?;
        let world = NetnsGuard::create(&format!("{id}-w"))?;
        let resolv_conf = DirGuard(Path::new("/etc/netns").join(agent.name()));

        let sandbox = Self {
            pins,
            cgroup,
            agent,
            world,
            _resolv_conf: resolv_conf,
            scratch,
            id,
        };
        sandbox.wire()?;
        sandbox.write_resolv_conf()?;
        Ok(sandbox)
    }

    /// Creates the veth pair and addresses the two ends.
    fn wire(&self) -> Result<()> {
        let (a, w) = (self.agent.name(), self.world.name());
        // Both ends are created directly inside their namespaces, so no
        // interface ever appears in the root netns (iproute2 6.1 accepts
        // `netns` on both sides of a veth).
        ip(&[
            "link", "add", "eth0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", w,
        ])?;
        let v4 = |ip: Ipv4Addr| format!("{ip}/24");
        let v6 = |ip: Ipv6Addr| format!("{ip}/64");
        for (ns, my4, my6) in [
            (w, v4(WORLD_IPV4), v6(WORLD_IPV6)),
            (a, v4(AGENT_IPV4), v6(AGENT_IPV6)),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", &my4, "dev", "eth0"])?;
            // nodad: without it the address is "tentative" for about a
            // second and neither bind() nor connect() can use it.
            ip(&["-n", ns, "addr", "add", &my6, "dev", "eth0", "nodad"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        // The agent's only way out is the world.
        let (gw4, gw6) = (WORLD_IPV4.to_string(), WORLD_IPV6.to_string());
        ip(&["-n", a, "route", "add", "default", "via", &gw4])?;
        ip(&["-n", a, "-6", "route", "add", "default", "via", &gw6])?;
        Ok(())
    }

    /// `ip netns exec` bind-mounts /etc/netns/<name>/resolv.conf over
    /// /etc/resolv.conf, so programs run with [`Sandbox::command_in_agent`]
    /// resolve through the world's DNS server.
    fn write_resolv_conf(&self) -> Result<()> {
        let dir = Path::new("/etc/netns").join(self.agent.name());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("resolv.conf");
        std::fs::write(&file, format!("nameserver {WORLD_IPV4}\n"))
            .with_context(|| format!("writing {}", file.display()))
    }

    /// The unique name of this sandbox (`oce-<pid>-<counter>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn agent_netns(&self) -> &str {
        self.agent.name()
    }

    pub fn world_netns(&self) -> &str {
        self.world.name()
    }

    /// The sandbox cgroup, absolute.
    pub fn cgroup_path(&self) -> &Path {
        self.cgroup.path()
    }

    /// The sandbox cgroup relative to the cgroup2 mount (no leading `/`).
    pub fn cgroup_relative(&self) -> &str {
        self.cgroup.relative()
    }

    /// A private directory (under $TMPDIR) for policies, sockets, logs;
    /// removed on drop.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch.0
    }

    /// Creates the cgroup `<sandbox cgroup>/<name>` (e.g. a pod's cgroup for
    /// a Kubernetes test) and returns its absolute path; it is removed with
    /// the sandbox. A policy on it filters only what runs in it; note that
    /// programs attached to the sandbox cgroup apply to it too (cgroup_skb
    /// programs are inherited by descendants).
    pub fn create_cgroup(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            bail!("{name:?} is not a cgroup directory name");
        }
        let path = self.cgroup.path().join(name);
        std::fs::create_dir(&path)
            .with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(path)
    }

    /// Pids currently in the sandbox cgroup.
    pub fn cgroup_pids(&self) -> Vec<i32> {
        cgroup::pids(self.cgroup.path())
    }
}

/// Mounts bpffs at /sys/fs/bpf unless it is mounted already.
fn mount_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(BPFFS) && fields.next() == Some("bpf")
    });
    if !mounted {
        let status = Command::new("mount")
            .args(["-t", "bpf", "bpf", BPFFS])
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!("mount -t bpf bpf {BPFFS}: {status}");
        }
    }
    Ok(())
}
