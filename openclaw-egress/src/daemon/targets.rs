//! Where a policy's programs attach: its cgroup and/or host-side interfaces.

use std::{fs::File, path::PathBuf};

use super::apply::ApplyError;
use crate::{cgroup, datapath::Hooks, policy::Policy};

/// The attachment points of one policy, resolved and checked to exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Absolute path of the cgroup v2 directory.
    pub cgroup: Option<PathBuf>,
    pub interfaces: Vec<String>,
}

impl Targets {
    /// Resolves the policy's selector. Selectors this daemon cannot serve are
    /// refused, never silently ignored: an ignored selector would leave its
    /// workloads unfiltered.
    pub fn of(source: &str, policy: &Policy) -> Result<(Self, Option<File>), ApplyError> {
        let selector_error = |message: String| ApplyError::Selector {
            source_name: source.into(),
            message,
        };
        let selector = &policy.selector;
        if !selector.pod_labels.is_empty() {
            return Err(selector_error(
                "podLabels: Kubernetes pod selection is not supported by this daemon; \
                 use cgroupPath or interfaces"
                    .into(),
            ));
        }
        let cgroup_error = |error| ApplyError::Cgroup {
            source_name: source.into(),
            error,
        };
        let (cgroup, file) = match selector.cgroup_path.as_deref() {
            Some(path) => {
                let path = cgroup::resolve(path).map_err(cgroup_error)?;
                let file = cgroup::open(&path).map_err(cgroup_error)?;
                (Some(path), Some(file))
            }
            None => (None, None),
        };
        for (index, interface) in selector.interfaces.iter().enumerate() {
            if !interface_exists(interface) {
                return Err(selector_error(format!(
                    "interfaces[{index}]: there is no interface named {interface} \
                     (in the daemon's network namespace)"
                )));
            }
        }
        if cgroup.is_none() && selector.interfaces.is_empty() {
            return Err(selector_error(
                "selects nothing: set cgroupPath or interfaces".into(),
            ));
        }
        let targets = Self {
            cgroup,
            interfaces: selector.interfaces.clone(),
        };
        Ok((targets, file))
    }

    pub fn hooks(&self) -> Hooks {
        Hooks {
            cgroup: self.cgroup.is_some(),
            interfaces: !self.interfaces.is_empty(),
        }
    }

    /// What `self` shares with `other`, described for an error message. Two
    /// policies on one workload would both have to allow a packet, which is
    /// never what anyone means.
    pub fn overlap(&self, other: &Targets) -> Option<String> {
        if let (Some(mine), Some(theirs)) = (&self.cgroup, &other.cgroup)
            && (mine == theirs
                || matches!((mine.canonicalize(), theirs.canonicalize()), (Ok(a), Ok(b)) if a == b))
        {
            return Some(format!("cgroupPath: {}", mine.display()));
        }
        self.interfaces
            .iter()
            .find(|interface| other.interfaces.contains(interface))
            .map(|interface| format!("interface {interface}"))
    }
}

fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}
