//! The BPF filesystem that pins live in. Many hosts mount it at /sys/fs/bpf;
//! some do not, so the daemon mounts it there when it is missing.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

/// Where bpffs is conventionally mounted.
pub const DEFAULT_MOUNT: &str = "/sys/fs/bpf";
/// `statfs(2)` magic of bpffs.
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error("mounting bpffs at {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not on a BPF filesystem (pins only live in bpffs)")]
    NotBpffs { path: PathBuf },
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Makes sure `root` (e.g. /sys/fs/bpf/openclaw-egress) exists on bpffs,
/// mounting bpffs at its parent if that is the conventional mount point and
/// nothing is mounted there yet.
pub fn prepare(root: &Path) -> Result<(), BpffsError> {
    let parent = root.parent().unwrap_or(root);
    if !is_bpffs(parent) {
        if parent != Path::new(DEFAULT_MOUNT) {
            return Err(BpffsError::NotBpffs {
                path: parent.to_path_buf(),
            });
        }
        mount(parent)?;
        tracing::info!(path = %parent.display(), "mounted bpffs");
    }
    std::fs::create_dir_all(root).map_err(|source| BpffsError::Create {
        path: root.to_path_buf(),
        source,
    })
}

pub fn is_bpffs(path: &Path) -> bool {
    let Ok(path_c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain data; statfs(2) fills it for a valid C string.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(path_c.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type == BPF_FS_MAGIC
}

fn mount(path: &Path) -> Result<(), BpffsError> {
    let error = |source| BpffsError::Mount {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(error)?;
    let target =
        CString::new(path.as_os_str().as_bytes()).map_err(|e| error(io::Error::other(e)))?;
    let fs = c"bpf";
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fs.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(error(io::Error::last_os_error()))
    }
}
