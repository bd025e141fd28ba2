//! How many BPF programs filter a cgroup's packets (`BPF_PROG_QUERY`), so
//! every throughput run checks that its configuration is the one it claims:
//! our programs attached for the openclaw-egress runs, nothing for the others.

use std::{fs::File, io, os::fd::AsRawFd as _, path::Path};

const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_CGROUP_INET_INGRESS: u32 = 0;
const BPF_CGROUP_INET_EGRESS: u32 = 1;
/// Also count programs inherited from ancestor cgroups.
const BPF_F_QUERY_EFFECTIVE: u32 = 1;

/// The `BPF_PROG_QUERY` part of `union bpf_attr`, up to `prog_cnt`.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// Programs that run on a cgroup's packets, counting inherited ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attached {
    pub egress: u32,
    pub ingress: u32,
}

pub fn query(cgroup: &Path) -> io::Result<Attached> {
    let dir = File::open(cgroup)?;
    let count = |attach_type: u32| -> io::Result<u32> {
        let mut attr = QueryAttr {
            target_fd: dir.as_raw_fd() as u32,
            attach_type,
            query_flags: BPF_F_QUERY_EFFECTIVE,
            ..QueryAttr::default()
        };
        // SAFETY: a valid, zero-padded attr of the size we pass; with
        // `prog_ids` NULL the kernel only writes the counts into it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_QUERY,
                &raw mut attr,
                size_of::<QueryAttr>(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(attr.prog_cnt)
    };
    Ok(Attached {
        egress: count(BPF_CGROUP_INET_EGRESS)?,
        ingress: count(BPF_CGROUP_INET_INGRESS)?,
    })
}
