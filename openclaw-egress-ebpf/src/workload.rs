//! Which workload, and so which slot of maps, the packet in hand belongs
//! to (see `openclaw_egress_common::workload`).

use core::ptr::read_volatile;

use aya_ebpf::programs::sk_buff::SkBuff;
use openclaw_egress_common::workload::{active_epoch, active_slot};

use crate::maps::{ACTIVE, CGROUP_WORKLOADS};

/// The policy in force for a workload: where its maps are, and the epoch
/// its cached verdicts must carry.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Workload {
    pub slot: u32,
    pub epoch: u32,
}

impl Workload {
    /// For skb programs: the stub in front of the program put the
    /// workload number in `cb[0]`. `None` when no policy is in force (or
    /// no stub ran: `cb` starts zeroed), which drops everything.
    #[inline(always)]
    pub fn of_skb(skb: &SkBuff) -> Option<Self> {
        // SAFETY: reading a context field the verifier allows.
        let id = unsafe { read_volatile(&(*skb.skb).cb[0]) };
        Self::active(id)
    }

    /// For `connect()`/`sendmsg()` programs: their cgroup's storage.
    #[inline(always)]
    pub fn of_cgroup() -> Option<Self> {
        let id = CGROUP_WORKLOADS.get_ptr_mut();
        // SAFETY: `bpf_get_local_storage` never returns NULL.
        Self::active(unsafe { read_volatile(id) })
    }

    #[inline(always)]
    fn active(id: u32) -> Option<Self> {
        let entry = ACTIVE.get_ptr(id)?;
        // SAFETY: pointer from a successful lookup. One 8-byte load: the
        // daemon swaps the entry with one 8-byte store.
        let entry = unsafe { read_volatile(entry) };
        let slot = active_slot(entry);
        (slot != 0).then_some(Self {
            slot,
            epoch: active_epoch(entry),
        })
    }
}
