//! The drop counters in the metrics and the drop events expected in the daemon's log.

use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::commands::cli_quiet;

/// The sum of every `openclaw_egress_drops_total` series.
pub(super) fn drops_total(egress: &Path, socket: &Path) -> Result<u64> {
    let metrics = cli_quiet(egress, socket, &["metrics"])?;
    Ok(drops_lines(&metrics).map(|(_, value)| value).sum())
}

/// The `openclaw_egress_drops_total` samples of a Prometheus text
/// exposition, with their values.
pub(super) fn drops_lines(metrics: &str) -> impl Iterator<Item = (&str, u64)> {
    metrics
        .lines()
        .filter(|line| line.starts_with("openclaw_egress_drops_total"))
        .filter_map(|line| {
            let value = line.rsplit(' ').next()?.parse::<f64>().ok()?;
            // Counters are integers; the exposition format writes them as floats.
            Some((line, value as u64))
        })
}

pub(super) fn is_drop(log: &Value) -> bool {
    log["target"] == "openclaw_egress::drop"
}

/// The drop event expected for one blocked attempt.
pub(super) struct DropMatch {
    pub(super) what: String,
    pub(super) proto: &'static str,
    pub(super) dst: String,
    pub(super) dst_port: u16,
    /// Known for the probes (they report their local address), not for curl.
    pub(super) src_port: Option<u16>,
    pub(super) reason: &'static str,
}

impl DropMatch {
    pub(super) fn matches(&self, log: &Value) -> bool {
        is_drop(log)
            && log["verdict"] == "dropped"
            && log["proto"] == self.proto
            && log["dst"] == self.dst.as_str()
            && log["dst_port"] == self.dst_port
            && log["reason"] == self.reason
            && self.src_port.is_none_or(|port| log["src_port"] == port)
    }
}
