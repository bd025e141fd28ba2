//! What the benchmark reports: order statistics, timings net of the harness, per entry count, and the JSON report.

use serde::Serialize;

use super::server_name_check;

/// Order statistics of a set of per-run durations, in nanoseconds.
#[derive(Serialize)]
pub(crate) struct Stats {
    pub(crate) samples: usize,
    pub(crate) median_ns: f64,
    pub(crate) p10_ns: f64,
    pub(crate) p90_ns: f64,
}

impl Stats {
    pub(crate) fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let index = ((values.len() - 1) as f64 * q).round() as usize;
            values[index]
        };
        Self {
            samples: values.len(),
            median_ns: at(0.5),
            p10_ns: at(0.1),
            p90_ns: at(0.9),
        }
    }
}

/// [`Stats`] of one path, and its median net of the measurement's own cost
/// (the harness's median for the same kind of run).
#[derive(Serialize)]
pub(crate) struct Timing {
    #[serde(flatten)]
    pub(crate) stats: Stats,
    pub(crate) net_ns: f64,
}

impl Timing {
    pub(crate) fn of(samples: Vec<f64>, harness: &Stats) -> Self {
        let stats = Stats::of(samples);
        let net_ns = stats.median_ns - harness.median_ns;
        Self { stats, net_ns }
    }
}

#[derive(Serialize)]
pub(crate) struct EntryResult {
    pub(crate) entries: u32,
    pub(crate) cache_hit: Timing,
    pub(crate) bare_lookup_warm: Timing,
    pub(crate) first_packet: Timing,
    pub(crate) first_packet_same_destination: Timing,
    pub(crate) tc_first_packet: Timing,
    pub(crate) bare_lookup_cold: Timing,
}

/// The samples of one entry count, nanoseconds per run.
#[derive(Default)]
pub(crate) struct Samples {
    pub(crate) cache_hit: Vec<f64>,
    pub(crate) bare_lookup_warm: Vec<f64>,
    pub(crate) first_packet: Vec<f64>,
    pub(crate) first_packet_same_destination: Vec<f64>,
    pub(crate) tc_first_packet: Vec<f64>,
    pub(crate) bare_lookup_cold: Vec<f64>,
}

impl Samples {
    pub(crate) fn into_result(self, entries: u32, harness: &Harness) -> EntryResult {
        let single = &harness.single_run;
        EntryResult {
            entries,
            cache_hit: Timing::of(self.cache_hit, &harness.repeated),
            bare_lookup_warm: Timing::of(self.bare_lookup_warm, &harness.repeated),
            first_packet: Timing::of(self.first_packet, single),
            first_packet_same_destination: Timing::of(self.first_packet_same_destination, single),
            tc_first_packet: Timing::of(self.tc_first_packet, single),
            bare_lookup_cold: Timing::of(self.bare_lookup_cold, single),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Harness {
    /// The trivial program, one run per syscall.
    pub(crate) single_run: Stats,
    /// The trivial program, `repeat` runs per syscall (per-run average).
    pub(crate) repeated: Stats,
}

#[derive(Serialize)]
pub(crate) struct CacheCheck {
    /// How long the one long `repeat` run took, and the entry's lifetime.
    pub(crate) run_ms: f64,
    pub(crate) entry_lifetime_ms: f64,
    /// The long run outlasted the entry.
    pub(crate) outlasted_entry: bool,
    /// Verdict of the last run of the long syscall (1 = pass).
    pub(crate) last_verdict_in_long_run: u32,
    /// `expired` drops counted during the long run.
    pub(crate) expired_drops_in_long_run: u64,
    /// Verdict of a new syscall (new socket) after the expiry (0 = drop).
    pub(crate) fresh_socket_verdict: u32,
    /// `expired` drops after that syscall.
    pub(crate) expired_drops_after_fresh_socket: u64,
    /// Every run after the first in one syscall took the cache-hit path.
    pub(crate) repeat_runs_hit_the_cache: bool,
}

#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) kernel: String,
    pub(crate) samples: u32,
    pub(crate) repeat: u32,
    pub(crate) repeat_samples: u32,
    pub(crate) rounds: u32,
    pub(crate) harness: Harness,
    pub(crate) results: Vec<EntryResult>,
    pub(crate) cache_check: CacheCheck,
    pub(crate) server_name_check: server_name_check::ServerNameCheck,
}
