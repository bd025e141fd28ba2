//! One configuration at a time: installing it, checking it is exactly in place, measuring it, removing it.

use std::{
    fs::{self, File},
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use openclaw_egress_e2e::{Daemon, Sandbox, probe_error};
use serde_json::Value;

use super::{
    Config, NICE, Run, WARM_UP_SECONDS,
    iperf::{ConnectRate, Counters, wait_with_deadline},
};
use crate::{
    bench::{
        attached::{self, Attached},
        firewall::{self, RATE_PORT, SERVER, SERVER_PORT},
        machine,
    },
    cmd,
};

pub(super) struct Bench<'a> {
    pub(super) sandbox: &'a Sandbox,
    pub(super) daemon: &'a Daemon,
    pub(super) policy: PathBuf,
    pub(super) destinations: Vec<std::net::Ipv4Addr>,
    pub(super) inherited: Attached,
    pub(super) seconds: u32,
}

impl Bench<'_> {
    /// Installs `config`, checks it, runs iperf3, and removes `config` again
    /// (also when the run failed).
    pub(super) fn measure(&self, repetition: u32, config: Config) -> Result<Run> {
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
