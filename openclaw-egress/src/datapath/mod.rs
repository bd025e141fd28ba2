//! One loaded copy of the eBPF programs and maps for one policy.
//!
//! Every policy gets its own instance of every map (design rule: a lookup made
//! by one workload must never open anything for another), which also makes an
//! atomic policy swap simple: load and fill a complete new instance, attach
//! it, then detach the old one.

pub mod encode;
pub mod frames;

use std::{net::IpAddr, os::fd::AsFd};

use aya::{
    Ebpf, EbpfError,
    maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, RingBuf, lpm_trie},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramError, TestRun as _,
        TestRunOptions, TestRunResult,
    },
};
use openclaw_egress_common::{
    Addr, AllowKey, AllowValue, CidrKey, CidrValue, PolicyConfig,
    maps::{self as names, DROP_COUNTERS_LEN},
};

pub use encode::{CidrEntry, StaticEntries};

/// The eBPF object built from `openclaw-egress-ebpf` by build.rs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/openclaw-egress"));

/// Program names, i.e. the function names in the eBPF crate.
pub const EGRESS_PROGRAM: &str = "egress";

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the eBPF object: {0}")]
    Load(#[from] EbpfError),
    #[error("eBPF program `{name}`: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("eBPF map `{name}`: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
    #[error("the eBPF object has no {kind} named `{name}`")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
}

type Result<T, E = DatapathError> = std::result::Result<T, E>;

/// Summed per-CPU drop counters, indexed by `maps::counter_index`.
pub type DropCounts = Vec<u64>;

pub struct PolicyDatapath {
    /// Owns the programs and their cgroup links: dropping it detaches them.
    ebpf: Ebpf,
    allow: HashMap<MapData, AllowKey, AllowValue>,
    cidr: LpmTrie<MapData, CidrKey, CidrValue>,
    resolvers: HashMap<MapData, Addr, u32>,
    config: Array<MapData, PolicyConfig>,
    drop_counters: PerCpuArray<MapData, u64>,
    events_lost: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
}

impl PolicyDatapath {
    /// Loads a fresh instance: programs verified, maps empty and the policy
    /// not ready (so it would drop everything if attached now).
    pub fn load() -> Result<Self> {
        let mut ebpf = Ebpf::load(EBPF_OBJECT)?;
        let egress: &mut CgroupSkb = program(&mut ebpf, EGRESS_PROGRAM)?;
        egress.load().map_err(|source| DatapathError::Program {
            name: EGRESS_PROGRAM,
            source,
        })?;
        Ok(Self {
            allow: take_map(&mut ebpf, names::ALLOW)?,
            cidr: take_map(&mut ebpf, names::CIDR)?,
            resolvers: take_map(&mut ebpf, names::RESOLVERS)?,
            config: take_map(&mut ebpf, names::CONFIG)?,
            drop_counters: take_map(&mut ebpf, names::DROP_COUNTERS)?,
            events_lost: take_map(&mut ebpf, names::EVENTS_LOST)?,
            events: Some(take_map(&mut ebpf, names::EVENTS)?),
            ebpf,
        })
    }

    /// Writes the entries the policy text determines. The config (and with it
    /// the `ready` flag) is written last, so the programs never act on a
    /// partially written policy.
    pub fn install_static(&mut self, entries: &StaticEntries) -> Result<()> {
        for resolver in &entries.resolvers {
            self.resolvers
                .insert(resolver, 0, 0)
                .map_err(map_error(names::RESOLVERS))?;
        }
        for entry in &entries.cidrs {
            let key = lpm_trie::Key::new(entry.prefix_len, entry.key);
            self.cidr
                .insert(&key, entry.value, 0)
                .map_err(map_error(names::CIDR))?;
        }
        self.config
            .set(0, entries.config, 0)
            .map_err(map_error(names::CONFIG))
    }

    pub fn upsert_allow(&mut self, entries: &[(AllowKey, AllowValue)]) -> Result<()> {
        for (key, value) in entries {
            self.allow
                .insert(key, value, 0)
                .map_err(map_error(names::ALLOW))?;
        }
        Ok(())
    }

    pub fn remove_allow(&mut self, key: &AllowKey) -> Result<()> {
        match self.allow.remove(key) {
            // Already gone (e.g. removed by an earlier GC pass): nothing to do.
            Err(MapError::KeyNotFound) => Ok(()),
            other => other.map_err(map_error(names::ALLOW)),
        }
    }

    /// Every entry of the `ALLOW` map; entries that vanish while iterating are skipped.
    pub fn allow_entries(&self) -> Vec<(AllowKey, AllowValue)> {
        self.allow.iter().filter_map(Result::ok).collect()
    }

    /// Attaches the egress program to a cgroup v2 directory. The attachments are BPF
    /// links, and links on a cgroup always coexist (the kernel refuses attach
    /// flags on them; `Single` means no flags): a new instance joins before
    /// the old one leaves, and while both are attached a packet must pass
    /// both, so a swap never opens anything.
    pub fn attach_cgroup(&mut self, cgroup: impl AsFd) -> Result<()> {
        let egress: &mut CgroupSkb = program(&mut self.ebpf, EGRESS_PROGRAM)?;
        egress
            .attach(
                cgroup,
                CgroupSkbAttachType::Egress,
                CgroupAttachMode::Single,
            )
            .map_err(|source| DatapathError::Program {
                name: EGRESS_PROGRAM,
                source,
            })?;
        Ok(())
    }

    pub fn drop_counts(&self) -> Result<DropCounts> {
        (0..DROP_COUNTERS_LEN)
            .map(|index| {
                self.drop_counters
                    .get(&index, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(map_error(names::DROP_COUNTERS))
            })
            .collect()
    }

    pub fn events_lost(&self) -> Result<u64> {
        self.events_lost
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .map_err(map_error(names::EVENTS_LOST))
    }

    /// Runs the egress program on `frame` (an Ethernet frame: the kernel strips
    /// the Ethernet header, as the program expects) `repeat` times without
    /// attaching it, through `BPF_PROG_TEST_RUN`. For tests and benchmarks;
    /// the return value is 1 for pass, 0 for drop.
    pub fn test_run_egress(&self, frame: &[u8], repeat: u32) -> Result<TestRunResult> {
        let program = self
            .ebpf
            .program(EGRESS_PROGRAM)
            .ok_or(DatapathError::Missing {
                kind: "program",
                name: EGRESS_PROGRAM,
            })?;
        let egress: &CgroupSkb = program
            .try_into()
            .map_err(|source| DatapathError::Program {
                name: EGRESS_PROGRAM,
                source,
            })?;
        let options = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        };
        egress
            .test_run(options)
            .map_err(|source| DatapathError::Program {
                name: EGRESS_PROGRAM,
                source,
            })
    }

    /// Hands the event ring buffer to its reader (once).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }
}

/// `true` when an address is in the map form of `ip`'s family (helper for status output).
pub fn ip_of(addr: &Addr) -> IpAddr {
    match openclaw_egress_common::addr::as_ipv4(addr) {
        Some(v4) => IpAddr::from(v4),
        None => IpAddr::from(*addr),
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program = ebpf.program_mut(name).ok_or(DatapathError::Missing {
        kind: "program",
        name,
    })?;
    program
        .try_into()
        .map_err(|source| DatapathError::Program { name, source })
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DatapathError::Missing { kind: "map", name })?;
    T::try_from(map).map_err(map_error(name))
}

fn map_error(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}
