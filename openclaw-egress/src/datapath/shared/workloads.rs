//! Workloads: putting a slot in force on one (attaching it first if no
//! one has, see `attachment`), taking over those an earlier daemon left,
//! and their numbers.

use std::collections::BTreeSet;

use openclaw_egress_common::workload::{active_entry, active_slot};

use super::Datapath;
use crate::datapath::{
    Result,
    attachment::{Holder, Place},
    pins,
};

impl Datapath {
    /// Makes `slot` (of `epoch`) the policy in force on `place`, attaching
    /// the workload first if no one has (see `attachment`).
    pub(in crate::datapath) fn activate(
        &self,
        key: &str,
        place: &Place,
        slot: u32,
        epoch: u32,
    ) -> Result<Holder> {
        self.attachments
            .activate(self, key, place, active_entry(slot, epoch))
    }

    /// Gives up `holder`'s claim (see `Attachments::release`).
    pub(in crate::datapath) fn release(&self, holder: Holder, detach: bool) {
        self.attachments.release(self, holder, detach);
    }

    /// Takes over a workload an earlier daemon attached as number
    /// `workload` (its links pinned), with `entry` in force.
    pub(in crate::datapath) fn adopt_workload(
        &self,
        key: &str,
        workload: u32,
        entry: u64,
    ) -> Result<Holder> {
        let holder = self.attachments.adopt(self, key, workload, entry)?;
        if self.active.get(workload) != entry {
            tracing::warn!(
                workload,
                "another policy version than the recorded one was in force (a daemon stopped \
                 mid-apply); the recorded one is in force again"
            );
            self.active.set(workload, entry);
        }
        Ok(holder)
    }

    /// After adopting what the daemon's records name: empties the slots
    /// no adopted workload holds and no other workload has in force (a
    /// daemon that stopped mid-apply leaves such), and returns the pinned
    /// workloads nothing adopted. Those stay attached and enforcing (their
    /// pins are reported; `uninstall` removes them).
    pub fn sweep_unadopted(&self) -> Vec<u32> {
        let held_slots = self.attachments.held_slots();
        let held_workloads = self.attachments.held_workloads();
        let stray_workloads: Vec<u32> = pins::workload_numbers(self.pin_dir.as_deref())
            .into_iter()
            .filter(|workload| !held_workloads.contains(workload))
            .collect();
        let in_force_elsewhere: BTreeSet<u32> = stray_workloads
            .iter()
            .map(|workload| active_slot(self.active.get(*workload)))
            .collect();
        let used = self.numbers().used_slots();
        for slot in used {
            if !held_slots.contains(&slot) && !in_force_elsewhere.contains(&slot) {
                self.free_slot(slot);
            }
        }
        stray_workloads
    }

    /// A free workload number (see `numbers`).
    pub(in crate::datapath) fn allocate_workload(&self) -> Result<u32> {
        self.numbers().allocate_workload()
    }

    /// Frees workload number `workload`, with nothing in force for it.
    pub(in crate::datapath) fn free_workload(&self, workload: u32) {
        self.active.set(workload, 0);
        self.numbers().free_workload(workload);
    }
}
