//! The pod gate's user side (the kernel side and the idea are in
//! `openclaw_egress_common::pod_gate`): attaching it to the kubepods root,
//! arming and disarming it, marking cgroups.

use std::{
    fs::File,
    io,
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use openclaw_egress_common::{
    PodGate as GateState, maps as names,
    pod_gate::{GATE_DESCEND, GATE_PASS},
};

use super::{DatapathError, Result, map_error};
use crate::bpf_sys::{self, LinkTarget, kind};

/// How the daemon marks a cgroup for the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// The pod may send: its policy is in force, or none selects it.
    Pass,
    /// A QoS-class cgroup: its pods are one level down.
    Descend,
}

pub struct PodGate {
    program: OwnedFd,
    state: Mutex<Array<MapData, GateState>>,
    marks: Mutex<HashMap<MapData, u64, u8>>,
    held: PerCpuArray<MapData, u64>,
    link: Mutex<Option<OwnedFd>>,
}

impl PodGate {
    pub(super) fn new(
        program: OwnedFd,
        state: MapData,
        marks: MapData,
        held: MapData,
    ) -> Result<Self> {
        Ok(PodGate {
            program,
            state: Mutex::new(
                Array::try_from(aya::maps::Map::Array(state))
                    .map_err(map_error(names::POD_GATE))?,
            ),
            marks: Mutex::new(
                HashMap::try_from(aya::maps::Map::HashMap(marks))
                    .map_err(map_error(names::POD_GATE_MARKS))?,
            ),
            held: PerCpuArray::try_from(aya::maps::Map::PerCpuArray(held))
                .map_err(map_error(names::POD_GATE_HELD))?,
            link: Mutex::new(None),
        })
    }

    /// Attaches the gate to `root` (the kubepods cgroup, at `level` below
    /// the cgroup2 root), pinned at `pin` so that it outlives the daemon:
    /// a pod awaited when the daemon stopped stays held. A gate an earlier
    /// daemon pinned there is replaced (after this one is attached: no
    /// moment without one).
    pub fn attach(&self, root: &Path, level: u32, pin: Option<&Path>) -> Result<()> {
        let attach_error = |source: io::Error| DatapathError::Attach {
            place: root.display().to_string(),
            source,
        };
        let cgroup = File::open(root).map_err(attach_error)?;
        self.update(|state| state.root_level = level)?;
        let link = bpf_sys::create_link(
            self.program.as_fd(),
            LinkTarget::Cgroup(cgroup.as_fd()),
            kind::CGROUP_INET_EGRESS,
        )
        .map_err(attach_error)?;
        if let Some(pin) = pin {
            let pin_error = |source: io::Error| DatapathError::Pinned {
                path: pin.to_path_buf(),
                source,
            };
            match std::fs::remove_file(pin) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(pin_error(error)),
            }
            bpf_sys::pin(link.as_fd(), pin).map_err(pin_error)?;
        }
        *self.link.lock().expect("gate link lock") = Some(link);
        Ok(())
    }

    /// Holds every pod cgroup created from now on until it is marked.
    /// `newest` is the greatest id of the pod cgroups (and their parents)
    /// that exist now: cgroup ids only grow, so any pod cgroup made later
    /// has a greater one. Returns it.
    pub fn arm(&self, newest: u64) -> Result<u64> {
        self.update(|state| state.armed_after = newest.max(1))?;
        Ok(newest)
    }

    /// Holds nothing new (what is marked stays marked).
    pub fn disarm(&self) -> Result<()> {
        self.update(|state| state.armed_after = 0)
    }

    pub fn is_armed(&self) -> bool {
        self.read().armed_after != 0
    }

    pub fn mark(&self, cgroup_id: u64, mark: Mark) -> Result<()> {
        let value = match mark {
            Mark::Pass => GATE_PASS,
            Mark::Descend => GATE_DESCEND,
        };
        self.marks
            .lock()
            .expect("gate marks lock")
            .insert(cgroup_id, value, 0)
            .map_err(map_error(names::POD_GATE_MARKS))
    }

    /// Forgets a removed cgroup's mark.
    pub fn unmark(&self, cgroup_id: u64) {
        let _ = self
            .marks
            .lock()
            .expect("gate marks lock")
            .remove(&cgroup_id);
    }

    /// Packets held so far (all CPUs).
    pub fn held_packets(&self) -> u64 {
        self.held
            .get(&0, 0)
            .map(|values| values.iter().sum())
            .unwrap_or(0)
    }

    fn read(&self) -> GateState {
        self.state
            .lock()
            .expect("gate state lock")
            .get(&0, 0)
            .unwrap_or_default()
    }

    fn update(&self, change: impl FnOnce(&mut GateState)) -> Result<()> {
        let mut array = self.state.lock().expect("gate state lock");
        let mut state = array.get(&0, 0).unwrap_or_default();
        change(&mut state);
        array.set(0, state, 0).map_err(map_error(names::POD_GATE))
    }
}

/// A cgroup's id (its inode number in cgroupfs).
pub fn cgroup_id(path: &Path) -> io::Result<u64> {
    std::fs::metadata(path).map(|meta| meta.ino())
}

/// The greatest cgroup id of `root` and the directories one and two levels
/// below it (QoS classes and pods): the gate's watermark. Read, not made:
/// the DaemonSet mounts the cgroup tree read-only. (A pod cgroup made while
/// this runs may be missed and not held; the daemon looks for the awaited
/// pods' cgroups right after arming.)
pub fn newest_cgroup_id(root: &Path) -> io::Result<u64> {
    let mut newest = cgroup_id(root)?;
    let mut dirs = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                newest = newest.max(meta.ino());
            }
            if depth == 0 {
                dirs.push((entry.path(), 1));
            }
        }
    }
    Ok(newest)
}

/// Where the gate's link is pinned under the daemon's bpffs directory:
/// outside the versioned datapath directory, so that a daemon of another
/// build replaces it rather than leaving it attached.
pub fn pin_path(bpffs_dir: &Path) -> PathBuf {
    bpffs_dir.join("pod_gate_link")
}
