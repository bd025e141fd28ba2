//! A throw-away cgroup v2 directory for the workload under test.

use std::{
    fs::File,
    io::ErrorKind,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// The first cgroup2 mount point listed in /proc/mounts.
///
/// Not hard-coded: hybrid hosts mount cgroup v2 at /sys/fs/cgroup/unified,
/// pure v2 hosts at /sys/fs/cgroup.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    mounts
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_device, mount_point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            (fs_type == "cgroup2").then(|| PathBuf::from(unescape_mount_path(mount_point)))
        })
        .context("no cgroup2 filesystem in /proc/mounts")
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// A cgroup directory that is emptied and removed on drop.
#[derive(Debug)]
pub(crate) struct CgroupGuard {
    path: PathBuf,
    relative: String,
}

impl CgroupGuard {
    /// Creates `<cgroup2 mount>/<relative>`.
    pub(crate) fn create(relative: &str) -> Result<Self> {
        let path = cgroup2_mount()?.join(relative);
        std::fs::create_dir(&path)
            .with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self {
            path,
            relative: relative.to_owned(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn relative(&self) -> &str {
        &self.relative
    }

    /// `cgroup.procs` opened for writing, to move a child into this cgroup
    /// between fork and exec (see `placement.rs`).
    pub(crate) fn open_procs(&self) -> Result<File> {
        let procs = self.path.join("cgroup.procs");
        File::options()
            .write(true)
            .open(&procs)
            .with_context(|| format!("opening {} for writing", procs.display()))
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Err(err) = remove_cgroup(&self.path) {
            eprintln!("openclaw-egress-e2e: cleanup: {err:#}");
        }
    }
}

/// The child cgroups (subdirectories) of a cgroup.
fn child_cgroups(path: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The pids in a cgroup (empty if it is gone).
pub(crate) fn pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills everything in the cgroup, waits until it is empty, removes it,
/// child cgroups (e.g. [`crate::Sandbox::create_cgroup`]'s) first.
///
/// A cgroup with processes or children in it cannot be removed (EBUSY), and
/// a test that panicked may have left a probe or curl running in it.
pub fn remove_cgroup(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    // Depth first: a cgroup's children must be gone before it can go.
    for child in child_cgroups(path) {
        remove_cgroup(&child)?;
    }
    let kill_file = path.join("cgroup.kill");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let remaining = pids(path);
        if remaining.is_empty() {
            break;
        }
        // cgroup.kill (Linux 5.14+) kills atomically, also processes forking
        // meanwhile; the per-pid fallback is repeated until the cgroup is empty.
        if std::fs::write(&kill_file, "1").is_err() {
            for pid in remaining {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if Instant::now() > deadline {
            bail!(
                "cgroup {} still has processes {:?} after SIGKILL",
                path.display(),
                pids(path)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Killed processes leave cgroup.procs before the cgroup stops counting
    // them as populated, so rmdir can briefly fail with EBUSY.
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
            Err(err) if Instant::now() < deadline => {
                let _ = err;
                thread::sleep(Duration::from_millis(20));
            }
            Err(err) => {
                return Err(err).with_context(|| format!("removing cgroup {}", path.display()));
            }
        }
    }
}
