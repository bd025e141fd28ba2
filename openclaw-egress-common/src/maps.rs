//! Map names, capacities, keys and values.

use crate::addr::Addr;

// The per-slot maps: arrays of maps indexed by slot (see `workload`).

/// Exact destinations learned from DNS: `AllowKey` -> `AllowValue`.
pub const ALLOW: &str = "ALLOW";
/// CIDR rules: LPM trie of `CidrKey` -> `CidrValue`.
pub const CIDR: &str = "CIDR";
/// The policy's DNS resolvers: `Addr` -> `u32` (unused).
pub const RESOLVERS: &str = "RESOLVERS";
/// Allowed DNS names and suffixes: `DnsName` -> `DnsNameRules`.
pub const DNS_NAMES: &str = "DNS_NAMES";
/// Ports of each rule: array of `RulePorts`, index = rule id.
pub const RULE_PORTS: &str = "RULE_PORTS";
/// Address ranges never learned from DNS (rebinding protection): LPM trie of
/// `Addr` -> `u32` (unused).
pub const INTERNAL_RANGES: &str = "INTERNAL_RANGES";
/// The policy's CIDR rules without their ports: LPM trie of `Addr` -> rule id.
/// An internal address inside one of them may be learned.
pub const CIDR_ADDRS: &str = "CIDR_ADDRS";
/// Addresses learned per name: LRU of `DnsName` -> `NameBudget`.
pub const NAME_BUDGETS: &str = "NAME_BUDGETS";
/// Addresses learned per pattern rule: array of `NameBudget`, index = rule id.
pub const PATTERN_BUDGETS: &str = "PATTERN_BUDGETS";
/// Queries awaiting their answer: LRU of `PendingQuery` -> expiry
/// (`CLOCK_MONOTONIC` ns).
pub const PENDING_QUERIES: &str = "PENDING_QUERIES";
/// Per-CPU counters (`workload::counters`).
pub const COUNTERS: &str = "COUNTERS";
/// The TC hooks' verdict cache: LRU of `FlowKey` -> verdict (1 = allowed).
pub const FLOWS: &str = "FLOWS";
/// DNS-over-TCP streams followed on TC hooks: LRU of `FlowKey` -> next
/// sequence number.
pub const DNS_STREAMS: &str = "DNS_STREAMS";
/// Connections being inspected on TC hooks: LRU of `FlowKey` -> parser state.
pub const INSPECT_FLOWS: &str = "INSPECT_FLOWS";

// Shared maps.

/// Each slot's `PolicyConfig`.
pub const CONFIGS: &str = "CONFIGS";
/// The slot in force per workload (`workload::active_entry`), memory-mapped.
pub const ACTIVE: &str = "ACTIVE";
/// The workload number of each cgroup the `connect()`/`sendmsg()` programs
/// are attached to (cgroup storage).
pub const CGROUP_WORKLOADS: &str = "CGROUP_WORKLOADS";
/// Ring buffer of `DropEvent`s, all workloads'.
pub const EVENTS: &str = "EVENTS";
/// The pod gate (see `pod_gate`): its state, its marks by cgroup id, and
/// the packets it held (per-CPU).
pub const POD_GATE: &str = "POD_GATE";
pub const POD_GATE_MARKS: &str = "POD_GATE_MARKS";
pub const POD_GATE_HELD: &str = "POD_GATE_HELD";
/// The program arrays the per-workload stubs tail-call through.
pub const EGRESS_PROGRAMS: &str = "EGRESS_PROGRAMS";
pub const INGRESS_PROGRAMS: &str = "INGRESS_PROGRAMS";
pub const TC_FROM_WORKLOAD_PROGRAMS: &str = "TC_FROM_WORKLOAD_PROGRAMS";
pub const TC_TO_WORKLOAD_PROGRAMS: &str = "TC_TO_WORKLOAD_PROGRAMS";

/// The `FLOWS` value of an allowed flow.
pub const FLOW_ALLOWED: u8 = 1;

// Capacities. The maps of a slot are sized to its policy (see the daemon's
// `Capacities`); these are the most any slot gets.

pub const ALLOW_MAX_ENTRIES: u32 = 131_072;
pub const CIDR_MAX_ENTRIES: u32 = 16_384;
pub const RESOLVERS_MAX_ENTRIES: u32 = 64;
/// Shared by every workload of the node.
pub const EVENTS_BYTES: u32 = 1024 * 1024;
/// Distinct names and pattern suffixes of one policy (a slot's maps are
/// sized to its policy: these bounds cost nothing until used).
pub const DNS_NAMES_MAX_ENTRIES: u32 = 16_384;
pub const RULES_MAX: u32 = 16_384;
pub const INTERNAL_RANGES_MAX_ENTRIES: u32 = 256;
pub const NAME_BUDGETS_MAX_ENTRIES: u32 = 16_384;
/// Flows of one workload remembered at once on a TC hook (an LRU: an
/// evicted flow is judged again by its next packet).
pub const FLOWS_MAX_ENTRIES: u32 = 2048;
/// DNS-over-TCP connections of one workload followed at once on a TC hook
/// (an LRU: a connection evicted mid-stream is refused, failing closed).
pub const DNS_STREAMS_MAX_ENTRIES: u32 = 64;
/// TCP connections of one workload whose first bytes are being inspected at
/// once on a TC hook (an LRU: one evicted mid-handshake is refused).
pub const INSPECT_FLOWS_MAX_ENTRIES: u32 = 128;
/// Queries of one workload awaiting an answer at once (an LRU: the oldest
/// make room, and their late answers then teach nothing).
pub const PENDING_QUERIES_MAX_ENTRIES: u32 = 256;
/// Bytes of the kernel's per-connection inspection state (a type only the
/// kernel side reads; userspace creates the maps that hold it).
pub const INSPECT_STATE_SIZE: u32 = 312;
/// How long a query waits for its answer (stub resolvers retry after a few
/// seconds; a retry is a new pending query).
pub const PENDING_QUERY_TIMEOUT_NS: u64 = 30_000_000_000;

/// Key of the `ALLOW` hash map: one allowed (address, protocol, port).
///
/// One entry per port keeps the per-packet check to a single hash lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllowKey {
    pub addr: Addr,
    /// Destination port, host byte order.
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

const _: () = assert!(core::mem::size_of::<AllowKey>() == 16 + 2 + 1 + 1);

impl AllowKey {
    pub const fn new(addr: Addr, proto: u8, port: u16) -> Self {
        Self {
            addr,
            port,
            proto,
            _pad: 0,
        }
    }
}

/// Key of the TC hooks' flow verdict cache: one 5-tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 16 + 16 + 2 + 2 + 1 + 3);

/// Value of the `ALLOW` hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowValue {
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`) after which the
    /// entry no longer allows new traffic.
    pub expires_at_ns: u64,
    /// Index of the policy rule that allowed this destination.
    pub rule: u32,
    /// What a connection to it must start with: `inspect` bits.
    pub inspect: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<AllowValue>() == 16);

/// Data part of an `CIDR` LPM trie key: protocol and port come first so that
/// one lookup with the full-length key finds the longest prefix *for that
/// port*; overlapping CIDR rules with different ports then never hide each
/// other.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CidrKey {
    pub proto: u8,
    pub _pad: u8,
    /// Destination port, big endian (byte order matters for prefix matching).
    pub port_be: [u8; 2],
    pub addr: Addr,
}

const _: () = assert!(core::mem::size_of::<CidrKey>() == 1 + 1 + 2 + 16);

impl CidrKey {
    /// Prefix bits taken by `proto`, `_pad` and `port_be`.
    pub const PORT_PREFIX_BITS: u32 = 32;
    /// Full key length in bits: a lookup key always uses this.
    pub const FULL_PREFIX_BITS: u32 = Self::PORT_PREFIX_BITS + 128;

    pub const fn new(addr: Addr, proto: u8, port: u16) -> Self {
        Self {
            proto,
            _pad: 0,
            port_be: port.to_be_bytes(),
            addr,
        }
    }
}

/// Value of the `CIDR` LPM trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CidrValue {
    /// Index of the policy rule that allowed this prefix.
    pub rule: u32,
    /// What a connection to it must start with: `inspect` bits.
    pub inspect: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<CidrValue>() == 8);

/// Bits of `inspect` fields: what the first bytes a connection sends must
/// say before it is allowed for good.
pub mod inspect {
    /// A TLS ClientHello whose server name the policy allows on the port.
    pub const TLS: u8 = 1;
    /// An HTTP request whose `Host` the policy allows on the port.
    pub const HTTP: u8 = 2;
    /// With [`TLS`]: a ClientHello carrying Encrypted Client Hello is refused.
    pub const ECH_DENY: u8 = 4;
}

/// Index into `DROP_COUNTERS`: one counter per (verdict, direction, reason).
#[inline(always)]
pub const fn counter_index(
    verdict: crate::Verdict,
    direction: crate::Direction,
    reason: crate::DropReason,
) -> u32 {
    ((verdict as u32) * crate::Direction::ALL.len() as u32 + direction as u32)
        * (crate::DropReason::COUNT as u32)
        + reason as u32
}

pub const DROP_COUNTERS_LEN: u32 =
    (crate::Verdict::COUNTED.len() * crate::Direction::ALL.len() * crate::DropReason::COUNT) as u32;
