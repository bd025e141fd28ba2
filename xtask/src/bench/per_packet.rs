//! The per-packet measurement: runs the `bench_datapath` example of the
//! `openclaw-egress` crate (which can load the programs; xtask cannot link
//! that crate) and parses the JSON it prints. The example's doc comment
//! explains what each number is.

use std::{path::Path, process::Stdio};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cmd;

/// The entry counts the issue asks for; the first is the baseline of the ratios.
pub const ENTRIES: [u32; 3] = [10, 10_000, 100_000];

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Stats {
    pub samples: usize,
    pub median_ns: f64,
    pub p10_ns: f64,
    pub p90_ns: f64,
}

/// One path's [`Stats`] and its median net of the measurement's own cost.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Timing {
    #[serde(flatten)]
    pub stats: Stats,
    pub net_ns: f64,
}

/// One entry count; the example's doc comment says what each path is.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct EntryResult {
    pub entries: u32,
    pub cache_hit: Timing,
    pub bare_lookup_warm: Timing,
    pub first_packet: Timing,
    pub first_packet_same_destination: Timing,
    pub tc_first_packet: Timing,
    pub bare_lookup_cold: Timing,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Harness {
    pub single_run: Stats,
    pub repeated: Stats,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CacheCheck {
    pub repeat_runs_hit_the_cache: bool,
    pub run_ms: f64,
    pub entry_lifetime_ms: f64,
}

/// Unchecked and checked: a rule without and with the TLS server name check.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Pair {
    pub unchecked: Timing,
    pub checked: Timing,
}

/// The server name check's cost (the example's `server_name_check` module
/// says what each is).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ServerNameCheck {
    pub hello_bytes: usize,
    pub cgroup_first_segment: Pair,
    pub cgroup_after: Pair,
    pub tc_first_segment: Pair,
}

/// What the example printed (the parts the report uses), and all of it.
#[derive(Clone, Debug)]
pub struct PerPacket {
    pub samples: u32,
    pub repeat: u32,
    pub harness: Harness,
    pub results: Vec<EntryResult>,
    pub cache_check: CacheCheck,
    /// Absent from the output of examples older than the check.
    pub server_name_check: Option<ServerNameCheck>,
    pub raw: Value,
}

pub fn run(workspace: &Path) -> Result<PerPacket> {
    let entries = ENTRIES.map(|n| n.to_string()).join(",");
    let mut command = cmd::new("cargo");
    command
        .args([
            "run",
            "--release",
            "--example",
            "bench_datapath",
            "-p",
            "openclaw-egress",
            "--",
            "--entries",
            &entries,
        ])
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let line = cmd::display(&command);
    println!("$ {line}");
    let output = command
        .output()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !output.status.success() {
        bail!("`{line}` failed ({})", output.status);
    }
    parse(&String::from_utf8_lossy(&output.stdout)).with_context(|| format!("reading `{line}`"))
}

fn parse(stdout: &str) -> Result<PerPacket> {
    let raw: Value = serde_json::from_str(stdout).context("its output is not JSON")?;
    let field = |name: &str| raw.get(name).cloned().unwrap_or(Value::Null);
    let per_packet = PerPacket {
        samples: serde_json::from_value(field("samples")).context("samples")?,
        repeat: serde_json::from_value(field("repeat")).context("repeat")?,
        harness: serde_json::from_value(field("harness")).context("harness")?,
        results: serde_json::from_value(field("results")).context("results")?,
        cache_check: serde_json::from_value(field("cache_check")).context("cache_check")?,
        server_name_check: serde_json::from_value(field("server_name_check"))
            .context("server_name_check")?,
        raw,
    };
    if per_packet.results.first().map(|r| r.entries) != Some(ENTRIES[0]) {
        bail!("no result for the baseline of {} entries", ENTRIES[0]);
    }
    Ok(per_packet)
}

impl PerPacket {
    /// The result for `entries` allowed entries.
    pub fn at(&self, entries: u32) -> Option<&EntryResult> {
        self.results.iter().find(|r| r.entries == entries)
    }

    /// The per-packet (cache hit) cost relative to the 10-entry baseline.
    pub fn ratio_to_baseline(&self, result: &EntryResult) -> f64 {
        result.cache_hit.net_ns / self.results[0].cache_hit.net_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_examples_output() {
        let stats = r#"{"samples": 3, "median_ns": 80.0, "p10_ns": 70.0, "p90_ns": 90.0}"#;
        let timing = |net: f64| {
            r#"{"samples": 3, "median_ns": 80.0, "p10_ns": 70.0, "p90_ns": 90.0, "net_ns": NET}"#
                .replace("NET", &net.to_string())
        };
        let result = |entries: u32, net: f64| {
            format!(
                r#"{{"entries": {entries}, "cache_hit": {}, "bare_lookup_warm": {},
                    "first_packet": {}, "first_packet_same_destination": {},
                    "tc_first_packet": {}, "bare_lookup_cold": {}}}"#,
                timing(net),
                timing(30.0),
                timing(700.0),
                timing(600.0),
                timing(500.0),
                timing(400.0),
            )
        };
        let json = format!(
            r#"{{"kernel": "6.18", "samples": 3, "repeat": 1000, "repeat_samples": 1, "rounds": 1,
                "harness": {{"single_run": {stats}, "repeated": {stats}}},
                "results": [{}, {}],
                "cache_check": {{"repeat_runs_hit_the_cache": true, "run_ms": 300.0,
                                 "entry_lifetime_ms": 20.0, "fresh_socket_verdict": 0}}}}"#,
            result(10, 40.0),
            result(100_000, 60.0),
        );
        let parsed = parse(&json).unwrap();
        assert_eq!(parsed.results.len(), 2);
        let at_100k = parsed.at(100_000).unwrap();
        assert!((parsed.ratio_to_baseline(at_100k) - 1.5).abs() < 1e-9);
        // Everything is kept for results.json, also fields the report ignores.
        assert_eq!(parsed.raw["cache_check"]["fresh_socket_verdict"], 0);
    }
}
