//! `cargo xtask image`: the daemon's OCI image, built offline from the
//! release binary: `FROM scratch`, the binary, exactly the shared libraries
//! it loads (from `ldd`) and nothing else: no shell, no package manager.
//! Tagged with the version (the tag `deploy/daemonset.yaml` names) and with
//! the version and commit; saved as an archive to load into a cluster's
//! runtime (`ctr -n k8s.io images import`, `podman load`). The
//! `Containerfile` at the root builds the same image from source, for
//! machines with registry access.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd,
    daemon_binary::{self, DaemonBinary},
    workspace,
};

/// The image's name, as `deploy/daemonset.yaml` refers to it.
pub const IMAGE: &str = "ghcr.io/openclaw/openclaw-egress";

/// Arguments of `cargo xtask image`.
#[derive(clap::Args)]
pub struct Args {
    /// Use the debug build (as `cargo xtask test` does, to check the image
    /// without a release build).
    #[arg(long)]
    pub debug: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let workspace = &workspace::root();
    let DaemonBinary {
        path: binary,
        version_line,
        version,
        commit,
    } = daemon_binary::build(workspace, args.debug)?;

    let context = workspace::target_dir(workspace).join("image");
    if context.exists() {
        fs::remove_dir_all(&context)?;
    }
    let rootfs = context.join("rootfs");
    let staged = rootfs.join("usr/bin/openclaw-egress");
    copy(&binary, &staged)?;
    cmd::run(cmd::new("strip").arg("--strip-unneeded").arg(&staged))?;
    for library in daemon_binary::shared_libraries(&binary)? {
        copy(
            &library,
            &rootfs.join(library.strip_prefix("/").expect("absolute")),
        )?;
    }
    // Where the daemon keeps policy records by default (a hostPath in the
    // DaemonSet); and a place for a policy directory to be mounted.
    fs::create_dir_all(rootfs.join("run/openclaw-egress"))?;
    fs::create_dir_all(rootfs.join("etc/openclaw-egress/policies"))?;
    let containerfile = context.join("Containerfile");
    fs::write(
        &containerfile,
        format!(
            "FROM scratch\n\
             COPY rootfs/ /\n\
             LABEL org.opencontainers.image.title=\"openclaw-egress\" \\\n      \
             org.opencontainers.image.version=\"{version}\" \\\n      \
             org.opencontainers.image.revision=\"{commit}\" \\\n      \
             org.opencontainers.image.source=\"https://github.com/openclaw/openclaw-egress\"\n\
             ENTRYPOINT [\"/usr/bin/openclaw-egress\"]\n\
             CMD [\"daemon\"]\n"
        ),
    )?;

    let tag = format!("{IMAGE}:{version}");
    let commit_tag = format!("{IMAGE}:{version}-{commit}");
    cmd::run(
        cmd::new("podman")
            .args([
                "build",
                "--network=none",
                "--pull=never",
                "-t",
                &tag,
                "-t",
                &commit_tag,
                "-f",
            ])
            .arg(&containerfile)
            .arg(&context),
    )?;

    // The image runs, and is the binary it was made from. With runc: crun
    // refuses hosts whose cgroup v2 is the hybrid `unified` mount. With
    // lowered limits: podman's defaults for root raise them, which takes
    // CAP_SYS_RESOURCE, which containers (CI's included) often lack.
    let inside = cmd::stdout(cmd::new("podman").args([
        "--runtime",
        "runc",
        "run",
        "--rm",
        "--network=none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        &tag,
        "--version",
    ]))?;
    if inside != version_line {
        bail!("the image says `{inside}`, the binary `{version_line}`");
    }
    let size =
        cmd::stdout(cmd::new("podman").args(["image", "inspect", "--format", "{{.Size}}", &tag]))?;
    let archive = context.join(format!("openclaw-egress-{version}-{commit}.oci.tar"));
    cmd::run(
        cmd::new("podman")
            .args(["save", "--format", "oci-archive", "-o"])
            .arg(&archive)
            .args([&tag, &commit_tag]),
    )?;
    let size_mib = size.parse::<f64>().unwrap_or(0.0) / (1024.0 * 1024.0);
    println!("==> {tag} ({commit_tag}): {size_mib:.1} MiB; runs: {inside}");
    println!("==> saved as {}", archive.display());
    Ok(())
}

/// Copies the file behind `from` (following symlinks) to `to`.
fn copy(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to.parent().expect("a file in a directory"))?;
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}
