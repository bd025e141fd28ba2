//! Confining `exec`'s command so that it cannot shed its policy, even as
//! uid 0: it joins its cgroup, gets a cgroup namespace rooted there and a
//! mount namespace in which the cgroup2 and bpffs mounts and the daemon's
//! directories are read-only, loses the capabilities that could undo
//! enforcement, and may gain no privilege by exec (`PR_SET_NO_NEW_PRIVS`).
//!
//! All of it runs in the child between fork and exec, where only
//! async-signal-safe calls are allowed (the parent has other threads, whose
//! locks the child may have inherited held): everything is computed before
//! the fork, and the child makes raw system calls only.

use std::{
    ffi::{CStr, CString},
    fs::File,
    io,
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _, unix::process::CommandExt as _},
    path::Path,
    process::Command,
};

use super::mounts;

/// Capabilities the command loses, and why each would let it undo
/// enforcement.
pub const DROPPED: &[(u32, &str)] = &[
    // Packet sockets send frames no cgroup hook sees.
    (13, "CAP_NET_RAW"),
    // Routes, interfaces, tc filters and qdiscs: detach or route around
    // the TC programs, change the netns the policy assumes.
    (12, "CAP_NET_ADMIN"),
    // mount/umount (undo the read-only mounts), setns into the host's
    // namespaces, and a long list of other administration.
    (21, "CAP_SYS_ADMIN"),
    // bpf(): detach the programs (through their pinned links) or rewrite
    // the policy's maps.
    (39, "CAP_BPF"),
    // With CAP_BPF, tracing programs that read or write kernel and daemon
    // memory.
    (38, "CAP_PERFMON"),
    // ptrace the daemon, take its BPF file descriptors (pidfd_getfd), or
    // walk into a host process's mount namespace through /proc/<pid>/root,
    // where the cgroup2 mount is writable.
    (19, "CAP_SYS_PTRACE"),
    // Load a kernel module: anything at all.
    (16, "CAP_SYS_MODULE"),
    // /dev/mem, /dev/port, ioperm: write kernel memory.
    (17, "CAP_SYS_RAWIO"),
];

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two 32-bit halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// What the child does before it execs the command, prepared in the parent.
pub struct Confinement {
    /// `cgroup.procs` of the command's cgroup, open for writing.
    procs: File,
    /// Directories to make read-only, and whether to bind-mount each onto
    /// itself first (it is no mount point).
    read_only: Vec<(CString, bool)>,
    /// The capability sets to install; `None` keeps them.
    capabilities: Option<[CapData; 2]>,
}

impl Confinement {
    /// For a command in `cgroup` that must not reach `daemon_dirs` (the
    /// socket's and the state directory) for writing.
    pub fn prepare(
        cgroup: &Path,
        daemon_dirs: &[&Path],
        keep_capabilities: bool,
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let procs = File::options()
            .write(true)
            .open(cgroup.join("cgroup.procs"))
            .with_context(|| format!("opening {}/cgroup.procs", cgroup.display()))?;
        let read_only = mounts::targets(daemon_dirs)
            .context("reading /proc/self/mountinfo")?
            .into_iter()
            .map(|target| {
                let path = CString::new(target.path.as_os_str().as_bytes())?;
                Ok((path, !target.mount_point))
            })
            .collect::<Result<_, std::ffi::NulError>>()?;
        let capabilities = if keep_capabilities {
            None
        } else {
            Some(without_dropped(current_capabilities().context("capget")?))
        };
        Ok(Self {
            procs,
            read_only,
            capabilities,
        })
    }

    /// Makes `command`'s child confine itself before exec. The cgroup comes
    /// first: no instruction of the command runs outside it.
    pub fn apply(self, command: &mut Command) {
        // SAFETY: `confine` makes only raw system calls (write, unshare,
        // mount, mount_setattr, prctl, capset) on data prepared before the
        // fork, and allocates nothing: async-signal-safe.
        unsafe { command.pre_exec(move || self.confine()) };
    }

    fn confine(&self) -> io::Result<()> {
        // "0" is the writing process itself.
        // SAFETY: write(2) from a static buffer on an fd we own.
        if unsafe { libc::write(self.procs.as_raw_fd(), c"0".as_ptr().cast(), 1) } < 0 {
            return Err(failed(b"joining the cgroup", None));
        }
        // The cgroup namespace is rooted at the cgroup just joined.
        // SAFETY: unshare(2) has no memory preconditions.
        if unsafe { libc::unshare(libc::CLONE_NEWCGROUP | libc::CLONE_NEWNS) } != 0 {
            return Err(failed(b"creating cgroup and mount namespaces", None));
        }
        // Our changes must not propagate to the host's mounts.
        mount(None, c"/", libc::MS_REC | libc::MS_SLAVE)
            .map_err(|()| failed(b"making the mounts our own", None))?;
        for (path, bind_first) in &self.read_only {
            let path = path.as_c_str();
            if *bind_first {
                mount(Some(path), path, libc::MS_BIND | libc::MS_REC)
                    .map_err(|()| failed(b"bind-mounting", Some(path)))?;
            }
            read_only(path).map_err(|()| failed(b"making read-only", Some(path)))?;
        }
        if let Some(sets) = &self.capabilities {
            drop_capabilities(sets)?;
        }
        // SAFETY: prctl(2) with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(failed(b"setting no_new_privs", None));
        }
        Ok(())
    }
}

/// mount(2) without a file system type or data.
fn mount(source: Option<&CStr>, target: &CStr, flags: libc::c_ulong) -> Result<(), ()> {
    let source = source.map_or(c"none".as_ptr(), CStr::as_ptr);
    // SAFETY: NUL-terminated strings that outlive the call; null type and data.
    let rc = unsafe {
        libc::mount(
            source,
            target.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 { Ok(()) } else { Err(()) }
}

/// Makes the mount at `path` and every mount below it read-only, in this
/// mount namespace only. mount_setattr(2) (Linux 5.12) changes nothing
/// else about them, unlike a remount, which would need their other flags.
fn read_only(path: &CStr) -> Result<(), ()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a NUL-terminated path and a mount_attr of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE,
            &raw const attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc == 0 { Ok(()) } else { Err(()) }
}

/// The calling process's capability sets.
fn current_capabilities() -> io::Result<[CapData; 2]> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with a v3 header and room for two data structs.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(data)
}

/// `sets` without the [`DROPPED`] capabilities.
fn without_dropped(mut sets: [CapData; 2]) -> [CapData; 2] {
    for (cap, _) in DROPPED {
        let (half, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        let set = &mut sets[half];
        set.effective &= !bit;
        set.permitted &= !bit;
        set.inheritable &= !bit;
    }
    sets
}

/// Drops [`DROPPED`] from the bounding set (a root command would get its
/// whole bounding set back at exec otherwise), clears the ambient set and
/// installs `sets` as the effective, permitted and inheritable sets.
fn drop_capabilities(sets: &[CapData; 2]) -> io::Result<()> {
    for (cap, _) in DROPPED {
        // SAFETY: prctl(2) with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(*cap), 0, 0, 0) } != 0 {
            return Err(failed(b"dropping capabilities from the bounding set", None));
        }
    }
    let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
    // SAFETY: prctl(2) with integer arguments.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, clear, 0, 0, 0) } != 0 {
        return Err(failed(b"clearing the ambient capabilities", None));
    }
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset(2) with a v3 header and two data structs.
    if unsafe { libc::syscall(libc::SYS_capset, &raw mut header, sets.as_ptr()) } != 0 {
        return Err(failed(b"dropping capabilities", None));
    }
    Ok(())
}

/// The error of the call that just failed, after saying on stderr which
/// step it was (the parent only gets the errno). write(2) only.
fn failed(step: &[u8], path: Option<&CStr>) -> io::Error {
    let error = io::Error::last_os_error();
    let write = |bytes: &[u8]| {
        // SAFETY: write(2) to stderr from a live buffer.
        unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    };
    write(b"openclaw-egress: exec: confining the command: ");
    write(step);
    if let Some(path) = path {
        write(b" ");
        write(path.to_bytes());
    }
    write(b" failed\n");
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dropped_capabilities_leave_the_others() {
        let all = CapData {
            effective: u32::MAX,
            permitted: u32::MAX,
            inheritable: u32::MAX,
        };
        let [low, high] = without_dropped([all, all]);
        // CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_SYS_MODULE (16),
        // CAP_SYS_RAWIO (17), CAP_SYS_PTRACE (19), CAP_SYS_ADMIN (21).
        let low_dropped = (1 << 12) | (1 << 13) | (1 << 16) | (1 << 17) | (1 << 19) | (1 << 21);
        // CAP_PERFMON (38), CAP_BPF (39).
        let high_dropped = (1 << 6) | (1 << 7);
        for set in [low.effective, low.permitted, low.inheritable] {
            assert_eq!(set, !low_dropped);
        }
        for set in [high.effective, high.permitted, high.inheritable] {
            assert_eq!(set, !high_dropped);
        }
    }

    #[test]
    fn our_capabilities_can_be_read() {
        let [low, _] = current_capabilities().unwrap();
        assert_eq!(low.effective & !low.permitted, 0);
    }
}
