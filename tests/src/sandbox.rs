//! The sandbox: agent netns + world netns + veth + cgroup, all torn down on
//! drop.

use std::{
    ffi::OsStr,
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Once,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use serde::de::DeserializeOwned;

use crate::{
    background::Background,
    bins::binary_path,
    cgroup::{self, CgroupGuard},
    daemon::Daemon,
    netns::{self, NetnsGuard, ip},
    placement::Placement,
    probe::{ProbeOutcome, parse_last_line},
    process::{ChildGuard, run_with_deadline},
    root::is_root,
    world::{World, WorldConfig},
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

    /// Adds `ip` to the world's `lo` (as /32 or /128), so that the agent can
    /// reach it through its default route. Adding it twice is fine.
    pub fn add_world_host(&self, ip: IpAddr) -> Result<()> {
        let (cidr, nodad) = match ip {
            IpAddr::V4(v4) => (format!("{v4}/32"), None),
            IpAddr::V6(v6) => (format!("{v6}/128"), Some("nodad")),
        };
        let mut args = vec!["-n", self.world.name(), "addr", "add", &cidr, "dev", "lo"];
        args.extend(nodad);
        match ip_tolerating_exists(&args) {
            Ok(()) => Ok(()),
            Err(err) => Err(err).context(format!("adding world host {ip}")),
        }
    }

    /// Starts `oce-world` in the world netns and waits until it serves.
    ///
    /// Every address a server listens on (other than the veth subnets,
    /// loopback and wildcards) is added as a world host first.
    pub fn start_world(&self, config: &WorldConfig) -> Result<World> {
        for ip in config.listen_ips() {
            if !on_veth_subnet(ip) && !ip.is_loopback() && !ip.is_unspecified() {
                self.add_world_host(ip)?;
            }
        }
        let mut command = Command::new(binary_path("oce-world"));
        command.args(config.to_args());
        Placement {
            cgroup_procs: None,
            netns: Some(self.world.open()?),
        }
        .apply(&mut command);
        let child = ChildGuard::spawn("oce-world", &mut command, Duration::from_secs(2))?;
        World::wait_ready(child)
    }

    /// Runs `oce-probe <args>` in the agent netns and inside the sandbox
    /// cgroup (so the policy applies to it).
    pub fn probe(&self, args: &[&str]) -> Result<ProbeOutcome> {
        self.run_probe(args, true)
    }

    /// Runs `oce-probe <args>` in the agent netns but outside the cgroup: a
    /// baseline that no cgroup policy applies to.
    pub fn probe_outside_cgroup(&self, args: &[&str]) -> Result<ProbeOutcome> {
        self.run_probe(args, false)
    }

    fn run_probe(&self, args: &[&str], in_cgroup: bool) -> Result<ProbeOutcome> {
        ProbeOutcome::parse(&self.run_probe_stdout(args, in_cgroup)?)
    }

    /// Runs `oce-probe <args>` in the agent netns inside `cgroup` (an
    /// absolute cgroup directory, e.g. one made by
    /// [`Sandbox::create_cgroup`]): a workload other than the sandbox
    /// cgroup itself, such as a pod's cgroup.
    pub fn probe_in_cgroup(&self, cgroup: &Path, args: &[&str]) -> Result<ProbeOutcome> {
        let procs = open_procs(cgroup)?;
        ProbeOutcome::parse(&self.run_probe_placed(args, Some(procs))?)
    }

    /// [`Sandbox::probe_json`] inside `cgroup` (see
    /// [`Sandbox::probe_in_cgroup`]).
    pub fn probe_json_in_cgroup<T: DeserializeOwned>(
        &self,
        cgroup: &Path,
        args: &[&str],
    ) -> Result<T> {
        let procs = open_procs(cgroup)?;
        parse_last_line(&self.run_probe_placed(args, Some(procs))?)
    }

    /// Runs `oce-probe <args>` in the agent netns and inside the sandbox
    /// cgroup, and parses its JSON line as `T`: for the subcommands whose
    /// report is not a [`ProbeOutcome`] (`resolve-connect` gives a
    /// [`crate::ResolveConnectReport`], `hold` a [`crate::HoldReport`]).
    pub fn probe_json<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        parse_last_line(&self.run_probe_stdout(args, true)?)
    }

    /// [`Sandbox::probe_json`] outside the cgroup.
    pub fn probe_json_outside_cgroup<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        parse_last_line(&self.run_probe_stdout(args, false)?)
    }

    /// Starts `oce-probe <args>` in the agent netns, inside `cgroup` (an
    /// absolute cgroup directory, e.g. [`Sandbox::cgroup_path`]) or, with
    /// `None`, outside any sandbox cgroup, and returns at once: for probes
    /// that hold a socket open while the test does something else (e.g.
    /// `udp-listen`). Read its lines with [`Background::wait_for_outcome`].
    pub fn spawn_probe(&self, cgroup: Option<&Path>, args: &[&str]) -> Result<Background> {
        let mut command = Command::new(binary_path("oce-probe"));
        command.args(args);
        Placement {
            cgroup_procs: cgroup.map(open_procs).transpose()?,
            netns: Some(self.agent.open()?),
        }
        .apply(&mut command);
        let child = ChildGuard::spawn("oce-probe", &mut command, Duration::from_secs(2))?;
        Ok(Background { child })
    }

    /// Runs `oce-probe <args>` in the WORLD netns (outside any cgroup), e.g.
    /// `forge-answer`, for what an attacker elsewhere on the network (or a
    /// compromised resolver path) could send towards the agent.
    pub fn probe_in_world(&self, args: &[&str]) -> Result<ProbeOutcome> {
        let mut command = self.command_in_world(binary_path("oce-probe"), args)?;
        let output = run_with_deadline(&mut command, PROBE_DEADLINE)
            .with_context(|| format!("running oce-probe {} in the world", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "oce-probe {} (world) failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                stdout.trim()
            );
        }
        ProbeOutcome::parse(&stdout)
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

    /// The MAC address of the world's `eth0`: the agent's gateway, for
    /// frames built by hand (`oce-probe packet-send --dst-mac`).
    pub fn world_mac(&self) -> Result<String> {
        let output = ip(&["-n", self.world.name(), "-j", "link", "show", "dev", "eth0"])?;
        let out = String::from_utf8_lossy(&output.stdout);
        let links: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("parsing `ip -j link`: {out}"))?;
        links[0]["address"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no address in `ip -j link`: {out}"))
    }

    /// Sets a sysctl inside the world netns (`key` as for sysctl(8), e.g.
    /// `net.ipv4.conf.all.accept_source_route`): e.g. to make the world
    /// honour source routes, so that a test can show a real bypass.
    pub fn world_sysctl(&self, key: &str, value: &str) -> Result<()> {
        let mut command =
            self.command_in_world("sysctl", ["-q", "-w", &format!("{key}={value}")])?;
        let output = run_with_deadline(&mut command, PROBE_DEADLINE)?;
        if !output.status.success() {
            bail!(
                "sysctl -w {key}={value} in the world failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Runs oce-probe to completion; its stdout, or an error if it exited
    /// non-zero (a usage error: the probe itself reports failures as JSON).
    fn run_probe_stdout(&self, args: &[&str], in_cgroup: bool) -> Result<String> {
        let procs = in_cgroup.then(|| self.cgroup.open_procs()).transpose()?;
        self.run_probe_placed(args, procs)
    }

    /// Runs oce-probe in the agent netns, in the cgroup whose `cgroup.procs`
    /// is given (else in the caller's cgroup).
    fn run_probe_placed(&self, args: &[&str], cgroup_procs: Option<File>) -> Result<String> {
        let mut command = Command::new(binary_path("oce-probe"));
        command.args(args);
        Placement {
            cgroup_procs,
            netns: Some(self.agent.open()?),
        }
        .apply(&mut command);
        let output = run_with_deadline(&mut command, PROBE_DEADLINE)
            .with_context(|| format!("running oce-probe {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "oce-probe {} failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                stdout.trim()
            );
        }
        Ok(stdout.into_owned())
    }

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

    /// A counter of the agent netns's `/proc/net/snmp`, e.g. `("Tcp",
    /// "RetransSegs")`. The file is per network namespace; it is read by a
    /// `cat` that joined the agent netns.
    pub fn agent_snmp_counter(&self, protocol: &str, field: &str) -> Result<u64> {
        let mut command = self.command_in_agent_outside_cgroup("cat", ["/proc/net/snmp"])?;
        let output = run_with_deadline(&mut command, PROBE_DEADLINE)?;
        if !output.status.success() {
            bail!(
                "reading the agent's /proc/net/snmp failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        snmp_counter(&String::from_utf8_lossy(&output.stdout), protocol, field)
    }

    /// TCP segments the agent netns has retransmitted so far (`Tcp:
    /// RetransSegs`, SYNs included). A test takes the difference before and
    /// after what it checks: a packet dropped on its way out shows up here
    /// even when the connection eventually works.
    pub fn agent_tcp_retransmits(&self) -> Result<u64> {
        self.agent_snmp_counter("Tcp", "RetransSegs")
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

    /// Pids currently in the sandbox cgroup.
    pub fn cgroup_pids(&self) -> Vec<i32> {
        cgroup::pids(self.cgroup.path())
    }

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

/// `cgroup.procs` of `cgroup`, open for writing (see `placement.rs`).
fn open_procs(cgroup: &Path) -> Result<File> {
    let procs = cgroup.join("cgroup.procs");
    File::options()
        .write(true)
        .open(&procs)
        .with_context(|| format!("opening {} for writing", procs.display()))
}

/// The value of `field` in the `protocol` lines of a `/proc/net/snmp` text
/// (a header line `Tcp: Name1 Name2 ...`, then `Tcp: value1 value2 ...`).
fn snmp_counter(text: &str, protocol: &str, field: &str) -> Result<u64> {
    let prefix = format!("{protocol}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        bail!("no {protocol} lines in /proc/net/snmp:\n{text}");
    };
    let index = names
        .split_whitespace()
        .position(|n| n == field)
        .with_context(|| format!("no {protocol} {field} in /proc/net/snmp: {names}"))?;
    let value = values
        .split_whitespace()
        .nth(index)
        .with_context(|| format!("no value for {protocol} {field} in {values:?}"))?;
    value
        .parse()
        .with_context(|| format!("{protocol} {field} is not a counter: {value:?}"))
}

/// True for addresses of the veth link (10.77.0.0/24, fd77::/64): they are
/// never world hosts.
fn on_veth_subnet(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == WORLD_IPV4.octets()[..3],
        IpAddr::V6(v6) => v6.segments()[..4] == WORLD_IPV6.segments()[..4],
    }
}

/// Runs `ip`, treating "address already there" as success. iproute2 6.1
/// says "Error: ipv4: Address already assigned." for IPv4 and "RTNETLINK
/// answers: File exists" for IPv6.
fn ip_tolerating_exists(args: &[&str]) -> Result<()> {
    match ip(args) {
        Ok(_) => Ok(()),
        Err(err) => {
            let text = format!("{err:#}");
            if text.contains("File exists") || text.contains("already assigned") {
                Ok(())
            } else {
                Err(err)
            }
        }
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

/// Removes sandboxes left behind by processes that no longer exist
/// (namespaces, cgroups, /etc/netns entries and scratch dirs named
/// `oce-<pid>-...` whose pid is dead). Sandboxes of live processes, e.g. a
/// test binary running in parallel, are left alone.
///
/// [`Sandbox::new`] calls it once per process, before its first sandbox;
/// calling it while this process has sandboxes would remove them.
pub fn remove_stale_sandboxes() -> Result<()> {
    let is_stale = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            return false;
        };
        let mut parts = rest.split('-');
        let (Some(pid), Some(counter)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), counter.parse::<u32>()) else {
            return false;
        };
        // Our own pid counts as stale too: this runs before this process
        // creates any sandbox, so such names come from an earlier process
        // that had the same pid.
        pid == std::process::id() || !Path::new("/proc").join(pid.to_string()).exists()
    };
    let names_in = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| is_stale(n))
                    .collect()
            })
            .unwrap_or_default()
    };

    for name in netns::list()?.into_iter().filter(|n| is_stale(n)) {
        netns::delete(&name)?;
    }
    let mount = cgroup::cgroup2_mount()?;
    for name in names_in(&mount) {
        cgroup::remove_cgroup(&mount.join(name))?;
    }
    for dir in [
        Path::new("/etc/netns"),
        &std::env::temp_dir(),
        Path::new(BPFFS),
    ] {
        for name in names_in(dir) {
            std::fs::remove_dir_all(dir.join(&name))
                .with_context(|| format!("removing {}", dir.join(name).display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_counter_reads_the_value_under_its_name() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Tcp: RtoAlgorithm RtoMin RetransSegs InErrs\nTcp: 1 200 17 0\n\
            Udp: InDatagrams\nUdp: 5\n";
        assert_eq!(snmp_counter(text, "Tcp", "RetransSegs").unwrap(), 17);
        assert_eq!(snmp_counter(text, "Udp", "InDatagrams").unwrap(), 5);
        assert!(snmp_counter(text, "Tcp", "Nope").is_err());
        assert!(snmp_counter(text, "Icmp", "InMsgs").is_err());
    }
}
