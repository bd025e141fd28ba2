//! Who is asking: a process inside a cgroup the daemon filters must not
//! change (or even read) the policies that filter it. `exec` makes the
//! socket's directory read-only for its command, but a unix socket on a
//! read-only mount can still be connected to, so the daemon checks the
//! client's cgroup itself: SO_PEERCRED gives its pid, `/proc/<pid>/cgroup`
//! its cgroup, compared by device and inode with every filtered cgroup and
//! their descendants.

use std::{
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
};

use tokio::net::UnixStream;

use super::host_cgroup::v2_path;
use crate::cgroup;

/// The process at the other end of an API connection, as of its connect().
pub struct Peer {
    pid: Option<i32>,
    /// A pidfd for it (SO_PEERPIDFD, Linux 6.5): tells whether `pid` is
    /// still that process when its /proc entry is read.
    pidfd: Option<OwnedFd>,
}

impl Peer {
    pub fn of(stream: &UnixStream) -> Self {
        let pid = stream
            .peer_cred()
            .ok()
            .and_then(|cred| cred.pid())
            .filter(|pid| *pid > 0);
        Self {
            pid,
            pidfd: peer_pidfd(stream),
        }
    }

    /// Why the peer may not use the API: which of `filtered` (policy name,
    /// cgroup) holds it. `None` when none does. Fails closed: a peer whose
    /// cgroup cannot be told is refused.
    pub fn refusal(&self, filtered: &[(String, PathBuf)]) -> Option<String> {
        if filtered.is_empty() {
            return None;
        }
        match self.cgroup() {
            Err(error) => Some(format!(
                "refused: cannot tell which cgroup this client is in ({error}), and clients \
                 inside a filtered workload may not use the API"
            )),
            Ok(cgroup) => {
                let (policy, workload) = enclosing(&cgroup, filtered)?;
                Some(format!(
                    "refused: this client runs in cgroup {}, under policy {policy} (on {}); \
                     a process inside a filtered workload may not use the daemon's API",
                    cgroup.display(),
                    workload.display()
                ))
            }
        }
    }

    /// The peer's cgroup v2 directory (as the daemon sees it).
    fn cgroup(&self) -> io::Result<PathBuf> {
        let pid = self
            .pid
            .ok_or_else(|| io::Error::other("no process id for it"))?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
        if let Some(pidfd) = &self.pidfd {
            // Still alive: the pid was not reused while we read.
            // SAFETY: pidfd_send_signal(2) with signal 0 only checks.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    0,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if rc != 0 {
                return Err(io::Error::other(format!(
                    "process {pid} exited: {}",
                    io::Error::last_os_error()
                )));
            }
        }
        let relative = v2_path(&text)
            .ok_or_else(|| io::Error::other(format!("/proc/{pid}/cgroup has no `0::` line")))?;
        let mount = cgroup::cgroup2_mount().map_err(io::Error::other)?;
        Ok(mount.join(relative.trim_start_matches('/')))
    }
}

/// SO_PEERPIDFD; `None` where the kernel does not have it.
fn peer_pidfd(stream: &UnixStream) -> Option<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writing an int into `fd`, `len` its size.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &raw mut len,
        )
    };
    // SAFETY: on success the kernel gave us a new fd that nothing else owns.
    (rc == 0 && fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The first of `filtered` that is `cgroup` or one of its ancestors.
fn enclosing<'a>(cgroup: &Path, filtered: &'a [(String, PathBuf)]) -> Option<(&'a str, &'a Path)> {
    let identity = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let chain: Vec<_> = cgroup.ancestors().filter_map(identity).collect();
    filtered.iter().find_map(|(policy, workload)| {
        let id = identity(workload)?;
        chain
            .contains(&id)
            .then_some((policy.as_str(), workload.as_path()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_is_inside_itself_and_its_ancestors_only() {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path().join("outer");
        let inner = outer.join("inner");
        std::fs::create_dir_all(&inner).unwrap();
        let sibling = dir.path().join("sibling");
        std::fs::create_dir(&sibling).unwrap();
        let filtered = vec![
            ("s".to_owned(), sibling.clone()),
            ("o".to_owned(), outer.clone()),
        ];
        assert_eq!(enclosing(&inner, &filtered), Some(("o", outer.as_path())));
        assert_eq!(enclosing(&outer, &filtered), Some(("o", outer.as_path())));
        assert_eq!(enclosing(dir.path(), &filtered), None);
        // A missing workload directory encloses nothing.
        let gone = vec![("g".to_owned(), dir.path().join("gone"))];
        assert_eq!(enclosing(&inner, &gone), None);
    }
}
