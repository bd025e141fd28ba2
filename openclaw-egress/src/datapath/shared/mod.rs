//! The programs and maps every workload shares: loaded and verified once
//! per daemon (and eBPF object), then attached to any number of workloads.
//!
//! What belongs to one policy on one workload lives in its slot's maps
//! (see `slot`); which slot is in force for a workload is one entry of
//! `ACTIVE` (see `active`). Pinned in bpffs, all of it outlives the daemon:
//! a restarted daemon re-opens the pins instead of loading anything.
//!
//! Loading the programs and maps, or reopening their pins, is in `load`;
//! placing a slot's maps in the map-of-maps arrays and emptying them again
//! in `slots`; putting a slot in force on a workload in `workloads`.

// The per-attachment cgroup storage is "deprecated" in aya, but it is the
// one that names the cgroup a program is attached to (see the kernel side).
#![allow(deprecated)]

mod load;
mod slots;
mod workloads;

use std::{
    os::fd::{AsFd as _, BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::maps::{Array, CgroupStorage, MapData, RingBuf};
use openclaw_egress_common::PolicyConfig;

use super::{
    Build, Result, active::ActiveTable, attachment::Attachments, numbers::Numbers, pins,
    pod_gate::PodGate, slot::Kind, stub::Entry,
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
}

/// A descriptor as the `u32` a map-of-maps or program array update takes.
pub(super) fn as_u32(fd: BorrowedFd<'_>) -> u32 {
    use std::os::fd::AsRawFd as _;
    fd.as_raw_fd() as u32
}
