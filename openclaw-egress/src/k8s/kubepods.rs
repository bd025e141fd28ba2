//! The kubepods cgroup tree as it changes: which directory is a pod's (and
//! whose), which is a QoS class's, and an inotify watch that reports pod
//! cgroups the moment the kubelet makes them.

use std::{
    collections::BTreeMap,
    ffi::{CString, OsStr},
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

use tokio::io::{Interest, unix::AsyncFd};

/// The pod UID a pod cgroup directory is named after, for either cgroup
/// driver: `pod<uid>` (cgroupfs) or `…-pod<uid with _>.slice` (systemd).
pub fn pod_uid_of_dir(name: &str) -> Option<String> {
    let uid = match name.strip_suffix(".slice") {
        // systemd escapes the UID's dashes (a dash separates slice levels):
        // an unescaped one is not the kubelet's name.
        Some(stem) => {
            let escaped = stem.rsplit_once("-pod")?.1;
            if escaped.contains('-') {
                return None;
            }
            escaped.replace('_', "-")
        }
        None => name.strip_prefix("pod")?.to_owned(),
    };
    super::cgroup_path::is_uid(&uid).then_some(uid)
}

/// Whether a directory right below the kubepods root is a QoS class's
/// (Burstable and BestEffort pods sit one level further down; Guaranteed
/// pods have no such level).
pub fn is_qos_dir(name: &str) -> bool {
    matches!(name, "burstable" | "besteffort")
        || name.ends_with("-burstable.slice")
        || name.ends_with("-besteffort.slice")
}

/// What happened in the watched tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirEvent {
    Created(PathBuf),
    Removed(PathBuf),
    /// The kernel's queue overflowed: events were lost; look at the tree.
    Overflow,
}

/// inotify on the kubepods root and its QoS-class directories, for
/// directories created and removed.
pub struct KubepodsWatch {
    fd: AsyncFd<OwnedFd>,
    dirs: BTreeMap<i32, PathBuf>,
}

impl KubepodsWatch {
    /// Watches `root` (and nothing below it yet: see [`Self::watch`]).
    pub fn new(root: &Path) -> io::Result<Self> {
        // SAFETY: no pointers; a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just created, ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the descriptor is owned by the AsyncFd, which neither
        // replaces nor closes it while registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|error| error.into_parts().1)?;
        let mut watch = KubepodsWatch {
            fd,
            dirs: BTreeMap::new(),
        };
        watch.watch(root)?;
        Ok(watch)
    }

    /// Adds `dir` (a QoS-class directory) to the watch.
    pub fn watch(&mut self, dir: &Path) -> io::Result<()> {
        let path = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("a NUL byte in the path"))?;
        let mask = libc::IN_CREATE | libc::IN_DELETE | libc::IN_ONLYDIR;
        // SAFETY: a NUL-terminated path and our descriptor.
        let wd =
            unsafe { libc::inotify_add_watch(self.fd.get_ref().as_raw_fd(), path.as_ptr(), mask) };
        if wd < 0 {
            return Err(io::Error::last_os_error());
        }
        self.dirs.insert(wd, dir.to_path_buf());
        Ok(())
    }

    /// The next batch of events (waits for one at least).
    pub async fn next(&mut self) -> io::Result<Vec<DirEvent>> {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let mut ready = self.fd.readable().await?;
            let read = ready.try_io(|fd| {
                // SAFETY: reads into our buffer, at most its length.
                let n = unsafe {
                    libc::read(
                        fd.get_ref().as_raw_fd(),
                        buffer.as_mut_ptr().cast(),
                        buffer.len(),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(Ok(n)) => return Ok(self.parse(&buffer[..n])),
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => continue,
            }
        }
    }

    fn parse(&mut self, mut bytes: &[u8]) -> Vec<DirEvent> {
        const HEADER: usize = size_of::<libc::inotify_event>();
        let mut events = Vec::new();
        while bytes.len() >= HEADER {
            // SAFETY: a whole header is there; read unaligned.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            let len = HEADER + event.len as usize;
            let Some(name) = bytes.get(HEADER..len) else {
                break;
            };
            bytes = &bytes[len..];
            if event.mask & libc::IN_Q_OVERFLOW != 0 {
                events.push(DirEvent::Overflow);
                continue;
            }
            if event.mask & libc::IN_IGNORED != 0 {
                self.dirs.remove(&event.wd); // Its directory is gone.
                continue;
            }
            if event.mask & libc::IN_ISDIR == 0 {
                continue;
            }
            let Some(dir) = self.dirs.get(&event.wd) else {
                continue;
            };
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let path = dir.join(OsStr::from_bytes(&name[..end]));
            if event.mask & libc::IN_CREATE != 0 {
                events.push(DirEvent::Created(path));
            } else if event.mask & libc::IN_DELETE != 0 {
                events.push(DirEvent::Removed(path));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_dirs_name_their_pod_for_either_driver() {
        let uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        assert_eq!(pod_uid_of_dir(&format!("pod{uid}")).as_deref(), Some(uid));
        let systemd = uid.replace('-', "_");
        for name in [
            format!("kubepods-pod{systemd}.slice"),
            format!("kubepods-besteffort-pod{systemd}.slice"),
            format!("kubelet-kubepods-burstable-pod{systemd}.slice"),
        ] {
            assert_eq!(pod_uid_of_dir(&name).as_deref(), Some(uid), "{name}");
        }
        // systemd's name with the dashes not escaped: not the kubelet's.
        assert_eq!(pod_uid_of_dir(&format!("kubepods-pod{uid}.slice")), None);
        for name in [
            "besteffort",
            "kubepods-burstable.slice",
            "pod",
            "pod../x",
            "cri-containerd-1.scope",
        ] {
            assert_eq!(pod_uid_of_dir(name), None, "{name}");
        }
    }

    #[test]
    fn qos_dirs_are_told_from_pod_dirs() {
        for name in [
            "besteffort",
            "burstable",
            "kubepods-besteffort.slice",
            "kubepods-burstable.slice",
        ] {
            assert!(is_qos_dir(name), "{name}");
        }
        for name in ["kubepods-besteffort-pod0f1e.slice", "pod0f1e", "guaranteed"] {
            assert!(!is_qos_dir(name), "{name}");
        }
    }

    #[tokio::test]
    async fn the_watch_reports_directories_made_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let qos = root.path().join("besteffort");
        std::fs::create_dir(&qos).unwrap();
        let mut watch = KubepodsWatch::new(root.path()).unwrap();
        watch.watch(&qos).unwrap();
        std::fs::write(root.path().join("cgroup.procs"), b"").unwrap();
        let pod = qos.join("podabc");
        std::fs::create_dir(&pod).unwrap();
        std::fs::remove_dir(&pod).unwrap();
        let mut events = Vec::new();
        while events.len() < 2 {
            events.extend(watch.next().await.unwrap());
        }
        assert_eq!(
            events,
            [DirEvent::Created(pod.clone()), DirEvent::Removed(pod)]
        );
    }
}
