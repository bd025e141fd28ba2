//! Every map the programs use. Each loaded policy gets its own instance of
//! all of them, so one workload's lookups can never open anything for another.

use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use openclaw_egress_common::{
    Addr, AllowKey, AllowValue, CidrKey, CidrValue, DnsName, DnsNameRules, FlowKey, NameBudget,
    PendingQuery, PolicyConfig, RulePorts,
    dns::DnsStat,
    maps::{
        ALLOW_MAX_ENTRIES, CIDR_MAX_ENTRIES, DNS_NAMES_MAX_ENTRIES, DNS_STREAMS_MAX_ENTRIES,
        DROP_COUNTERS_LEN, EVENTS_BYTES, FLOWS_MAX_ENTRIES, INSPECT_FLOWS_MAX_ENTRIES,
        INTERNAL_RANGES_MAX_ENTRIES, NAME_BUDGETS_MAX_ENTRIES, PENDING_QUERIES_MAX_ENTRIES,
        RESOLVERS_MAX_ENTRIES, RULES_MAX,
    },
};

use crate::map_types::{AnswerScratch, DnsScratch, InspectState, SocketVerdict};

#[map]
pub static CONFIG: Array<PolicyConfig> = Array::with_max_entries(1, 0);

#[map]
pub static ALLOW: HashMap<AllowKey, AllowValue> = HashMap::with_max_entries(ALLOW_MAX_ENTRIES, 0);

#[map]
pub static CIDR: LpmTrie<CidrKey, CidrValue> = LpmTrie::with_max_entries(CIDR_MAX_ENTRIES, 0);

#[map]
pub static RESOLVERS: HashMap<Addr, u32> = HashMap::with_max_entries(RESOLVERS_MAX_ENTRIES, 0);

#[map]
pub static DNS_NAMES: HashMap<DnsName, DnsNameRules> =
    HashMap::with_max_entries(DNS_NAMES_MAX_ENTRIES, 0);

#[map]
pub static RULE_PORTS: Array<RulePorts> = Array::with_max_entries(RULES_MAX, 0);

#[map]
pub static INTERNAL_RANGES: LpmTrie<Addr, u32> =
    LpmTrie::with_max_entries(INTERNAL_RANGES_MAX_ENTRIES, 0);

#[map]
pub static CIDR_ADDRS: LpmTrie<Addr, u32> = LpmTrie::with_max_entries(CIDR_MAX_ENTRIES, 0);

#[map]
pub static NAME_BUDGETS: LruHashMap<DnsName, NameBudget> =
    LruHashMap::with_max_entries(NAME_BUDGETS_MAX_ENTRIES, 0);

#[map]
pub static PATTERN_BUDGETS: Array<NameBudget> = Array::with_max_entries(RULES_MAX, 0);

/// Queries sent and not yet answered (see `dns_pending`).
#[map]
pub static PENDING_QUERIES: LruHashMap<PendingQuery, u64> =
    LruHashMap::with_max_entries(PENDING_QUERIES_MAX_ENTRIES, 0);

#[map]
pub static DROP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_COUNTERS_LEN, 0);

#[map]
pub static DNS_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DnsStat::COUNT, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static EVENTS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU work area for DNS names (too big for the 512-byte BPF stack).
#[map]
pub static SCRATCH: PerCpuArray<DnsScratch> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU work area of `dns_answer`.
#[map]
pub static ANSWERS: PerCpuArray<AnswerScratch> = PerCpuArray::with_max_entries(1, 0);

/// The verdict cache of TC hooks, per 5-tuple (see `verdict_cache`).
#[map]
pub static FLOWS: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(FLOWS_MAX_ENTRIES, 0);

/// Where each DNS-over-TCP stream is (next sequence number), on TC hooks
/// (see `dns_stream`).
#[map]
pub static DNS_STREAMS: LruHashMap<FlowKey, u32> =
    LruHashMap::with_max_entries(DNS_STREAMS_MAX_ENTRIES, 0);

/// The verdict cache of each socket of the workload.
#[btf_map]
pub static VERDICTS: SkStorage<SocketVerdict> = SkStorage::new();

/// The first bytes of each connection being inspected (SNI, Host), on
/// cgroup hooks (see `inspection`).
#[btf_map]
pub static INSPECTIONS: SkStorage<InspectState> = SkStorage::new();

/// The same on TC hooks, per 5-tuple.
#[map]
pub static INSPECT_FLOWS: LruHashMap<FlowKey, InspectState> =
    LruHashMap::with_max_entries(INSPECT_FLOWS_MAX_ENTRIES, 0);

/// Never written: a zeroed state to create `INSPECT_FLOWS` entries from.
#[map]
pub static INSPECT_BLANK: PerCpuArray<InspectState> = PerCpuArray::with_max_entries(1, 0);

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn increment(counters: &PerCpuArray<u64>, index: u32) {
    if let Some(counter) = counters.get_ptr_mut(index) {
        // SAFETY: per-CPU slot from a successful lookup; BPF programs do not
        // migrate between CPUs while running.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
pub fn count_dns(stat: DnsStat) {
    increment(&DNS_STATS, stat as u32);
}
