//! The tables of throughput and connection rate per configuration, and their JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::bench::{
    stats,
    throughput::{Config, Throughput},
};

fn throughput_row(config: &str, gbit_per_s: &str, ratio: &str, runs: &str) -> String {
    format!("{config:<30} {gbit_per_s:>8}   {ratio:<20} {runs}\n")
}

pub(super) fn throughput_table(t: &Throughput) -> String {
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

pub(super) fn connection_rate_table(t: &Throughput) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "connections one after another, each reading a greeting, then closed (oce-probe \
         connect-rate, {} s per configuration after each iperf3 run; ratio: median over \
         repetitions of run / no-filter run)",
        t.seconds
    )
    .unwrap();
    out.push_str(&throughput_row(
        "config",
        "conn/s",
        "ratio to no filter",
        "client CPU per connection",
    ));
    for config in Config::ALL {
        let (rate, cpu_us) = t.connection_rate(config);
        out.push_str(&throughput_row(
            &config.label(t.allowed_destinations),
            &format!("{rate:.0}"),
            &format!("{:.3}", t.connection_rate_ratio(config)),
            &format!("{cpu_us:.1} us"),
        ));
    }
    out
}

pub(super) fn throughput_json(t: &Throughput) -> Value {
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
