//! The bpffs layout of a pinned datapath:
//!
//! ```text
//! <dir>/maps/<MAP NAME>             every shared map (slots' maps are
//!                                   reached through the arrays)
//! <dir>/programs/<program>          the shared programs
//! <dir>/workloads/<number>/<hook>   each workload's links
//! ```
//!
//! A pinned link keeps its program attached after the daemon exits or is
//! killed; removing the pin (and closing our descriptor) detaches it.

use std::{
    os::fd::{BorrowedFd, OwnedFd},
    path::{Path, PathBuf},
};

use aya::maps::{Map, MapData};

use super::{DatapathError, Result};
use crate::bpf_sys;

fn maps_dir(dir: &Path) -> PathBuf {
    dir.join("maps")
}

fn programs_dir(dir: &Path) -> PathBuf {
    dir.join("programs")
}

fn workloads_dir(dir: &Path) -> PathBuf {
    dir.join("workloads")
}

/// Where the maps of `slot` are pinned: a restarted daemon reopens them
/// from there. (Reopening them by id from the map-of-maps arrays would take
/// CAP_SYS_ADMIN, which the daemon does not have.)
fn slot_dir(dir: &Path, slot: u32) -> PathBuf {
    dir.join("slots").join(slot.to_string())
}

/// Pins the maps of `slot`, each under its kind's name.
pub fn pin_slot_maps<'a>(
    dir: &Path,
    slot: u32,
    maps: impl IntoIterator<Item = (&'static str, BorrowedFd<'a>)>,
) -> Result<()> {
    let slot_dir = slot_dir(dir, slot);
    // A slot number is reused after its quarantine: pins of its last use
    // are stale.
    remove_dir(&slot_dir);
    std::fs::create_dir_all(&slot_dir).map_err(io_error(&slot_dir))?;
    for (name, fd) in maps {
        let path = slot_dir.join(name);
        bpf_sys::pin(fd, &path).map_err(io_error(&path))?;
    }
    Ok(())
}

/// The maps pinned for `slot`, by kind name; `None` if there are none
/// (a slot placed by a daemon that did not pin them).
pub fn slot_maps(dir: &Path, slot: u32) -> Result<Option<Vec<(String, OwnedFd)>>> {
    let slot_dir = slot_dir(dir, slot);
    let Ok(entries) = std::fs::read_dir(&slot_dir) else {
        return Ok(None);
    };
    let mut maps = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_error(&slot_dir))?.path();
        let fd = bpf_sys::open_pinned(&path).map_err(io_error(&path))?;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        maps.push((name, fd));
    }
    Ok(Some(maps))
}

/// Unpins the maps of `slot`.
pub fn remove_slot_maps(dir: &Path, slot: u32) {
    remove_dir(&slot_dir(dir, slot));
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DatapathError + '_ {
    move |source| DatapathError::Pinned {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether an earlier daemon pinned a datapath under `dir`.
pub fn has_datapath(dir: &Path) -> bool {
    maps_dir(dir).is_dir()
}

/// Creates the datapath directory; it must not exist yet.
pub fn create_datapath_dir(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    std::fs::create_dir(dir).map_err(io_error(dir))?;
    for sub in [maps_dir(dir), programs_dir(dir), workloads_dir(dir)] {
        std::fs::create_dir(&sub).map_err(io_error(dir))?;
    }
    Ok(())
}

/// Removes every pin under `dir` and the directory. Best effort: what
/// cannot be removed is logged (it can be removed by hand with `rm`).
pub fn remove_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(dir = %dir.display(), "removing pins: {error}");
    }
}

pub fn pin_map(dir: &Path, name: &'static str, map: &Map) -> Result<()> {
    let path = maps_dir(dir).join(name);
    map.pin(&path)
        .map_err(|source| DatapathError::Pin { path, source })
}

/// Pins a map created outside the object (by descriptor).
pub fn pin_fd(dir: &Path, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
    let path = maps_dir(dir).join(name);
    bpf_sys::pin(fd, &path).map_err(io_error(&path))
}

pub fn open_map(dir: &Path, name: &'static str) -> Result<MapData> {
    let path = maps_dir(dir).join(name);
    MapData::from_pin(&path).map_err(|source| DatapathError::Map { name, source })
}

pub fn pin_program(dir: &Path, name: &str, fd: BorrowedFd<'_>) -> Result<()> {
    let path = programs_dir(dir).join(name);
    bpf_sys::pin(fd, &path).map_err(io_error(&path))
}

pub fn open_program(dir: &Path, name: &str) -> Result<OwnedFd> {
    let path = programs_dir(dir).join(name);
    bpf_sys::open_pinned(&path).map_err(io_error(&path))
}

/// Where workload `workload`'s links are pinned.
pub fn workload_dir(dir: &Path, workload: u32) -> PathBuf {
    workloads_dir(dir).join(workload.to_string())
}

pub fn create_workload_dir(dir: &Path, workload: u32) -> Result<PathBuf> {
    let path = workload_dir(dir, workload);
    std::fs::create_dir_all(&path).map_err(io_error(&path))?;
    Ok(path)
}

/// Pins link `fd` as `name` in a workload's directory.
pub fn pin_link(workload_dir: &Path, name: &str, fd: BorrowedFd<'_>) -> Result<PathBuf> {
    let path = workload_dir.join(name);
    bpf_sys::pin(fd, &path).map_err(io_error(&path))?;
    Ok(path)
}

/// Every link pinned in a workload's directory.
pub fn workload_links(workload_dir: &Path) -> Result<Vec<(PathBuf, OwnedFd)>> {
    let mut links = Vec::new();
    for entry in std::fs::read_dir(workload_dir).map_err(io_error(workload_dir))? {
        let path = entry.map_err(io_error(workload_dir))?.path();
        let fd = bpf_sys::open_pinned(&path).map_err(io_error(&path))?;
        links.push((path, fd));
    }
    Ok(links)
}

/// The numbers of the workloads with pinned links under `dir`.
pub fn workload_numbers(dir: Option<&Path>) -> Vec<u32> {
    let Some(dir) = dir else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(workloads_dir(dir)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}
