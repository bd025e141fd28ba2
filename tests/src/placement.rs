//! Putting a child process into a cgroup and a network namespace before it
//! execs.
//!
//! Done between fork and exec (not with `ip netns exec` or by moving the pid
//! afterwards) so that every socket the child ever creates already belongs
//! to the sandbox cgroup: cgroup_skb programs see a socket's cgroup as of its
//! creation.

use std::{
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    process::Command,
};

/// Where a child should run. Both files are opened before fork, because
/// after fork (in a multi-threaded parent) only async-signal-safe calls are
/// allowed: no allocation, no path lookups through std.
#[derive(Debug, Default)]
pub(crate) struct Placement {
    /// `cgroup.procs` of the target cgroup, open for writing.
    pub(crate) cgroup_procs: Option<File>,
    /// A network namespace fd (`/run/netns/<name>`).
    pub(crate) netns: Option<File>,
}

impl Placement {
    /// Makes `command`'s child join the cgroup, then the netns, before exec.
    /// The files move into the hook and stay open as long as `command` does;
    /// they are O_CLOEXEC, so the exec'd program does not inherit them.
    pub(crate) fn apply(self, command: &mut Command) -> &mut Command {
        let Placement {
            cgroup_procs,
            netns,
        } = self;
        let hook = move || -> io::Result<()> {
            if let Some(procs) = &cgroup_procs {
                // "0" means the writing process itself.
                // SAFETY: write(2) on an fd we own, from a static buffer.
                let written = unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
                if written < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(ns) = &netns {
                // SAFETY: setns(2) on an fd we own.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the hook only makes the raw syscalls write(2) and setns(2)
        // and reads errno, all async-signal-safe.
        unsafe { command.pre_exec(hook) }
    }
}
