//! Where the kubelet puts a pod's cgroup v2 directory.
//!
//! The kubelet creates one cgroup per pod (`cgroupsPerQOS`, on by default)
//! and starts every container of the pod inside it, so attaching to the pod
//! cgroup covers all its containers, init and sidecar containers included,
//! and containers restarted later. Where that directory is depends on the
//! kubelet's cgroup driver and on the pod's QoS class:
//!
//! | driver   | Guaranteed                             | Burstable / BestEffort                                                    |
//! |----------|----------------------------------------|---------------------------------------------------------------------------|
//! | systemd  | `kubepods.slice/kubepods-pod<U>.slice` | `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<U>.slice`         |
//! | cgroupfs | `kubepods/pod<uid>`                    | `kubepods/<qos>/pod<uid>`                                                 |
//!
//! `<U>` is the UID with `-` replaced by `_`: `-` separates the levels of a
//! systemd slice name, so a UUID's dashes would read as more nesting.
//!
//! The driver is not written anywhere the daemon can read without extra
//! privileges (it is in the kubelet's config file or flags), so
//! [`CgroupLayout::detect`] looks at the cgroup tree instead: the kubelet
//! creates `kubepods.slice` (systemd) or `kubepods` (cgroupfs) at start-up,
//! long before any pod runs. Kubelets with a non-default `cgroupRoot` (kind
//! nests everything under `kubelet.slice/kubelet-kubepods.slice`, for
//! instance) have neither; for them, and when both exist (a driver change
//! that left the old tree behind), a bounded search for the pod's UID finds
//! the directory whatever the prefix.

use std::{
    collections::VecDeque,
    fmt, fs, io,
    path::{Path, PathBuf},
};

/// How deep [`CgroupLayout`] searches below the cgroup2 mount when the
/// layout is unknown. kind's pods are at depth 4
/// (`kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/
/// kubelet-kubepods-besteffort-pod<U>.slice`); one more level leaves room for
/// a cgroupRoot nested one step deeper.
pub const MAX_SEARCH_DEPTH: usize = 5;

/// The search gives up after this many directories, so a host with a huge
/// cgroup tree (thousands of systemd units) costs a bounded amount of work
/// per lookup rather than a full walk.
pub const MAX_SEARCH_DIRS: usize = 20_000;

/// A pod's `status.qosClass`, which decides the level of its cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub const ALL: [QosClass; 3] = [
        QosClass::Guaranteed,
        QosClass::Burstable,
        QosClass::BestEffort,
    ];

    /// The class named by `status.qosClass` (`None` for anything else).
    pub fn from_status(value: &str) -> Option<QosClass> {
        match value {
            "Guaranteed" => Some(QosClass::Guaranteed),
            "Burstable" => Some(QosClass::Burstable),
            "BestEffort" => Some(QosClass::BestEffort),
            _ => None,
        }
    }

    /// The name of the class's own cgroup level; Guaranteed pods have none
    /// (they sit directly under the kubepods root).
    fn level(self) -> Option<&'static str> {
        match self {
            QosClass::Guaranteed => None,
            QosClass::Burstable => Some("burstable"),
            QosClass::BestEffort => Some("besteffort"),
        }
    }
}

/// The kubelet's `cgroupDriver`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CgroupDriver {
    Systemd,
    Cgroupfs,
}

impl fmt::Display for CgroupDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupDriver::Systemd => "systemd",
            CgroupDriver::Cgroupfs => "cgroupfs",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PodCgroupError {
    /// A UID becomes part of a path; anything but letters, digits and `-`
    /// (UUIDs, and the hex hashes of static pods) could leave the tree.
    #[error("pod UID `{0}` is not a UID (expected letters, digits and '-')")]
    InvalidUid(String),
    #[error("no cgroup for pod UID {uid}: {looked}")]
    NotFound { uid: String, looked: String },
    #[error("searching {dir} for the cgroup of pod UID {uid}: {source}")]
    Search {
        uid: String,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The pod cgroup directory for `driver`, relative to the cgroup2 mount.
pub fn pod_cgroup_dir(driver: CgroupDriver, qos: QosClass, uid: &str) -> PathBuf {
    match (driver, qos.level()) {
        (CgroupDriver::Systemd, None) => PathBuf::from(format!(
            "kubepods.slice/kubepods-pod{}.slice",
            systemd_uid(uid)
        )),
        (CgroupDriver::Systemd, Some(level)) => PathBuf::from(format!(
            "kubepods.slice/kubepods-{level}.slice/kubepods-{level}-pod{}.slice",
            systemd_uid(uid)
        )),
        (CgroupDriver::Cgroupfs, None) => PathBuf::from(format!("kubepods/pod{uid}")),
        (CgroupDriver::Cgroupfs, Some(level)) => {
            PathBuf::from(format!("kubepods/{level}/pod{uid}"))
        }
    }
}

/// `-` separates slice levels in systemd unit names, so the kubelet escapes
/// a UID's dashes as `_`.
fn systemd_uid(uid: &str) -> String {
    uid.replace('-', "_")
}

/// Whether a directory name is the pod cgroup of `uid` under either driver,
/// whatever the kubelet's cgroupRoot prefix.
fn is_pod_dir_name(name: &str, uid: &str) -> bool {
    super::kubepods::pod_uid_of_dir(name).as_deref() == Some(uid)
}

/// Letters, digits and `-` (UUIDs, and the hex hashes of static pods).
pub(super) fn is_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn check_uid(uid: &str) -> Result<(), PodCgroupError> {
    if is_uid(uid) {
        Ok(())
    } else {
        Err(PodCgroupError::InvalidUid(uid.to_owned()))
    }
}

fn detect_driver(mount: &Path) -> Option<CgroupDriver> {
    let systemd = mount.join("kubepods.slice").is_dir();
    let cgroupfs = mount.join("kubepods").is_dir();
    match (systemd, cgroupfs) {
        (true, false) => Some(CgroupDriver::Systemd),
        (false, true) => Some(CgroupDriver::Cgroupfs),
        _ => None,
    }
}

/// Where pod cgroups are on this node: the cgroup2 mount, and the driver
/// when it could be told from the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupLayout {
    mount: PathBuf,
    driver: Option<CgroupDriver>,
    /// Made by [`CgroupLayout::detect`]: while the driver is unknown, each
    /// lookup looks again, so a kubelet that starts after the daemon (at
    /// boot) is recognised as soon as it has made its directory.
    redetect: bool,
}

impl CgroupLayout {
    /// Looks at the tree under `mount` (the cgroup2 mount point, e.g. from
    /// [`crate::cgroup::cgroup2_mount`]) for the kubelet's top-level
    /// directory. Exactly one of `kubepods.slice` and `kubepods` gives the
    /// driver; none or both leave it unknown, and lookups search instead.
    pub fn detect(mount: &Path) -> CgroupLayout {
        CgroupLayout {
            mount: mount.to_path_buf(),
            driver: detect_driver(mount),
            redetect: true,
        }
    }

    /// A layout with a known driver (configuration wins over detection).
    pub fn with_driver(mount: &Path, driver: CgroupDriver) -> CgroupLayout {
        CgroupLayout {
            mount: mount.to_path_buf(),
            driver: Some(driver),
            redetect: false,
        }
    }

    /// A layout that always searches (a custom kubelet cgroupRoot).
    pub fn searching(mount: &Path) -> CgroupLayout {
        CgroupLayout {
            mount: mount.to_path_buf(),
            driver: None,
            redetect: false,
        }
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The detected (or configured) driver; `None` means lookups search.
    pub fn driver(&self) -> Option<CgroupDriver> {
        match self.driver {
            None if self.redetect => detect_driver(&self.mount),
            driver => driver,
        }
    }

    /// The directory the kubelet makes pod cgroups in (its QoS-class
    /// directories included), when the driver is known.
    pub fn kubepods_root(&self) -> Option<PathBuf> {
        self.driver().map(|driver| {
            self.mount.join(match driver {
                CgroupDriver::Systemd => "kubepods.slice",
                CgroupDriver::Cgroupfs => "kubepods",
            })
        })
    }

    /// The absolute path of the existing cgroup directory of the pod with
    /// `uid`. `qos` is the pod's `status.qosClass`; when it is unknown (a
    /// status written before the kubelet filled it in) every class is
    /// tried, which is safe because a UID names one pod.
    ///
    /// With a known driver only the computed paths are checked: a miss means
    /// the cgroup is not there (yet, or any more), and searching would only
    /// cost time. Without one, the tree is searched ([`MAX_SEARCH_DEPTH`]).
    pub fn pod_cgroup(&self, uid: &str, qos: Option<QosClass>) -> Result<PathBuf, PodCgroupError> {
        check_uid(uid)?;
        match self.driver() {
            Some(driver) => {
                let classes = match qos {
                    Some(qos) => vec![qos],
                    None => QosClass::ALL.to_vec(),
                };
                let candidates: Vec<PathBuf> = classes
                    .into_iter()
                    .map(|qos| self.mount.join(pod_cgroup_dir(driver, qos, uid)))
                    .collect();
                if let Some(found) = candidates.iter().find(|path| path.is_dir()) {
                    return Ok(found.clone());
                }
                let looked = candidates
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(PodCgroupError::NotFound {
                    uid: uid.to_owned(),
                    looked: format!("{looked} (kubelet cgroup driver {driver}) do not exist"),
                })
            }
            None => self.search(uid),
        }
    }

    /// Breadth-first, so the shallowest match wins and the pods' own
    /// container cgroups (one level below the pod) are never reached before
    /// the pod directory.
    fn search(&self, uid: &str) -> Result<PathBuf, PodCgroupError> {
        let mut queue = VecDeque::from([(self.mount.clone(), 0usize)]);
        let mut visited = 0usize;
        while let Some((dir, depth)) = queue.pop_front() {
            visited += 1;
            if visited > MAX_SEARCH_DIRS {
                break;
            }
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // A cgroup removed while we walk (a container exiting) is
                // not an error; only the mount itself must be readable.
                Err(error) if depth > 0 && error.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(PodCgroupError::Search {
                        uid: uid.to_owned(),
                        dir,
                        source,
                    });
                }
            };
            for entry in entries.flatten() {
                // cgroupfs has only directories and control files; the
                // file type from readdir saves a stat per control file.
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if is_pod_dir_name(name, uid) {
                    return Ok(entry.path());
                }
                // Containers and systemd services are `.scope`/`.service`
                // leaves; a pod cgroup never sits below one.
                let leaf = name.ends_with(".scope") || name.ends_with(".service");
                if depth + 1 < MAX_SEARCH_DEPTH && !leaf {
                    queue.push_back((entry.path(), depth + 1));
                }
            }
        }
        Err(PodCgroupError::NotFound {
            uid: uid.to_owned(),
            looked: format!(
                "the kubelet's cgroup driver could not be told from {} (neither or both of \
                 kubepods.slice and kubepods exist) and no directory pod{uid} or *-pod{}.slice \
                 is within {MAX_SEARCH_DEPTH} levels of it",
                self.mount.display(),
                systemd_uid(uid)
            ),
        })
    }
}

#[cfg(test)]
mod tests;
