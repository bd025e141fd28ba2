//! Map names, capacities, keys and values.

use crate::addr::Addr;

/// Exact destinations learned from DNS: `AllowKey` -> `AllowValue`.
pub const ALLOW: &str = "ALLOW";
/// CIDR rules: LPM trie of `CidrKey` -> `CidrValue`.
pub const CIDR: &str = "CIDR";
/// The policy's DNS resolvers: `Addr` -> `u32` (unused).
pub const RESOLVERS: &str = "RESOLVERS";
/// One `PolicyConfig`.
pub const CONFIG: &str = "CONFIG";
/// Per-CPU drop counters, indexed by `counter_index(verdict, direction, reason)`.
pub const DROP_COUNTERS: &str = "DROP_COUNTERS";
/// Ring buffer of `DropEvent`s.
pub const EVENTS: &str = "EVENTS";
/// Per-CPU count of events that did not fit in the ring buffer (index 0).
pub const EVENTS_LOST: &str = "EVENTS_LOST";
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
/// Per-CPU DNS counters indexed by `DnsStat`.
pub const DNS_STATS: &str = "DNS_STATS";

pub const ALLOW_MAX_ENTRIES: u32 = 131_072;
pub const CIDR_MAX_ENTRIES: u32 = 16_384;
pub const RESOLVERS_MAX_ENTRIES: u32 = 64;
pub const EVENTS_BYTES: u32 = 256 * 1024;
pub const DNS_NAMES_MAX_ENTRIES: u32 = 4096;
pub const RULES_MAX: u32 = 1024;
pub const INTERNAL_RANGES_MAX_ENTRIES: u32 = 256;
pub const NAME_BUDGETS_MAX_ENTRIES: u32 = 16_384;
pub const FLOWS_MAX_ENTRIES: u32 = 65_536;

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

/// Value of the `ALLOW` hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowValue {
    /// `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`) after which the
    /// entry no longer allows new traffic.
    pub expires_at_ns: u64,
    /// Index of the policy rule that allowed this destination.
    pub rule: u32,
    pub _pad: u32,
}

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
}

/// Index into `DROP_COUNTERS`: one counter per (verdict, direction, reason).
#[inline(always)]
pub const fn counter_index(
    verdict: crate::Verdict,
    direction: crate::Direction,
    reason: crate::DropReason,
) -> u32 {
    ((verdict as u32) * 2 + direction as u32) * (crate::DropReason::COUNT as u32) + reason as u32
}

pub const DROP_COUNTERS_LEN: u32 = 2 * 2 * crate::DropReason::COUNT as u32;

#[cfg(test)]
mod tests {
    use super::*;

    // No implicit padding: the sizes equal the sum of the fields.
    #[test]
    fn keys_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<AllowKey>(), 16 + 2 + 1 + 1);
        assert_eq!(core::mem::size_of::<AllowValue>(), 8 + 4 + 4);
        assert_eq!(core::mem::size_of::<CidrKey>(), 1 + 1 + 2 + 16);
        assert_eq!(core::mem::size_of::<CidrValue>(), 4);
        assert_eq!(core::mem::size_of::<FlowKey>(), 16 + 16 + 2 + 2 + 1 + 3);
    }
}
