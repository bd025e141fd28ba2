//! The table of a node full of agents and the checks of its targets.

use std::fmt::Write as _;

use super::{
    APPLY_100_TARGET_S, APPLY_TARGET_MS, Check, LARGE_APPLY_TARGET_S, MAP_MEMORY_TARGET_BYTES,
    RSS_TARGET_BYTES, row,
};
use crate::bench::node::Node;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(super) fn node_table(node: &Node) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "a node full of agents: one cgroup and one 10-name policy per workload, applied one \
         after another (`openclaw-egress apply`, release daemon)"
    )
    .unwrap();
    let widths = [10, 16, 14, 14, 18];
    out.push_str(&row(
        &[
            "workloads",
            "apply (median)",
            "apply (p90)",
            "all so far",
            "maps per workload",
            "daemon RSS",
        ]
        .map(String::from),
        &widths,
    ));
    for r in &node.rounds {
        let cells = [
            r.workloads.to_string(),
            format!("{:.1} ms", r.apply_median_ms),
            format!("{:.1} ms", r.apply_p90_ms),
            format!("{:.2} s", r.total_s),
            format!("{} KiB", r.map_memory_per_workload_bytes / 1024),
            format!("{:.1} MiB", mib(r.daemon_rss_bytes)),
        ];
        out.push_str(&row(&cells, &widths));
    }
    writeln!(
        out,
        "after removing every policy: {} left, daemon RSS {:.1} MiB\n\
         one policy of {} names: applied (resolution included) in {:.2} s, {:.1} MiB of maps",
        node.policies_after_remove,
        mib(node.daemon_rss_after_remove_bytes),
        node.large_names,
        node.large_apply_s,
        mib(node.large_map_memory_bytes)
    )
    .unwrap();
    out
}

pub(super) fn node_checks(node: &Node) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(last) = node.rounds.last() {
        checks.push(Check {
            met: last.apply_median_ms < APPLY_TARGET_MS,
            text: format!(
                "one more workload at {} workloads: applied and enforcing in {:.1} ms (median), \
                 target < {APPLY_TARGET_MS:.0} ms",
                last.workloads, last.apply_median_ms
            ),
        });
        checks.push(Check {
            met: last.total_s < APPLY_100_TARGET_S,
            text: format!(
                "{} workloads applied in {:.2} s in all, target < {APPLY_100_TARGET_S:.0} s",
                last.workloads, last.total_s
            ),
        });
        checks.push(Check {
            met: last.map_memory_per_workload_bytes < MAP_MEMORY_TARGET_BYTES,
            text: format!(
                "kernel map memory per workload of a 10-name policy: {} KiB, target < {} KiB",
                last.map_memory_per_workload_bytes / 1024,
                MAP_MEMORY_TARGET_BYTES / 1024
            ),
        });
        checks.push(Check {
            met: last.daemon_rss_bytes < RSS_TARGET_BYTES,
            text: format!(
                "daemon RSS with {} workloads: {:.1} MiB, target < {:.0} MiB",
                last.workloads,
                mib(last.daemon_rss_bytes),
                mib(RSS_TARGET_BYTES)
            ),
        });
    }
    checks.push(Check {
        met: node.large_apply_s < LARGE_APPLY_TARGET_S,
        text: format!(
            "{} names applied (resolution included) in {:.2} s, target < \
             {LARGE_APPLY_TARGET_S:.0} s",
            node.large_names, node.large_apply_s
        ),
    });
    checks
}
