//! Every map the programs use. Each loaded policy gets its own instance of
//! all of them, so one workload's lookups can never open anything for another.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
};
use openclaw_egress_common::{
    Addr, AllowKey, AllowValue, CidrKey, CidrValue, PolicyConfig,
    maps::{
        ALLOW_MAX_ENTRIES, CIDR_MAX_ENTRIES, DROP_COUNTERS_LEN, EVENTS_BYTES, RESOLVERS_MAX_ENTRIES,
    },
};

#[map]
pub static CONFIG: Array<PolicyConfig> = Array::with_max_entries(1, 0);

#[map]
pub static ALLOW: HashMap<AllowKey, AllowValue> = HashMap::with_max_entries(ALLOW_MAX_ENTRIES, 0);

#[map]
pub static CIDR: LpmTrie<CidrKey, CidrValue> = LpmTrie::with_max_entries(CIDR_MAX_ENTRIES, 0);

#[map]
pub static RESOLVERS: HashMap<Addr, u32> = HashMap::with_max_entries(RESOLVERS_MAX_ENTRIES, 0);

#[map]
pub static DROP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_COUNTERS_LEN, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static EVENTS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
