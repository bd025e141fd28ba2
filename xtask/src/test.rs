//! `cargo xtask test`: everything CI checks, in the order that fails fastest,
//! stopping at the first failing step.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, setup, workspace};

/// Arguments of `cargo xtask test`.
#[derive(clap::Args)]
pub struct Args {
    /// Passed to `cargo test` as is, e.g. a test name filter, or
    /// `some_filter -- --nocapture`.
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

/// Runs `setup`, then: format check, clippy (the workspace, and the eBPF crate
/// for the BPF target), build of the binaries, tests.
///
/// The binaries are built before `cargo test` because the end-to-end tests
/// (package `openclaw-egress-e2e`, part of the default members) drive the real
/// `openclaw-egress`, `oce-world` and `oce-probe` binaries, found through
/// `OPENCLAW_EGRESS_BIN_DIR`. One `cargo test` run then covers unit,
/// integration and end-to-end tests.
pub fn run(args: &Args) -> Result<()> {
    if !setup::is_root() {
        bail!(
            "`cargo xtask test` must run as root: the end-to-end tests create network \
             namespaces and cgroups and load eBPF programs (CI runs as root). Try \
             `sudo -E env PATH=\"$PATH\" cargo xtask test`."
        );
    }
    setup::run()?;

    let workspace = &workspace::root();
    let bin_dir = workspace::target_dir(workspace).join("debug");

    // No `--workspace`: it would take in the eBPF crate, which only builds
    // for the BPF target (via openclaw-egress/build.rs). The default members
    // are openclaw-egress, openclaw-egress-common, xtask and tests.
    let mut tests = cargo(workspace, "test");
    tests
        .args(&args.cargo_test_args)
        .env("OPENCLAW_EGRESS_BIN_DIR", &bin_dir);
    // The eBPF crate is linted for the target it is built for, with the
    // toolchain it is built with, in a target directory of its own.
    let mut ebpf_clippy = cargo(
        &workspace.join("openclaw-egress-ebpf"),
        "+nightly clippy --release --target bpfel-unknown-none -Z build-std=core -- -D warnings",
    );
    ebpf_clippy.env(
        "CARGO_TARGET_DIR",
        workspace::target_dir(workspace).join("ebpf-clippy"),
    );
    let steps = [
        ("format check", cargo(workspace, "fmt --all -- --check")),
        (
            "clippy",
            cargo(workspace, "clippy --all-targets -- -D warnings"),
        ),
        ("clippy (eBPF crate)", ebpf_clippy),
        ("build binaries", cargo(workspace, "build --bins")),
        ("tests", tests),
    ];
    for (name, mut command) in steps {
        println!("==> {}", cmd::display(&command));
        cmd::run(&mut command).with_context(|| format!("test step \"{name}\" failed"))?;
    }
    // The Debian package and the image, from the debug build just tested
    // (the release build makes the same trees, only slower).
    println!("==> cargo xtask package --debug");
    crate::package::run(&crate::package::Args { debug: true })
        .context("test step \"package\" failed")?;
    println!("==> cargo xtask image --debug");
    crate::image::run(&crate::image::Args { debug: true }).context("test step \"image\" failed")?;
    println!("==> the embedded programs follow the common crate");
    embedded_object_follows_common(workspace).context("test step \"embedded object\" failed")?;
    println!("==> all test steps passed");
    Ok(())
}

/// The eBPF programs are built from the common crate too, so an edit of it
/// alone must rebuild the object embedded in the daemon (a stale object
/// would disagree with the daemon on every shared type): touch it, build,
/// and the embedded object must be newer.
fn embedded_object_follows_common(workspace: &Path) -> Result<()> {
    let build_dir = workspace::target_dir(workspace).join("debug/build");
    let newest_object = || -> Result<std::time::SystemTime> {
        std::fs::read_dir(&build_dir)?
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("openclaw-egress-")
            })
            .filter_map(|entry| {
                std::fs::metadata(entry.path().join("out/openclaw-egress"))
                    .and_then(|meta| meta.modified())
                    .ok()
            })
            .max()
            .with_context(|| format!("no embedded object under {}", build_dir.display()))
    };
    let before = newest_object()?;
    // Its modification time only: the content stays.
    let source = workspace.join("openclaw-egress-common/src/lib.rs");
    std::fs::File::options()
        .append(true)
        .open(&source)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()))
        .with_context(|| format!("touching {}", source.display()))?;
    cmd::run(&mut cargo(workspace, "build --bins"))?;
    if newest_object()? <= before {
        bail!(
            "editing {} did not rebuild the embedded eBPF object",
            source.display()
        );
    }
    Ok(())
}

/// `cargo ARGS` (split at spaces) run in `dir`.
fn cargo(dir: &Path, args: &str) -> Command {
    let mut command = cmd::new("cargo");
    command.args(args.split(' ')).current_dir(dir);
    command
}
