//! `openclaw-egress exec --policy p.yaml -- CMD`: runs one command in a fresh
//! cgroup under a policy, and passes its exit code through.
//!
//! The cgroup is created first and the policy attached to it before the
//! command starts, and the command joins the cgroup between fork and exec: no
//! packet of it ever leaves unfiltered. It is then confined there (see
//! `confine`): it cannot leave the cgroup or undo the policy, even as root.

mod confine;
mod leftovers;
mod mounts;

use std::{
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;

use crate::{
    api::Overrides,
    api::client::{ask, read_policy, unexpected},
    api::{Request, Response},
    cgroup, policy,
};

/// Longest policy name; ours is `<name>-exec-<pid>`.
const MAX_NAME_LEN: usize = 63;

pub async fn run(
    socket: &Path,
    policy_file: &Path,
    command: &[String],
    keep_capabilities: bool,
) -> anyhow::Result<ExitCode> {
    let yaml = read_policy(policy_file)?;
    let source = policy_file.display().to_string();
    let run = Run {
        source,
        yaml,
        audit: false,
        keep_capabilities,
    };
    let (code, ()) = run_under(socket, run, command, async |_: &str| Ok(())).await?;
    Ok(code)
}

/// A policy to run a command under.
pub struct Run {
    /// The policy file's name, for messages.
    pub source: String,
    pub yaml: String,
    /// Audit mode whatever the policy says.
    pub audit: bool,
    pub keep_capabilities: bool,
}

/// Runs `command` under `run`'s policy. `applied` is called with the name
/// the policy was applied under, once it is in force and before the
/// command starts; what it returns comes back with the exit code, after the
/// command ended and the policy was removed.
pub async fn run_under<T>(
    socket: &Path,
    run: Run,
    command: &[String],
    applied: impl AsyncFnOnce(&str) -> anyhow::Result<T>,
) -> anyhow::Result<(ExitCode, T)> {
    let Run {
        source,
        yaml,
        audit,
        keep_capabilities,
    } = run;
    let policy = policy::parse_str(&source, &yaml)?;

    let pid = std::process::id();
    let suffix = leftovers::policy_suffix(pid);
    let base = &policy.name[..policy.name.len().min(MAX_NAME_LEN - suffix.len())];
    let name = format!("{}{suffix}", base.trim_end_matches('-'));
    let mount = cgroup::cgroup2_mount()?;
    leftovers::remove(socket, &mount).await;
    // The daemon's directories, which the command must not write to.
    let state_dir = match ask(socket, &Request::Status).await? {
        Response::Status(report) => report.state_dir,
        other => return Err(unexpected(other).into()),
    };
    let absolute_socket = std::path::absolute(socket)?;
    let socket_dir = absolute_socket.parent().unwrap_or(Path::new("/"));
    let daemon_dirs: Vec<&Path> = [Some(socket_dir), state_dir.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let sandbox = Sandbox::create(&mount.join(leftovers::cgroup_name(pid)))?;
    let confinement =
        confine::Confinement::prepare(&sandbox.path, &daemon_dirs, keep_capabilities)?;

    let request = Request::Apply {
        source,
        yaml,
        overrides: Overrides {
            name: Some(name.clone()),
            cgroup: Some(sandbox.path.clone()),
            audit,
        },
    };
    match ask(socket, &request).await? {
        Response::Applied(_) => {}
        other => return Err(unexpected(other).into()),
    }
    let watching = match applied(&name).await {
        Ok(watching) => watching,
        Err(error) => {
            let _ = ask(socket, &Request::Remove { name: name.clone() }).await;
            return Err(error);
        }
    };
    eprintln!(
        "openclaw-egress: running {:?} under policy {} (as {name}, cgroup {})",
        command.join(" "),
        policy.name,
        sandbox.path.display()
    );

    let status = sandbox.run(command, confinement);
    if let Err(error) = ask(socket, &Request::Remove { name: name.clone() }).await {
        eprintln!("openclaw-egress: removing policy {name}: {error:#}");
    }
    drop(sandbox);
    let status = status?;
    Ok((exit_code(status), watching))
}

/// The shell convention: the exit code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The fresh cgroup; removed (after killing anything left in it) on drop.
struct Sandbox {
    path: PathBuf,
}

impl Sandbox {
    fn create(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir(path).with_context(|| format!("creating cgroup {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Runs the command inside the cgroup, confined, and waits for it.
    /// Ctrl-C reaches the command (same process group); we keep waiting so
    /// we can clean up.
    fn run(
        &self,
        command: &[String],
        confinement: confine::Confinement,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = std::process::Command::new(&command[0]);
        child.args(&command[1..]);
        confinement.apply(&mut child);
        // SAFETY: restoring the default disposition is always sound; the
        // daemon-less CLI has no SIGINT handler of its own that matters.
        let previous = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
        let status = child
            .status()
            .with_context(|| format!("running {:?}", command[0]));
        unsafe { libc::signal(libc::SIGINT, previous) };
        // The child's copy of `cgroup.procs` (in the confinement) is closed
        // with `child` here.
        drop(child);
        status
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Children the command left behind would keep the cgroup busy.
        if let Ok(mut kill) = File::options()
            .write(true)
            .open(self.path.join("cgroup.kill"))
        {
            let _ = kill.write_all(b"1");
        }
        for _ in 0..100 {
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(error) => {
                    eprintln!("openclaw-egress: removing {}: {error}", self.path.display());
                    return;
                }
            }
        }
        if let Err(error) = std::fs::remove_dir(&self.path) {
            eprintln!("openclaw-egress: removing {}: {error}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(3 << 8)),
            ExitCode::from(3)
        );
        // Killed by SIGKILL (9).
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(9)),
            ExitCode::from(137)
        );
    }
}
