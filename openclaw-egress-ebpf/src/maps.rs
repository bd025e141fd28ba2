//! Every map the programs use.
//!
//! The programs are shared by every workload (see
//! `openclaw_egress_common::workload`). What belongs to one applied policy
//! on one workload lives in maps of its own, reached through the
//! map-of-maps arrays below at the workload's slot: a lookup made for one
//! workload can never open anything for another, and each map is sized by
//! userspace to what the policy needs. The rest is shared: per-CPU work
//! areas, the verdict caches on sockets (which carry the epoch they were
//! made under), and the event ring buffer (whose events carry the slot).

use aya_ebpf::{
    bindings::{BPF_F_INNER_MAP, BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    btf_maps::{self, ArrayOfMaps, SkStorage},
    macros::{btf_map, map},
    maps::{Array, HashMap, PerCpuArray, ProgramArray, RingBuf},
};
use openclaw_egress_common::{
    Addr, AllowKey, AllowValue, CidrKey, CidrValue, DnsName, DnsNameRules, FlowKey, NameBudget,
    PendingQuery, PodGate, PolicyConfig, RulePorts,
    dns::DnsStat,
    maps::EVENTS_BYTES,
    pod_gate::POD_GATE_MARKS_MAX_ENTRIES,
    workload::{MAX_SLOTS, MAX_WORKLOADS, counters},
};

use crate::map_types::{AnswerScratch, DnsScratch, InspectState, SocketVerdict};

const SLOTS: usize = MAX_SLOTS as usize;
/// Flags of the per-slot maps: hashes allocate entries as they are
/// inserted (memory follows the policy), arrays may differ in size from
/// their template. Userspace creates the inner maps with the same flags
/// (the kernel insists).
const HASH: usize = BPF_F_NO_PREALLOC as usize;
const INNER_ARRAY: usize = BPF_F_INNER_MAP as usize;

// The per-slot maps. The inner definitions are templates: only their
// types and flags matter (each slot's maps have their own sizes).
pub type AllowMap = btf_maps::HashMap<AllowKey, AllowValue, 1, HASH>;
pub type CidrMap = btf_maps::LpmTrie<CidrKey, CidrValue, 1>;
pub type ResolverMap = btf_maps::HashMap<Addr, u32, 1, HASH>;
pub type DnsNameMap = btf_maps::HashMap<DnsName, DnsNameRules, 1, HASH>;
pub type RulePortsMap = btf_maps::Array<RulePorts, 1, INNER_ARRAY>;
pub type AddrTrie = btf_maps::LpmTrie<Addr, u32, 1>;
pub type NameBudgetMap = btf_maps::LruHashMap<DnsName, NameBudget, 1>;
pub type PatternBudgetMap = btf_maps::Array<NameBudget, 1, INNER_ARRAY>;
pub type PendingQueryMap = btf_maps::LruHashMap<PendingQuery, u64, 1>;
/// (Per-CPU arrays cannot vary in size inside an array of maps: this one
/// is the same size in every slot.)
pub type CounterMap = btf_maps::PerCpuArray<u64, { counters::LEN as usize }>;
pub type FlowMap = btf_maps::LruHashMap<FlowKey, u8, 1>;
pub type DnsStreamMap = btf_maps::LruHashMap<FlowKey, u32, 1>;
pub type InspectFlowMap = btf_maps::LruHashMap<FlowKey, InspectState, 1>;

#[btf_map]
pub static ALLOW: ArrayOfMaps<AllowMap, SLOTS> = ArrayOfMaps::new();
#[btf_map]
pub static CIDR: ArrayOfMaps<CidrMap, SLOTS> = ArrayOfMaps::new();
#[btf_map]
pub static RESOLVERS: ArrayOfMaps<ResolverMap, SLOTS> = ArrayOfMaps::new();
#[btf_map]
pub static DNS_NAMES: ArrayOfMaps<DnsNameMap, SLOTS> = ArrayOfMaps::new();
#[btf_map]
pub static RULE_PORTS: ArrayOfMaps<RulePortsMap, SLOTS> = ArrayOfMaps::new();
#[btf_map]
pub static INTERNAL_RANGES: ArrayOfMaps<AddrTrie, SLOTS> = ArrayOfMaps::new();
#[btf_map]
pub static CIDR_ADDRS: ArrayOfMaps<AddrTrie, SLOTS> = ArrayOfMaps::new();
#[btf_map]
pub static NAME_BUDGETS: ArrayOfMaps<NameBudgetMap, SLOTS> = ArrayOfMaps::new();
#[btf_map]
pub static PATTERN_BUDGETS: ArrayOfMaps<PatternBudgetMap, SLOTS> = ArrayOfMaps::new();
/// Queries sent and not yet answered (see `dns_pending`).
#[btf_map]
pub static PENDING_QUERIES: ArrayOfMaps<PendingQueryMap, SLOTS> = ArrayOfMaps::new();
/// Drop and DNS counters (`openclaw_egress_common::workload::counters`).
#[btf_map]
pub static COUNTERS: ArrayOfMaps<CounterMap, SLOTS> = ArrayOfMaps::new();
/// The verdict cache of TC hooks, per 5-tuple (see `verdict_cache`); only
/// slots of workloads with interfaces have one, as for the next two.
#[btf_map]
pub static FLOWS: ArrayOfMaps<FlowMap, SLOTS> = ArrayOfMaps::new();
/// Where each DNS-over-TCP stream is (next sequence number), on TC hooks
/// (see `dns_stream`).
#[btf_map]
pub static DNS_STREAMS: ArrayOfMaps<DnsStreamMap, SLOTS> = ArrayOfMaps::new();
/// The first bytes of each connection being inspected, on TC hooks (see
/// `inspection`).
#[btf_map]
pub static INSPECT_FLOWS: ArrayOfMaps<InspectFlowMap, SLOTS> = ArrayOfMaps::new();

/// Each slot's settings.
#[map]
pub static CONFIGS: Array<PolicyConfig> = Array::with_max_entries(MAX_SLOTS, 0);

/// The slot in force for each workload (`workload::active_entry`).
/// Memory-mapped by the daemon, which swaps a policy with one atomic store.
#[btf_map]
pub static ACTIVE: btf_maps::Array<u64, { MAX_WORKLOADS as usize }, { BPF_F_MMAPABLE as usize }> =
    btf_maps::Array::new();

/// The workload number of the cgroup a `connect()`/`sendmsg()` program is
/// attached to (written by the daemon right after it attaches them).
// The "deprecated" per-attachment cgroup storage is the one that names the
// cgroup a program is attached to (the newer one is per cgroup of the
// socket, which would not tell nested attachments apart).
#[btf_map]
#[allow(deprecated)]
pub static CGROUP_WORKLOADS: btf_maps::CgroupStorage<u32> = btf_maps::CgroupStorage::new();

/// The shared programs, for the per-workload stubs to tail-call (one array
/// per program: a program array only holds programs of one type and attach
/// type).
#[map]
pub static EGRESS_PROGRAMS: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static INGRESS_PROGRAMS: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static TC_FROM_WORKLOAD_PROGRAMS: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static TC_TO_WORKLOAD_PROGRAMS: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// The pod gate's state (see `pod_gate`), written by the daemon.
#[map]
pub static POD_GATE: Array<PodGate> = Array::with_max_entries(1, 0);

/// The pod gate's marks (`GATE_PASS`, `GATE_DESCEND`), by cgroup id.
#[map]
pub static POD_GATE_MARKS: HashMap<u64, u8> =
    HashMap::with_max_entries(POD_GATE_MARKS_MAX_ENTRIES, 0);

/// Packets the pod gate held.
#[map]
pub static POD_GATE_HELD: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU work area for DNS names (too big for the 512-byte BPF stack).
#[map]
pub static SCRATCH: PerCpuArray<DnsScratch> = PerCpuArray::with_max_entries(1, 0);

/// Who holds this CPU's `SCRATCH` (see `scratch_guard`).
#[map]
pub static SCRATCH_TICKETS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU work area of `dns_answer`.
#[map]
pub static ANSWERS: PerCpuArray<AnswerScratch> = PerCpuArray::with_max_entries(1, 0);

/// The verdict cache of each socket (cgroup hooks).
#[btf_map]
pub static VERDICTS: SkStorage<SocketVerdict> = SkStorage::new();

/// The first bytes of each connection being inspected (SNI, Host), on
/// cgroup hooks (see `inspection`).
#[btf_map]
pub static INSPECTIONS: SkStorage<InspectState> = SkStorage::new();

/// Never written: a zeroed state to create `INSPECT_FLOWS` entries from.
#[map]
pub static INSPECT_BLANK: PerCpuArray<InspectState> = PerCpuArray::with_max_entries(1, 0);

/// Adds one to counter `index` of `slot`.
#[inline(always)]
pub fn count(slot: u32, index: u32) {
    if let Some(counters) = COUNTERS.get(slot)
        && let Some(counter) = counters.get_ptr_mut(index)
    {
        // SAFETY: per-CPU slot from a successful lookup; BPF programs do not
        // migrate between CPUs while running, and an interrupted increment
        // loses at most one count.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
pub fn count_dns(slot: u32, stat: DnsStat) {
    count(slot, counters::dns(stat));
}
