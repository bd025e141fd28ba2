//! `ACTIVE`, the table naming the slot in force for each workload, mapped
//! into the daemon's memory: swapping a workload's policy is one atomic
//! 8-byte store, which the programs read with one 8-byte load. (A map
//! update through `bpf(2)` copies the value with `memcpy`, which promises
//! no such thing.)

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::maps::MapData;
use openclaw_egress_common::workload::MAX_WORKLOADS;

pub struct ActiveTable {
    entries: NonNull<AtomicU64>,
    len: usize,
    /// Keeps the map alive for as long as it is mapped.
    _map: MapData,
}

// SAFETY: the mapping is shared memory accessed only through atomics.
unsafe impl Send for ActiveTable {}
// SAFETY: as above.
unsafe impl Sync for ActiveTable {}

impl ActiveTable {
    /// Maps the `ACTIVE` array (created `BPF_F_MMAPABLE`).
    pub fn map(map: MapData) -> io::Result<Self> {
        let entries = MAX_WORKLOADS as usize;
        let len = (entries * size_of::<u64>()).next_multiple_of(page_size());
        // SAFETY: a shared mapping of the map's data, of a length the
        // kernel checks against the map; unmapped on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            entries: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave NULL"))?,
            len,
            _map: map,
        })
    }

    fn entry(&self, workload: u32) -> &AtomicU64 {
        assert!(
            workload < MAX_WORKLOADS,
            "workload number {workload} out of range"
        );
        // SAFETY: in bounds of the mapping, 8-byte aligned (page-aligned
        // base), alive as long as `self`.
        unsafe { &*self.entries.as_ptr().add(workload as usize) }
    }

    pub fn get(&self, workload: u32) -> u64 {
        self.entry(workload).load(Ordering::SeqCst)
    }

    pub fn set(&self, workload: u32, entry: u64) {
        self.entry(workload).store(entry, Ordering::SeqCst);
    }
}

impl Drop for ActiveTable {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, not used after this.
        unsafe { libc::munmap(self.entries.as_ptr().cast(), self.len) };
    }
}

fn page_size() -> usize {
    // SAFETY: a plain libc query.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}
