//! Per-packet cost of the `cgroup_skb/egress` program, measured in the kernel
//! with `BPF_PROG_TEST_RUN`. `cargo xtask bench` runs this and parses the one
//! JSON object it prints on stdout; by hand (root):
//!
//! ```text
//! cargo run --release --example bench_datapath -p openclaw-egress -- --entries 10,100000
//! ```
//!
//! For each entry count N, a datapath instance is loaded whose `ALLOW` hash
//! map holds N learned (address, TCP, port) entries, and the program is run
//! on TCP SYNs to allowed destinations. The kernel times the runs itself
//! (`duration` of `BPF_PROG_TEST_RUN`, nanoseconds per run).
//!
//! Which path a run takes matters more than N. The egress program keeps a
//! verdict per socket (socket local storage), and `BPF_PROG_TEST_RUN` gives
//! the skb a dummy socket: a fresh one per syscall (`net/bpf/test_run.c`
//! allocates it with `sk_alloc` and frees it at the end), shared by all the
//! `repeat` runs of that syscall. So:
//!
//! - `cache_hit`: `repeat` runs of one SYN per syscall; all but the first
//!   find the socket's verdict. This is what every packet of a connection
//!   after its first costs: the per-packet cost, which the 100 ns target is
//!   about.
//! - `first_packet`: one run per syscall (`repeat = 1`), each to a randomly
//!   chosen allowed destination. The socket has no verdict yet, so every
//!   sample is the full path: parse, verdict-cache miss, `ALLOW` lookup,
//!   expiry check, and creating the socket's verdict; and the random
//!   destination makes the lookup miss the CPU caches, more often the
//!   larger the table. What a connection pays once, in the worst case.
//! - `first_packet_same_destination`: the same, always to the same
//!   destination: a new socket each time, but a lookup the CPU caches
//!   already hold. The difference to `first_packet` is cache misses; what
//!   is left over `cache_hit` is mostly creating the socket's storage.
//! - `tc_first_packet`: the same decision through the TC program, which has
//!   no socket and caches verdicts per 5-tuple in an LRU hash map instead:
//!   one run per syscall, each a new 5-tuple, so every sample is a cache
//!   miss, the full lookup and an LRU insert.
//! - `bare_lookup_cold` and `bare_lookup_warm`: a hand-written program that
//!   only looks the packet's destination up in a hash map shaped and filled
//!   like `ALLOW` (see `raw_bpf`), one run per syscall to random
//!   destinations, and `repeat` runs of one. The floor for any policy kept
//!   in a hash table: no design does a first packet to a random one of N
//!   destinations for less than `bare_lookup_cold`.
//! - `harness`: a two-instruction program (`r0 = 1; exit`) of the same type,
//!   timed the same way: the fixed cost of the measurement itself (the
//!   timer, the run context, BH disable/enable), which every `net_ns`
//!   subtracts.
//!
//! `cache_check` proves the verdict cache is what `repeat` runs hit: an
//! allow entry that expires while one long `repeat` run is in progress
//! keeps passing (the socket's cached verdict), while a fresh syscall (a new
//! socket) after the expiry is dropped as `expired`.
//!
//! Samples of the different entry counts are interleaved round by round, so
//! drift in machine load affects them all alike. A benchmark, not a test:
//! it never judges the numbers.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use openclaw_egress::{
    clock,
    datapath::{Hooks, PolicyDatapath, encode, frames},
};
use openclaw_egress_common::{Direction, DropReason, Verdict, maps::counter_index};

mod instance;
mod raw_bpf;
mod results;
mod server_name_check;

use self::{
    instance::{Instance, policy, unchecked_policy},
    results::{CacheCheck, EntryResult, Harness, Report, Samples, Stats, Timing},
};

/// The egress program's verdicts.
const PASS: u32 = 1;
const DROP: u32 = 0;
/// The TC program's drop (`TC_ACT_SHOT`); anything else lets the packet on.
const TC_ACT_SHOT: u32 = 2;

/// The sending workload.
const AGENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
/// Allowed destinations are `198.18.0.1 + i` (RFC 2544's benchmarking
/// range, 198.18.0.0/15: 131 070 usable addresses).
const FIRST_DESTINATION: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const MAX_ENTRIES: u32 = 131_070;
const PORT: u16 = 443;
/// The name the policy allows.
const ALLOWED_NAME: &str = "api.bench.test";

#[derive(Parser)]
#[command(about = "Per-packet cost of the egress program (BPF_PROG_TEST_RUN); prints JSON")]
struct Args {
    /// Allowed entries in the ALLOW map, one datapath instance each.
    #[arg(long, value_delimiter = ',', default_value = "10,10000,100000")]
    entries: Vec<u32>,
    /// Single-run samples (repeat = 1) per entry count and path.
    #[arg(long, default_value_t = 20_000)]
    samples: u32,
    /// Runs per syscall for the cache-hit path.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Syscalls (samples) per entry count for the cache-hit path.
    #[arg(long, default_value_t = 11)]
    repeat_samples: u32,
    /// Rounds the samples are split into; each round visits every entry count.
    #[arg(long, default_value_t = 10)]
    rounds: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.rounds > 0 && args.samples >= args.rounds && args.samples <= 64_000,
        "need 0 < rounds <= samples <= 64000 (distinct source ports)"
    );
    for &n in &args.entries {
        ensure!(
            (1..=MAX_ENTRIES).contains(&n),
            "--entries: {n} is not in 1..={MAX_ENTRIES}"
        );
    }

    let trivial = raw_bpf::trivial().context("loading the trivial program (root?)")?;
    let mut instances = Vec::new();
    for &n in &args.entries {
        eprintln!("bench_datapath: loading an instance with {n} allowed entries");
        instances.push(Instance::load(n)?);
    }

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let per_round = args.samples / args.rounds;
    let fixed_frame = frames::tcp_syn(AGENT, 40000, destination(0), PORT);
    let mut harness_single = Vec::new();
    let mut samples: Vec<Samples> = instances.iter().map(|_| Samples::default()).collect();
    eprintln!(
        "bench_datapath: {} single runs per entry count and path, in {} rounds",
        per_round * args.rounds,
        args.rounds
    );
    for round in 0..args.rounds {
        for _ in 0..per_round {
            harness_single.push(nanos(trivial.run(&fixed_frame, 1)?.1));
        }
        for (instance, samples) in instances.iter().zip(&mut samples) {
            for sample in 0..per_round {
                let n = round * per_round + sample;
                let frame = instance.random_frame(&mut rng, n);
                samples.first_packet.push(instance.run_egress(&frame, 1)?);
                samples
                    .first_packet_same_destination
                    .push(instance.run_egress(&fixed_frame, 1)?);
                let frame = instance.random_frame(&mut rng, n);
                samples.tc_first_packet.push(instance.run_tc(&frame)?);
                let frame = instance.random_frame(&mut rng, n);
                samples.bare_lookup_cold.push(instance.run_bare(&frame, 1)?);
            }
        }
    }

    eprintln!(
        "bench_datapath: {} syscalls of {} runs per entry count (cache-hit path)",
        args.repeat_samples, args.repeat
    );
    let mut harness_repeated = Vec::new();
    for _ in 0..args.repeat_samples {
        harness_repeated.push(nanos(trivial.run(&fixed_frame, args.repeat)?.1));
        for (instance, samples) in instances.iter().zip(&mut samples) {
            let frame = instance.random_frame(&mut rng, 0);
            samples
                .cache_hit
                .push(instance.run_egress(&frame, args.repeat)?);
            samples
                .bare_lookup_warm
                .push(instance.run_bare(&frame, args.repeat)?);
        }
    }

    let harness = Harness {
        single_run: Stats::of(harness_single),
        repeated: Stats::of(harness_repeated),
    };
    let results: Vec<EntryResult> = instances
        .iter()
        .zip(samples)
        .map(|(instance, samples)| samples.into_result(instance.entries, &harness))
        .collect();
    drop(instances);

    let cache_hit_ns = results
        .first()
        .map_or(50.0, |r| r.cache_hit.stats.median_ns.max(1.0));
    let cache_check = cache_check(cache_hit_ns)?;
    eprintln!("bench_datapath: the server name check");
    let server_name_check = server_name_check::run(
        per_round * args.rounds / 4,
        args.repeat,
        args.repeat_samples,
        &harness,
    )?;

    let report = Report {
        kernel: kernel_release(),
        samples: per_round * args.rounds,
        repeat: args.repeat,
        repeat_samples: args.repeat_samples,
        rounds: args.rounds,
        harness,
        results,
        cache_check,
        server_name_check,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn destination(index: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(FIRST_DESTINATION) + index))
}

/// One long `repeat` run that outlasts its allow entry: if the runs after
/// the first used the socket's cached verdict, they all pass and nothing is
/// dropped as expired; a new syscall (a new dummy socket) afterwards takes
/// the lookup path and is dropped as expired.
fn cache_check(cache_hit_ns: f64) -> Result<CacheCheck> {
    const LIFETIME: Duration = Duration::from_millis(20);
    const RUN: Duration = Duration::from_millis(300);
    let policy = unchecked_policy();
    let mut datapath = PolicyDatapath::load(Hooks::CGROUP)?;
    let ip = destination(0);
    let frame = frames::tcp_syn(AGENT, 40000, ip, PORT);
    let expired = counter_index(Verdict::Dropped, Direction::Egress, DropReason::Expired) as usize;
    datapath.install_static(&encode::static_entries(&policy)?)?;
    let repeat = (RUN.as_nanos() as f64 / cache_hit_ns).clamp(1e6, f64::from(u32::MAX)) as u32;

    let expires_at = clock::monotonic_ns_after(LIFETIME);
    datapath.upsert_allow(&encode::allow_entries(
        0,
        &policy.egress[0],
        &[ip],
        expires_at,
    ))?;
    let long = datapath.test_run_egress(&frame, repeat)?;
    let outlasted_entry = clock::monotonic_ns() > expires_at;
    let run_ns = long.duration.as_nanos() as f64 * f64::from(repeat);
    let expired_in_long_run = datapath.drop_counts()?[expired];

    let fresh = datapath.test_run_egress(&frame, 1)?;
    let expired_after = datapath.drop_counts()?[expired];
    if !outlasted_entry {
        bail!("the cache check's long run ended before its allow entry expired");
    }
    Ok(CacheCheck {
        run_ms: run_ns / 1e6,
        entry_lifetime_ms: LIFETIME.as_secs_f64() * 1e3,
        outlasted_entry,
        last_verdict_in_long_run: long.return_value,
        expired_drops_in_long_run: expired_in_long_run,
        fresh_socket_verdict: fresh.return_value,
        expired_drops_after_fresh_socket: expired_after,
        repeat_runs_hit_the_cache: long.return_value == PASS
            && expired_in_long_run == 0
            && fresh.return_value == DROP
            && expired_after == 1,
    })
}

fn nanos(duration: Duration) -> f64 {
    duration.as_nanos() as f64
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// A small deterministic PRNG (xorshift64): the same destinations every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
