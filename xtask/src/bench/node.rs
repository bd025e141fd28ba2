//! A node full of agents: the daemon (release build) in a sandbox, one
//! cgroup per workload, each with its own 10-name policy, applied one after
//! another up to 1, 10 and 100 workloads; then a policy of 10 000 names.
//!
//! - apply latency: how long `openclaw-egress apply` takes for one more
//!   workload (the command returns once the policy is attached and
//!   enforcing: its names resolved, its maps filled, its programs
//!   attached), median and 90th percentile over the applies of a round;
//! - kernel map memory per workload (the daemon's `status`, from the maps'
//!   own accounting);
//! - the daemon's resident memory with every workload applied, and after
//!   every policy is removed again;
//! - the 10 000-name policy: one apply, resolution (against the sandbox's
//!   DNS server) included.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use openclaw_egress_e2e::{Daemon, PolicyYaml, Sandbox, WorldConfig};
use serde::Serialize;

use super::stats;

/// The workload counts of the rounds (cumulative: each round adds
/// workloads to the previous ones).
pub const ROUNDS: [u32; 3] = [1, 10, 100];
/// Names in each workload's policy.
const NAMES_PER_WORKLOAD: u32 = 10;
/// Names in the large policy.
pub const LARGE_NAMES: u32 = 10_000;

#[derive(Clone, Debug, Serialize)]
pub struct Round {
    pub workloads: u32,
    /// Applies in this round, milliseconds each.
    pub apply_ms: Vec<f64>,
    pub apply_median_ms: f64,
    pub apply_p90_ms: f64,
    /// Every apply so far, seconds in all.
    pub total_s: f64,
    pub map_memory_per_workload_bytes: u64,
    pub daemon_rss_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub rounds: Vec<Round>,
    pub daemon_rss_after_remove_bytes: u64,
    pub policies_after_remove: usize,
    pub large_names: u32,
    pub large_apply_s: f64,
    pub large_map_memory_bytes: u64,
}

pub fn run(daemon_bin: &Path) -> Result<Node> {
    let sandbox = Sandbox::new().context("creating the sandbox")?;
    let mut world = WorldConfig::new().dns("10.77.0.1:53").dns("[fd77::1]:53");
    for i in 0..NAMES_PER_WORKLOAD {
        world = world.record(&small_name(i), &format!("203.0.113.{}", i + 1));
    }
    for i in 0..LARGE_NAMES {
        world = world.record(&large_name(i), &large_address(i).to_string());
    }
    let _world = sandbox.start_world(&world).context("starting oce-world")?;
    let daemon = sandbox
        .spawn_daemon(daemon_bin)
        .context("starting the daemon")?;

    let mut rounds = Vec::new();
    let mut applied = 0;
    let mut total_s = 0.0;
    for &target in &ROUNDS {
        let mut apply_ms = Vec::new();
        while applied < target {
            let ms = apply_workload(&sandbox, &daemon, applied)?;
            total_s += ms / 1e3;
            apply_ms.push(ms);
            applied += 1;
        }
        let (median, p90) = (
            stats::quantile(&apply_ms, 0.5),
            stats::quantile(&apply_ms, 0.9),
        );
        let memory = map_memory(&daemon)?;
        println!(
            "{target} workloads: apply median {median:.1} ms, p90 {p90:.1} ms; {} KiB of maps \
             per workload",
            memory / u64::from(target) / 1024
        );
        rounds.push(Round {
            workloads: target,
            apply_ms,
            apply_median_ms: median,
            apply_p90_ms: p90,
            total_s,
            map_memory_per_workload_bytes: memory / u64::from(target),
            daemon_rss_bytes: rss(daemon.pid())?,
        });
    }

    for i in 0..applied {
        daemon
            .cli_ok(&["remove", &workload_name(i)])
            .with_context(|| format!("removing {}", workload_name(i)))?;
    }
    let daemon_rss_after_remove_bytes = rss(daemon.pid())?;
    let policies_after_remove = policies(&daemon)?.len();

    println!("applying a policy of {LARGE_NAMES} names");
    let large = sandbox.create_cgroup("large")?;
    let mut policy = PolicyYaml::for_sandbox(&sandbox)
        .name("large")
        .cgroup_path(&relative(&sandbox, &large));
    for i in 0..LARGE_NAMES {
        policy = policy.fqdn(&large_name(i), &["443/tcp"]);
    }
    let path = policy.write(sandbox.scratch_dir(), "large.yaml")?;
    let started = Instant::now();
    daemon
        .apply(&path)
        .context("applying the 10 000-name policy")?;
    let large_apply_s = started.elapsed().as_secs_f64();
    let large_map_memory_bytes = map_memory(&daemon)?;
    println!("{LARGE_NAMES} names applied in {large_apply_s:.2} s");

    Ok(Node {
        rounds,
        daemon_rss_after_remove_bytes,
        policies_after_remove,
        large_names: LARGE_NAMES,
        large_apply_s,
        large_map_memory_bytes,
    })
}

fn small_name(i: u32) -> String {
    format!("n{i}.node.bench.test")
}

fn large_name(i: u32) -> String {
    format!("l{i}.large.bench.test")
}

/// 11.0.0.0/16 and up: public-looking, outside every internal range.
fn large_address(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(11, 0, 0, 1)) + i)
}

fn workload_name(i: u32) -> String {
    format!("w{i}")
}

/// `cgroup` relative to the cgroup2 mount, as a policy names it.
fn relative(sandbox: &Sandbox, cgroup: &Path) -> String {
    let own = sandbox.cgroup_path();
    let rest = cgroup.strip_prefix(own).unwrap_or(cgroup);
    format!("{}/{}", sandbox.cgroup_relative(), rest.display())
}

/// Creates workload `i`'s cgroup and applies its policy; milliseconds.
fn apply_workload(sandbox: &Sandbox, daemon: &Daemon, i: u32) -> Result<f64> {
    let name = workload_name(i);
    let cgroup: PathBuf = sandbox.create_cgroup(&name)?;
    let mut policy = PolicyYaml::for_sandbox(sandbox)
        .name(&name)
        .cgroup_path(&relative(sandbox, &cgroup));
    for n in 0..NAMES_PER_WORKLOAD {
        policy = policy.fqdn(&small_name(n), &["443/tcp"]);
    }
    let path = policy.write(sandbox.scratch_dir(), &format!("{name}.yaml"))?;
    let started = Instant::now();
    daemon
        .apply(&path)
        .with_context(|| format!("applying {name}"))?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

fn policies(daemon: &Daemon) -> Result<Vec<serde_json::Value>> {
    let status = daemon.status_json()?;
    Ok(status["policies"].as_array().cloned().unwrap_or_default())
}

/// Kernel map memory of every applied policy, from `status`.
fn map_memory(daemon: &Daemon) -> Result<u64> {
    let policies = policies(daemon)?;
    let mut total = 0;
    for policy in &policies {
        let Some(bytes) = policy["map_memory_bytes"].as_u64() else {
            bail!("status has no map_memory_bytes for {}", policy["name"]);
        };
        total += bytes;
    }
    Ok(total)
}

/// Resident memory of process `pid` (VmRSS), bytes.
fn rss(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}
