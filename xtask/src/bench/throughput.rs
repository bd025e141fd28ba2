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

use std::{
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use openclaw_egress_e2e::{Daemon, Sandbox, WorldConfig, probe_error};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    attached::{self, Attached},
    firewall::{self, RATE_PORT, SERVER, SERVER_PORT},
    machine, stats,
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

struct Bench<'a> {
    sandbox: &'a Sandbox,
    daemon: &'a Daemon,
    policy: PathBuf,
    destinations: Vec<std::net::Ipv4Addr>,
    inherited: Attached,
    seconds: u32,
}

impl Bench<'_> {
    /// Installs `config`, checks it, runs iperf3, and removes `config` again
    /// (also when the run failed).
    fn measure(&self, repetition: u32, config: Config) -> Result<Run> {
        let name = config.name();
        self.check_clean()
            .with_context(|| format!("before {name}"))?;
        let run = self
            .install(config)
            .with_context(|| format!("installing {name}"))
            .and_then(|()| self.check_installed(config))
            .and_then(|()| self.iperf(repetition, config))
            .and_then(|mut run| {
                let rate = self.connect_rate()?;
                run.connections_per_s = rate.per_second;
                run.connect_cpu_us = rate.cpu_us_per_connection;
                Ok(run)
            })
            .with_context(|| format!("measuring {name}"));
        let removed = self
            .remove(config)
            .with_context(|| format!("removing {name}"));
        let run = run?;
        removed?;
        Ok(run)
    }

    fn install(&self, config: Config) -> Result<()> {
        match config {
            Config::NoFilter | Config::NoFilterControl => Ok(()),
            Config::OpenclawEgress => self.daemon.apply(&self.policy).map(drop),
            Config::Iptables | Config::IptablesConntrack => self.in_agent_netns(
                "iptables-restore",
                &[],
                Some(&firewall::iptables_restore(
                    &self.destinations,
                    config == Config::IptablesConntrack,
                )),
            ),
            Config::Nftables => self.in_agent_netns(
                "nft",
                &["-f", "-"],
                Some(&firewall::nft_script(&self.destinations)),
            ),
        }
    }

    fn remove(&self, config: Config) -> Result<()> {
        match config {
            Config::NoFilter | Config::NoFilterControl => Ok(()),
            Config::OpenclawEgress => self
                .daemon
                .cli_ok(&["remove", firewall::POLICY_NAME])
                .map(drop),
            // iptables here is iptables-nft: its rules are nftables tables too.
            Config::Iptables | Config::IptablesConntrack | Config::Nftables => {
                self.in_agent_netns("nft", &["flush", "ruleset"], None)
            }
        }
    }

    /// No netfilter rules in the agent netns, no cgroup programs of ours.
    fn check_clean(&self) -> Result<()> {
        let ruleset = self.nft_ruleset()?;
        ensure!(
            ruleset.trim().is_empty(),
            "netfilter rules left in the agent netns:\n{ruleset}"
        );
        let attached = attached::query(self.sandbox.cgroup_path())?;
        ensure!(
            attached == self.inherited,
            "cgroup programs left on the sandbox cgroup: {attached:?} (expected {:?})",
            self.inherited
        );
        Ok(())
    }

    /// The configuration is in place, and only it: the right programs on
    /// the cgroup, and a port nothing allows is blocked (refused without a
    /// filter: nothing listens there).
    fn check_installed(&self, config: Config) -> Result<()> {
        let attached = attached::query(self.sandbox.cgroup_path())?;
        let ours = u32::from(config == Config::OpenclawEgress);
        let expected = Attached {
            egress: self.inherited.egress + ours,
            ingress: self.inherited.ingress + ours,
        };
        ensure!(
            attached == expected,
            "cgroup programs: {attached:?}, expected {expected:?}"
        );
        ensure!(
            config.uses_netfilter() != self.nft_ruleset()?.trim().is_empty(),
            "netfilter rules present: {}, expected {}",
            !config.uses_netfilter(),
            config.uses_netfilter()
        );
        let target = format!("{SERVER}:{}", firewall::BLOCKED_PORT);
        let outcome = self
            .sandbox
            .probe(&["tcp", &target, "--timeout-ms", "1000"])?;
        let refused = outcome.error.as_deref() == Some(probe_error::REFUSED);
        if matches!(config, Config::NoFilter | Config::NoFilterControl) {
            ensure!(
                refused,
                "without a filter, {target} should refuse: {outcome:?}"
            );
        } else {
            ensure!(
                !refused && !outcome.ok,
                "the filter let a connection to {target} through: {outcome:?}"
            );
        }
        Ok(())
    }

    fn iperf(&self, repetition: u32, config: Config) -> Result<Run> {
        let before = self.tx_counters()?;
        let report = self.iperf_client()?;
        let after = self.tx_counters()?;
        let number = |pointer: &str| {
            report
                .pointer(pointer)
                .and_then(Value::as_f64)
                .with_context(|| format!("iperf3's JSON has no number at {pointer}"))
        };
        Ok(Run {
            repetition,
            config,
            gbit_per_s: number("/end/sum_received/bits_per_second")? / 1e9,
            retransmits: number("/end/sum_sent/retransmits").unwrap_or(0.0) as u64,
            cpu_client_percent: number("/end/cpu_utilization_percent/host_total").unwrap_or(0.0),
            cpu_server_percent: number("/end/cpu_utilization_percent/remote_total").unwrap_or(0.0),
            tx_packets: after.packets.saturating_sub(before.packets),
            tx_bytes: after.bytes.saturating_sub(before.bytes),
            rx_packets: after.rx_packets.saturating_sub(before.rx_packets),
            loadavg: machine::loadavg(),
            connections_per_s: 0.0,
            connect_cpu_us: 0.0,
        })
    }

    /// `oce-probe connect-rate` against the greeting server, from inside the
    /// sandbox cgroup, for as long as an iperf3 run.
    fn connect_rate(&self) -> Result<ConnectRate> {
        let target = format!("{SERVER}:{RATE_PORT}");
        let seconds = self.seconds.to_string();
        let report: ConnectRate = self
            .sandbox
            .probe_json(&["connect-rate", &target, "--seconds", &seconds])
            .context("oce-probe connect-rate")?;
        ensure!(
            report.connections > 0 && report.failures == 0,
            "connect-rate: {} connections, {} failed",
            report.connections,
            report.failures
        );
        Ok(report)
    }

    /// Runs the iperf3 client to completion and returns its JSON report;
    /// retries once if the server is still busy with the previous client.
    fn iperf_client(&self) -> Result<Value> {
        let seconds = self.seconds.to_string();
        let warm_up = WARM_UP_SECONDS.to_string();
        let port = SERVER_PORT.to_string();
        let server = SERVER.to_string();
        let args = [
            "-c",
            &server,
            "-p",
            &port,
            "-t",
            &seconds,
            "-O",
            &warm_up,
            "-J",
            "--connect-timeout",
            "3000",
        ];
        let out = self.sandbox.scratch_dir().join("iperf3.json");
        let deadline = Duration::from_secs(u64::from(self.seconds) + 30);
        for attempt in 0..2 {
            let mut command = self
                .sandbox
                .command_in_agent("nice", [&["-n", NICE, "iperf3"][..], &args].concat())?;
            command
                .stdin(Stdio::null())
                .stdout(File::create(&out)?)
                .stderr(Stdio::null());
            let child = command.spawn().context("starting iperf3")?;
            wait_with_deadline(child, deadline)?;
            let text = fs::read_to_string(&out)?;
            let report: Value = serde_json::from_str(&text)
                .with_context(|| format!("iperf3 printed no JSON: {text}"))?;
            match report.get("error").and_then(Value::as_str) {
                None => return Ok(report),
                Some(error) if attempt == 0 && error.contains("busy") => {
                    thread::sleep(Duration::from_secs(1));
                }
                Some(error) => bail!("iperf3: {error}"),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// What the agent's eth0 has sent and received so far.
    fn tx_counters(&self) -> Result<Counters> {
        let mut command = cmd::new("ip");
        command.args([
            "-n",
            self.sandbox.agent_netns(),
            "-s",
            "-j",
            "link",
            "show",
            "dev",
            "eth0",
        ]);
        let out = cmd::stdout(&mut command)?;
        let links: Value = serde_json::from_str(&out).context("`ip -j` printed no JSON")?;
        let stats = &links[0]["stats64"];
        match (
            stats["tx"]["packets"].as_u64(),
            stats["tx"]["bytes"].as_u64(),
            stats["rx"]["packets"].as_u64(),
        ) {
            (Some(packets), Some(bytes), Some(rx_packets)) => Ok(Counters {
                packets,
                bytes,
                rx_packets,
            }),
            _ => bail!("no counters in `ip -s -j link show dev eth0`: {out}"),
        }
    }

    fn nft_ruleset(&self) -> Result<String> {
        let mut command = self.agent_netns_command("nft", &["list", "ruleset"]);
        cmd::stdout(&mut command)
    }

    /// `ip netns exec <agent> program args` (outside the sandbox cgroup), fed `stdin`.
    fn in_agent_netns(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<()> {
        let mut command = self.agent_netns_command(program, args);
        let line = cmd::display(&command);
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting `{line}`"))?;
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(input.as_bytes())
                .with_context(|| format!("feeding `{line}`"))?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "`{line}` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    fn agent_netns_command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = cmd::new("ip");
        command
            .args(["netns", "exec", self.sandbox.agent_netns(), program])
            .args(args);
        command
    }
}

/// What `oce-probe connect-rate` reports.
#[derive(Deserialize)]
struct ConnectRate {
    connections: u64,
    failures: u64,
    per_second: f64,
    cpu_us_per_connection: f64,
}

/// Interface counters of the agent's eth0.
struct Counters {
    packets: u64,
    bytes: u64,
    rx_packets: u64,
}

/// `iperf3 -s` in the world netns, bound to the world end of the veth;
/// killed on drop.
struct IperfServer(Child);

impl IperfServer {
    fn start(sandbox: &Sandbox) -> Result<Self> {
        let port = SERVER_PORT.to_string();
        let server = SERVER.to_string();
        let mut command = sandbox.command_in_world(
            "nice",
            ["-n", NICE, "iperf3", "-s", "-B", &server, "-p", &port],
        )?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut server_guard = Self(command.spawn().context("starting the iperf3 server")?);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut ss = sandbox.command_in_world("ss", ["-Hltn", &format!("sport = :{port}")])?;
            if cmd::stdout(&mut ss).is_ok_and(|out| !out.trim().is_empty()) {
                return Ok(server_guard);
            }
            if let Some(status) = server_guard.0.try_wait()? {
                bail!("the iperf3 server exited: {status}");
            }
            if Instant::now() > deadline {
                bail!("the iperf3 server did not listen on {SERVER}:{SERVER_PORT} within 10 s");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child`; kills it (and fails) once `deadline` has passed.
fn wait_with_deadline(mut child: Child, deadline: Duration) -> Result<()> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                // iperf3 -J reports its errors in the JSON; the caller reads it.
                eprintln!("iperf3 exited with {status}");
            }
            return Ok(());
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("iperf3 did not finish within {deadline:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
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
