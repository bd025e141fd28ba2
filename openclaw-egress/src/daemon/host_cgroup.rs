//! Keeping policies off the host: the cgroup2 root, the daemon's own cgroup
//! and every cgroup above it hold the host's processes (the daemon among
//! them), and a policy there, picked by a typo or a relative path gone
//! wrong, would cut the host off. Such a `cgroupPath` is refused unless the
//! daemon runs with `--allow-host-cgroup`.
//!
//! Cgroups are compared by device and inode, so symlinks, bind mounts,
//! trailing slashes and relative paths all come to the same directory.

use std::{
    fmt, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use crate::cgroup;

/// Set once at start from `--allow-host-cgroup`.
static ALLOWED: AtomicBool = AtomicBool::new(false);

pub fn allow(allowed: bool) {
    ALLOWED.store(allowed, Ordering::Relaxed);
}

pub fn allowed() -> bool {
    ALLOWED.load(Ordering::Relaxed)
}

/// Which host cgroup a path is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCgroup {
    Root { mount: PathBuf },
    Own,
    Ancestor { own: PathBuf },
}

/// Why `path` may not be selected: it and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub path: PathBuf,
    pub canonical: PathBuf,
    pub host: HostCgroup,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.canonical != self.path {
            write!(f, " (that is {})", self.canonical.display())?;
        }
        match &self.host {
            HostCgroup::Root { mount } => write!(
                f,
                " is the cgroup2 root ({}): a policy there filters every process on the \
                 host, the daemon included",
                mount.display()
            )?,
            HostCgroup::Own => {
                f.write_str(" is the daemon's own cgroup: a policy there filters the daemon")?;
            }
            HostCgroup::Ancestor { own } => write!(
                f,
                " is an ancestor of the daemon's own cgroup {}: a policy there filters \
                 the daemon and everything else below it",
                own.display()
            )?,
        }
        f.write_str(
            "; select the workload's own cgroup, or start the daemon with \
             --allow-host-cgroup if this is meant",
        )
    }
}

/// `Some` when `path` (absolute) is the cgroup2 root, the daemon's own
/// cgroup or one of its ancestors. A path that does not exist is no host
/// cgroup (opening it fails later, with its own message).
pub fn refusal(path: &Path) -> io::Result<Option<Refusal>> {
    let Some(id) = identity(path)? else {
        return Ok(None);
    };
    let mount = cgroup::cgroup2_mount().map_err(io::Error::other)?;
    let own = own_cgroup(&mount)?;
    let chain = ancestry(&own, &mount)?;
    let host = match chain.iter().position(|other| *other == id) {
        None => return Ok(None),
        Some(index) if index + 1 == chain.len() => HostCgroup::Root { mount },
        Some(0) => HostCgroup::Own,
        Some(_) => HostCgroup::Ancestor { own },
    };
    Ok(Some(Refusal {
        path: path.to_path_buf(),
        canonical: std::fs::canonicalize(path)?,
        host,
    }))
}

/// A directory's (device, inode); `None` if it does not exist.
fn identity(path: &Path) -> io::Result<Option<(u64, u64)>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some((meta.dev(), meta.ino()))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The daemon's cgroup v2 directory, from the `0::` line of
/// /proc/self/cgroup (relative to the cgroup2 mount).
fn own_cgroup(mount: &Path) -> io::Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    let relative = v2_path(&text)
        .ok_or_else(|| io::Error::other("/proc/self/cgroup has no cgroup v2 line (`0::/...`)"))?;
    Ok(mount.join(relative.trim_start_matches('/')))
}

/// The path of the `0::` line of a /proc/<pid>/cgroup text.
pub fn v2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
}

/// Identities of `own` and every directory above it up to `mount`, in that
/// order (the mount last).
fn ancestry(own: &Path, mount: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut chain = Vec::new();
    for dir in own.ancestors() {
        chain.extend(identity(dir)?);
        if dir == mount {
            return Ok(chain);
        }
    }
    Err(io::Error::other(format!(
        "the daemon's cgroup {} is not under the cgroup2 mount {}",
        own.display(),
        mount.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v2_line_gives_the_path() {
        let text = "12:pids:/user.slice\n1:name=systemd:/x\n0::/oce-1/daemon\n";
        assert_eq!(v2_path(text), Some("/oce-1/daemon"));
        assert_eq!(v2_path("3:cpu:/\n"), None);
    }

    #[test]
    fn the_root_is_refused_however_it_is_written() {
        let mount = cgroup::cgroup2_mount().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("root");
        std::os::unix::fs::symlink(&mount, &link).unwrap();
        let with_slash = PathBuf::from(format!("{}/", mount.display()));
        let dotted = mount.join(".");
        for path in [mount.clone(), with_slash, dotted, link.clone()] {
            let refusal = refusal(&path).unwrap().expect("refused");
            assert_eq!(
                refusal.host,
                HostCgroup::Root {
                    mount: mount.clone()
                }
            );
            assert!(
                refusal.to_string().contains("is the cgroup2 root"),
                "{refusal}"
            );
        }
        let message = refusal(&link).unwrap().unwrap().to_string();
        assert!(
            message.starts_with(&format!("{} (that is {})", link.display(), mount.display())),
            "{message}"
        );
        assert!(message.contains("--allow-host-cgroup"), "{message}");
    }

    #[test]
    fn our_own_cgroup_is_refused_and_other_paths_are_not() {
        let mount = cgroup::cgroup2_mount().unwrap();
        let own = own_cgroup(&mount).unwrap();
        assert!(refusal(&own).unwrap().is_some());
        assert_eq!(
            refusal(&mount.join("openclaw-egress-no-such")).unwrap(),
            None
        );
        assert_eq!(refusal(Path::new("/tmp")).unwrap(), None);
    }
}
