//! Named network namespaces (`ip netns`) and running `ip`.

use std::{
    fs::File,
    path::PathBuf,
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Where `ip netns add` bind-mounts named namespaces.
const NETNS_RUN_DIR: &str = "/run/netns";

/// Runs `ip <args>` and fails with its stderr if it fails.
pub(crate) fn ip(args: &[&str]) -> Result<Output> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running `ip {}` (is iproute2 installed?)", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// The names in `ip netns list`.
pub(crate) fn list() -> Result<Vec<String>> {
    let output = ip(&["netns", "list"])?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        // Lines look like `name (id: 3)` once the namespace has an id.
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// A named network namespace that is deleted on drop, after killing every
/// process still in it.
#[derive(Debug)]
pub(crate) struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    pub(crate) fn create(name: &str) -> Result<Self> {
        ip(&["netns", "add", name])?;
        Ok(Self {
            name: name.to_owned(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// An fd of the namespace for `setns(2)`.
    pub(crate) fn open(&self) -> Result<File> {
        let path = PathBuf::from(NETNS_RUN_DIR).join(&self.name);
        File::open(&path).with_context(|| format!("opening netns {}", path.display()))
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(err) = delete(&self.name) {
            eprintln!("openclaw-egress-e2e: cleanup: {err:#}");
        }
    }
}

/// Kills the processes in netns `name` and deletes it.
///
/// The processes are ours (a world server or daemon whose guard was leaked or
/// outlived the sandbox); killing them first means the namespace, and its
/// veth, really go away instead of lingering unnamed.
pub(crate) fn delete(name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = pids(name);
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        if Instant::now() > deadline {
            eprintln!("openclaw-egress-e2e: cleanup: processes {pids:?} still in netns {name}");
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    ip(&["netns", "delete", name]).map(drop)
}

/// `ip netns pids`: processes whose network namespace is `name` (zombies
/// are not listed: they have no namespace any more).
fn pids(name: &str) -> Vec<i32> {
    ip(&["netns", "pids", name])
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
