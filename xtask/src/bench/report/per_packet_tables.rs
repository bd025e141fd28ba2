//! The tables of per-packet costs and of the server name check's cost.

use std::fmt::Write as _;

use super::row;
use crate::bench::per_packet::{ENTRIES, PerPacket, ServerNameCheck, Timing};

pub(super) fn per_packet_table(p: &PerPacket) -> String {
    let cell = |t: &Timing| format!("{:.0} ns ({:.0})", t.net_ns, t.stats.median_ns);
    let mut out = String::new();
    writeln!(
        out,
        "cost of the egress program per run (BPF_PROG_TEST_RUN, TCP SYN to an allowed \
         destination)\n\
         median, net of the measurement's own cost; as measured in parentheses\n\n\
         per packet: every packet of a connection after its first"
    )
    .unwrap();
    for header in [
        ["entries", "egress program", "ratio", "bare hash lookup"],
        ["", "(cached verdict)", "to 10", "(floor, warm)"],
    ] {
        out.push_str(&row(&header.map(String::from), &[8, 18, 7]));
    }
    for r in &p.results {
        let cells = [
            r.entries.to_string(),
            cell(&r.cache_hit),
            format!("{:.2}", p.ratio_to_baseline(r)),
            cell(&r.bare_lookup_warm),
        ];
        out.push_str(&row(&cells, &[8, 18, 7]));
    }
    writeln!(
        out,
        "\nonce per connection: its first packet (a new socket; lookup, then the verdict is \
         stored on the socket)"
    )
    .unwrap();
    for header in [
        [
            "entries",
            "random dest.",
            "same dest.",
            "TC program",
            "bare hash lookup",
        ],
        [
            "",
            "(cache-cold)",
            "(cache-warm)",
            "(random dest.)",
            "(random dest.)",
        ],
    ] {
        out.push_str(&row(&header.map(String::from), &[8, 18, 18, 18]));
    }
    for r in &p.results {
        let cells = [
            r.entries.to_string(),
            cell(&r.first_packet),
            cell(&r.first_packet_same_destination),
            cell(&r.tc_first_packet),
            cell(&r.bare_lookup_cold),
        ];
        out.push_str(&row(&cells, &[8, 18, 18, 18]));
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
        "per packet: {} runs per syscall on one socket; every run after the first finds the \
         socket's verdict\n\
         first packet: one run per syscall ({} runs), each with a new socket, to random \
         allowed destinations (the lookup misses the CPU caches, more often in a larger \
         table) or always the same one\n\
         TC program (host-side veth mode, no socket): the same decision for a new 5-tuple, its \
         verdict stored in an LRU map\n\
         bare hash lookup: a hand-written program that only looks the destination up in a \
         hash map like ALLOW with the same entries\n\
         measurement's own cost (a program that only returns 1): {:.0} ns single run, {:.0} ns \
         per repeated run",
        p.repeat, p.samples, p.harness.single_run.median_ns, p.harness.repeated.median_ns
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

pub(super) fn server_name_table(check: &ServerNameCheck) -> String {
    let cell = |t: &Timing| format!("{:.0} ns ({:.0})", t.net_ns, t.stats.median_ns);
    let mut out = String::new();
    writeln!(
        out,
        "the server name check (TLS SNI, 10 entries): a segment carrying a whole {}-byte \
         ClientHello for the allowed name, on a rule without the check and with it",
        check.hello_bytes
    )
    .unwrap();
    out.push_str(&row(
        &["", "unchecked", "checked", "difference"].map(String::from),
        &[34, 18, 18],
    ));
    for (what, pair) in [
        (
            "first segment, cgroup (new socket)",
            &check.cgroup_first_segment,
        ),
        ("first segment, TC (after the SYN)", &check.tc_first_segment),
        ("per packet after it (cgroup)", &check.cgroup_after),
    ] {
        let cells = [
            what.to_owned(),
            cell(&pair.unchecked),
            cell(&pair.checked),
            format!("{:+.0} ns", pair.checked.net_ns - pair.unchecked.net_ns),
        ];
        out.push_str(&row(&cells, &[34, 18, 18]));
    }
    out
}
