//! The programs and maps every workload shares: loaded and verified once
//! per daemon (and eBPF object), then attached to any number of workloads.
//!
//! What belongs to one policy on one workload lives in its slot's maps
//! (see `slot`); which slot is in force for a workload is one entry of
//! `ACTIVE` (see `active`). Pinned in bpffs, all of it outlives the daemon:
//! a restarted daemon re-opens the pins instead of loading anything.

// The per-attachment cgroup storage is "deprecated" in aya, but it is the
// one that names the cgroup a program is attached to (see the kernel side).
#![allow(deprecated)]

use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::{AsFd as _, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::{
    Ebpf,
    maps::{Array, CgroupStorage, Map, MapData, RingBuf},
    programs::{CgroupSkb, CgroupSockAddr, Program, SchedClassifier},
};
use openclaw_egress_common::{
    PolicyConfig, maps as names,
    workload::{active_entry, active_slot},
};

use super::{
    Build, DatapathError, Result,
    active::ActiveTable,
    attachment::{Attachments, Holder, Place},
    map_error,
    numbers::Numbers,
    pins,
    pod_gate::PodGate,
    slot::{Kind, SlotMaps},
    stub::Entry,
};

use crate::bpf_sys;

/// The `connect()`/`sendmsg()` programs and their attach types.
pub const SOCK_ADDR_PROGRAMS: [(&str, u32); 4] = [
    ("connect4", bpf_sys::kind::CGROUP_INET4_CONNECT),
    ("connect6", bpf_sys::kind::CGROUP_INET6_CONNECT),
    ("sendmsg4", bpf_sys::kind::CGROUP_UDP4_SENDMSG),
    ("sendmsg6", bpf_sys::kind::CGROUP_UDP6_SENDMSG),
];

/// The shared programs, by descriptor.
struct Programs {
    /// The skb programs (for test runs; workloads reach them through the
    /// program arrays).
    entries: Vec<(Entry, OwnedFd)>,
    /// The `connect()`/`sendmsg()` programs, attached to each cgroup.
    sock_addr: Vec<(u32, OwnedFd)>,
    /// The pod gate (attached to the kubepods root in DaemonSet mode).
    pod_gate: OwnedFd,
}

/// The pod gate's program name.
const POD_GATE_PROGRAM: &str = "pod_gate";

pub struct Datapath {
    programs: Programs,
    /// The map-of-maps arrays, by kind.
    outer: Vec<(Kind, MapData)>,
    configs: Mutex<Array<MapData, PolicyConfig>>,
    active: ActiveTable,
    cgroup_workloads: Mutex<CgroupStorage<MapData, u32>>,
    program_arrays: Vec<(Entry, MapData)>,
    events: Mutex<Option<RingBuf<MapData>>>,
    /// Where it is pinned, if it is.
    pin_dir: Option<PathBuf>,
    numbers: Mutex<Numbers>,
    attachments: Attachments,
    pod_gate: PodGate,
}

/// The maps userspace holds, by name.
const SHARED_MAPS: [&str; 11] = [
    names::CONFIGS,
    names::ACTIVE,
    names::CGROUP_WORKLOADS,
    names::EVENTS,
    names::POD_GATE,
    names::POD_GATE_MARKS,
    names::POD_GATE_HELD,
    names::EGRESS_PROGRAMS,
    names::INGRESS_PROGRAMS,
    names::TC_FROM_WORKLOAD_PROGRAMS,
    names::TC_TO_WORKLOAD_PROGRAMS,
];

impl Datapath {
    /// The datapath pinned under `dir` if an earlier daemon left one there
    /// (nothing is loaded or verified then), else a freshly loaded one of
    /// `build`, pinned there (`dir` names the build: see
    /// [`Self::version_of`]).
    pub fn open(dir: &Path, build: Build) -> Result<Self> {
        if pins::has_datapath(dir) {
            return Self::adopt(dir);
        }
        pins::create_datapath_dir(dir)?;
        Self::load_into(Some(dir), build).inspect_err(|_| pins::remove_dir(dir))
    }

    /// A name for the eBPF object this build embeds (a hash of it): pins
    /// of another build are not reused.
    pub fn version() -> String {
        Self::version_of(Build::Plain)
    }

    /// [`Self::version`] of either build.
    pub fn version_of(build: Build) -> String {
        // FNV-1a, 64 bits: stable across builds and Rust versions, unlike
        // `DefaultHasher`.
        let hash = build
            .object()
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        format!("{hash:016x}")
    }

    /// The kernel id of the egress program, through which the tracing
    /// build's log map is found (`aya_log::EbpfLogger::init_from_id`),
    /// whether it was loaded or adopted.
    pub fn egress_program_id(&self) -> std::io::Result<u32> {
        bpf_sys::program_id(self.entry_program(Entry::Egress))
    }

    /// The shared program of `entry`.
    pub(super) fn entry_program(&self, entry: Entry) -> BorrowedFd<'_> {
        self.programs
            .entries
            .iter()
            .find(|(e, _)| *e == entry)
            .expect("every entry is loaded")
            .1
            .as_fd()
    }

    pub(super) fn load_into(pin_dir: Option<&Path>, build: Build) -> Result<Self> {
        let mut ebpf = Ebpf::load(build.object())?;
        let mut entries = Vec::new();
        for entry in Entry::CGROUP {
            let name = entry.program();
            let program: &mut CgroupSkb = program(&mut ebpf, name)?;
            program
                .load()
                .map_err(|source| DatapathError::Program { name, source })?;
            entries.push((entry, program_fd(ebpf.program(name), name)?));
        }
        for entry in Entry::INTERFACE {
            let name = entry.program();
            let program: &mut SchedClassifier = program(&mut ebpf, name)?;
            program
                .load()
                .map_err(|source| DatapathError::Program { name, source })?;
            entries.push((entry, program_fd(ebpf.program(name), name)?));
        }
        let mut sock_addr = Vec::new();
        for (name, attach_type) in SOCK_ADDR_PROGRAMS {
            let program: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            program
                .load()
                .map_err(|source| DatapathError::Program { name, source })?;
            sock_addr.push((attach_type, program_fd(ebpf.program(name), name)?));
        }
        let pod_gate = {
            let program: &mut CgroupSkb = program(&mut ebpf, POD_GATE_PROGRAM)?;
            program.load().map_err(|source| DatapathError::Program {
                name: POD_GATE_PROGRAM,
                source,
            })?;
            program_fd(ebpf.program(POD_GATE_PROGRAM), POD_GATE_PROGRAM)?
        };
        let mut maps = BTreeMap::new();
        for name in SHARED_MAPS
            .into_iter()
            .chain(Kind::ALL.map(Kind::outer_name))
        {
            let map = ebpf
                .take_map(name)
                .ok_or(DatapathError::Missing { kind: "map", name })?;
            if let Some(dir) = pin_dir {
                pins::pin_map(dir, name, &map)?;
            }
            maps.insert(name, map_data(map, name)?);
        }
        // The stubs reach the shared programs through these.
        for (entry, fd) in &entries {
            let array = maps
                .get(entry.program_array())
                .ok_or(DatapathError::Missing {
                    kind: "map",
                    name: entry.program_array(),
                })?;
            bpf_sys::map_update(array.fd().as_fd(), &0u32, &as_u32(fd.as_fd()), 0).map_err(
                |source| DatapathError::Create {
                    name: entry.program_array(),
                    source,
                },
            )?;
        }
        if let Some(dir) = pin_dir {
            for (entry, fd) in &entries {
                pins::pin_program(dir, entry.program(), fd.as_fd())?;
            }
            for ((name, _), (_, fd)) in SOCK_ADDR_PROGRAMS.iter().zip(&sock_addr) {
                pins::pin_program(dir, name, fd.as_fd())?;
            }
            pins::pin_program(dir, POD_GATE_PROGRAM, pod_gate.as_fd())?;
        }
        let numbers = Numbers::fresh(pin_dir)?;
        let programs = Programs {
            entries,
            sock_addr,
            pod_gate,
        };
        Self::assemble(programs, maps, pin_dir, numbers)
    }

    fn adopt(dir: &Path) -> Result<Self> {
        let mut entries = Vec::new();
        for entry in Entry::CGROUP.into_iter().chain(Entry::INTERFACE) {
            entries.push((entry, pins::open_program(dir, entry.program())?));
        }
        let mut sock_addr = Vec::new();
        for (name, attach_type) in SOCK_ADDR_PROGRAMS {
            sock_addr.push((attach_type, pins::open_program(dir, name)?));
        }
        let mut maps = BTreeMap::new();
        for name in SHARED_MAPS
            .into_iter()
            .chain(Kind::ALL.map(Kind::outer_name))
        {
            maps.insert(name, pins::open_map(dir, name)?);
        }
        let active = ActiveTable::map(take(&mut maps, names::ACTIVE)?).map_err(|source| {
            DatapathError::Create {
                name: names::ACTIVE,
                source,
            }
        })?;
        let counters = maps.get(names::COUNTERS).ok_or(DatapathError::Missing {
            kind: "map",
            name: names::COUNTERS,
        })?;
        let numbers = Numbers::adopted(dir, counters.fd().as_fd(), &active)?;
        let pod_gate = pins::open_program(dir, POD_GATE_PROGRAM)?;
        Self::assemble_with(
            Programs {
                entries,
                sock_addr,
                pod_gate,
            },
            maps,
            Some(dir),
            numbers,
            active,
        )
    }

    fn assemble(
        programs: Programs,
        mut maps: BTreeMap<&'static str, MapData>,
        pin_dir: Option<&Path>,
        numbers: Numbers,
    ) -> Result<Self> {
        let active = ActiveTable::map(take(&mut maps, names::ACTIVE)?).map_err(|source| {
            DatapathError::Create {
                name: names::ACTIVE,
                source,
            }
        })?;
        Self::assemble_with(programs, maps, pin_dir, numbers, active)
    }

    fn assemble_with(
        programs: Programs,
        mut maps: BTreeMap<&'static str, MapData>,
        pin_dir: Option<&Path>,
        numbers: Numbers,
        active: ActiveTable,
    ) -> Result<Self> {
        let configs = Array::try_from(Map::Array(take(&mut maps, names::CONFIGS)?))
            .map_err(map_error(names::CONFIGS))?;
        let cgroup_workloads = CgroupStorage::try_from(Map::CgroupStorage(take(
            &mut maps,
            names::CGROUP_WORKLOADS,
        )?))
        .map_err(map_error(names::CGROUP_WORKLOADS))?;
        let events = RingBuf::try_from(Map::RingBuf(take(&mut maps, names::EVENTS)?))
            .map_err(map_error(names::EVENTS))?;
        let mut program_arrays = Vec::new();
        for entry in Entry::CGROUP.into_iter().chain(Entry::INTERFACE) {
            program_arrays.push((entry, take(&mut maps, entry.program_array())?));
        }
        let mut outer = Vec::new();
        for kind in Kind::ALL {
            outer.push((kind, take(&mut maps, kind.outer_name())?));
        }
        let pod_gate = PodGate::new(
            programs
                .pod_gate
                .try_clone()
                .map_err(|source| DatapathError::Create {
                    name: POD_GATE_PROGRAM,
                    source,
                })?,
            take(&mut maps, names::POD_GATE)?,
            take(&mut maps, names::POD_GATE_MARKS)?,
            take(&mut maps, names::POD_GATE_HELD)?,
        )?;
        Ok(Self {
            programs,
            outer,
            configs: Mutex::new(configs),
            active,
            cgroup_workloads: Mutex::new(cgroup_workloads),
            program_arrays,
            events: Mutex::new(Some(events)),
            pin_dir: pin_dir.map(Path::to_path_buf),
            numbers: Mutex::new(numbers),
            attachments: Attachments::default(),
            pod_gate,
        })
    }

    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// The pod gate (DaemonSet mode; see `pod_gate`).
    pub fn pod_gate(&self) -> &PodGate {
        &self.pod_gate
    }

    /// Hands the event ring buffer (every workload's drops) to its reader,
    /// once.
    pub fn take_events(&self) -> Option<RingBuf<MapData>> {
        self.events.lock().expect("events lock").take()
    }

    /// A free slot and a new epoch for it.
    pub(super) fn allocate_slot(&self) -> Result<(u32, u32)> {
        self.numbers().allocate_slot()
    }

    /// Places the maps of `slot` in the arrays (and pins them, for a
    /// restarted daemon to reopen).
    pub(super) fn place_slot(&self, slot: u32, maps: &SlotMaps) -> Result<()> {
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
    pub(super) fn slot_maps(&self, slot: u32) -> Result<SlotMaps> {
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
    pub(super) fn set_config(&self, slot: u32, config: &PolicyConfig) -> Result<()> {
        self.configs
            .lock()
            .expect("configs lock")
            .set(slot, config, 0)
            .map_err(map_error(names::CONFIGS))
    }

    /// Sets the `record` bits of `slot`'s config, the rest as it is.
    pub(super) fn set_record(&self, slot: u32, record: u32) -> Result<()> {
        let mut configs = self.configs.lock().expect("configs lock");
        let mut config = configs.get(&slot, 0).map_err(map_error(names::CONFIGS))?;
        config.record = record;
        configs
            .set(slot, config, 0)
            .map_err(map_error(names::CONFIGS))
    }

    /// Empties `slot` (its maps go when nothing else holds them) and puts
    /// its number in quarantine.
    pub(super) fn free_slot(&self, slot: u32) {
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

    /// Makes `slot` (of `epoch`) the policy in force on `place`, attaching
    /// the workload first if no one has (see `attachment`).
    pub(super) fn activate(
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
    pub(super) fn release(&self, holder: Holder, detach: bool) {
        self.attachments.release(self, holder, detach);
    }

    /// Takes over a workload an earlier daemon attached as number
    /// `workload` (its links pinned), with `entry` in force.
    pub(super) fn adopt_workload(&self, key: &str, workload: u32, entry: u64) -> Result<Holder> {
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

    /// The workload, slot and epoch numbers (see `numbers`), locked.
    pub(super) fn numbers(&self) -> std::sync::MutexGuard<'_, Numbers> {
        self.numbers.lock().expect("numbers lock")
    }

    pub(super) fn active(&self) -> &ActiveTable {
        &self.active
    }

    pub(super) fn cgroup_workloads(&self) -> &Mutex<CgroupStorage<MapData, u32>> {
        &self.cgroup_workloads
    }

    pub(super) fn program_array(&self, entry: Entry) -> BorrowedFd<'_> {
        self.program_arrays
            .iter()
            .find(|(e, _)| *e == entry)
            .expect("every entry has its array")
            .1
            .fd()
            .as_fd()
    }

    pub(super) fn sock_addr_programs(&self) -> impl Iterator<Item = (u32, BorrowedFd<'_>)> {
        self.programs
            .sock_addr
            .iter()
            .map(|(attach_type, fd)| (*attach_type, fd.as_fd()))
    }

    /// A free workload number (see `numbers`).
    pub(super) fn allocate_workload(&self) -> Result<u32> {
        self.numbers().allocate_workload()
    }

    pub(super) fn free_workload(&self, workload: u32) {
        self.active.set(workload, 0);
        self.numbers().free_workload(workload);
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(DatapathError::Missing {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|source| DatapathError::Program { name, source })
}

/// A descriptor of a loaded program of our own.
fn program_fd(program: Option<&Program>, name: &'static str) -> Result<OwnedFd> {
    let program = program.ok_or(DatapathError::Missing {
        kind: "program",
        name,
    })?;
    let fd = program
        .fd()
        .map_err(|source| DatapathError::Program { name, source })?;
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(|source| DatapathError::Create { name, source })
}

/// The map behind an aya `Map` of one of the kinds our object has.
fn map_data(map: Map, name: &'static str) -> Result<MapData> {
    match map {
        Map::Array(data)
        | Map::ArrayOfMaps(data)
        | Map::CgroupStorage(data)
        | Map::HashMap(data)
        | Map::PerCpuArray(data)
        | Map::ProgramArray(data)
        | Map::RingBuf(data) => Ok(data),
        _ => Err(DatapathError::Missing { kind: "map", name }),
    }
}

fn take(maps: &mut BTreeMap<&'static str, MapData>, name: &'static str) -> Result<MapData> {
    maps.remove(name)
        .ok_or(DatapathError::Missing { kind: "map", name })
}

/// A descriptor as the `u32` a map-of-maps or program array update takes.
pub(super) fn as_u32(fd: BorrowedFd<'_>) -> u32 {
    use std::os::fd::AsRawFd as _;
    fd.as_raw_fd() as u32
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
