//! Finding cgroup v2 directories.
//!
//! cgroup v2 is not always at /sys/fs/cgroup (hybrid hosts mount it at
//! /sys/fs/cgroup/unified), so the mount point is read from /proc/mounts.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

/// `statfs(2)` magic of cgroup2.
const CGROUP2_SUPER_MAGIC: libc::__fsword_t = 0x6367_7270;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup v2 filesystem is mounted (nothing of type cgroup2 in /proc/mounts)")]
    NotMounted,
    #[error("reading /proc/mounts: {0}")]
    Mounts(#[source] io::Error),
    #[error("cgroup {path} does not exist{hint}")]
    Missing { path: PathBuf, hint: String },
    #[error("{path} is not a cgroup v2 directory (cgroup2 is mounted at {mount})")]
    NotCgroup2 { path: PathBuf, mount: PathBuf },
    #[error("opening cgroup {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The first cgroup2 mount point listed in /proc/mounts.
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let mounts = std::fs::read_to_string("/proc/mounts").map_err(CgroupError::Mounts)?;
    mounts
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_device, mount_point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            (fs_type == "cgroup2").then(|| PathBuf::from(unescape_mount_path(mount_point)))
        })
        .ok_or(CgroupError::NotMounted)
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The absolute path of a policy's `cgroupPath`: absolute paths are taken as
/// they are, relative ones are relative to the cgroup2 mount.
pub fn resolve(cgroup_path: &Path) -> Result<PathBuf, CgroupError> {
    if cgroup_path.is_absolute() {
        Ok(cgroup_path.to_path_buf())
    } else {
        Ok(cgroup2_mount()?.join(cgroup_path))
    }
}

/// Opens an existing cgroup v2 directory for attaching programs.
pub fn open(path: &Path) -> Result<File, CgroupError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let hint = match cgroup2_mount() {
                Ok(mount) if !path.starts_with(&mount) => {
                    format!(" (cgroup2 is mounted at {})", mount.display())
                }
                _ => String::new(),
            };
            return Err(CgroupError::Missing {
                path: path.to_path_buf(),
                hint,
            });
        }
        Err(source) => {
            return Err(CgroupError::Open {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !is_cgroup2(&file) {
        return Err(CgroupError::NotCgroup2 {
            path: path.to_path_buf(),
            mount: cgroup2_mount()?,
        });
    }
    Ok(file)
}

fn is_cgroup2(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: statfs is plain data; fstatfs fills it for a valid fd.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut stat) };
    rc == 0 && stat.f_type == CGROUP2_SUPER_MAGIC && file.metadata().is_ok_and(|m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/sys/fs/a\\040b"), "/sys/fs/a b");
    }

    #[test]
    fn relative_paths_are_under_the_cgroup2_mount() {
        let mount = cgroup2_mount().expect("this machine mounts cgroup2");
        assert_eq!(
            resolve(Path::new("openclaw")).unwrap(),
            mount.join("openclaw")
        );
        assert_eq!(resolve(Path::new("/x/y")).unwrap(), PathBuf::from("/x/y"));
    }

    #[test]
    fn missing_and_non_cgroup_directories_are_refused() {
        let mount = cgroup2_mount().unwrap();
        let missing = mount.join("openclaw-egress-no-such-cgroup");
        assert!(matches!(open(&missing), Err(CgroupError::Missing { .. })));
        assert!(matches!(
            open(Path::new("/tmp")),
            Err(CgroupError::NotCgroup2 { .. })
        ));
        open(&mount).expect("the cgroup2 root is a cgroup v2 directory");
    }
}
