//! A slot's maps in the map-of-maps arrays, where the programs find them
//! by slot number, and its config, which makes it live.

use std::os::fd::AsFd as _;

use aya::maps::MapData;
use openclaw_egress_common::{PolicyConfig, maps as names};

use super::{Datapath, as_u32};
use crate::{
    bpf_sys,
    datapath::{
        DatapathError, Result, map_error, pins,
        slot::{Kind, SlotMaps},
    },
};

impl Datapath {
    /// A free slot and a new epoch for it.
    pub(in crate::datapath) fn allocate_slot(&self) -> Result<(u32, u32)> {
        self.numbers().allocate_slot()
    }

    /// Places the maps of `slot` in the arrays (and pins them, for a
    /// restarted daemon to reopen).
    pub(in crate::datapath) fn place_slot(&self, slot: u32, maps: &SlotMaps) -> Result<()> {
        if let Some(dir) = &self.pin_dir {
            let named = maps
                .all
                .iter()
                .map(|(kind, fd)| (kind.outer_name(), fd.as_fd()));
            pins::pin_slot_maps(dir, slot, named)?;
        }
        each_at_once(&maps.all, |(kind, fd)| {
            let outer = self.outer(*kind);
            bpf_sys::map_update(outer.fd().as_fd(), &slot, &as_u32(fd.as_fd()), 0).map_err(
                |source| DatapathError::Create {
                    name: kind.outer_name(),
                    source,
                },
            )
        })
    }

    /// The maps an earlier daemon placed at `slot`: from their pins, or
    /// (a slot whose maps were not pinned) by id from the arrays, which
    /// takes CAP_SYS_ADMIN.
    pub(in crate::datapath) fn slot_maps(&self, slot: u32) -> Result<SlotMaps> {
        if let Some(dir) = &self.pin_dir
            && let Some(pinned) = pins::slot_maps(dir, slot)?
        {
            let all = pinned
                .into_iter()
                .filter_map(|(name, fd)| {
                    let kind = Kind::ALL.into_iter().find(|kind| kind.outer_name() == name);
                    kind.map(|kind| (kind, fd))
                })
                .collect();
            return SlotMaps::from_fds(all);
        }
        let mut all = Vec::new();
        for (kind, outer) in &self.outer {
            let id: Option<u32> =
                bpf_sys::map_lookup(outer.fd().as_fd(), &slot).map_err(|source| {
                    DatapathError::Create {
                        name: kind.outer_name(),
                        source,
                    }
                })?;
            if let Some(id) = id {
                let fd = bpf_sys::map_fd_by_id(id).map_err(|source| DatapathError::Create {
                    name: kind.outer_name(),
                    source,
                })?;
                all.push((*kind, fd));
            }
        }
        SlotMaps::from_fds(all)
    }

    /// Writes the config of `slot` (its `ready` flag makes it live).
    pub(in crate::datapath) fn set_config(&self, slot: u32, config: &PolicyConfig) -> Result<()> {
        self.configs
            .lock()
            .expect("configs lock")
            .set(slot, config, 0)
            .map_err(map_error(names::CONFIGS))
    }

    /// Sets the `record` bits of `slot`'s config, the rest as it is.
    pub(in crate::datapath) fn set_record(&self, slot: u32, record: u32) -> Result<()> {
        let mut configs = self.configs.lock().expect("configs lock");
        let mut config = configs.get(&slot, 0).map_err(map_error(names::CONFIGS))?;
        config.record = record;
        configs
            .set(slot, config, 0)
            .map_err(map_error(names::CONFIGS))
    }

    /// Empties `slot` (its maps go when nothing else holds them) and puts
    /// its number in quarantine.
    pub(in crate::datapath) fn free_slot(&self, slot: u32) {
        let zero = PolicyConfig {
            mode: 0,
            ready: 0,
            min_ttl_secs: 0,
            max_ips_per_name: 0,
            max_ips_per_pattern: 0,
            record: 0,
        };
        if let Err(error) = self.set_config(slot, &zero) {
            tracing::error!(slot, "clearing a slot's config: {error}");
        }
        let _ = each_at_once(&self.outer, |(kind, outer)| {
            if let Err(error) = bpf_sys::map_delete(outer.fd().as_fd(), &slot) {
                tracing::error!(slot, map = kind.outer_name(), "emptying a slot: {error}");
            }
            Ok(())
        });
        if let Some(dir) = &self.pin_dir {
            pins::remove_slot_maps(dir, slot);
        }
        self.numbers().free_slot(slot);
    }

    fn outer(&self, kind: Kind) -> &MapData {
        &self
            .outer
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("every kind has its array")
            .1
    }
}

/// Runs `update` on every item, each on a thread of its own, and returns
/// the first error. Every update or delete in an array of maps waits for an
/// RCU grace period (the kernel makes sure no program still runs with the
/// inner map it replaced): about 8 ms each on a small VM, for a dozen maps
/// per slot, which made an apply cost over 100 ms. Waited for together,
/// the grace periods are shared: one or two in all.
fn each_at_once<T: Sync>(items: &[T], update: impl Fn(&T) -> Result<()> + Sync) -> Result<()> {
    let update = &update;
    std::thread::scope(|scope| {
        let running: Vec<_> = items
            .iter()
            .map(|item| scope.spawn(move || update(item)))
            .collect();
        running
            .into_iter()
            .map(|thread| thread.join().expect("an update thread panicked"))
            .collect::<Result<Vec<()>>>()
    })
    .map(drop)
}
