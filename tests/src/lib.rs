//! End-to-end harness for openclaw-egress.
//!
//! A [`Sandbox`] is a throw-away piece of network: an "agent" network
//! namespace (where the workload under policy runs) wired by a veth pair to a
//! "world" network namespace (a fake internet served by `oce-world`), plus a
//! fresh cgroup v2 directory for the workload. Nothing in it can reach the
//! real network, and everything is torn down on drop, also when a test
//! panics.
//!
//! ```text
//!   agent netns  <sandbox>-a              world netns  <sandbox>-w
//!   eth0 10.77.0.2/24  fd77::2/64  <--->  eth0 10.77.0.1/24  fd77::1/64
//!   default via 10.77.0.1 / fd77::1       lo: world hosts (203.0.113.10/32, ...)
//!   cgroup <cgroup2>/<sandbox>            oce-world: DNS, TCP, UDP, HTTP
//! ```
//!
//! Processes are placed with setns(2) and a write to `cgroup.procs` between
//! fork and exec, so every socket a probe creates belongs to the sandbox
//! cgroup from the start. Names are `oce-<pid>-<counter>` (`-a`/`-w` for the
//! namespaces), so tests can run in parallel, within one test binary and
//! across binaries; leftovers of killed processes are removed by the next
//! process's first [`Sandbox::new`].
//!
//! Running: root only. `cargo build -p openclaw-egress-e2e --bins` (and
//! `-p openclaw-egress` for the daemon) puts the binaries in
//! `target/<profile>/`, where [`binary_path`] finds them; set
//! `OPENCLAW_EGRESS_BIN_DIR` to use others.
//!
//! The library does not depend on the `openclaw-egress` crate (its build
//! needs the BPF toolchain); it drives the `openclaw-egress` binary as a
//! subprocess ([`Daemon`]), so `xtask` can use it too.
//!
//! The daemon runs in the agent netns for cgroup policies
//! ([`Sandbox::spawn_daemon`]), or in the world netns for interface (TC)
//! policies ([`Sandbox::spawn_daemon_in_world`]), where the world's `eth0`
//! plays the host side of the workload's veth. Its drop events can be read
//! typed ([`Daemon::drop_events`], [`DropEvent`]), its metrics parsed
//! ([`Daemon::metrics`], [`Metrics`]); [`PolicyYaml`] writes policies.
//!
//! `oce-probe` reports one [`ProbeOutcome`] per exchange, except for two
//! longer runs in one process, read with [`Sandbox::probe_json`]:
//! `resolve-connect` (lookups each followed at once by a connect to the
//! answer, [`ResolveConnectReport`]) and `hold` (one connection used for a
//! while, [`HoldReport`]). [`Sandbox::agent_tcp_retransmits`] shows whether
//! any segment had to be sent twice.
//!
//! For the operational side: [`Daemon::kill`] and [`Daemon::terminate`]
//! stop a daemon and a second [`Sandbox::spawn_daemon`] starts another on
//! the same state and pin directories ([`Sandbox::state_dir`],
//! [`Sandbox::pins_dir`]), as a restart would; [`Sandbox::create_cgroup`]
//! and [`Sandbox::probe_in_cgroup`] give more workloads than the sandbox
//! cgroup (pods), and [`kube::FakeKubeApi`] plays the Kubernetes API server
//! for `daemon --kubernetes` ([`Sandbox::bind_tcp_in_agent`],
//! [`Sandbox::spawn_daemon_with_env`]).
//!
//! For the attacker's tests (`tests/tests/e2e/bypass_*.rs`), `oce-probe` also
//! plays a hostile agent, root in its netns: DNS queries built byte by byte
//! (`dns-craft`), a UDP GSO send (`dns-gso`), answers forged by the agent
//! for itself (`dns-forge`) or sent from anywhere (`forge-answer`, e.g.
//! from the world with [`Sandbox::probe_in_world`]), a socket that reports
//! what reaches it (`udp-listen`, kept running with
//! [`Sandbox::spawn_probe`], read with [`Background`]), frames on a packet
//! socket and raw IP packets, source-routed or not (`packet-send`, to
//! [`Sandbox::world_mac`]), a TUN device forwarding (`tun-forward`), a
//! source route set on a UDP socket (`udp-srcroute`) and socket calls on a
//! socket bound first (`socket-op`, which says which step failed in
//! [`ProbeOutcome::stage`]). The world tells what arrived behind its IP
//! stack ([`WorldConfig::udp_sink`], [`WorldConfig::tcp_syn_log`]) and can
//! lie in its DNS answers ([`WorldConfig::dns_decoy`],
//! [`WorldConfig::dns_replay`], [`WorldConfig::dns_delay_ms`]); its sysctls
//! are set with [`Sandbox::world_sysctl`]. A pod's "pause" process is
//! [`Sandbox::spawn_in_cgroup`]; a daemon following pods from the world
//! netns is [`Sandbox::spawn_daemon_in_world_with_env`] with
//! [`Sandbox::bind_tcp_in_world`].
//!
//! For the tests themselves, and `xtask demo`: [`Monitor`] runs
//! `openclaw-egress monitor` and reads its lines, [`poll_until`] waits for
//! a condition that settles asynchronously, [`TempDir`] is a scratch
//! directory without a sandbox, and [`skip_unless_root`] is the root check
//! of every root-only test.

mod background;
mod bins;
mod cgroup;
mod daemon;
mod events;
pub mod kube;
pub mod metrics;
mod monitor;
mod netns;
mod placement;
mod policy;
mod poll;
mod probe;
mod process;
mod root;
mod sandbox;
mod temp_dir;
mod tls_server;
mod world;

pub use background::Background;
pub use bins::binary_path;
pub use cgroup::{cgroup2_mount, remove_cgroup};
pub use daemon::Daemon;
pub use events::{DROP_EVENT_TARGET, DropEvent, FLOW_EVENT_TARGET};
pub use metrics::{Metrics, Sample};
pub use monitor::Monitor;
pub use policy::{DEFAULT_POLICY_NAME, PolicyYaml};
pub use poll::poll_until;
pub use probe::{HoldReport, ProbeOutcome, ResolveConnectReport, RoundFailure, probe_error};
pub use process::{LogLine, Stream, run_with_deadline};
pub use root::{is_root, skip_unless_root};
pub use sandbox::{
    AGENT_IPV4, AGENT_IPV6, Sandbox, WORLD_IPV4, WORLD_IPV6, remove_stale_sandboxes,
};
pub use temp_dir::TempDir;
pub use tls_server::TlsServers;
pub use world::{DnsQueryLog, TcpSyn, UdpReceived, World, WorldConfig};
