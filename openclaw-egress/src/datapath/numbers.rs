//! Handing out workload numbers, slots and epochs.
//!
//! A freed number waits out a quarantine before it is handed out again: a
//! program that read the old number an instant before it was freed must
//! not find someone else's maps behind it. Epochs only grow, across daemon
//! restarts too (the next one is kept in a pinned map), because verdicts
//! cached on sockets are only trusted under the epoch they were made in.

use std::{
    collections::BTreeSet,
    os::fd::{AsFd as _, BorrowedFd},
    path::Path,
    time::{Duration, Instant},
};

use aya::maps::{Array, Map, MapData};
use openclaw_egress_common::workload::{MAX_SLOTS, MAX_WORKLOADS};

use super::{DatapathError, Result, active::ActiveTable, map_error, pins};
use crate::bpf_sys;

/// How long a freed number rests.
const QUARANTINE: Duration = Duration::from_secs(10);
/// Where the next epoch is kept.
const EPOCH_MAP: &str = "EPOCH";

/// Numbers `1..max` (0 means "none" to the programs).
struct Pool {
    max: u32,
    used: BTreeSet<u32>,
    resting: Vec<(u32, Instant)>,
}

impl Pool {
    fn new(max: u32, used: BTreeSet<u32>) -> Self {
        Self {
            max,
            used,
            resting: Vec::new(),
        }
    }

    fn take(&mut self) -> Option<u32> {
        let now = Instant::now();
        self.resting
            .retain(|(_, since)| now.duration_since(*since) < QUARANTINE);
        let number = (1..self.max).find(|n| {
            !self.used.contains(n) && !self.resting.iter().any(|(resting, _)| resting == n)
        })?;
        self.used.insert(number);
        Some(number)
    }

    fn give_back(&mut self, number: u32) {
        if self.used.remove(&number) {
            self.resting.push((number, Instant::now()));
        }
    }
}

pub struct Numbers {
    slots: Pool,
    workloads: Pool,
    next_epoch: u32,
    /// The pinned copy of `next_epoch`, if the datapath is pinned.
    epoch_map: Option<Array<MapData, u32>>,
}

impl Numbers {
    /// For a datapath just loaded (pinned under `pin_dir`, if given).
    pub fn fresh(pin_dir: Option<&Path>) -> Result<Self> {
        let epoch_map = match pin_dir {
            Some(dir) => {
                let fd = bpf_sys::create_map(EPOCH_MAP, 2, 4, 4, 1, 0).map_err(|source| {
                    DatapathError::Create {
                        name: EPOCH_MAP,
                        source,
                    }
                })?;
                pins::pin_fd(dir, EPOCH_MAP, fd.as_fd())?;
                Some(epoch_array(
                    MapData::from_fd(fd).map_err(map_error(EPOCH_MAP))?,
                )?)
            }
            None => None,
        };
        let mut numbers = Self {
            slots: Pool::new(MAX_SLOTS, BTreeSet::new()),
            workloads: Pool::new(MAX_WORKLOADS, BTreeSet::new()),
            next_epoch: 1,
            epoch_map,
        };
        numbers.save_epoch()?;
        Ok(numbers)
    }

    /// For a datapath an earlier daemon pinned under `dir`: the slots in
    /// use are those with maps in the arrays (`counters`, which every slot
    /// has), the workloads those `ACTIVE` names or whose links are pinned.
    pub fn adopted(dir: &Path, counters: BorrowedFd<'_>, active: &ActiveTable) -> Result<Self> {
        let mut slots = BTreeSet::new();
        for slot in 1..MAX_SLOTS {
            let id: Option<u32> =
                bpf_sys::map_lookup(counters, &slot).map_err(|source| DatapathError::Create {
                    name: "COUNTERS",
                    source,
                })?;
            if id.is_some() {
                slots.insert(slot);
            }
        }
        let mut workloads: BTreeSet<u32> = (1..MAX_WORKLOADS)
            .filter(|workload| active.get(*workload) != 0)
            .collect();
        workloads.extend(pins::workload_numbers(Some(dir)));
        let epoch_map = epoch_array(pins::open_map(dir, EPOCH_MAP)?)?;
        let next_epoch = epoch_map.get(&0, 0).map_err(map_error(EPOCH_MAP))?.max(1);
        Ok(Self {
            slots: Pool::new(MAX_SLOTS, slots),
            workloads: Pool::new(MAX_WORKLOADS, workloads),
            next_epoch,
            epoch_map: Some(epoch_map),
        })
    }

    /// A free slot, and a new epoch for what goes in it.
    pub fn allocate_slot(&mut self) -> Result<(u32, u32)> {
        let slot = self.slots.take().ok_or(DatapathError::Full {
            what: "slots",
            max: MAX_SLOTS - 1,
        })?;
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.checked_add(1).unwrap_or(1);
        if let Err(error) = self.save_epoch() {
            self.slots.give_back(slot);
            return Err(error);
        }
        Ok((slot, epoch))
    }

    pub fn free_slot(&mut self, slot: u32) {
        self.slots.give_back(slot);
    }

    pub fn used_slots(&self) -> BTreeSet<u32> {
        self.slots.used.clone()
    }

    pub fn allocate_workload(&mut self) -> Result<u32> {
        self.workloads.take().ok_or(DatapathError::Full {
            what: "workloads",
            max: MAX_WORKLOADS - 1,
        })
    }

    pub fn free_workload(&mut self, workload: u32) {
        self.workloads.give_back(workload);
    }

    fn save_epoch(&mut self) -> Result<()> {
        if let Some(map) = &mut self.epoch_map {
            map.set(0, self.next_epoch, 0)
                .map_err(map_error(EPOCH_MAP))?;
        }
        Ok(())
    }
}

fn epoch_array(data: MapData) -> Result<Array<MapData, u32>> {
    Array::try_from(Map::Array(data)).map_err(map_error(EPOCH_MAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_numbers_rest_before_they_are_reused() {
        let mut pool = Pool::new(4, BTreeSet::from([1]));
        assert_eq!(pool.take(), Some(2));
        assert_eq!(pool.take(), Some(3));
        pool.give_back(2);
        assert_eq!(pool.take(), None, "2 rests, 4 is out of range");
        pool.resting[0].1 -= QUARANTINE;
        assert_eq!(pool.take(), Some(2));
    }
}
