//! Finding the binaries the harness runs (`oce-world`, `oce-probe`,
//! `openclaw-egress`).

use std::path::PathBuf;

/// Overrides where [`binary_path`] looks, e.g. for a release build or an
/// installed daemon.
pub const BIN_DIR_ENV: &str = "OPENCLAW_EGRESS_BIN_DIR";

/// The path of the binary `name`.
///
/// `$OPENCLAW_EGRESS_BIN_DIR/<name>` if that variable is set, else the
/// `target/<profile>/` directory of the running executable: a test binary
/// lives in `target/<profile>/deps/`, `xtask` in `target/<profile>/`, and
/// `cargo build --bins` puts the binaries in `target/<profile>/`.
pub fn binary_path(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.join(name)
}
