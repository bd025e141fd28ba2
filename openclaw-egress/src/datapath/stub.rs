//! The per-workload stubs in front of the shared skb programs.
//!
//! A stub is seven instructions: store the workload's number in
//! `skb->cb[0]` and tail-call the shared program from its program array.
//! Verifying one costs microseconds, where the shared programs cost a
//! second; that is what makes a workload cheap to add. If the tail call
//! fails (no program in the array), the stub decides alone: the packet
//! leaving the workload is dropped, one coming to it passes unlearned.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, OwnedFd},
};

use crate::bpf_sys::{
    self,
    insn::{self, helper},
    kind,
};

/// The four skb programs, as entries behind a stub.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// cgroup_skb egress: every packet the workload's sockets send.
    Egress,
    /// cgroup_skb ingress: DNS answers on their way in.
    Ingress,
    /// TC ingress of the host-side veth: what the workload sends.
    TcFromWorkload,
    /// TC egress of the host-side veth: what comes to the workload.
    TcToWorkload,
}

impl Entry {
    pub const CGROUP: [Self; 2] = [Self::Ingress, Self::Egress];
    pub const INTERFACE: [Self; 2] = [Self::TcToWorkload, Self::TcFromWorkload];

    /// The program's name in the eBPF object.
    pub const fn program(self) -> &'static str {
        match self {
            Self::Egress => super::EGRESS_PROGRAM,
            Self::Ingress => super::INGRESS_PROGRAM,
            Self::TcFromWorkload => super::TC_FROM_WORKLOAD_PROGRAM,
            Self::TcToWorkload => super::TC_TO_WORKLOAD_PROGRAM,
        }
    }

    /// The program array holding the shared program.
    pub const fn program_array(self) -> &'static str {
        use openclaw_egress_common::maps as names;
        match self {
            Self::Egress => names::EGRESS_PROGRAMS,
            Self::Ingress => names::INGRESS_PROGRAMS,
            Self::TcFromWorkload => names::TC_FROM_WORKLOAD_PROGRAMS,
            Self::TcToWorkload => names::TC_TO_WORKLOAD_PROGRAMS,
        }
    }

    const fn prog_type(self) -> u32 {
        match self {
            Self::Egress | Self::Ingress => kind::PROG_TYPE_CGROUP_SKB,
            Self::TcFromWorkload | Self::TcToWorkload => kind::PROG_TYPE_SCHED_CLS,
        }
    }

    /// The expected attach type the program is loaded with (a program
    /// array only takes programs loaded alike).
    const fn load_attach_type(self) -> u32 {
        match self {
            Self::Egress => kind::CGROUP_INET_EGRESS,
            Self::Ingress => kind::CGROUP_INET_INGRESS,
            Self::TcFromWorkload | Self::TcToWorkload => 0,
        }
    }

    /// Where a link attaches the stub.
    pub const fn link_attach_type(self) -> u32 {
        match self {
            Self::Egress => kind::CGROUP_INET_EGRESS,
            Self::Ingress => kind::CGROUP_INET_INGRESS,
            Self::TcFromWorkload => kind::TCX_INGRESS,
            Self::TcToWorkload => kind::TCX_EGRESS,
        }
    }

    /// What the stub returns if the tail call fails.
    const fn fallback(self) -> i32 {
        match self {
            // cgroup_skb: 0 drops.
            Self::Egress => 0,
            // cgroup_skb: 1 passes (learning nothing).
            Self::Ingress => 1,
            // TC_ACT_SHOT.
            Self::TcFromWorkload => 2,
            // TC_ACT_UNSPEC: on to the next program.
            Self::TcToWorkload => -1,
        }
    }
}

/// Where the stub leaves the workload number for the shared program:
/// `cb[0]` of `struct __sk_buff` (uapi, fixed: after `len`, `pkt_type`,
/// `mark`, `queue_mapping`, `protocol`, `vlan_present`, `vlan_tci`,
/// `vlan_proto`, `priority`, `ingress_ifindex`, `ifindex`, `tc_index`).
pub const WORKLOAD_CB_OFFSET: usize = 48;

/// Loads the stub of `entry` for workload number `workload`, tail-calling
/// through `programs` (the entry's program array).
pub fn load(entry: Entry, workload: u32, programs: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut insns = vec![
        // r1 is the context.
        insn::mov_imm(2, workload as i32),
        insn::store_word(1, WORKLOAD_CB_OFFSET as i16, 2),
    ];
    insns.extend(insn::load_map_fd(2, programs.as_raw_fd()));
    insns.extend([
        insn::mov_imm(3, 0),
        insn::call(helper::TAIL_CALL),
        insn::mov_imm(0, entry.fallback()),
        insn::exit(),
    ]);
    bpf_sys::load_program(
        &format!("stub_{workload}"),
        entry.prog_type(),
        entry.load_attach_type(),
        &insns,
    )
}
