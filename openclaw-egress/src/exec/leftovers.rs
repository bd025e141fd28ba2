//! What an `exec` killed before it could clean up (SIGKILL, the OOM killer)
//! leaves behind: its cgroup, and its policy in the daemon, still enforcing
//! on whatever of its command outlived it. That is the safe way to fail, but
//! nothing would ever remove them. Once that exec is gone and its cgroup is
//! empty, the next `exec` does.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::{
    api::client::ask,
    api::{Request, Response},
};

/// The cgroup of the exec with process id `pid`, under the cgroup2 mount.
pub fn cgroup_name(pid: u32) -> String {
    format!("{PREFIX}{pid}")
}

/// How the exec with process id `pid` names its policy: `<name><suffix>`.
pub fn policy_suffix(pid: u32) -> String {
    format!("-exec-{pid}")
}

const PREFIX: &str = "openclaw-egress-exec-";

/// An earlier exec's cgroup that nothing uses any more.
struct Leftover {
    pid: u32,
    cgroup: PathBuf,
}

/// Removes the leftovers of every dead exec whose cgroup is empty: its
/// policy (through the daemon) and its cgroup. Best effort: what cannot be
/// removed is reported and left, still enforcing.
pub async fn remove(socket: &Path, mount: &Path) {
    let leftovers = find(mount);
    if leftovers.is_empty() {
        return;
    }
    let policies = match ask(socket, &Request::Status).await {
        Ok(Response::Status(report)) => report.policies,
        Ok(other) => {
            eprintln!("openclaw-egress: looking for stale exec policies: {other:?}");
            return;
        }
        Err(error) => {
            eprintln!("openclaw-egress: looking for stale exec policies: {error:#}");
            return;
        }
    };
    for leftover in leftovers {
        let suffix = policy_suffix(leftover.pid);
        let mut removed = Vec::new();
        let mut failed = false;
        let its_policies = policies.iter().filter(|policy| {
            policy.cgroup.as_deref() == Some(&leftover.cgroup) && policy.name.ends_with(&suffix)
        });
        for policy in its_policies {
            let request = Request::Remove {
                name: policy.name.clone(),
            };
            match ask(socket, &request).await {
                Ok(Response::Removed { name }) => removed.push(format!("policy {name}")),
                Ok(other) => {
                    eprintln!("openclaw-egress: removing {}: {other:?}", policy.name);
                    failed = true;
                }
                Err(error) => {
                    eprintln!("openclaw-egress: removing {}: {error:#}", policy.name);
                    failed = true;
                }
            }
        }
        // A policy still attached keeps its cgroup: removing the cgroup
        // would leave the policy pointing at nothing.
        if !failed {
            match fs::remove_dir(&leftover.cgroup) {
                Ok(()) => removed.push(format!("cgroup {}", leftover.cgroup.display())),
                Err(error) => eprintln!(
                    "openclaw-egress: removing {}: {error}",
                    leftover.cgroup.display()
                ),
            }
        }
        if !removed.is_empty() {
            eprintln!(
                "openclaw-egress: removed what exec {} left behind: {}",
                leftover.pid,
                removed.join(", ")
            );
        }
    }
}

/// The exec cgroups under `mount` whose exec is gone and which hold no
/// process.
fn find(mount: &Path) -> Vec<Leftover> {
    let Ok(entries) = fs::read_dir(mount) else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let pid: u32 = name.to_str()?.strip_prefix(PREFIX)?.parse().ok()?;
            let cgroup = entry.path();
            (pid != own && !is_alive(pid) && !is_populated(&cgroup))
                .then_some(Leftover { pid, cgroup })
        })
        .collect()
}

/// Whether a process `pid` exists. A reused pid counts as alive: the
/// leftover then waits for a later exec, which is the safe mistake.
fn is_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether the cgroup or a descendant holds a process (`populated 1` in
/// `cgroup.events`); unreadable counts as populated.
fn is_populated(cgroup: &Path) -> bool {
    fs::read_to_string(cgroup.join("cgroup.events")).map_or(true, |events| {
        !events.lines().any(|line| line == "populated 0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_exists_is_alive_and_one_that_does_not_is_not() {
        assert!(is_alive(std::process::id()));
        // Above the kernel's pid_max (at most 2^22).
        assert!(!is_alive(1 << 23));
    }

    #[test]
    fn a_cgroup_without_events_counts_as_populated() {
        assert!(is_populated(Path::new("/nonexistent/cgroup")));
    }

    #[test]
    fn only_exec_cgroups_are_found() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["openclaw-egress-exec-x", "other-1", "openclaw-egress-exec-"] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        // A dead exec's directory, "empty" by its events file.
        let dead = dir.path().join(cgroup_name(1 << 23));
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        // A live exec's (ours).
        let live = dir.path().join(cgroup_name(std::process::id()));
        fs::create_dir(&live).unwrap();
        fs::write(live.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        let found: Vec<u32> = find(dir.path()).iter().map(|l| l.pid).collect();
        assert_eq!(found, [1 << 23]);
    }
}
