//! Builds the eBPF programs (crate `openclaw-egress-ebpf`) with the nightly
//! toolchain and `bpf-linker`, so that `include_bytes_aligned!` in the loader
//! always embeds programs matching this source tree (twice: with and without
//! verdict tracing); and records the git commit the binary is built from,
//! for `--version`.

use std::process::Command;

/// Set it to build from a tree without git (a source tarball).
const COMMIT_ENV: &str = "OPENCLAW_EGRESS_GIT_COMMIT";

fn main() -> anyhow::Result<()> {
    record_git_commit();
    // aya-build watches the eBPF crate's directory; the programs are built
    // from the common crate too, whose edits must rebuild them as well.
    println!(
        "cargo:rerun-if-changed={}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../openclaw-egress-common")
    );
    // Two builds of the programs: the tracing one (feature `trace`, for
    // `daemon --trace-datapath`) and the default one. aya-build writes
    // both to OUT_DIR/openclaw-egress, so the first is moved aside.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    build_ebpf(&["trace"])?;
    std::fs::rename(
        out_dir.join("openclaw-egress"),
        out_dir.join("openclaw-egress-trace"),
    )?;
    build_ebpf(&[])
}

fn build_ebpf(features: &[&str]) -> anyhow::Result<()> {
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../openclaw-egress-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "openclaw-egress-ebpf",
            root_dir: ebpf_dir,
            features,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

/// `OPENCLAW_EGRESS_GIT_COMMIT` for the crate: the commit (12 hex
/// digits), or `unknown`. (No "dirty" mark: knowing it would mean
/// rebuilding on every change to git's index.)
fn record_git_commit() {
    println!("cargo:rerun-if-env-changed={COMMIT_ENV}");
    let commit = std::env::var(COMMIT_ENV).ok().or_else(|| {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(["-C", env!("CARGO_MANIFEST_DIR")])
                .args(args)
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
        // Rebuild when HEAD moves: HEAD itself, and the branch it names.
        if let Some(path) = git(&["rev-parse", "--git-path", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", absolute(&path));
        }
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"])
            && let Some(path) = git(&["rev-parse", "--git-path", &reference])
        {
            println!("cargo:rerun-if-changed={}", absolute(&path));
        }
        Some(commit)
    });
    println!(
        "cargo:rustc-env={COMMIT_ENV}={}",
        commit.unwrap_or_else(|| "unknown".to_owned())
    );
}

/// `git rev-parse --git-path` answers relative to the directory git ran in.
fn absolute(path: &str) -> String {
    let path = std::path::Path::new(path);
    if path.is_absolute() {
        path.display().to_string()
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(path)
            .display()
            .to_string()
    }
}
