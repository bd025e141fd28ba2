//! How the shared programs find the policy of the packet in hand.
//!
//! The programs are loaded and verified once per daemon and attached to
//! every workload. Each workload has a number (`WorkloadId`), fixed for as
//! long as it is attached, and each applied version of a policy on a
//! workload has a *slot*: the index of its maps in the map-of-maps arrays.
//! `ACTIVE[workload]` names the slot in force, so re-applying a policy is a
//! single atomic write, and no packet ever sees half of two policies.
//!
//! - skb programs (cgroup_skb, TC) are reached through a tiny per-workload
//!   stub that stores the workload number in `skb->cb[0]` and tail-calls
//!   the shared program;
//! - `connect()`/`sendmsg()` programs read it from their cgroup's storage
//!   (`CGROUP_WORKLOADS`), which userspace writes when it attaches them.
//!
//! Workload 0 is never assigned: a packet that reaches a shared program
//! without a stub in front of it finds no policy and is dropped.

/// Workload numbers are `1..MAX_WORKLOADS`.
pub const MAX_WORKLOADS: u32 = 4096;
/// Slots are `1..MAX_SLOTS`. A freed slot is reused only after a quarantine
/// (see the daemon's slot allocator), so a program that read an old
/// `ACTIVE` value an instant before a swap never finds a new policy's maps
/// at that slot.
pub const MAX_SLOTS: u32 = 4096;

/// An `ACTIVE` entry: the slot in force and its epoch, one `u64` that the
/// daemon writes and the programs read with single (atomic) accesses.
/// Epochs grow without end across applies and daemon restarts; verdicts
/// cached on a socket carry the epoch they were made under, so a cache
/// entry from an earlier version of a policy is never taken for the
/// current one. 0: nothing in force (every packet is dropped).
#[inline(always)]
pub const fn active_entry(slot: u32, epoch: u32) -> u64 {
    ((epoch as u64) << 32) | slot as u64
}

/// The slot of an `ACTIVE` entry.
#[inline(always)]
pub const fn active_slot(entry: u64) -> u32 {
    entry as u32
}

/// The epoch of an `ACTIVE` entry.
#[inline(always)]
pub const fn active_epoch(entry: u64) -> u32 {
    (entry >> 32) as u32
}

/// Indexes of the per-slot `COUNTERS` (per-CPU array): the drop counters
/// (`maps::counter_index`), then the DNS counters, then events lost.
pub mod counters {
    use crate::{DnsStat, maps::DROP_COUNTERS_LEN};

    #[inline(always)]
    pub const fn dns(stat: DnsStat) -> u32 {
        DROP_COUNTERS_LEN + stat as u32
    }

    pub const EVENTS_LOST: u32 = DROP_COUNTERS_LEN + DnsStat::COUNT;
    pub const LEN: u32 = EVENTS_LOST + 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_entries_round_trip() {
        let entry = active_entry(4095, u32::MAX);
        assert_eq!(active_slot(entry), 4095);
        assert_eq!(active_epoch(entry), u32::MAX);
        assert_ne!(active_entry(1, 1), 0);
    }
}
