//! Baselines written as raw BPF instructions (aya loads programs from ELF
//! objects only), loaded and run through the daemon's own `bpf(2)` calls
//! (`openclaw_egress::bpf_sys`):
//!
//! - [`trivial`]: `r0 = 1; exit`, the measurement's own cost;
//! - [`bare_lookup`]: one lookup of the packet's destination in a hash map
//!   shaped like `ALLOW` and nothing else, the least any policy that keeps
//!   its allowed destinations in a hash table can do for a packet.
//!
//! Both are `cgroup_skb/egress` programs, timed with `BPF_PROG_TEST_RUN`
//! exactly like the real one.

use std::{
    io,
    mem::offset_of,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
    time::Duration,
};

use openclaw_egress::bpf_sys::{
    self,
    insn::{
        add_imm, call, exit, helper, jump_if_zero, load_map_fd, mov_imm, mov_reg, store_stack_word,
    },
    kind,
};
use openclaw_egress_common::{AllowKey, AllowValue};

const BPF_MAP_TYPE_HASH: u32 = 1;

/// Offset of the destination address in an IPv4 header.
const IPV4_DST: i32 = 16;
/// Where the key is built on the program's stack (8-byte aligned, below r10).
const KEY_AT: i16 = -24;
/// The IPv4 address's place in an `AllowKey`: the last four bytes of the
/// IPv4-mapped IPv6 address.
const KEY_IPV4_AT: i16 = KEY_AT + offset_of!(AllowKey, addr) as i16 + 12;

/// `r0 = 1; exit`.
pub fn trivial() -> io::Result<Program> {
    Program::load("trivial", &[mov_imm(0, 1), exit()])
}

/// Builds `template` on the stack with the packet's IPv4 destination in it,
/// looks it up in `map` and returns 1 if found, 0 if not.
pub fn bare_lookup(map: &HashMap, template: &AllowKey) -> io::Result<Program> {
    // SAFETY: AllowKey is plain old data (`#[repr(C)]`, explicit padding).
    let key = unsafe {
        std::slice::from_raw_parts(
            std::ptr::from_ref(template).cast::<u8>(),
            size_of::<AllowKey>(),
        )
    };
    assert!(key.len() % 4 == 0 && key.len() <= (-KEY_AT) as usize);
    let mut insns = vec![mov_reg(6, 1)];
    for (i, word) in key.chunks_exact(4).enumerate() {
        let word = i32::from_le_bytes(word.try_into().expect("four bytes"));
        insns.push(store_stack_word(KEY_AT + 4 * i as i16, word));
    }
    insns.extend([
        // bpf_skb_load_bytes(ctx, IPV4_DST, fp + KEY_IPV4_AT, 4)
        mov_reg(1, 6),
        mov_imm(2, IPV4_DST),
        mov_reg(3, 10),
        add_imm(3, i32::from(KEY_IPV4_AT)),
        mov_imm(4, 4),
        call(helper::SKB_LOAD_BYTES),
        // bpf_map_lookup_elem(map, fp + KEY_AT)
        mov_reg(2, 10),
        add_imm(2, i32::from(KEY_AT)),
    ]);
    insns.extend(load_map_fd(1, map.0.as_raw_fd()));
    insns.extend([
        call(helper::MAP_LOOKUP_ELEM),
        jump_if_zero(0, 2),
        mov_imm(0, 1),
        exit(),
        mov_imm(0, 0),
        exit(),
    ]);
    Program::load("bare_lookup", &insns)
}

/// A `BPF_MAP_TYPE_HASH` with `ALLOW`'s key, value, size and flags
/// (preallocated).
pub struct HashMap(OwnedFd);

impl HashMap {
    pub fn allow_shaped(max_entries: u32) -> io::Result<Self> {
        bpf_sys::create_map(
            "bench_allow",
            BPF_MAP_TYPE_HASH,
            size_of::<AllowKey>() as u32,
            size_of::<AllowValue>() as u32,
            max_entries,
            0,
        )
        .map(Self)
    }

    pub fn insert(&self, key: &AllowKey, value: &AllowValue) -> io::Result<()> {
        bpf_sys::map_update(self.0.as_fd(), key, value, 0)
    }
}

pub struct Program(OwnedFd);

impl Program {
    fn load(name: &str, insns: &[u64]) -> io::Result<Self> {
        bpf_sys::load_program(
            name,
            kind::PROG_TYPE_CGROUP_SKB,
            kind::CGROUP_INET_EGRESS,
            insns,
        )
        .map(Self)
    }

    /// (return value, duration per run) of `repeat` runs on `frame`.
    pub fn run(&self, frame: &[u8], repeat: u32) -> io::Result<(u32, Duration)> {
        let run = bpf_sys::test_run(self.0.as_fd(), frame, None, repeat)?;
        Ok((run.return_value, run.duration))
    }
}
