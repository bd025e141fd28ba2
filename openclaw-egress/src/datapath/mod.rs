//! The kernel datapath: the shared programs and maps (`shared`), and one
//! applied policy on one workload (`PolicyDatapath`): its maps at a slot,
//! and its claim on the workload it filters.
//!
//! Programs are verified once per daemon; adding a workload loads two
//! seven-instruction stubs and creates maps sized to its policy. Every
//! workload still has maps of its own (design rule: a lookup made by one
//! workload must never open anything for another). A policy swap fills a
//! complete new slot, then puts it in force with one atomic store.

mod active;
mod attachment;
pub mod encode;
#[cfg(feature = "test-helpers")]
pub mod frames;
mod numbers;
mod pins;
pub mod pod_gate;
mod shared;
mod slot;
mod stub;
#[cfg(feature = "test-helpers")]
mod test_helpers;

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use aya::{
    EbpfError,
    maps::{MapData, MapError, RingBuf},
    pin::PinError,
    programs::ProgramError,
};
use openclaw_egress_common::{
    AllowKey, AllowValue, FlowKey,
    dns::DnsStat,
    maps::{DROP_COUNTERS_LEN, FLOW_ALLOWED},
    workload::counters,
};

pub use attachment::Place;
pub use encode::{CidrEntry, EncodeError, PrefixEntry, StaticEntries};
pub use shared::Datapath;
pub use slot::Capacities;
pub use stub::{Entry, WORKLOAD_CB_OFFSET};
#[cfg(feature = "test-helpers")]
pub use test_helpers::{TestRun, object};

use attachment::Holder;
use slot::SlotMaps;

/// The eBPF object built from `openclaw-egress-ebpf` by build.rs.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/openclaw-egress"));
/// The same with feature `trace`: every verdict logged through aya-log.
static EBPF_OBJECT_TRACE: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/openclaw-egress-trace"));

/// Which build of the programs a datapath runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Build {
    /// No logging code, no log map.
    #[default]
    Plain,
    /// Logs each verdict of the packet hooks (`daemon --trace-datapath`).
    Trace,
}

impl Build {
    pub fn object(self) -> &'static [u8] {
        match self {
            Build::Plain => EBPF_OBJECT,
            Build::Trace => EBPF_OBJECT_TRACE,
        }
    }
}

/// Program names, i.e. the function names in the eBPF crate.
pub const EGRESS_PROGRAM: &str = "egress";
pub const INGRESS_PROGRAM: &str = "ingress";
pub const TC_FROM_WORKLOAD_PROGRAM: &str = "tc_from_workload";
pub const TC_TO_WORKLOAD_PROGRAM: &str = "tc_to_workload";
pub use shared::SOCK_ADDR_PROGRAMS;

/// Which hooks a policy's workload has: its maps include what the TC
/// programs need only if it has interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hooks {
    pub cgroup: bool,
    pub interfaces: bool,
}

impl Hooks {
    pub const CGROUP: Self = Self {
        cgroup: true,
        interfaces: false,
    };
    pub const INTERFACES: Self = Self {
        cgroup: false,
        interfaces: true,
    };
}

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
    #[error("creating `{name}`: {source}")]
    Create {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[cfg(feature = "test-helpers")]
    #[error("test run of `{name}`: {source}")]
    TestRun {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("attaching to {place}: {source}")]
    Attach {
        place: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the eBPF object has no {kind} named `{name}`")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("pinning {path}: {source}")]
    Pin {
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error("pinned datapath {path}: {source}")]
    Pinned {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no room for more {what}: the datapath holds at most {max}")]
    Full { what: &'static str, max: u32 },
    #[error("the datapath is not pinned, so there is nothing to adopt")]
    NotPinned,
    #[cfg(feature = "test-helpers")]
    #[error("this policy was not attached here to run its programs (tests run them unattached)")]
    NotRunnable,
}

type Result<T, E = DatapathError> = std::result::Result<T, E>;

/// Summed per-CPU drop counters, indexed by `maps::counter_index`.
pub type DropCounts = Vec<u64>;
/// Summed per-CPU DNS counters, indexed by `DnsStat`.
pub type DnsStats = Vec<u64>;

/// One applied policy on one workload.
pub struct PolicyDatapath {
    shared: Arc<Datapath>,
    slot: u32,
    epoch: u32,
    maps: SlotMaps,
    /// The claims on workloads this policy version holds.
    holders: Vec<Holder>,
    /// A workload number with the slot in force but no hooks attached: for
    /// test runs of the programs (set only with feature `test-helpers`).
    unattached: Option<u32>,
}

impl PolicyDatapath {
    /// A new slot of `shared` for a policy, with maps of `capacities` (and
    /// those of TC hooks if `hooks.interfaces`): empty, and not ready.
    pub fn create(shared: &Arc<Datapath>, hooks: Hooks, capacities: &Capacities) -> Result<Self> {
        let (slot, epoch) = shared.allocate_slot()?;
        let placed = SlotMaps::create(capacities, hooks.interfaces)
            .and_then(|maps| shared.place_slot(slot, &maps).map(|()| maps));
        let maps = match placed {
            Ok(maps) => maps,
            Err(error) => {
                shared.free_slot(slot);
                return Err(error);
            }
        };
        Ok(Self {
            shared: Arc::clone(shared),
            slot,
            epoch,
            maps,
            holders: Vec::new(),
            unattached: None,
        })
    }

    /// Takes over the version (`slot`, `epoch`) an earlier daemon recorded
    /// as in force on workload number `workload` (known as `key`): the
    /// slot's maps, learned addresses and counters included, and the
    /// workload's hooks. Should that daemon have put another version in
    /// force without recording it (it stopped mid-apply), the recorded one
    /// is put back.
    pub fn adopt(
        shared: &Arc<Datapath>,
        key: &str,
        workload: u32,
        slot: u32,
        epoch: u32,
    ) -> Result<Self> {
        let maps = shared.slot_maps(slot)?;
        let entry = openclaw_egress_common::workload::active_entry(slot, epoch);
        let holder = shared.adopt_workload(key, workload, entry)?;
        Ok(Self {
            shared: Arc::clone(shared),
            slot,
            epoch,
            maps,
            holders: vec![holder],
            unattached: None,
        })
    }

    pub fn shared(&self) -> &Arc<Datapath> {
        &self.shared
    }

    pub fn slot(&self) -> u32 {
        self.slot
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The workload numbers this version is attached to.
    pub fn workloads(&self) -> Vec<u32> {
        self.holders.iter().map(|holder| holder.workload).collect()
    }

    /// Writes the entries the policy text determines. The config (and with
    /// it the `ready` flag) is written last, so the programs never act on a
    /// partially written policy.
    pub fn install_static(&mut self, entries: &StaticEntries) -> Result<()> {
        self.maps.install(entries)?;
        self.shared.set_config(self.slot, &entries.config)
    }

    /// What the programs report of this version beyond drops: allowed
    /// connections, DNS questions and answers (`record` bits of the config).
    pub fn set_record(&self, record: u32) -> Result<()> {
        self.shared.set_record(self.slot, record)
    }

    pub fn upsert_allow(&mut self, entries: &[(AllowKey, AllowValue)]) -> Result<()> {
        for (key, value) in entries {
            self.maps
                .allow
                .insert(key, value, 0)
                .map_err(map_error(openclaw_egress_common::maps::ALLOW))?;
        }
        Ok(())
    }

    pub fn remove_allow(&mut self, key: &AllowKey) -> Result<()> {
        match self.maps.allow.remove(key) {
            // Already gone (e.g. removed by an earlier GC pass): nothing to do.
            Err(MapError::KeyNotFound) => Ok(()),
            other => other.map_err(map_error(openclaw_egress_common::maps::ALLOW)),
        }
    }

    /// Every entry of the `ALLOW` map; entries that vanish while iterating are skipped.
    pub fn allow_entries(&self) -> Vec<(AllowKey, AllowValue)> {
        self.maps.allow.iter().filter_map(Result::ok).collect()
    }

    /// Puts this version in force on the workload `key` at `place`,
    /// attaching the workload if nothing else holds it. While an older
    /// version also holds it, this one is in force; if this one is removed
    /// first, the older one is in force again.
    pub fn attach(&mut self, key: &str, place: &Place) -> Result<()> {
        let holder = self.shared.activate(key, place, self.slot, self.epoch)?;
        self.holders.push(holder);
        Ok(())
    }

    /// Ends this version: lets go of its workloads (detaching those no one
    /// else holds) and empties its slot.
    pub fn remove(mut self) {
        for holder in self.holders.drain(..) {
            self.shared.release(holder, true);
        }
        if let Some(workload) = self.unattached.take() {
            self.shared.free_workload(workload);
        }
        self.shared.free_slot(self.slot);
    }

    /// Forgets this version but leaves it in force, attached and pinned
    /// (a daemon shutting down; the next one adopts it).
    pub fn leave_in_place(mut self) {
        for holder in self.holders.drain(..) {
            self.shared.release(holder, false);
        }
    }

    /// The kernel memory this version's maps take, in bytes.
    pub fn memory(&self) -> u64 {
        self.maps.memory()
    }

    fn counter_sums(&self, range: std::ops::Range<u32>) -> Result<Vec<u64>> {
        range
            .map(|index| {
                self.maps
                    .counters
                    .get(&index, 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .map_err(map_error(openclaw_egress_common::maps::COUNTERS))
            })
            .collect()
    }

    pub fn drop_counts(&self) -> Result<DropCounts> {
        self.counter_sums(0..DROP_COUNTERS_LEN)
    }

    pub fn dns_stats(&self) -> Result<DnsStats> {
        self.counter_sums(counters::dns(DnsStat::QueriesAllowed)..counters::EVENTS_LOST)
    }

    pub fn events_lost(&self) -> Result<u64> {
        Ok(self
            .counter_sums(counters::EVENTS_LOST..counters::LEN)?
            .iter()
            .sum())
    }

    /// The flows the TC verdict cache holds as allowed.
    pub fn allowed_flows(&self) -> Vec<FlowKey> {
        let Some(flows) = &self.maps.flows else {
            return Vec::new();
        };
        flows
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, verdict)| *verdict == FLOW_ALLOWED)
            .map(|(key, _)| key)
            .collect()
    }

    /// Marks `flows` as allowed in the TC verdict cache (carried over from
    /// a version this one replaces, so that live connections whose first
    /// bytes were inspected there are not inspected again mid-stream).
    pub fn allow_flows(&mut self, flows: &[FlowKey]) -> Result<()> {
        let Some(map) = &mut self.maps.flows else {
            return Ok(());
        };
        for key in flows {
            map.insert(key, FLOW_ALLOWED, 0)
                .map_err(map_error(openclaw_egress_common::maps::FLOWS))?;
        }
        Ok(())
    }

    /// Hands the shared event ring buffer to its reader (once per datapath).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.shared.take_events()
    }
}

/// The `IpAddr` of a map address: IPv4 for an IPv4-mapped one (for status
/// output).
pub fn ip_of(addr: &openclaw_egress_common::Addr) -> IpAddr {
    match openclaw_egress_common::addr::as_ipv4(addr) {
        Some(v4) => IpAddr::from(v4),
        None => IpAddr::from(*addr),
    }
}

fn map_error(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}
