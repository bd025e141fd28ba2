//! Developer and CI tasks for openclaw-egress, run as `cargo xtask <task>`
//! (an alias in `.cargo/config.toml`). Plain Rust instead of shell scripts so
//! the same steps run identically on laptops and in CI.
//!
//! This crate must build with the stable toolchain alone, before `setup` has
//! installed anything, so it does not depend on `openclaw-egress`.

mod bench;
mod cmd;
mod daemon_binary;
mod demo;
mod image;
mod package;
mod setup;
mod test;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Developer and CI tasks for openclaw-egress")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Check prerequisites (nightly rust-src, Debian packages, bpf-linker) and
    /// install whatever is missing.
    Setup,
    /// Run setup, then format check, clippy, build and all tests (as root).
    Test(test::Args),
    /// Run setup, then the end-to-end demonstration.
    Demo,
    /// Run setup, then the benchmarks.
    Bench,
    /// Build the Debian package (target/package/) and check it.
    Package(package::Args),
    /// Build the OCI image offline with podman, run it, save it
    /// (target/image/).
    Image(image::Args),
}

/// Prints the error with its causes but without anyhow's backtrace: CI sets
/// `RUST_BACKTRACE=1` for the tests, and a backtrace of xtask itself would
/// only bury the message that names the failing step.
fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Test(args) => test::run(&args),
        Task::Demo => demo::run(),
        Task::Bench => bench::run(),
        Task::Package(args) => setup::run().and_then(|()| package::run(&args)),
        Task::Image(args) => setup::run().and_then(|()| image::run(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask test -- FILTER -- --nocapture` must reach cargo test
    /// unchanged, including the second `--` that separates libtest's options.
    #[test]
    fn test_passes_extra_args_through() {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "dns", "--", "--nocapture"]).unwrap();
        let Task::Test(args) = cli.task else {
            panic!("parsed as another task");
        };
        assert_eq!(args.cargo_test_args, ["dns", "--", "--nocapture"]);
    }
}
