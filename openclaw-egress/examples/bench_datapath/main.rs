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
    policy::{DnsConfig, EgressRule, Fqdn, Mode, Policy, PortSpec, Protocol, Selector, Target},
};
use openclaw_egress_common::{
    Direction, DropReason, Verdict,
    maps::{ALLOW_MAX_ENTRIES, counter_index},
};
use serde::Serialize;

mod raw_bpf;
mod server_name_check;

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

/// Order statistics of a set of per-run durations, in nanoseconds.
#[derive(Serialize)]
struct Stats {
    samples: usize,
    median_ns: f64,
    p10_ns: f64,
    p90_ns: f64,
}

impl Stats {
    fn of(mut values: Vec<f64>) -> Self {
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
struct Timing {
    #[serde(flatten)]
    stats: Stats,
    net_ns: f64,
}

impl Timing {
    fn of(samples: Vec<f64>, harness: &Stats) -> Self {
        let stats = Stats::of(samples);
        let net_ns = stats.median_ns - harness.median_ns;
        Self { stats, net_ns }
    }
}

#[derive(Serialize)]
struct EntryResult {
    entries: u32,
    cache_hit: Timing,
    bare_lookup_warm: Timing,
    first_packet: Timing,
    first_packet_same_destination: Timing,
    tc_first_packet: Timing,
    bare_lookup_cold: Timing,
}

/// The samples of one entry count, nanoseconds per run.
#[derive(Default)]
struct Samples {
    cache_hit: Vec<f64>,
    bare_lookup_warm: Vec<f64>,
    first_packet: Vec<f64>,
    first_packet_same_destination: Vec<f64>,
    tc_first_packet: Vec<f64>,
    bare_lookup_cold: Vec<f64>,
}

impl Samples {
    fn into_result(self, entries: u32, harness: &Harness) -> EntryResult {
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
struct Harness {
    /// The trivial program, one run per syscall.
    single_run: Stats,
    /// The trivial program, `repeat` runs per syscall (per-run average).
    repeated: Stats,
}

#[derive(Serialize)]
struct CacheCheck {
    /// How long the one long `repeat` run took, and the entry's lifetime.
    run_ms: f64,
    entry_lifetime_ms: f64,
    /// The long run outlasted the entry.
    outlasted_entry: bool,
    /// Verdict of the last run of the long syscall (1 = pass).
    last_verdict_in_long_run: u32,
    /// `expired` drops counted during the long run.
    expired_drops_in_long_run: u64,
    /// Verdict of a new syscall (new socket) after the expiry (0 = drop).
    fresh_socket_verdict: u32,
    /// `expired` drops after that syscall.
    expired_drops_after_fresh_socket: u64,
    /// Every run after the first in one syscall took the cache-hit path.
    repeat_runs_hit_the_cache: bool,
}

#[derive(Serialize)]
struct Report {
    kernel: String,
    samples: u32,
    repeat: u32,
    repeat_samples: u32,
    rounds: u32,
    harness: Harness,
    results: Vec<EntryResult>,
    cache_check: CacheCheck,
    server_name_check: server_name_check::ServerNameCheck,
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

/// One loaded, filled, unattached datapath instance, and the bare-lookup
/// baseline over a map holding the same entries.
struct Instance {
    entries: u32,
    datapath: PolicyDatapath,
    bare_lookup: raw_bpf::Program,
}

impl Instance {
    /// Rule 0 is an `fqdn` rule for 443/tcp; `entries` addresses are
    /// "resolved" for it (ALLOW entries, as the daemon writes them).
    fn load(entries: u32) -> Result<Self> {
        Self::load_policy(unchecked_policy(), entries)
    }

    fn load_policy(policy: Policy, entries: u32) -> Result<Self> {
        let mut datapath = PolicyDatapath::load(Hooks {
            cgroup: true,
            interfaces: true,
        })
        .context("loading the programs (are we root?)")?;
        let ips: Vec<IpAddr> = (0..entries).map(destination).collect();
        let expires = clock::monotonic_ns_after(Duration::from_secs(24 * 3600));
        let allow = encode::allow_entries(0, &policy.egress[0], &ips, expires);
        datapath.upsert_allow(&allow)?;
        let bare_map = raw_bpf::HashMap::allow_shaped(ALLOW_MAX_ENTRIES)
            .context("creating the bare-lookup map")?;
        for (key, value) in &allow {
            bare_map.insert(key, value)?;
        }
        let bare_lookup = raw_bpf::bare_lookup(&bare_map, &allow[0].0)
            .context("loading the bare-lookup program")?;
        let static_entries = encode::static_entries(&policy)?;
        datapath.install_static(&static_entries)?;
        let stored = datapath.allow_entries().len();
        ensure!(
            stored == entries as usize,
            "ALLOW holds {stored} entries, expected {entries}"
        );
        Ok(Self {
            entries,
            datapath,
            bare_lookup,
        })
    }

    /// Nanoseconds per run of the egress program, which must pass `frame`.
    fn run_egress(&self, frame: &[u8], repeat: u32) -> Result<f64> {
        let result = self.datapath.test_run_egress(frame, repeat)?;
        ensure!(
            result.return_value == PASS,
            "the egress program dropped an allowed SYN ({} entries)",
            self.entries
        );
        Ok(nanos(result.duration))
    }

    /// Nanoseconds per run of the TC program, which must pass `frame`.
    fn run_tc(&self, frame: &[u8]) -> Result<f64> {
        let result = self.datapath.test_run_tc_from_workload(frame)?;
        ensure!(
            result.return_value != TC_ACT_SHOT,
            "the TC program dropped an allowed SYN ({} entries)",
            self.entries
        );
        Ok(nanos(result.duration))
    }

    /// Nanoseconds per run of the bare lookup, which must find `frame`'s
    /// destination.
    fn run_bare(&self, frame: &[u8], repeat: u32) -> Result<f64> {
        let (found, duration) = self.bare_lookup.run(frame, repeat)?;
        ensure!(
            found == 1,
            "the bare lookup missed an allowed destination ({} entries)",
            self.entries
        );
        Ok(nanos(duration))
    }

    /// A SYN to a random allowed destination from source port `1024 + n %
    /// 64 000`: distinct `n` below 64 000 give distinct 5-tuples, so the TC
    /// program's flow cache never already knows one.
    fn random_frame(&self, rng: &mut XorShift, n: u32) -> Vec<u8> {
        let index = u32::try_from(rng.next() % u64::from(self.entries)).expect("below entries");
        let src_port = 1024 + u16::try_from(n % 64_000).expect("below 64 000");
        frames::tcp_syn(AGENT, src_port, destination(index), PORT)
    }
}

fn policy() -> Policy {
    Policy {
        name: "bench".into(),
        mode: Mode::Enforce,
        selector: Selector::default(),
        dns: DnsConfig::with_resolvers(vec![IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1))]),
        egress: vec![EgressRule::new(
            Target::Fqdn(Fqdn(ALLOWED_NAME.into())),
            vec![PortSpec {
                port: PORT,
                protocol: Protocol::Tcp,
            }],
        )],
    }
}

/// [`policy`] without the TLS check on its port: the per-packet series
/// predate the server name check (`server_name_check` measures it).
fn unchecked_policy() -> Policy {
    let mut policy = policy();
    policy.egress[0].inspection.tls_ports.clear();
    policy
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
