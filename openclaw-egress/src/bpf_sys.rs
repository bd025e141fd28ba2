//! The few `bpf(2)` commands aya does not offer for what we do with them:
//! loading tiny hand-written programs (the per-workload stubs, benchmark
//! baselines), creating links from program descriptors, pinning and
//! re-opening objects, and reading map-of-maps entries.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
    time::Duration,
};

pub mod insn;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;

/// Program types and attach types (`enum bpf_prog_type`, `enum bpf_attach_type`).
pub mod kind {
    pub const PROG_TYPE_SCHED_CLS: u32 = 3;
    pub const PROG_TYPE_CGROUP_SKB: u32 = 8;
    pub const CGROUP_INET_INGRESS: u32 = 0;
    pub const CGROUP_INET_EGRESS: u32 = 1;
    pub const CGROUP_INET4_CONNECT: u32 = 10;
    pub const CGROUP_INET6_CONNECT: u32 = 11;
    pub const CGROUP_UDP4_SENDMSG: u32 = 14;
    pub const CGROUP_UDP6_SENDMSG: u32 = 15;
    pub const TCX_INGRESS: u32 = 46;
    pub const TCX_EGRESS: u32 = 47;
}

/// `bpf(cmd, attr, sizeof attr)`.
fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a fully initialised prefix of `union bpf_attr` for
    // `cmd`, of the size we pass, and every pointer in it outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<A>()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// [`bpf`] for the commands that return a new file descriptor.
fn bpf_fd<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: the command returned a new descriptor, which we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Creates a map; `name` is cut to the kernel's 15 characters.
pub fn create_map(
    name: &str,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
) -> io::Result<OwnedFd> {
    /// The `BPF_MAP_CREATE` part of `union bpf_attr`, up to `map_name`.
    #[repr(C)]
    #[derive(Default)]
    struct Attr {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        inner_map_fd: u32,
        numa_node: u32,
        map_name: [u8; 16],
    }
    let mut attr = Attr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        ..Attr::default()
    };
    let len = name.len().min(15);
    attr.map_name[..len].copy_from_slice(&name.as_bytes()[..len]);
    bpf_fd(BPF_MAP_CREATE, &mut attr)
}

/// The `BPF_MAP_*_ELEM` part of `union bpf_attr`.
#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Writes `value` at `key` (both plain data of the map's key and value sizes).
pub fn map_update<K, V>(map: BorrowedFd<'_>, key: &K, value: &V, flags: u64) -> io::Result<()> {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(key) as u64,
        value: std::ptr::from_ref(value) as u64,
        flags,
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Deletes `key`; `Ok(false)` when there was nothing.
pub fn map_delete<K>(map: BorrowedFd<'_>, key: &K) -> io::Result<bool> {
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(key) as u64,
        value: 0,
        flags: 0,
    };
    match bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(error) => Err(error),
    }
}

/// The value at `key`, `None` when there is none. `V` must be plain data
/// of the map's value size (for maps of maps: a `u32` map id).
pub fn map_lookup<K, V: Default>(map: BorrowedFd<'_>, key: &K) -> io::Result<Option<V>> {
    let mut value = V::default();
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(key) as u64,
        value: std::ptr::from_mut(&mut value) as u64,
        flags: 0,
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(Some(value)),
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A descriptor of the map with kernel id `id`.
pub fn map_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct Attr {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut attr = Attr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    bpf_fd(BPF_MAP_GET_FD_BY_ID, &mut attr)
}

/// The kernel id of the program `prog`.
pub fn program_id(prog: BorrowedFd<'_>) -> io::Result<u32> {
    /// The start of `struct bpf_prog_info`: the kernel fills what fits.
    #[repr(C)]
    #[derive(Default)]
    struct Info {
        prog_type: u32,
        id: u32,
    }
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = Info::default();
    let mut attr = Attr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: size_of::<Info>() as u32,
        info: std::ptr::from_mut(&mut info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.id)
}

/// The `BPF_OBJ_PIN`/`BPF_OBJ_GET` part of `union bpf_attr`.
#[repr(C)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// Pins the object `fd` (map, program or link) at `path` in bpffs.
pub fn pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let name = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: name.as_ptr() as u64,
        bpf_fd: fd.as_raw_fd() as u32,
        file_flags: 0,
    };
    bpf(BPF_OBJ_PIN, &mut attr).map(drop)
}

/// Opens the object pinned at `path`.
pub fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    let name = c_path(path)?;
    let mut attr = ObjAttr {
        pathname: name.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    bpf_fd(BPF_OBJ_GET, &mut attr)
}

/// Loads `insns` as a program of `prog_type` for `attach_type`. A refusal
/// carries the verifier's log.
pub fn load_program(
    name: &str,
    prog_type: u32,
    attach_type: u32,
    insns: &[u64],
) -> io::Result<OwnedFd> {
    /// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to
    /// `expected_attach_type`.
    #[repr(C)]
    #[derive(Default)]
    struct Attr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    const LICENSE: &[u8] = b"GPL\0";
    let mut attr = Attr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        expected_attach_type: attach_type,
        ..Attr::default()
    };
    let len = name.len().min(15);
    attr.prog_name[..len].copy_from_slice(&name.as_bytes()[..len]);
    match bpf_fd(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd),
        Err(error) => {
            // Again, with the verifier's log, to say why.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf_fd(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(io::Error::new(
                error.kind(),
                format!(
                    "loading program {name}: {error}: {}",
                    String::from_utf8_lossy(&log[..end]).trim()
                ),
            ))
        }
    }
}

/// Where a link attaches.
#[derive(Clone, Copy, Debug)]
pub enum LinkTarget<'a> {
    /// A cgroup v2 directory.
    Cgroup(BorrowedFd<'a>),
    /// A network interface (TCX).
    Interface(u32),
}

/// Attaches program `prog` to `target` as `attach_type` through a new BPF
/// link: detached when the link's last descriptor and pin are gone.
pub fn create_link(
    prog: BorrowedFd<'_>,
    target: LinkTarget<'_>,
    attach_type: u32,
) -> io::Result<OwnedFd> {
    /// The `BPF_LINK_CREATE` part of `union bpf_attr` (with room for the
    /// TCX fields, left zero: append after the programs already there).
    #[repr(C)]
    struct Attr {
        prog_fd: u32,
        target: u32,
        attach_type: u32,
        flags: u32,
        relative: u32,
        _pad: u32,
        expected_revision: u64,
    }
    let target = match target {
        LinkTarget::Cgroup(fd) => fd.as_raw_fd() as u32,
        LinkTarget::Interface(ifindex) => ifindex,
    };
    let mut attr = Attr {
        prog_fd: prog.as_raw_fd() as u32,
        target,
        attach_type,
        flags: 0,
        relative: 0,
        _pad: 0,
        expected_revision: 0,
    };
    bpf_fd(BPF_LINK_CREATE, &mut attr)
}

/// What one `BPF_PROG_TEST_RUN` returned.
#[derive(Clone, Copy, Debug)]
pub struct TestRun {
    pub return_value: u32,
    /// Per run (the kernel's average over `repeat` runs).
    pub duration: Duration,
}

/// Runs `prog` `repeat` times on `data`, with `context` as its context
/// (e.g. a `struct __sk_buff`) if given.
pub fn test_run(
    prog: BorrowedFd<'_>,
    data: &[u8],
    context: Option<&[u8]>,
    repeat: u32,
) -> io::Result<TestRun> {
    /// The `BPF_PROG_TEST_RUN` part of `union bpf_attr`.
    #[repr(C)]
    #[derive(Default)]
    struct Attr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }
    let (ctx_in, ctx_size_in) =
        context.map_or((0, 0), |ctx| (ctx.as_ptr() as u64, ctx.len() as u32));
    let mut attr = Attr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: data.len() as u32,
        data_in: data.as_ptr() as u64,
        repeat,
        ctx_in,
        ctx_size_in,
        ..Attr::default()
    };
    bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(TestRun {
        return_value: attr.retval,
        duration: Duration::from_nanos(u64::from(attr.duration)),
    })
}

/// The kernel memory a map (or program) is charged for: `memlock` in its
/// `/proc/self/fdinfo` entry.
pub fn memlock(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    info.lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no memlock in fdinfo"))
}
