//! `cargo xtask setup`: make this machine able to build, test and demo the
//! project. Idempotent and cheap when everything is there, so `test`, `demo`
//! and `bench` run it first: a clean CI machine then needs no other step.

use std::ffi::OsString;

use anyhow::{Context as _, Result, bail};

use crate::cmd;

/// Debian packages: `llvm-22-dev` provides the libLLVM that `bpf-linker`
/// links against; the others are the tools the end-to-end tests, the demo and
/// the benchmarks run (`ip`, `curl`, `openssl`, `ps`/`sysctl`, `iperf3`, `nft`,
/// `iptables`, and `promtool` from `prometheus`), `lintian` for the
/// package's check, `podman` and `runc` to build and run the image, and
/// `python3` for the harness's stand-in daemon.
const DEBIAN_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "curl",
    "openssl",
    "procps",
    "iperf3",
    "nftables",
    "iptables",
    "prometheus",
    "lintian",
    "podman",
    "runc",
    "python3",
];

/// The `bpf-linker` release known to work with our aya-build and LLVM 22;
/// pinned so a new release cannot break CI overnight.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Checks every prerequisite and installs only what is missing, one line per
/// item. Order matters: `bpf-linker` links against `llvm-22-dev`'s libLLVM.
pub fn run() -> Result<()> {
    debian_packages()?;
    nightly_components()?;
    stable_components()?;
    bpf_linker()
}

/// Whether we run with effective uid 0, which `apt-get install` and the
/// end-to-end tests (netns, cgroups, BPF) need: the harness's own check.
pub use openclaw_egress_e2e::is_root;

fn debian_packages() -> Result<()> {
    let mut missing = Vec::new();
    for &package in DEBIAN_PACKAGES {
        let status = cmd::probe(cmd::new("dpkg-query").args([
            "--show",
            "--showformat=${db:Status-Status}",
            package,
        ]));
        if status.as_deref() == Some("installed") {
            println!("✓ {package} present");
        } else {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: {list}\n\
             installing them needs root; run `sudo cargo xtask setup`, or install them yourself:\n  \
             sudo apt-get update && sudo apt-get install -y --no-install-recommends {list}"
        );
    }
    for package in &missing {
        println!("→ installing {package} ...");
    }
    cmd::run(cmd::new("apt-get").args(["update", "-q"]))?;
    cmd::run(
        cmd::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("installing Debian packages {list}"))
}

/// aya-build compiles the eBPF crate with `cargo +nightly -Z build-std=core`,
/// which needs the standard library's source for the nightly toolchain, and
/// `cargo xtask test` lints that crate with nightly's clippy.
fn nightly_components() -> Result<()> {
    let rustup = |args: &str| {
        let mut command = cmd::new("rustup");
        command.args(args.split(' '));
        command
    };
    let Some(installed) = cmd::probe(&mut rustup(
        "component list --installed --toolchain nightly",
    )) else {
        println!("→ installing nightly toolchain with rust-src and clippy ...");
        return cmd::run(&mut rustup(
            "toolchain install nightly --profile minimal --component rust-src,clippy",
        ));
    };
    for component in ["rust-src", "clippy"] {
        if has_component(&installed, component) {
            println!("✓ {component} (nightly) present");
        } else {
            println!("→ installing {component} (nightly) ...");
            cmd::run(&mut rustup(&format!(
                "component add {component} --toolchain nightly"
            )))?;
        }
    }
    Ok(())
}

/// `cargo xtask test` runs `cargo fmt` and `cargo clippy` with the workspace's
/// own (stable) toolchain.
fn stable_components() -> Result<()> {
    let installed = cmd::probe(cmd::new("rustup").args(["component", "list", "--installed"]))
        .context(
            "`rustup component list --installed` failed: \
             is rustup installed and a default toolchain set?",
        )?;
    for component in ["rustfmt", "clippy"] {
        if has_component(&installed, component) {
            println!("✓ {component} present");
        } else {
            println!("→ installing {component} ...");
            cmd::run(cmd::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

/// `rustup component list` names target-specific components with a target
/// suffix (`clippy-x86_64-unknown-linux-gnu`) and others without (`rust-src`).
fn has_component(list: &str, component: &str) -> bool {
    list.lines()
        .any(|line| line == component || line.starts_with(&format!("{component}-")))
}

/// `bpf-linker` links the eBPF object files. It is checked by running it, not
/// by looking for the file: a binary whose libLLVM went away is as useless as
/// no binary.
fn bpf_linker() -> Result<()> {
    let version = || cmd::probe(cmd::new("bpf-linker").arg("--version"));
    if let Some(version) = version() {
        println!("✓ bpf-linker present ({version})");
        return Ok(());
    }
    println!("→ installing bpf-linker {BPF_LINKER_VERSION} ...");
    // Dynamically linked against Debian's LLVM 22: without LLVM_PREFIX and
    // llvm-config first on PATH the build fails with "unable to find library
    // -lLLVM". `--force` replaces a binary that exists but does not run.
    let mut path = OsString::from(format!("{}:", cmd::LLVM_BIN));
    path.push(cmd::tool_path());
    cmd::run(
        cmd::new("cargo")
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args("--locked --force --no-default-features --features llvm-22".split(' '))
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .env("PATH", path),
    )?;
    match version() {
        Some(version) => {
            println!("✓ bpf-linker installed ({version})");
            Ok(())
        }
        None => {
            bail!("bpf-linker was installed but `bpf-linker --version` still fails; is it on PATH?")
        }
    }
}
