//! Turning a policy's selector into workloads: its cgroup and/or host-side
//! interfaces (pods come from the Kubernetes watcher).

use super::{error::ApplyError, host_cgroup, workload::Workload};
use crate::{cgroup, policy::Policy};

/// The workloads a policy selects, each checked to exist. Selectors this
/// daemon cannot serve are refused, never silently ignored: an ignored
/// selector would leave its workloads unfiltered. So is a cgroup of the host
/// (see `host_cgroup`), unless the daemon runs with `--allow-host-cgroup`;
/// `exec`'s cgroup comes through here too (as an override of the selector).
///
/// `pods` are the pods `podLabels` selects now, `None` when the daemon does
/// not follow pods. A `podLabels` policy may select no pod yet: it attaches
/// as they come.
pub fn workloads_of(
    source: &str,
    policy: &Policy,
    pods: Option<Vec<Workload>>,
) -> Result<Vec<Workload>, ApplyError> {
    let selector_error = |message: String| ApplyError::Selector {
        source_name: source.into(),
        message,
    };
    let selector = &policy.selector;
    let mut workloads = Vec::new();
    if !selector.pod_labels.is_empty() {
        match pods {
            Some(pods) => workloads.extend(pods),
            None => {
                return Err(selector_error(
                    "podLabels: Kubernetes pod selection needs the daemon to run with \
                     --kubernetes; use cgroupPath or interfaces otherwise"
                        .into(),
                ));
            }
        }
    }
    if let Some(path) = selector.cgroup_path.as_deref() {
        let cgroup_error = |error| ApplyError::Cgroup {
            source_name: source.into(),
            error,
        };
        let path = cgroup::resolve(path).map_err(cgroup_error)?;
        if !host_cgroup::allowed() {
            let refusal = host_cgroup::refusal(&path).map_err(|error| {
                selector_error(format!(
                    "cgroupPath: cannot tell whether {} is a host cgroup: {error}",
                    path.display()
                ))
            })?;
            if let Some(refusal) = refusal {
                return Err(selector_error(format!("cgroupPath: {refusal}")));
            }
        }
        // Opened (and closed) here only to fail early with a clear message.
        cgroup::open(&path).map_err(cgroup_error)?;
        workloads.push(Workload::Cgroup { path });
    }
    for (index, name) in selector.interfaces.iter().enumerate() {
        if !std::path::Path::new("/sys/class/net").join(name).exists() {
            return Err(selector_error(format!(
                "interfaces[{index}]: there is no interface named {name} \
                 (in the daemon's network namespace)"
            )));
        }
        workloads.push(Workload::Interface { name: name.clone() });
    }
    if workloads.is_empty() && selector.pod_labels.is_empty() {
        return Err(selector_error(
            "selects nothing: set cgroupPath or interfaces".into(),
        ));
    }
    Ok(workloads)
}

/// A workload both lists share, described for an error message. Two policies
/// on one workload would both have to allow a packet, which is never what
/// anyone means.
pub fn overlap(mine: &[Workload], theirs: &[Workload]) -> Option<String> {
    mine.iter()
        .find(|workload| theirs.iter().any(|other| same(workload, other)))
        .map(ToString::to_string)
}

fn same(a: &Workload, b: &Workload) -> bool {
    match (a.cgroup(), b.cgroup()) {
        (Some(a), Some(b)) => {
            a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
        }
        _ => a == b,
    }
}
