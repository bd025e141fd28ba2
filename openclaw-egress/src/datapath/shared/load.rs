//! Loading and verifying the shared programs and maps (pinning them under
//! the daemon's directory), or reopening what an earlier daemon pinned.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, OwnedFd},
    path::Path,
    sync::Mutex,
};

use aya::{
    Ebpf,
    maps::{Array, CgroupStorage, Map, MapData, RingBuf},
    programs::{CgroupSkb, CgroupSockAddr, Program, SchedClassifier},
};
use openclaw_egress_common::maps as names;

use super::{Datapath, POD_GATE_PROGRAM, Programs, SOCK_ADDR_PROGRAMS, as_u32};
use crate::{
    bpf_sys,
    datapath::{
        Build, DatapathError, Result, active::ActiveTable, attachment::Attachments, map_error,
        numbers::Numbers, pins, pod_gate::PodGate, slot::Kind, stub::Entry,
    },
};

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
    pub(in crate::datapath) fn load_into(pin_dir: Option<&Path>, build: Build) -> Result<Self> {
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

    pub(super) fn adopt(dir: &Path) -> Result<Self> {
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
