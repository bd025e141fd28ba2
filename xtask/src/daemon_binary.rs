//! The daemon's binary as `package` and `image` take it: built, asked what
//! it is, and the shared libraries it loads.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Result, bail};

use crate::{cmd, workspace};

/// A build of `openclaw-egress`, and what its `--version` says.
pub struct DaemonBinary {
    pub path: PathBuf,
    /// `openclaw-egress 0.1.0 (commit abc, eBPF object def)`.
    pub version_line: String,
    pub version: String,
    pub commit: String,
}

/// Builds the daemon (the debug build with `debug`, else the release one).
pub fn build(workspace: &Path, debug: bool) -> Result<DaemonBinary> {
    let mut build = cmd::new("cargo");
    build
        .args(["build", "--bin", "openclaw-egress"])
        .current_dir(workspace);
    if !debug {
        build.arg("--release");
    }
    cmd::run(&mut build)?;
    let profile = if debug { "debug" } else { "release" };
    let path = workspace::target_dir(workspace)
        .join(profile)
        .join("openclaw-egress");
    let version_line = cmd::stdout(Command::new(&path).arg("--version"))?;
    let (version, commit) = parse_version(&version_line)?;
    Ok(DaemonBinary {
        path,
        version_line,
        version,
        commit,
    })
}

/// (version, commit) from `openclaw-egress 0.1.0 (commit abc, eBPF object def)`.
fn parse_version(line: &str) -> Result<(String, String)> {
    let version = line.split_whitespace().nth(1);
    let commit = line
        .split("commit ")
        .nth(1)
        .and_then(|rest| rest.split([',', ')']).next());
    match (version, commit) {
        (Some(version), Some(commit)) => Ok((version.to_owned(), commit.to_owned())),
        _ => bail!("unexpected --version output `{line}`"),
    }
}

/// The files the binary's dynamic loader maps: its libraries and the
/// loader itself, as absolute paths.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let ldd = cmd::stdout(cmd::new("ldd").arg(binary))?;
    let mut libraries = Vec::new();
    for line in ldd.lines() {
        let path = match line.split_once("=> ") {
            Some((_, rest)) => rest.split_whitespace().next(),
            // The loader: "/lib64/ld-linux-x86-64.so.2 (0x...)".
            None => line
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/')),
        };
        if let Some(path) = path {
            libraries.push(PathBuf::from(path));
        }
    }
    if libraries.is_empty() {
        bail!("ldd found no libraries: {ldd}");
    }
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_gives_version_and_commit() {
        let (version, commit) =
            parse_version("openclaw-egress 0.1.0 (commit a35984ad31b4, eBPF object 4000952e)")
                .unwrap();
        assert_eq!(
            (version.as_str(), commit.as_str()),
            ("0.1.0", "a35984ad31b4")
        );
        assert!(parse_version("openclaw-egress 0.1.0").is_err());
    }
}
