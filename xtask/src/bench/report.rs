//! The benchmark's table, its target checks and results.json.

use std::{fmt::Write as _, fs, path::Path};

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    machine::Machine,
    per_packet::{ENTRIES, PerPacket},
    stats,
    throughput::{Config, Throughput},
};

/// Target: the first packet of a connection (full lookup) costs less than
/// this at 100 000 allowed entries.
pub const PER_PACKET_TARGET_NS: f64 = 100.0;
pub const PER_PACKET_TARGET_ENTRIES: u32 = 100_000;
/// Target: throughput with our filter is at least this fraction of no filter.
pub const THROUGHPUT_TARGET_RATIO: f64 = 0.97;

pub struct Results {
    machine: Machine,
    loadavg_after: String,
    per_packet: Option<PerPacket>,
    throughput: Option<Throughput>,
}

/// One target, checked.
#[derive(Serialize)]
struct Check {
    met: bool,
    text: String,
}

impl Results {
    pub fn new(
        machine: Machine,
        per_packet: Option<PerPacket>,
        throughput: Option<Throughput>,
    ) -> Self {
        Self {
            machine,
            loadavg_after: super::machine::loadavg(),
            per_packet,
            throughput,
        }
    }

    pub fn all_targets_met(&self) -> bool {
        self.checks().iter().all(|c| c.met)
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        if let Some(per_packet) = &self.per_packet
            && let Some(result) = per_packet.at(PER_PACKET_TARGET_ENTRIES)
        {
            let net = result.first_packet_net_ns;
            checks.push(Check {
                met: net < PER_PACKET_TARGET_NS,
                text: format!(
                    "per packet at {PER_PACKET_TARGET_ENTRIES} entries: {net:.0} ns for a \
                     connection's first packet (full lookup; {:.0} ns as measured), target \
                     < {PER_PACKET_TARGET_NS:.0} ns. Later packets (cache hit): {:.0} ns \
                     ({:.0} as measured)",
                    result.first_packet.median_ns,
                    result.cache_hit_net_ns,
                    result.cache_hit.median_ns
                ),
            });
        }
        if let Some(throughput) = &self.throughput {
            let ratio = throughput.ratio(Config::OpenclawEgress);
            let control = throughput.ratio(Config::NoFilterControl);
            let noisy = (control - 1.0).abs() > 1.0 - THROUGHPUT_TARGET_RATIO;
            checks.push(Check {
                met: ratio >= THROUGHPUT_TARGET_RATIO,
                text: format!(
                    "throughput with openclaw-egress: {:.1}% of no filter, target within {:.0}% \
                     (the A/A control, no filter measured again, came out at {:.1}%{})",
                    ratio * 100.0,
                    (1.0 - THROUGHPUT_TARGET_RATIO) * 100.0,
                    control * 100.0,
                    if noisy {
                        ": this run's noise exceeds the target's margin, so the check is \
                         not conclusive"
                    } else {
                        ""
                    }
                ),
            });
        }
        checks
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        writeln!(
            out,
            "{} UTC; {} CPUs ({}); kernel {}; load average {} at the start, {} at the end",
            m.date, m.nproc, m.cpu, m.kernel, m.loadavg, self.loadavg_after
        )
        .unwrap();
        if let Some(per_packet) = &self.per_packet {
            out.push('\n');
            out.push_str(&per_packet_table(per_packet));
        }
        if let Some(throughput) = &self.throughput {
            out.push('\n');
            out.push_str(&throughput_table(throughput));
        }
        if let (Some(per_packet), Some(throughput)) = (&self.per_packet, &self.throughput)
            && let Some(result) = per_packet.results.first()
        {
            // The iperf3 flow is one connection: after its first packet every
            // egress run is a cache hit.
            let (tx, rx) = throughput.packet_rates(Config::OpenclawEgress);
            let share = tx * result.cache_hit.median_ns / 1e9;
            writeln!(
                out,
                "with openclaw-egress the egress program ran {tx:.0} times/s (cache hit, {:.0} ns \
                 each as measured above): {:.2}% of one CPU; the ingress program ran {rx:.0} \
                 times/s on the ACKs",
                result.cache_hit.median_ns,
                share * 100.0
            )
            .unwrap();
        }
        out.push('\n');
        for check in self.checks() {
            writeln!(out, "{} {}", if check.met { "✓" } else { "✗" }, check.text).unwrap();
        }
        out
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = path.parent().expect("results.json has a parent directory");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = json!({
            "machine": self.machine,
            "loadavg_after": self.loadavg_after,
            "per_packet": self.per_packet.as_ref().map(|p| &p.raw),
            "throughput": self.throughput.as_ref().map(throughput_json),
            "targets": self.checks(),
            "all_targets_met": self.all_targets_met(),
        });
        fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }
}

fn per_packet_table(p: &PerPacket) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "per-packet cost of the egress program (BPF_PROG_TEST_RUN, TCP SYN to an allowed \
         destination)\n\
         ns per packet, median, net of the measurement's own cost; as measured in parentheses"
    )
    .unwrap();
    for header in [
        [
            "entries",
            "first packet",
            "ratio",
            "later packets",
            "TC program:",
        ],
        ["", "(full lookup)", "to 10", "(cache hit)", "first packet"],
    ] {
        out.push_str(&per_packet_row(header.map(String::from)));
    }
    for r in &p.results {
        let cell = |net: f64, measured: f64| format!("{net:.0} ns ({measured:.0})");
        out.push_str(&per_packet_row([
            r.entries.to_string(),
            cell(r.first_packet_net_ns, r.first_packet.median_ns),
            format!("{:.2}", p.ratio_to_baseline(r)),
            cell(r.cache_hit_net_ns, r.cache_hit.median_ns),
            cell(r.tc_first_packet_net_ns, r.tc_first_packet.median_ns),
        ]));
    }
    let missing: Vec<String> = ENTRIES
        .iter()
        .filter(|n| p.at(**n).is_none())
        .map(u32::to_string)
        .collect();
    if !missing.is_empty() {
        writeln!(out, "(no result for {} entries)", missing.join(", ")).unwrap();
    }
    writeln!(
        out,
        "first packet: a new socket, one run per syscall ({} runs, random allowed destinations): \
         lookup, then the verdict is stored on the socket\n\
         later packets: {} runs per syscall on one socket; every run after the first finds the \
         socket's verdict\n\
         TC program (host-side veth mode, no socket): the same decision for a new 5-tuple, its \
         verdict stored in an LRU map\n\
         measurement's own cost (a program that only returns 1): {:.0} ns single run, {:.0} ns \
         per repeated run",
        p.samples, p.repeat, p.harness.single_run.median_ns, p.harness.repeated.median_ns
    )
    .unwrap();
    let check = &p.cache_check;
    writeln!(
        out,
        "{} repeated runs hit the verdict cache: an entry expiring {:.0} ms into a {:.0} ms \
         run kept passing; a new socket after it was dropped as expired",
        if check.repeat_runs_hit_the_cache {
            "✓"
        } else {
            "✗ NOT CONFIRMED:"
        },
        check.entry_lifetime_ms,
        check.run_ms
    )
    .unwrap();
    out
}

fn per_packet_row(cells: [String; 5]) -> String {
    let [entries, first, ratio, hit, tc] = cells;
    format!("{entries:<8} {first:<18} {ratio:<7} {hit:<15} {tc}\n")
}

fn throughput_row(config: &str, gbit_per_s: &str, ratio: &str, runs: &str) -> String {
    format!("{config:<30} {gbit_per_s:>8}   {ratio:<20} {runs}\n")
}

fn throughput_table(t: &Throughput) -> String {
    let mut out = String::new();
    let baseline = t.gbit_per_s(Config::NoFilter);
    writeln!(
        out,
        "TCP throughput over the veth (iperf3, {} s x {}, interleaved; ratio: median over \
         repetitions of run / no-filter run)",
        t.seconds, t.repetitions
    )
    .unwrap();
    out.push_str(&throughput_row(
        "config",
        "Gbit/s",
        "ratio to no filter",
        "runs (Gbit/s)",
    ));
    for config in Config::ALL {
        let runs = t
            .gbit_per_s(config)
            .iter()
            .map(|g| format!("{g:.2}"))
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&throughput_row(
            &config.label(t.allowed_destinations),
            &format!("{:.2}", t.median(config)),
            &format!("{:.3}", t.ratio(config)),
            &runs,
        ));
    }
    writeln!(
        out,
        "no-filter runs spread {:.1}% (max - min over median); {:.0} bytes per packet on \
         average (TSO/GSO), so the egress program ran once per ~{:.0} KiB",
        stats::spread(&baseline) * 100.0,
        t.bytes_per_packet(Config::OpenclawEgress),
        t.bytes_per_packet(Config::OpenclawEgress) / 1024.0
    )
    .unwrap();
    out
}

fn throughput_json(t: &Throughput) -> Value {
    let summary: Vec<Value> = Config::ALL
        .iter()
        .map(|&config| {
            json!({
                "config": config,
                "label": config.label(t.allowed_destinations),
                "median_gbit_per_s": t.median(config),
                "ratio_to_no_filter": t.ratio(config),
                "ratios": t.ratios(config),
                "bytes_per_packet": t.bytes_per_packet(config),
            })
        })
        .collect();
    json!({
        "settings": {
            "seconds": t.seconds,
            "repetitions": t.repetitions,
            "allowed_destinations": t.allowed_destinations,
            "inherited_programs": t.inherited_programs,
        },
        "summary": summary,
        "runs": t.runs,
    })
}
