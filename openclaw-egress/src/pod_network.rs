//! Where a pod's packets cross into the host: the host-side ends of the veth
//! pairs whose other end is in the pod's network namespace.
//!
//! A pod's cgroup hook sees what its sockets send, but a workload with
//! CAP_NET_RAW or CAP_NET_ADMIN in its own namespace can send packets no
//! socket hook sees (AF_PACKET, a TUN device and forwarding, a tc rewrite
//! after the hook). Every one of them still crosses the veth, so the policy
//! is enforced on its host side too.
//!
//! The pod's namespace is named through a process in its cgroup (every
//! running pod has one, its sandbox's pause process): listing the daemon's
//! own interfaces makes the kernel give every namespace a veth peer lives in
//! an id, and the kernel tells which id the process's namespace has. The
//! host veths whose peer is in that namespace are the pod's. This needs no
//! privilege over the pod (no setns, no /proc/<pid>/ns), only that its
//! processes are visible: in a DaemonSet, `hostPID: true`.

use std::{
    fs,
    io::{self, BufRead as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::netlink;

/// How deep the pod's cgroup tree is searched for a process (pod, then
/// container cgroups, possibly nested once more).
const MAX_DEPTH: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodNetwork {
    /// The pod shares the daemon's network namespace (`hostNetwork: true`):
    /// there is no veth; only its cgroup can be enforced.
    HostNetwork,
    /// No veth in the daemon's namespace leads to the pod's: its network is
    /// not a veth (macvlan, ipvlan...), or the daemon does not run in the
    /// host's network namespace. Only its cgroup can be enforced.
    NoVeth,
    /// The host-side interfaces, in the daemon's namespace.
    Veths(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum PodNetworkError {
    #[error("no process in {} yet, so its network namespace is unknown", .0.display())]
    NoProcess(PathBuf),
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("listing the interfaces of the pod's network namespace: {0}")]
    Links(#[source] io::Error),
}

/// The network of the pod whose cgroup is `cgroup`.
pub fn of_cgroup(cgroup: &Path) -> Result<PodNetwork, PodNetworkError> {
    let pid =
        first_pid(cgroup, MAX_DEPTH)?.ok_or_else(|| PodNetworkError::NoProcess(cgroup.into()))?;
    // Listed first: this is what gives the pod's namespace its id here.
    let host_links = netlink::links().map_err(PodNetworkError::Links)?;
    let nsid = netlink::nsid_of_pid(pid).map_err(PodNetworkError::Links)?;
    let veths: Vec<String> = host_links
        .iter()
        .filter(|link| link.kind.as_deref() == Some("veth"))
        .filter(|link| nsid.is_some() && link.peer_netns_id == nsid)
        .map(|link| link.name.clone())
        .collect();
    if !veths.is_empty() {
        return Ok(PodNetwork::Veths(veths));
    }
    // No veth leads there: the pod is in our namespace (hostNetwork), or
    // its network is not a veth (macvlan, ipvlan...).
    if shares_our_namespace(pid) {
        return Ok(PodNetwork::HostNetwork);
    }
    Ok(PodNetwork::NoVeth)
}

/// Whether process `pid` is in the calling thread's network namespace. Read
/// from /proc, which needs ptrace access to the process; without it the
/// answer is no (and the pod counts as one no veth leads to).
fn shares_our_namespace(pid: u32) -> bool {
    let inode = |path: PathBuf| fs::metadata(path).map(|meta| meta.ino()).ok();
    let theirs = inode(PathBuf::from(format!("/proc/{pid}/ns/net")));
    theirs.is_some() && theirs == inode(PathBuf::from("/proc/thread-self/ns/net"))
}

/// A process in `cgroup` or below it (depth-first, at most `depth` levels).
fn first_pid(cgroup: &Path, depth: usize) -> Result<Option<u32>, PodNetworkError> {
    let procs = cgroup.join("cgroup.procs");
    match fs::File::open(&procs) {
        Ok(file) => {
            for line in io::BufReader::new(file).lines() {
                let line = line.map_err(|source| PodNetworkError::Io {
                    path: procs.clone(),
                    source,
                })?;
                if let Ok(pid) = line.trim().parse() {
                    return Ok(Some(pid));
                }
            }
        }
        // The pod (or one of its containers) just went.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PodNetworkError::Io {
                path: procs,
                source,
            });
        }
    }
    if depth == 0 {
        return Ok(None);
    }
    let Ok(entries) = fs::read_dir(cgroup) else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir())
            && let Some(pid) = first_pid(&entry.path(), depth - 1)?
        {
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_network_of_a_cgroup_without_processes_is_unknown() {
        let dir = std::env::temp_dir().join(format!("oce-pod-net-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("container")).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        std::fs::write(dir.join("container/cgroup.procs"), "\n").unwrap();
        assert!(matches!(
            of_cgroup(&dir),
            Err(PodNetworkError::NoProcess(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn pod_network_finds_a_process_in_a_container_cgroup() {
        let dir = std::env::temp_dir().join(format!("oce-pod-pid-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        std::fs::write(dir.join("a/cgroup.procs"), "").unwrap();
        std::fs::write(dir.join("a/b/cgroup.procs"), "42\n43\n").unwrap();
        assert_eq!(first_pid(&dir, MAX_DEPTH).unwrap(), Some(42));
        assert_eq!(first_pid(&dir, 1).unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
