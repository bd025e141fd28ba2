//! Types shared by the openclaw-egress eBPF programs and the userspace daemon.
//!
//! Every type here is `#[repr(C)]` with explicit padding fields: their bytes are
//! BPF map keys and ring buffer records, so both sides must agree on every byte
//! (an uninitialised padding byte in a hash key would make lookups miss).
#![no_std]

pub mod addr;
pub mod config;
pub mod dns;
pub mod event;
pub mod maps;
pub mod pod_gate;
pub mod reason;
pub mod workload;

pub use addr::{Addr, ipv4_mapped};
pub use config::{Mode, PolicyConfig, record};
pub use dns::{
    DnsName, DnsNameRules, DnsStat, NameBudget, PendingQuery, PortProto, RuleKind, RulePorts,
};
pub use event::{DNS_NAME_MAX, Direction, DropEvent, NO_RULE, Stage, Verdict};
pub use maps::{AllowKey, AllowValue, CidrKey, CidrValue, FlowKey, inspect};
pub use pod_gate::PodGate;
pub use reason::DropReason;

/// IP protocol numbers the datapath understands.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// `aya::Pod` lets userspace use these types as map keys, values and records.
#[cfg(feature = "user")]
mod pod {
    use super::*;

    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made only of integers and
    // byte arrays, and have no implicit padding (checked by the `size_of`
    // assertions next to each, at compile time).
    unsafe impl aya::Pod for AllowKey {}
    unsafe impl aya::Pod for PodGate {}
    unsafe impl aya::Pod for AllowValue {}
    unsafe impl aya::Pod for CidrKey {}
    unsafe impl aya::Pod for CidrValue {}
    unsafe impl aya::Pod for PolicyConfig {}
    unsafe impl aya::Pod for DropEvent {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for DnsName {}
    unsafe impl aya::Pod for DnsNameRules {}
    unsafe impl aya::Pod for RulePorts {}
    unsafe impl aya::Pod for NameBudget {}
    unsafe impl aya::Pod for PendingQuery {}
}
