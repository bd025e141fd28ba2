//! What `exec` makes read-only in its command's mount namespace: every
//! cgroup2 mount (else a uid-0 command, which owns `cgroup.procs`, could
//! write itself into another cgroup: this host's cgroup2 has no
//! `nsdelegate`), every bpffs mount (the pinned programs, links and maps:
//! unlinking a link's last pin detaches it), and the daemon's socket and
//! state directories.

use std::{
    io,
    path::{Path, PathBuf},
};

/// A directory to make read-only, and whether it is a mount point already
/// (otherwise it is first bind-mounted onto itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub mount_point: bool,
}

/// The file systems whose every mount is made read-only.
const FS_TYPES: &[&str] = &["cgroup2", "bpf"];

/// The targets on this host: the cgroup2 and bpffs mount points of our
/// mount namespace, then `dirs` (those that exist, canonical, and only when
/// not inside a target already).
pub fn targets(dirs: &[&Path]) -> io::Result<Vec<Target>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut targets: Vec<Target> = mount_points(&mountinfo)
        .into_iter()
        .map(|path| Target {
            path,
            mount_point: true,
        })
        .collect();
    for dir in dirs {
        let Ok(dir) = std::fs::canonicalize(dir) else {
            continue;
        };
        if !targets.iter().any(|target| dir.starts_with(&target.path)) {
            targets.push(Target {
                path: dir,
                mount_point: false,
            });
        }
    }
    Ok(targets)
}

/// Mount points of the file systems in [`FS_TYPES`], in mount order.
fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = Vec::new();
    for line in mountinfo.lines() {
        // `36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/root rw`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let (Some(point), Some(fs_type)) = (left.split(' ').nth(4), right.split(' ').next()) else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        if FS_TYPES.contains(&fs_type) && !points.contains(&point) {
            points.push(point);
        }
    }
    points
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(path: &str) -> String {
    path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_and_bpffs_mount_points_are_found() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid master:9 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
40 22 0:40 / /sys/fs/bpf rw,relatime - bpf bpf rw
41 22 0:40 / /run/my\\040bpf rw - bpf bpf rw
42 22 0:40 / /sys/fs/bpf rw - bpf bpf rw
";
        assert_eq!(
            mount_points(mountinfo),
            [
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/sys/fs/bpf"),
                PathBuf::from("/run/my bpf"),
            ]
        );
    }

    #[test]
    fn directories_inside_the_mounts_are_not_repeated() {
        let found = targets(&[Path::new("/sys/fs/bpf"), Path::new("/nonexistent")]).unwrap();
        assert!(
            found.iter().all(|t| t.path != Path::new("/nonexistent")),
            "{found:?}"
        );
        let tmp = tempfile::tempdir().unwrap();
        let found = targets(&[tmp.path(), tmp.path()]).unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let own: Vec<_> = found.iter().filter(|t| t.path == dir).collect();
        assert_eq!(
            own,
            [&Target {
                path: dir.clone(),
                mount_point: false
            }]
        );
    }
}
