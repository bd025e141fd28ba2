//! TCP throughput over the sandbox's veth (iperf3) with no filter, with
//! openclaw-egress and with equivalent iptables and nftables rule sets.
//!
//! One sandbox serves every run: the iperf3 server listens on the world end
//! of the veth, the client runs in the agent netns inside the sandbox cgroup
//! (so the cgroup programs see its packets) and the daemon runs in the agent
//! netns outside the cgroup. Each repetition runs every configuration once,
//! starting one configuration later than the previous repetition, so slow
//! drift of the machine's load spreads evenly; each configuration's ratio is
//! the median over repetitions of its throughput divided by the no-filter
//! throughput of the same repetition.
//!
//! Before every run the benchmark checks that the configuration is exactly
//! the one it claims: no netfilter rules and no extra cgroup programs unless
//! the configuration installs them, and (by a connection to a port nothing
//! allows) that a filter is really in place, or really absent.
//! The iptables and nftables rules live in the agent netns only and vanish
//! with it.

mod iperf;
mod measure;

use std::{fs, path::Path};

use anyhow::{Context as _, Result};
use openclaw_egress_e2e::{Sandbox, WorldConfig};
use serde::Serialize;

use self::{iperf::IperfServer, measure::Bench};
use super::{
    attached,
    firewall::{self, RATE_PORT, SERVER, SERVER_PORT},
    stats,
};
use crate::cmd;

/// iperf3's client and server run at the highest CFS priority, so that other
/// work on the machine (e.g. builds) takes as little of their CPU time as
/// possible: on a small shared machine that is the largest source of noise.
const NICE: &str = "-20";

/// iperf3's omitted first second (`-O 1`): TCP's slow start is not measured.
const WARM_UP_SECONDS: u32 = 1;

pub struct Settings {
    /// Measured seconds per iperf3 run (after one omitted warm-up second).
    pub seconds: u32,
    pub repetitions: u32,
    /// Allowed destinations besides the server, in every filter.
    pub other_destinations: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Config {
    NoFilter,
    OpenclawEgress,
    Iptables,
    /// No filter again: an A/A control. Its ratio to no filter would be 1
    /// on a quiet machine; how far it lands from 1 is the run's noise.
    NoFilterControl,
    IptablesConntrack,
    Nftables,
}

impl Config {
    pub const ALL: [Self; 6] = [
        Self::NoFilter,
        Self::OpenclawEgress,
        Self::Iptables,
        Self::NoFilterControl,
        Self::IptablesConntrack,
        Self::Nftables,
    ];

    /// The table's label; `rules` is the number of allowed destinations.
    pub fn label(self, rules: u32) -> String {
        match self {
            Self::NoFilter => "no filter".into(),
            Self::NoFilterControl => "no filter again (A/A)".into(),
            Self::OpenclawEgress => "openclaw-egress".into(),
            Self::Iptables => format!("iptables ({rules} rules)"),
            Self::IptablesConntrack => format!("iptables+conntrack ({rules})"),
            Self::Nftables => format!("nftables (set, {rules})"),
        }
    }

    /// The name in messages and in results.json.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoFilter => "no_filter",
            Self::NoFilterControl => "no_filter_control",
            Self::OpenclawEgress => "openclaw_egress",
            Self::Iptables => "iptables",
            Self::IptablesConntrack => "iptables_conntrack",
            Self::Nftables => "nftables",
        }
    }

    fn uses_netfilter(self) -> bool {
        matches!(
            self,
            Self::Iptables | Self::IptablesConntrack | Self::Nftables
        )
    }
}

/// One iperf3 run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub repetition: u32,
    pub config: Config,
    /// Received by the server, over the measured seconds.
    pub gbit_per_s: f64,
    pub retransmits: u64,
    /// iperf3's CPU use of the client (host) and server (remote) processes, percent.
    pub cpu_client_percent: f64,
    pub cpu_server_percent: f64,
    /// Packets (skbs) and bytes the agent's eth0 sent during the run: each
    /// packet is one run of the egress program. With TSO/GSO a packet
    /// carries up to 64 KiB, so per-packet costs are spread over many bytes.
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets the agent's eth0 received (ACKs, mostly): each is one run of
    /// the ingress program.
    pub rx_packets: u64,
    /// The machine's load when the run ended.
    pub loadavg: String,
    /// Right after the iperf3 run, in the same configuration: new
    /// connections per second, one after another, each reading a greeting
    /// (`oce-probe connect-rate`), and the client's CPU time per connection.
    pub connections_per_s: f64,
    pub connect_cpu_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub seconds: u32,
    pub repetitions: u32,
    /// Allowed destinations in every filter (the server included).
    pub allowed_destinations: u32,
    /// cgroup programs that were there before the benchmark attached any
    /// (inherited from ancestor cgroups); normally none.
    pub inherited_programs: u32,
    pub runs: Vec<Run>,
}

impl Throughput {
    pub fn gbit_per_s(&self, config: Config) -> Vec<f64> {
        self.runs
            .iter()
            .filter(|r| r.config == config)
            .map(|r| r.gbit_per_s)
            .collect()
    }

    pub fn median(&self, config: Config) -> f64 {
        stats::median(&self.gbit_per_s(config))
    }

    /// Per repetition: throughput / no-filter throughput of that repetition.
    pub fn ratios(&self, config: Config) -> Vec<f64> {
        self.ratios_of(config, |run| run.gbit_per_s)
    }

    /// Per repetition: `measure` of `config`'s run / of the no-filter run.
    fn ratios_of(&self, config: Config, measure: impl Fn(&Run) -> f64) -> Vec<f64> {
        (0..self.repetitions)
            .filter_map(|repetition| {
                let of = |c: Config| {
                    self.runs
                        .iter()
                        .find(|r| r.repetition == repetition && r.config == c)
                        .map(&measure)
                };
                Some(of(config)? / of(Config::NoFilter)?)
            })
            .collect()
    }

    /// The connection rate relative to no filter (median over repetitions).
    pub fn connection_rate_ratio(&self, config: Config) -> f64 {
        stats::median(&self.ratios_of(config, |run| run.connections_per_s))
    }

    /// Median connections per second, and client CPU µs per connection.
    pub fn connection_rate(&self, config: Config) -> (f64, f64) {
        let runs: Vec<&Run> = self.runs.iter().filter(|r| r.config == config).collect();
        let rates: Vec<f64> = runs.iter().map(|r| r.connections_per_s).collect();
        let cpu: Vec<f64> = runs.iter().map(|r| r.connect_cpu_us).collect();
        (stats::median(&rates), stats::median(&cpu))
    }

    pub fn ratio(&self, config: Config) -> f64 {
        stats::median(&self.ratios(config))
    }

    /// Packets per second sent and received, over all runs of `config`.
    pub fn packet_rates(&self, config: Config) -> (f64, f64) {
        let runs: Vec<&Run> = self.runs.iter().filter(|r| r.config == config).collect();
        let seconds = (runs.len() as f64) * f64::from(self.seconds + WARM_UP_SECONDS);
        let tx: u64 = runs.iter().map(|r| r.tx_packets).sum();
        let rx: u64 = runs.iter().map(|r| r.rx_packets).sum();
        (tx as f64 / seconds, rx as f64 / seconds)
    }

    /// Average bytes per packet the egress program saw, over all runs of `config`.
    pub fn bytes_per_packet(&self, config: Config) -> f64 {
        let (bytes, packets) = self
            .runs
            .iter()
            .filter(|r| r.config == config)
            .fold((0, 0), |(b, p), r| (b + r.tx_bytes, p + r.tx_packets));
        bytes as f64 / packets.max(1) as f64
    }
}

pub fn run(bin_dir: &Path, settings: &Settings) -> Result<Throughput> {
    let sandbox = Sandbox::new().context("creating the sandbox")?;
    let destinations = firewall::destinations(settings.other_destinations);
    let policy = sandbox.scratch_dir().join("bench.yaml");
    fs::write(
        &policy,
        firewall::policy_yaml(sandbox.cgroup_relative(), &destinations),
    )
    .with_context(|| format!("writing {}", policy.display()))?;
    let inherited = attached::query(sandbox.cgroup_path()).context("BPF_PROG_QUERY")?;
    println!(
        "sandbox {}: iperf3 server on {SERVER}:{SERVER_PORT} (world netns), client in the agent \
         netns and cgroup; {} allowed destinations per filter; {} s per run (after 1 s warm-up), \
         {} repetitions",
        sandbox.id(),
        destinations.len(),
        settings.seconds,
        settings.repetitions,
    );

    let server = IperfServer::start(&sandbox)?;
    // The connection-rate server: a greeting per connection.
    let _greeter = sandbox
        .start_world(&WorldConfig::new().tcp(&format!("{SERVER}:{RATE_PORT}")))
        .context("starting the connection-rate server")?;
    // Thousands of connections per run close from the client's side: let
    // new ones reuse ports in TIME-WAIT (safe with TCP timestamps).
    cmd::stdout(
        &mut sandbox
            .command_in_agent_outside_cgroup("sysctl", ["-qw", "net.ipv4.tcp_tw_reuse=1"])?,
    )?;
    let daemon = sandbox
        .spawn_daemon(&bin_dir.join("openclaw-egress"))
        .context("starting the daemon")?;
    let bench = Bench {
        sandbox: &sandbox,
        daemon: &daemon,
        policy,
        destinations,
        inherited,
        seconds: settings.seconds,
    };
    let mut runs = Vec::new();
    let count = Config::ALL.len();
    for repetition in 0..settings.repetitions {
        for k in 0..count {
            let config = Config::ALL[(repetition as usize + k) % count];
            let run = bench.measure(repetition, config)?;
            println!(
                "  repetition {}/{}  {:<28} {:>7.2} Gbit/s  (load {})",
                repetition + 1,
                settings.repetitions,
                config.label(bench.destinations.len() as u32),
                run.gbit_per_s,
                run.loadavg
            );
            runs.push(run);
        }
    }
    drop(bench);
    daemon.stop();
    drop(server);
    drop(sandbox);
    Ok(Throughput {
        seconds: settings.seconds,
        repetitions: settings.repetitions,
        allowed_destinations: settings.other_destinations + 1,
        inherited_programs: inherited.egress,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(repetition: u32, config: Config, gbit_per_s: f64) -> Run {
        Run {
            repetition,
            config,
            gbit_per_s,
            retransmits: 0,
            cpu_client_percent: 0.0,
            cpu_server_percent: 0.0,
            tx_packets: 10,
            tx_bytes: 640,
            rx_packets: 5,
            loadavg: String::new(),
            connections_per_s: 1000.0,
            connect_cpu_us: 10.0,
        }
    }

    /// Ratios pair each run with the baseline of its own repetition, so a
    /// repetition where the whole machine was slow does not count against a
    /// configuration.
    #[test]
    fn ratios_are_per_repetition() {
        let throughput = Throughput {
            seconds: 10,
            repetitions: 3,
            allowed_destinations: 1001,
            inherited_programs: 0,
            runs: vec![
                run(0, Config::NoFilter, 10.0),
                run(0, Config::Nftables, 9.0),
                run(1, Config::NoFilter, 20.0),
                run(1, Config::Nftables, 19.0),
                run(2, Config::NoFilter, 10.0),
                run(2, Config::Nftables, 10.0),
            ],
        };
        assert_eq!(throughput.ratios(Config::Nftables), [0.9, 0.95, 1.0]);
        assert_eq!(throughput.ratio(Config::Nftables), 0.95);
        assert_eq!(throughput.median(Config::NoFilter), 10.0);
        assert_eq!(throughput.bytes_per_packet(Config::Nftables), 64.0);
        assert!(throughput.ratio(Config::Iptables).is_nan());
    }
}
