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
