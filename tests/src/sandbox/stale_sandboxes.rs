//! Removing what sandboxes of dead processes left behind (namespaces, cgroups, directories).

use std::path::Path;

use anyhow::{Context as _, Result};

use super::{BPFFS, NAME_PREFIX};
use crate::{cgroup, netns};

/// Removes sandboxes left behind by processes that no longer exist
/// (namespaces, cgroups, /etc/netns entries and scratch dirs named
/// `oce-<pid>-...` whose pid is dead). Sandboxes of live processes, e.g. a
/// test binary running in parallel, are left alone.
///
/// [`Sandbox::new`] calls it once per process, before its first sandbox;
/// calling it while this process has sandboxes would remove them.
pub fn remove_stale_sandboxes() -> Result<()> {
    let is_stale = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            return false;
        };
        let mut parts = rest.split('-');
        let (Some(pid), Some(counter)) = (parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), counter.parse::<u32>()) else {
            return false;
        };
        // Our own pid counts as stale too: this runs before this process
        // creates any sandbox, so such names come from an earlier process
        // that had the same pid.
        pid == std::process::id() || !Path::new("/proc").join(pid.to_string()).exists()
    };
    let names_in = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| is_stale(n))
                    .collect()
            })
            .unwrap_or_default()
    };

    for name in netns::list()?.into_iter().filter(|n| is_stale(n)) {
        netns::delete(&name)?;
    }
    let mount = cgroup::cgroup2_mount()?;
    for name in names_in(&mount) {
        cgroup::remove_cgroup(&mount.join(name))?;
    }
    for dir in [
        Path::new("/etc/netns"),
        &std::env::temp_dir(),
        Path::new(BPFFS),
    ] {
        for name in names_in(dir) {
            std::fs::remove_dir_all(dir.join(&name))
                .with_context(|| format!("removing {}", dir.join(name).display()))?;
        }
    }
    Ok(())
}
