//! A scratch directory for tests that need files but no sandbox.

use std::path::{Path, PathBuf};

/// A directory under `$TMPDIR` (`oce-<tag>-<pid>`), emptied when created
/// and removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Panics if the directory cannot be created.
    #[track_caller]
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("oce-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
