//! Spawning external commands so that failures always name the exact command
//! line: a CI log that only says "exit status 101" is useless.

use std::{
    env,
    ffi::OsString,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Where Debian's `llvm-22-dev` puts `llvm-config` and friends; building
/// `bpf-linker` needs it on PATH.
pub const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// `$CARGO_HOME/bin` (default `~/.cargo/bin`), where `cargo install` puts
/// `bpf-linker`.
fn cargo_bin_dir() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// Our PATH plus the cargo bin dir and LLVM 22's bin dir (appended, so the
/// caller's own choices win). The eBPF build started by
/// `openclaw-egress/build.rs` needs `bpf-linker`, and CI shells (or `sudo`)
/// often drop `~/.cargo/bin` from PATH.
pub fn tool_path() -> OsString {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|path| env::split_paths(&path).collect())
        .unwrap_or_default();
    for extra in [cargo_bin_dir(), PathBuf::from(LLVM_BIN)] {
        if !dirs.contains(&extra) {
            dirs.push(extra);
        }
    }
    env::join_paths(dirs).expect("PATH entries and $HOME never contain ':'")
}

/// A command for `program` (looked up in, and run with, `tool_path()`).
pub fn new(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", tool_path());
    cmd
}

/// The command line as one would type it in a shell, with the environment
/// variables set for it (except PATH, which `new` sets on every command).
pub fn display(cmd: &Command) -> String {
    let env = cmd
        .get_envs()
        .filter(|(key, _)| *key != "PATH")
        .map(|(key, value)| {
            let value = value.map(|v| v.to_string_lossy()).unwrap_or_default();
            format!("{}={}", key.to_string_lossy(), quote(&value))
        });
    let program = std::iter::once(cmd.get_program()).chain(cmd.get_args());
    env.chain(program.map(|word| quote(&word.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes a word for display when a shell would otherwise split or expand it.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdin/stdout/stderr (so CI logs show progress)
/// and fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` for its answer (stdin closed): its trimmed stdout; an error
/// naming the command line and its stderr if it fails.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !output.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Runs `cmd` quietly to ask a question ("is X installed?"): its trimmed
/// stdout if it started and succeeded, `None` otherwise. Failing is a
/// legitimate answer here, so there is no error.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The printed line must be pasteable into a shell to rerun a failed step.
    #[test]
    fn display_shows_env_and_quotes_words() {
        let mut cmd = new("cargo");
        cmd.args(["test", "a b", "it's"]).env("BIN_DIR", "/t/debug");
        assert_eq!(
            display(&cmd),
            r"BIN_DIR=/t/debug cargo test 'a b' 'it'\''s'"
        );
    }
}
