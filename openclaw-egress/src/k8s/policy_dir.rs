//! Policies from a directory: in the DaemonSet, a ConfigMap mounted at
//! `/etc/openclaw-egress/policies`, one policy per key (file).
//!
//! Beside `EgressPolicy` objects (see `egress_policy`): the kubelet mounts
//! the ConfigMap, so policies from it need no API access at all, and the
//! files are exactly what `openclaw-egress validate` and `apply` take. The
//! price: an edit reaches the nodes after the kubelet's ConfigMap sync (up
//! to about a minute), and there is no status to read back.
//!
//! The kubelet updates a ConfigMap volume atomically: the files are
//! symlinks into a `..data` directory that is swapped in one rename. So the
//! directory is read as a whole, hidden entries (`..data`, `..2024_...`) are
//! skipped, and files are compared by content rather than mtime (the
//! symlinks keep theirs, and an edit within the same second would not show).

use std::{
    collections::{BTreeMap, BTreeSet},
    fs, io,
    path::{Path, PathBuf},
};

use crate::policy::{self, Policy, PolicyError};

/// The policy directory in the DaemonSet (the ConfigMap's mount point).
pub const DEFAULT_POLICY_DIR: &str = "/etc/openclaw-egress/policies";

#[derive(Debug, thiserror::Error)]
pub enum PolicyDirError {
    #[error("reading the policy directory {dir}: {source}")]
    Read {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why one file's policy is not applied.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("reading {file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// Policy names key the daemon's state (pins, metrics), so two files
    /// may not define the same one; the file sorting first keeps it.
    #[error("{file}: policy `{name}` is already defined in {other}")]
    DuplicateName {
        file: PathBuf,
        name: String,
        other: PathBuf,
    },
}

/// What changed since the last [`PolicyDir::poll`].
#[derive(Debug)]
pub enum PolicyChange {
    /// Apply this policy (new, or different from the one applied before).
    Apply { file: PathBuf, policy: Policy },
    /// The policy named `name` is no longer defined: remove it.
    Remove { file: PathBuf, name: String },
    /// The file's policy cannot be applied. Whatever this file defined
    /// before stays applied: a typo in an edit must not lift enforcement.
    /// Reported once per distinct problem, not on every poll.
    Rejected {
        file: PathBuf,
        error: PolicyFileError,
    },
}

/// A policy directory and what was last applied from it.
#[derive(Debug)]
pub struct PolicyDir {
    dir: PathBuf,
    /// Policy name to the file it came from and the policy as applied.
    applied: BTreeMap<String, (PathBuf, Policy)>,
    /// The last problem reported per file, to report each one once.
    reported: BTreeMap<PathBuf, String>,
    /// Policies whose last apply failed: applied again on the next poll.
    retry: BTreeSet<String>,
}

impl PolicyDir {
    pub fn new(dir: impl Into<PathBuf>) -> PolicyDir {
        PolicyDir {
            dir: dir.into(),
            applied: BTreeMap::new(),
            reported: BTreeMap::new(),
            retry: BTreeSet::new(),
        }
    }

    /// Says the daemon could not apply `name` (e.g. its cgroup does not exist
    /// yet): the next poll asks for it again rather than taking it as done.
    pub fn apply_failed(&mut self, name: &str) {
        self.retry.insert(name.to_string());
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The policies applied from the directory, by name.
    pub fn applied(&self) -> impl Iterator<Item = &Policy> {
        self.applied.values().map(|(_, policy)| policy)
    }

    /// Reads the directory and returns the changes since the last poll, in
    /// the order to carry them out: every `Apply` before any `Remove`, so a
    /// policy renamed in its file is enforced under the new name before the
    /// old one goes (two policies filtering at once only ever drop more).
    /// On `Err` nothing is changed; poll again later.
    pub fn poll(&mut self) -> Result<Vec<PolicyChange>, PolicyDirError> {
        let files = self.policy_files()?;

        let mut rejected = Vec::new();
        let mut wanted: BTreeMap<String, (PathBuf, Policy)> = BTreeMap::new();
        for file in &files {
            let parsed = fs::read_to_string(file)
                .map_err(|source| PolicyFileError::Read {
                    file: file.clone(),
                    source,
                })
                .and_then(|yaml| {
                    policy::parse_str(&file.display().to_string(), &yaml)
                        .map_err(PolicyFileError::Invalid)
                })
                .and_then(|policy| match wanted.get(&policy.name) {
                    Some((other, _)) => Err(PolicyFileError::DuplicateName {
                        file: file.clone(),
                        name: policy.name.clone(),
                        other: other.clone(),
                    }),
                    None => Ok(policy),
                });
            match parsed {
                Ok(policy) => {
                    self.reported.remove(file);
                    wanted.insert(policy.name.clone(), (file.clone(), policy));
                }
                Err(error) => {
                    // Keep what this file defined before, if anything.
                    for (name, (from, policy)) in &self.applied {
                        if from == file && !wanted.contains_key(name) {
                            wanted.insert(name.clone(), (from.clone(), policy.clone()));
                        }
                    }
                    let text = error.to_string();
                    if self.reported.get(file) != Some(&text) {
                        self.reported.insert(file.clone(), text);
                        rejected.push(PolicyChange::Rejected {
                            file: file.clone(),
                            error,
                        });
                    }
                }
            }
        }
        let present: BTreeSet<&PathBuf> = files.iter().collect();
        self.reported.retain(|file, _| present.contains(file));

        let mut changes = rejected;
        let retry = std::mem::take(&mut self.retry);
        for (name, (file, policy)) in &wanted {
            if self.applied.get(name).map(|(_, applied)| applied) != Some(policy)
                || retry.contains(name)
            {
                changes.push(PolicyChange::Apply {
                    file: file.clone(),
                    policy: policy.clone(),
                });
            }
        }
        for (name, (file, _)) in &self.applied {
            if !wanted.contains_key(name) {
                changes.push(PolicyChange::Remove {
                    file: file.clone(),
                    name: name.clone(),
                });
            }
        }
        self.applied = wanted;
        Ok(changes)
    }

    /// `*.yaml` and `*.yml` files (or symlinks to files), sorted; hidden
    /// entries are the ConfigMap volume's own bookkeeping.
    fn policy_files(&self) -> Result<Vec<PathBuf>, PolicyDirError> {
        let read_error = |source| PolicyDirError::Read {
            dir: self.dir.clone(),
            source,
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            // `metadata` follows the symlink; a dangling one mid-swap is
            // skipped and seen on the next poll.
            if !name.starts_with('.') && is_yaml && fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }
}
