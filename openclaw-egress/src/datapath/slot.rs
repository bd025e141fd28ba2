//! One applied policy on one workload: its maps, at one slot of the
//! map-of-maps arrays (see `openclaw_egress_common::workload`).
//!
//! Each map is created for the slot and sized to what the policy can put
//! in it: hashes allocate entries as they are inserted and get a capacity
//! from the policy's budgets, so a small policy costs little kernel memory
//! whatever the largest policy allowed. A map that is full refuses what
//! does not fit (fails closed); the kernel counts refused addresses.

use std::{
    io,
    os::fd::{AsFd as _, OwnedFd},
};

use aya::maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, lpm_trie};
use openclaw_egress_common::{
    Addr, AllowKey, AllowValue, CidrKey, CidrValue, DnsName, DnsNameRules, FlowKey, NameBudget,
    PendingQuery, RuleKind, RulePorts,
    maps::{
        self as names, ALLOW_MAX_ENTRIES, CIDR_MAX_ENTRIES, DNS_NAMES_MAX_ENTRIES,
        DNS_STREAMS_MAX_ENTRIES, FLOWS_MAX_ENTRIES, INSPECT_FLOWS_MAX_ENTRIES, INSPECT_STATE_SIZE,
        INTERNAL_RANGES_MAX_ENTRIES, NAME_BUDGETS_MAX_ENTRIES, PENDING_QUERIES_MAX_ENTRIES,
        RESOLVERS_MAX_ENTRIES, RULES_MAX,
    },
    workload::counters,
};

use super::{DatapathError, Result, StaticEntries, map_error};
use crate::bpf_sys;

/// The kinds of per-slot maps, one map-of-maps array each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Allow,
    Cidr,
    Resolvers,
    DnsNames,
    RulePorts,
    InternalRanges,
    CidrAddrs,
    NameBudgets,
    PatternBudgets,
    PendingQueries,
    Counters,
    Flows,
    DnsStreams,
    InspectFlows,
}

const HASH: u32 = 1;
const ARRAY: u32 = 2;
const PERCPU_ARRAY: u32 = 6;
const LRU_HASH: u32 = 9;
const LPM_TRIE: u32 = 11;
const NO_PREALLOC: u32 = 1;
const INNER_MAP: u32 = 1 << 12;
/// An LPM trie key: the prefix length, then the data.
const LPM_PREFIX: u32 = 4;

impl Kind {
    pub const ALL: [Self; 14] = [
        Self::Allow,
        Self::Cidr,
        Self::Resolvers,
        Self::DnsNames,
        Self::RulePorts,
        Self::InternalRanges,
        Self::CidrAddrs,
        Self::NameBudgets,
        Self::PatternBudgets,
        Self::PendingQueries,
        Self::Counters,
        Self::Flows,
        Self::DnsStreams,
        Self::InspectFlows,
    ];

    /// The map-of-maps array's name in the eBPF object.
    pub const fn outer_name(self) -> &'static str {
        match self {
            Self::Allow => names::ALLOW,
            Self::Cidr => names::CIDR,
            Self::Resolvers => names::RESOLVERS,
            Self::DnsNames => names::DNS_NAMES,
            Self::RulePorts => names::RULE_PORTS,
            Self::InternalRanges => names::INTERNAL_RANGES,
            Self::CidrAddrs => names::CIDR_ADDRS,
            Self::NameBudgets => names::NAME_BUDGETS,
            Self::PatternBudgets => names::PATTERN_BUDGETS,
            Self::PendingQueries => names::PENDING_QUERIES,
            Self::Counters => names::COUNTERS,
            Self::Flows => names::FLOWS,
            Self::DnsStreams => names::DNS_STREAMS,
            Self::InspectFlows => names::INSPECT_FLOWS,
        }
    }

    /// Only the TC programs use it: cgroup-only workloads go without.
    pub const fn tc_only(self) -> bool {
        matches!(self, Self::Flows | Self::DnsStreams | Self::InspectFlows)
    }

    /// (map type, key size, value size, flags): what the kernel compares
    /// with the array's template.
    const fn shape(self) -> (u32, usize, usize, u32) {
        match self {
            Self::Allow => (
                HASH,
                size_of::<AllowKey>(),
                size_of::<AllowValue>(),
                NO_PREALLOC,
            ),
            Self::Cidr => (
                LPM_TRIE,
                LPM_PREFIX as usize + size_of::<CidrKey>(),
                size_of::<CidrValue>(),
                NO_PREALLOC,
            ),
            Self::Resolvers => (HASH, size_of::<Addr>(), size_of::<u32>(), NO_PREALLOC),
            Self::DnsNames => (
                HASH,
                size_of::<DnsName>(),
                size_of::<DnsNameRules>(),
                NO_PREALLOC,
            ),
            Self::RulePorts => (ARRAY, 4, size_of::<RulePorts>(), INNER_MAP),
            Self::InternalRanges | Self::CidrAddrs => (
                LPM_TRIE,
                LPM_PREFIX as usize + size_of::<Addr>(),
                size_of::<u32>(),
                NO_PREALLOC,
            ),
            Self::NameBudgets => (LRU_HASH, size_of::<DnsName>(), size_of::<NameBudget>(), 0),
            Self::PatternBudgets => (ARRAY, 4, size_of::<NameBudget>(), INNER_MAP),
            Self::PendingQueries => (LRU_HASH, size_of::<PendingQuery>(), size_of::<u64>(), 0),
            Self::Counters => (PERCPU_ARRAY, 4, size_of::<u64>(), 0),
            Self::Flows => (LRU_HASH, size_of::<FlowKey>(), size_of::<u8>(), 0),
            Self::DnsStreams => (LRU_HASH, size_of::<FlowKey>(), size_of::<u32>(), 0),
            Self::InspectFlows => (
                LRU_HASH,
                size_of::<FlowKey>(),
                INSPECT_STATE_SIZE as usize,
                0,
            ),
        }
    }

    /// A fresh map of this kind with room for `entries`.
    fn create(self, entries: u32) -> io::Result<OwnedFd> {
        let (map_type, key_size, value_size, flags) = self.shape();
        bpf_sys::create_map(
            self.outer_name(),
            map_type,
            key_size as u32,
            value_size as u32,
            entries.max(1),
            flags,
        )
    }
}

/// How many entries each map of a slot has room for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub allow: u32,
    pub cidr: u32,
    pub resolvers: u32,
    pub dns_names: u32,
    /// Rule ids index the rule arrays.
    pub rules: u32,
    pub internal_ranges: u32,
    pub cidr_addrs: u32,
    pub name_budgets: u32,
    pub pending_queries: u32,
    pub flows: u32,
    pub dns_streams: u32,
    pub inspect_flows: u32,
}

impl Capacities {
    /// What a policy with these static entries can fill.
    ///
    /// `ALLOW` takes, per name rule and port, at most the policy's budget
    /// of addresses per TTL window (`maxIPsPerName`, or `maxIPsPerPattern`
    /// for a pattern); expired entries linger until the daemon's garbage
    /// collection, so twice that, and some room for the daemon's own
    /// resolutions. The per-name budgets are entries for names that got
    /// addresses: the exact names, and at most a pattern's budget of names
    /// under each pattern per window.
    pub fn for_policy(entries: &StaticEntries) -> Self {
        let config = &entries.config;
        let mut addresses: u64 = 0;
        let mut budget_names: u64 = 0;
        for (_, ports) in &entries.rule_ports {
            let per_port = if ports.kind == RuleKind::Pattern as u32 {
                budget_names += u64::from(config.max_ips_per_pattern);
                config.max_ips_per_pattern
            } else {
                budget_names += 1;
                config.max_ips_per_name
            };
            addresses += u64::from(per_port) * u64::from(ports.count);
        }
        let rules = entries
            .rule_ports
            .iter()
            .map(|(rule, _)| rule + 1)
            .max()
            .unwrap_or(1);
        let count = |len: usize, max: u32| u32::try_from(len).unwrap_or(max).clamp(1, max);
        let bounded = |value: u64, max: u32| u32::try_from(value).unwrap_or(max).clamp(1, max);
        Self {
            allow: bounded(2 * addresses + 64, ALLOW_MAX_ENTRIES),
            cidr: count(entries.cidrs.len(), CIDR_MAX_ENTRIES),
            resolvers: count(entries.resolvers.len(), RESOLVERS_MAX_ENTRIES),
            dns_names: count(entries.dns_names.len(), DNS_NAMES_MAX_ENTRIES),
            rules: rules.clamp(1, RULES_MAX),
            internal_ranges: count(entries.internal_ranges.len(), INTERNAL_RANGES_MAX_ENTRIES),
            cidr_addrs: count(entries.cidr_addrs.len(), CIDR_MAX_ENTRIES),
            name_budgets: bounded(2 * budget_names + 64, NAME_BUDGETS_MAX_ENTRIES),
            pending_queries: PENDING_QUERIES_MAX_ENTRIES,
            flows: FLOWS_MAX_ENTRIES,
            dns_streams: DNS_STREAMS_MAX_ENTRIES,
            inspect_flows: INSPECT_FLOWS_MAX_ENTRIES,
        }
    }

    /// The largest of everything (tests and benchmarks that fill maps to
    /// the brim).
    #[cfg(feature = "test-helpers")]
    pub const MAX: Self = Self {
        allow: ALLOW_MAX_ENTRIES,
        cidr: CIDR_MAX_ENTRIES,
        resolvers: RESOLVERS_MAX_ENTRIES,
        dns_names: DNS_NAMES_MAX_ENTRIES,
        rules: RULES_MAX,
        internal_ranges: INTERNAL_RANGES_MAX_ENTRIES,
        cidr_addrs: CIDR_MAX_ENTRIES,
        name_budgets: NAME_BUDGETS_MAX_ENTRIES,
        pending_queries: PENDING_QUERIES_MAX_ENTRIES,
        flows: FLOWS_MAX_ENTRIES,
        dns_streams: DNS_STREAMS_MAX_ENTRIES,
        inspect_flows: INSPECT_FLOWS_MAX_ENTRIES,
    };

    const fn of(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Allow => self.allow,
            Kind::Cidr => self.cidr,
            Kind::Resolvers => self.resolvers,
            Kind::DnsNames => self.dns_names,
            Kind::RulePorts | Kind::PatternBudgets => self.rules,
            Kind::InternalRanges => self.internal_ranges,
            Kind::CidrAddrs => self.cidr_addrs,
            Kind::NameBudgets => self.name_budgets,
            Kind::PendingQueries => self.pending_queries,
            Kind::Counters => counters::LEN,
            Kind::Flows => self.flows,
            Kind::DnsStreams => self.dns_streams,
            Kind::InspectFlows => self.inspect_flows,
        }
    }
}

/// The maps of one slot that userspace reads or writes, typed; and every
/// map of the slot, for placing them in the arrays and measuring them.
pub struct SlotMaps {
    pub allow: HashMap<MapData, AllowKey, AllowValue>,
    pub cidr: LpmTrie<MapData, CidrKey, CidrValue>,
    pub resolvers: HashMap<MapData, Addr, u32>,
    pub dns_names: HashMap<MapData, DnsName, DnsNameRules>,
    pub rule_ports: Array<MapData, RulePorts>,
    pub internal_ranges: LpmTrie<MapData, Addr, u32>,
    pub cidr_addrs: LpmTrie<MapData, Addr, u32>,
    pub counters: PerCpuArray<MapData, u64>,
    /// TC verdict cache, on slots of workloads with interfaces.
    pub flows: Option<HashMap<MapData, FlowKey, u8>>,
    /// Every map of the slot by kind, as placed in the arrays.
    pub all: Vec<(Kind, OwnedFd)>,
}

impl SlotMaps {
    /// Creates the maps of a slot (TC-only ones if `interfaces`).
    pub fn create(capacities: &Capacities, interfaces: bool) -> Result<Self> {
        let mut all = Vec::new();
        for kind in Kind::ALL {
            if kind.tc_only() && !interfaces {
                continue;
            }
            let fd = kind
                .create(capacities.of(kind))
                .map_err(|source| DatapathError::Create {
                    name: kind.outer_name(),
                    source,
                })?;
            all.push((kind, fd));
        }
        Self::typed(all)
    }

    /// Wraps maps found in the arrays (a slot adopted from an earlier
    /// daemon).
    pub fn from_fds(all: Vec<(Kind, OwnedFd)>) -> Result<Self> {
        Self::typed(all)
    }

    fn typed(all: Vec<(Kind, OwnedFd)>) -> Result<Self> {
        let find = |kind: Kind| -> Result<Option<MapData>> {
            let Some((_, fd)) = all.iter().find(|(k, _)| *k == kind) else {
                return Ok(None);
            };
            let fd = fd.try_clone().map_err(|source| DatapathError::Create {
                name: kind.outer_name(),
                source,
            })?;
            MapData::from_fd(fd)
                .map(Some)
                .map_err(map_error(kind.outer_name()))
        };
        let need = |kind: Kind| -> Result<MapData> {
            find(kind)?.ok_or(DatapathError::Missing {
                kind: "map",
                name: kind.outer_name(),
            })
        };
        Ok(Self {
            allow: typed(Kind::Allow, need(Kind::Allow)?)?,
            cidr: typed(Kind::Cidr, need(Kind::Cidr)?)?,
            resolvers: typed(Kind::Resolvers, need(Kind::Resolvers)?)?,
            dns_names: typed(Kind::DnsNames, need(Kind::DnsNames)?)?,
            rule_ports: typed(Kind::RulePorts, need(Kind::RulePorts)?)?,
            internal_ranges: typed(Kind::InternalRanges, need(Kind::InternalRanges)?)?,
            cidr_addrs: typed(Kind::CidrAddrs, need(Kind::CidrAddrs)?)?,
            counters: typed(Kind::Counters, need(Kind::Counters)?)?,
            flows: find(Kind::Flows)?
                .map(|map| typed(Kind::Flows, map))
                .transpose()?,
            all,
        })
    }

    /// The kernel memory the slot's maps are charged for, in bytes.
    pub fn memory(&self) -> u64 {
        self.all
            .iter()
            .filter_map(|(_, fd)| bpf_sys::memlock(fd.as_fd()).ok())
            .sum()
    }

    /// Writes the entries the policy text determines, all but the config
    /// (which makes the slot ready; the caller writes it last).
    pub fn install(&mut self, entries: &StaticEntries) -> Result<()> {
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
        for (trie, entries, name) in [
            (&mut self.cidr_addrs, &entries.cidr_addrs, names::CIDR_ADDRS),
            (
                &mut self.internal_ranges,
                &entries.internal_ranges,
                names::INTERNAL_RANGES,
            ),
        ] {
            for entry in entries {
                let key = lpm_trie::Key::new(entry.prefix_len, entry.addr);
                trie.insert(&key, entry.value, 0).map_err(map_error(name))?;
            }
        }
        for (name, rules) in &entries.dns_names {
            self.dns_names
                .insert(name, rules, 0)
                .map_err(map_error(names::DNS_NAMES))?;
        }
        for (rule, ports) in &entries.rule_ports {
            self.rule_ports
                .set(*rule, ports, 0)
                .map_err(map_error(names::RULE_PORTS))?;
        }
        Ok(())
    }
}

fn typed<T: TryFrom<aya::maps::Map, Error = MapError>>(kind: Kind, map: MapData) -> Result<T> {
    let map = aya::maps::Map::from_map_data(map).map_err(map_error(kind.outer_name()))?;
    T::try_from(map).map_err(map_error(kind.outer_name()))
}
