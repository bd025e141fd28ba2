//! The bpffs layout of a pinned instance:
//!
//! ```text
//! <dir>/maps/<MAP NAME>      every map userspace reads or writes
//! <dir>/links/<program>      every attachment (cgroup or TCX link)
//! ```
//!
//! A pinned link keeps its program attached after the daemon exits or is
//! killed; removing the pin (and closing our fd) detaches it.

use std::path::{Path, PathBuf};

use aya::{
    maps::{Map, MapData},
    programs::links::{FdLink, PinnedLink},
};

use super::{DatapathError, Result};

fn maps_dir(dir: &Path) -> PathBuf {
    dir.join("maps")
}

fn links_dir(dir: &Path) -> PathBuf {
    dir.join("links")
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DatapathError + '_ {
    move |source| DatapathError::Pinned {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the instance directory; it must not exist yet (a leftover would
/// mean two instances sharing pins).
pub fn create_dir(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    std::fs::create_dir(dir).map_err(io_error(dir))?;
    for sub in [maps_dir(dir), links_dir(dir)] {
        std::fs::create_dir(&sub).map_err(io_error(dir))?;
    }
    Ok(())
}

/// Removes every pin of the instance and its directory. Best effort: what
/// cannot be removed is logged (it can be removed by hand with `rm`).
pub fn remove_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(dir = %dir.display(), "removing pinned instance: {error}");
    }
}

pub fn pin_map(dir: &Path, name: &'static str, map: &Map) -> Result<()> {
    let path = maps_dir(dir).join(name);
    map.pin(&path)
        .map_err(|source| DatapathError::Pin { path, source })
}

/// Whether the instance pinned under `dir` has map `name` pinned.
pub fn has_map(dir: &Path, name: &str) -> bool {
    maps_dir(dir).join(name).exists()
}

pub fn open_map(dir: &Path, name: &'static str) -> Result<Map> {
    let path = maps_dir(dir).join(name);
    let data = MapData::from_pin(&path).map_err(|source| DatapathError::Map { name, source })?;
    Map::from_map_data(data).map_err(|source| DatapathError::Map { name, source })
}

pub fn pin_link(dir: &Path, name: &str, link: FdLink) -> Result<PinnedLink> {
    let path = links_dir(dir).join(name);
    link.pin(&path)
        .map_err(|source| DatapathError::Pin { path, source })
}

/// Every pinned link of the instance.
pub fn links(dir: &Path) -> Result<Vec<PinnedLink>> {
    let links = links_dir(dir);
    let mut pinned = Vec::new();
    for entry in std::fs::read_dir(&links).map_err(io_error(&links))? {
        let path = entry.map_err(io_error(&links))?.path();
        let link = PinnedLink::from_pin(&path).map_err(|source| DatapathError::Link {
            name: "pinned",
            source,
        })?;
        pinned.push(link);
    }
    Ok(pinned)
}
