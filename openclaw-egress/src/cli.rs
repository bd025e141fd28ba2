//! Command-line interface definition.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

/// `--version`: the release, the commit it was built from and the eBPF
/// object it embeds (the name its pins are kept under).
pub fn version() -> String {
    format!(
        "{} (commit {}, eBPF object {})",
        env!("CARGO_PKG_VERSION"),
        env!("OPENCLAW_EGRESS_GIT_COMMIT"),
        crate::datapath::Datapath::version()
    )
}

/// The command line, with the full `--version`.
pub fn command() -> clap::Command {
    use clap::CommandFactory as _;
    Cli::command().version(version())
}

/// Parses the process's arguments (exits on `--help`, `--version` and
/// errors, as clap does).
pub fn parse() -> Cli {
    use clap::FromArgMatches as _;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

#[derive(Debug, Parser)]
#[command(
    name = "openclaw-egress",
    version,
    about = "Egress enforcer for AI agents: only allowed DNS names and ports, enforced in the kernel"
)]
pub struct Cli {
    /// The daemon's API socket.
    #[arg(long, global = true, env = crate::api::SOCKET_ENV, default_value = crate::api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: load programs, enforce applied policies, serve the API and /metrics.
    Daemon {
        /// Where to serve Prometheus metrics; `none` to disable.
        #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_metrics_addr)]
        metrics_addr: MetricsAddr,
        /// Log format on stdout (drop events included).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        #[command(flatten)]
        dirs: StateDirs,
        /// Follow this node's pods (NODE_NAME from the downward API) so that
        /// `podLabels` selectors work: the DaemonSet mode.
        #[arg(long)]
        kubernetes: bool,
        /// With --kubernetes: the cgroup directory the kubelet makes pod
        /// cgroups in, for a kubelet with a custom cgroupRoot (by default
        /// kubepods.slice or kubepods below the cgroup2 mount). A gate
        /// attached there holds a selected pod's packets from its first
        /// until its policy is in force.
        #[arg(long, requires = "kubernetes")]
        kubepods_cgroup: Option<PathBuf>,
        /// With --kubernetes: how often each EgressPolicy's status (this
        /// node's entry: pods attached, drops) is written again.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, requires = "kubernetes")]
        status_interval: std::time::Duration,
        /// Run the build of the eBPF programs that logs each verdict (pass,
        /// drop, reset, destination) at debug level, target
        /// `openclaw_egress::trace`: set RUST_LOG=info,openclaw_egress::trace=debug
        /// to see them. For finding out why something is dropped; it slows
        /// every packet.
        #[arg(long)]
        trace_datapath: bool,
        /// With --kubernetes: also enforce the upstream ClusterNetworkPolicy
        /// objects (policy.networking.k8s.io/v1alpha2, experimental channel)
        /// whose egress allows domainNames, translated to policies (see
        /// deploy/cluster-network-policy.md).
        #[arg(long, requires = "kubernetes", requires = "cluster_dns")]
        cluster_network_policy: bool,
        /// The cluster DNS service's address(es) (the kubelet's clusterDNS):
        /// the only resolvers the pods of a ClusterNetworkPolicy may ask.
        #[arg(long, value_delimiter = ',')]
        cluster_dns: Vec<std::net::IpAddr>,
        /// Apply every policy file in this directory and follow its changes
        /// (e.g. a mounted ConfigMap).
        #[arg(long)]
        policy_dir: Option<PathBuf>,
        /// Accept policies on the cgroup2 root, on the daemon's own cgroup
        /// and on its ancestors. They hold the host (the daemon included),
        /// so they are refused unless this is given.
        #[arg(long)]
        allow_host_cgroup: bool,
        /// Log every allowed connection once (its first packet: policy,
        /// rule, destination), beside the drop events and in the same JSON
        /// schema, for a SIEM that wants the whole picture.
        #[arg(long)]
        flow_log: bool,
        /// With --flow-log: at most this many allowed connections logged per
        /// second; the rest are counted in
        /// openclaw_egress_flow_log_suppressed_total.
        #[arg(long, default_value_t = 100, requires = "flow_log", value_parser = clap::value_parser!(u32).range(1..))]
        flow_log_rate: u32,
    },
    /// Validate a policy and have the daemon swap it in atomically.
    Apply {
        /// Policy file (YAML).
        file: PathBuf,
    },
    /// Check policy files without applying them.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Remove an applied policy (its workload is no longer filtered).
    Remove { name: String },
    /// Print the EgressPolicy CustomResourceDefinition (YAML), e.g. for
    /// `kubectl apply -f -`: policy files are EgressPolicy objects.
    Crd,
    /// Print shell completions, e.g. `openclaw-egress completions bash >
    /// /etc/bash_completion.d/openclaw-egress`.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), e.g. `openclaw-egress man | man -l -`.
    Man,
    /// Show applied policies, counters and resolved names.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print the Prometheus metrics.
    Metrics,
    /// Run one command in a fresh cgroup under a policy; its exit code is passed through.
    ///
    /// The policy's selector is replaced by the fresh cgroup, and it is
    /// applied under its own name (`<name>-exec-<pid>`), then removed when the
    /// command ends.
    Exec {
        /// Policy file (YAML). With --learn, optional: the command then runs
        /// under a policy that allows nothing but reports everything (audit
        /// mode), asking the resolvers of /etc/resolv.conf.
        #[arg(long, required_unless_present = "learn")]
        policy: Option<PathBuf>,
        /// Learn mode: run the command in audit mode, record every DNS
        /// question, answer and connection, and write the policy that allows
        /// exactly what it did to this file.
        #[arg(long, value_name = "OUT.yaml")]
        learn: Option<PathBuf>,
        #[command(flatten)]
        proposal: ProposalArgs,
        /// Keep the command's capabilities. By default it loses those that
        /// could undo enforcement (CAP_NET_RAW, CAP_NET_ADMIN, CAP_SYS_ADMIN,
        /// CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_SYS_MODULE,
        /// CAP_SYS_RAWIO); its namespaces and read-only mounts stay.
        #[arg(long)]
        keep_capabilities: bool,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Learn mode on an applied policy: record everything its workloads do
    /// for a while (put the policy in audit mode first, or what it refuses
    /// stays refused), then write the policy that allows exactly that.
    Learn {
        /// The applied policy to watch.
        #[arg(long)]
        policy: String,
        /// How long to watch (Ctrl-C stops earlier and still writes).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Where to write the proposed policy.
        #[arg(short, long, value_name = "OUT.yaml")]
        output: PathBuf,
        #[command(flatten)]
        proposal: ProposalArgs,
    },
    /// Remove every policy and every pin, and stop the daemon. Works without
    /// a running daemon too (it then removes the pins and records itself).
    Uninstall {
        #[command(flatten)]
        dirs: StateDirs,
    },
    /// Stream drop events as they happen.
    Monitor {
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// How learn mode writes its proposal.
#[derive(Clone, Debug, clap::Args)]
pub struct ProposalArgs {
    /// Collapse sibling names into a `*.parent` pattern from this many
    /// names on (never at or above a public suffix such as `com`, `co.uk`).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    pub collapse_threshold: u32,
    /// Propose additions to this policy only: the output is this file with
    /// the new rules appended, and the difference is printed.
    #[arg(long, value_name = "EXISTING.yaml")]
    pub merge: Option<PathBuf>,
    /// The proposed policy's name (default: the learned command's or
    /// policy's).
    #[arg(long)]
    pub name: Option<String>,
}

/// Where the daemon keeps what must outlive it.
#[derive(Clone, Debug, clap::Args)]
pub struct StateDirs {
    /// Policy records (a tmpfs such as /run is right: pins do not survive a reboot either).
    #[arg(long, default_value = crate::daemon::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Pinned programs and maps (on bpffs; mounted at /sys/fs/bpf if missing).
    #[arg(long, default_value = crate::daemon::DEFAULT_BPFFS_DIR)]
    pub bpffs_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug)]
pub struct MetricsAddr(pub Option<SocketAddr>);

fn parse_metrics_addr(value: &str) -> Result<MetricsAddr, String> {
    if value == "none" {
        return Ok(MetricsAddr(None));
    }
    value
        .parse()
        .map(|addr| MetricsAddr(Some(addr)))
        .map_err(|error| format!("{error} (expected ADDRESS:PORT or `none`)"))
}
