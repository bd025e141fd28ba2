//! Baselines written as raw BPF instructions and loaded through raw `bpf(2)`
//! calls (aya loads programs from ELF objects only):
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
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

use openclaw_egress_common::{AllowKey, AllowValue};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
const BPF_CGROUP_INET_EGRESS: u32 = 1;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_SKB_LOAD_BYTES: i32 = 26;
const LICENSE: &[u8] = b"GPL\0";

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
    let key = unsafe { as_bytes(template) };
    assert!(key.len() % 4 == 0 && key.len() <= (-KEY_AT) as usize);
    let mut insns = vec![mov_reg(6, 1)];
    for (i, word) in key.chunks_exact(4).enumerate() {
        let word = i32::from_le_bytes(word.try_into().expect("four bytes"));
        insns.push(store_word(KEY_AT + 4 * i as i16, word));
    }
    insns.extend([
        // bpf_skb_load_bytes(ctx, IPV4_DST, fp + KEY_IPV4_AT, 4)
        mov_reg(1, 6),
        mov_imm(2, IPV4_DST),
        mov_reg(3, 10),
        add_imm(3, i32::from(KEY_IPV4_AT)),
        mov_imm(4, 4),
        call(HELPER_SKB_LOAD_BYTES),
        // bpf_map_lookup_elem(map, fp + KEY_AT)
        mov_reg(2, 10),
        add_imm(2, i32::from(KEY_AT)),
    ]);
    insns.extend(load_map_fd(1, map.0.as_raw_fd()));
    insns.extend([
        call(HELPER_MAP_LOOKUP_ELEM),
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
        #[repr(C)]
        struct Attr {
            map_type: u32,
            key_size: u32,
            value_size: u32,
            max_entries: u32,
            map_flags: u32,
        }
        let mut attr = Attr {
            map_type: BPF_MAP_TYPE_HASH,
            key_size: size_of::<AllowKey>() as u32,
            value_size: size_of::<AllowValue>() as u32,
            max_entries,
            map_flags: 0,
        };
        Ok(Self(bpf_fd(BPF_MAP_CREATE, &mut attr)?))
    }

    pub fn insert(&self, key: &AllowKey, value: &AllowValue) -> io::Result<()> {
        #[repr(C)]
        struct Attr {
            map_fd: u32,
            _pad: u32,
            key: u64,
            value: u64,
            flags: u64,
        }
        let mut attr = Attr {
            map_fd: self.0.as_raw_fd() as u32,
            _pad: 0,
            key: std::ptr::from_ref(key) as u64,
            value: std::ptr::from_ref(value) as u64,
            flags: 0,
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }
}

pub struct Program(OwnedFd);

impl Program {
    fn load(name: &str, insns: &[u64]) -> io::Result<Self> {
        /// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to
        /// `expected_attach_type`.
        #[repr(C)]
        #[derive(Default)]
        struct Attr {
            prog_type: u32,
            insn_cnt: u32,
            insns: u64,
            license: u64,
            log_level: u32,
            log_size: u32,
            log_buf: u64,
            kern_version: u32,
            prog_flags: u32,
            prog_name: [u8; 16],
            prog_ifindex: u32,
            expected_attach_type: u32,
        }
        let mut attr = Attr {
            prog_type: BPF_PROG_TYPE_CGROUP_SKB,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: LICENSE.as_ptr() as u64,
            expected_attach_type: BPF_CGROUP_INET_EGRESS,
            ..Attr::default()
        };
        attr.prog_name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self(bpf_fd(BPF_PROG_LOAD, &mut attr)?))
    }

    /// (return value, duration per run) of `repeat` runs on `frame`.
    pub fn run(&self, frame: &[u8], repeat: u32) -> io::Result<(u32, Duration)> {
        /// The `BPF_PROG_TEST_RUN` part of `union bpf_attr`.
        #[repr(C)]
        #[derive(Default)]
        struct Attr {
            prog_fd: u32,
            retval: u32,
            data_size_in: u32,
            data_size_out: u32,
            data_in: u64,
            data_out: u64,
            repeat: u32,
            duration: u32,
            ctx_size_in: u32,
            ctx_size_out: u32,
            ctx_in: u64,
            ctx_out: u64,
            flags: u32,
            cpu: u32,
            batch_size: u32,
            _pad: u32,
        }
        let mut attr = Attr {
            prog_fd: self.0.as_raw_fd() as u32,
            data_size_in: frame.len() as u32,
            data_in: frame.as_ptr() as u64,
            repeat,
            ..Attr::default()
        };
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok((attr.retval, Duration::from_nanos(u64::from(attr.duration))))
    }
}

/// `bpf(cmd, attr, sizeof attr)`.
fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a fully initialised prefix of `union bpf_attr` for
    // `cmd`, of the size we pass, and every pointer in it outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<A>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// [`bpf`] for the commands that return a new file descriptor.
fn bpf_fd<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: the command returned a new descriptor, which we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// # Safety
/// `T` must have no uninitialised bytes.
unsafe fn as_bytes<T>(value: &T) -> &[u8] {
    // SAFETY: per the caller, every byte of `value` is initialised.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref(value).cast(), size_of::<T>()) }
}

// Instruction encoding: op | dst << 8 | src << 12 | off << 16 | imm << 32.
const fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    op as u64
        | (dst as u64) << 8
        | (src as u64) << 12
        | (off as u16 as u64) << 16
        | (imm as u32 as u64) << 32
}
const fn mov_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm) // BPF_ALU64 | BPF_MOV | BPF_K
}
const fn mov_reg(dst: u8, src: u8) -> u64 {
    insn(0xbf, dst, src, 0, 0) // BPF_ALU64 | BPF_MOV | BPF_X
}
const fn add_imm(dst: u8, imm: i32) -> u64 {
    insn(0x07, dst, 0, 0, imm) // BPF_ALU64 | BPF_ADD | BPF_K
}
/// `*(u32 *)(r10 + off) = imm`
const fn store_word(off: i16, imm: i32) -> u64 {
    insn(0x62, 10, 0, off, imm) // BPF_ST | BPF_MEM | BPF_W
}
const fn call(helper: i32) -> u64 {
    insn(0x85, 0, 0, 0, helper) // BPF_JMP | BPF_CALL
}
/// `if dst == 0 goto pc + skip`
const fn jump_if_zero(dst: u8, skip: i16) -> u64 {
    insn(0x15, dst, 0, skip, 0) // BPF_JMP | BPF_JEQ | BPF_K
}
const fn exit() -> u64 {
    insn(0x95, 0, 0, 0, 0) // BPF_JMP | BPF_EXIT
}
/// `dst = map` (the two-slot BPF_LD | BPF_DW | BPF_IMM with a map fd).
const fn load_map_fd(dst: u8, fd: i32) -> [u64; 2] {
    [insn(0x18, dst, BPF_PSEUDO_MAP_FD, 0, fd), 0]
}
