//! Where the workspace and cargo's build output are.

use std::{
    env,
    path::{Path, PathBuf},
};

/// The workspace root. `cargo run` sets CARGO_MANIFEST_DIR at run time too;
/// it is preferred to the compile-time value, which is stale when two
/// checkouts share a target dir.
pub fn root() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Where cargo puts build output: `$CARGO_TARGET_DIR` (relative to the
/// workspace, where we run cargo) or `<workspace>/target`.
pub fn target_dir(workspace: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), |dir| workspace.join(dir))
}
