//! Encoding BPF instructions by hand, for programs of a few instructions:
//! `op | dst << 8 | src << 12 | off << 16 | imm << 32`.

/// `ld_imm64` source marking a map file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// Helper numbers (`enum bpf_func_id`).
pub mod helper {
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    pub const TAIL_CALL: i32 = 12;
    pub const SKB_LOAD_BYTES: i32 = 26;
}

const fn insn(op: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    op as u64
        | (dst as u64) << 8
        | (src as u64) << 12
        | (off as u16 as u64) << 16
        | (imm as u32 as u64) << 32
}

/// `dst = imm`
pub const fn mov_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm) // BPF_ALU64 | BPF_MOV | BPF_K
}

/// `dst = src`
pub const fn mov_reg(dst: u8, src: u8) -> u64 {
    insn(0xbf, dst, src, 0, 0) // BPF_ALU64 | BPF_MOV | BPF_X
}

/// `dst += imm`
pub const fn add_imm(dst: u8, imm: i32) -> u64 {
    insn(0x07, dst, 0, 0, imm) // BPF_ALU64 | BPF_ADD | BPF_K
}

/// `*(u32 *)(r10 + off) = imm`
pub const fn store_stack_word(off: i16, imm: i32) -> u64 {
    insn(0x62, 10, 0, off, imm) // BPF_ST | BPF_MEM | BPF_W
}

/// `*(u32 *)(dst + off) = src`
pub const fn store_word(dst: u8, off: i16, src: u8) -> u64 {
    insn(0x63, dst, src, off, 0) // BPF_STX | BPF_MEM | BPF_W
}

/// `call helper`
pub const fn call(helper: i32) -> u64 {
    insn(0x85, 0, 0, 0, helper) // BPF_JMP | BPF_CALL
}

/// `if dst == 0 goto pc + skip`
pub const fn jump_if_zero(dst: u8, skip: i16) -> u64 {
    insn(0x15, dst, 0, skip, 0) // BPF_JMP | BPF_JEQ | BPF_K
}

pub const fn exit() -> u64 {
    insn(0x95, 0, 0, 0, 0) // BPF_JMP | BPF_EXIT
}

/// `dst = map` (the two-slot `BPF_LD | BPF_DW | BPF_IMM` with a map fd).
pub const fn load_map_fd(dst: u8, fd: i32) -> [u64; 2] {
    [insn(0x18, dst, PSEUDO_MAP_FD, 0, fd), 0]
}
