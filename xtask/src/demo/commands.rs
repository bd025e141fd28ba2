//! Running curl and `oce-probe` in the agent and the CLI on the host, narrated or quiet.

use std::{
    path::Path,
    process::{Command, Output, Stdio},
};

use anyhow::{Context as _, Result, bail};
use openclaw_egress_e2e::{ProbeOutcome, Sandbox};

use super::narrate::{output, shell};
use crate::cmd;

/// Runs curl in the agent netns, inside the sandbox cgroup, and prints the
/// command and what it printed.
pub(super) fn agent_curl(sandbox: &Sandbox, args: &[&str]) -> Result<Output> {
    let mut command = sandbox.command_in_agent("curl", args)?;
    let line = cmd::display(Command::new("curl").args(args));
    shell("agent", &line);
    let result = command
        .output()
        .with_context(|| format!("running `{line}`"))?;
    output(&String::from_utf8_lossy(&result.stdout));
    output(&String::from_utf8_lossy(&result.stderr));
    Ok(result)
}

/// Runs `oce-probe ARGS` in the agent netns, inside the sandbox cgroup, and
/// prints the command and its JSON report.
pub(super) fn agent_probe(sandbox: &Sandbox, args: &[&str]) -> Result<ProbeOutcome> {
    let line = cmd::display(Command::new("oce-probe").args(args));
    shell("agent", &line);
    let outcome = sandbox.probe(args)?;
    output(&serde_json::to_string(&outcome)?);
    Ok(outcome)
}

/// `openclaw-egress ARGS`, talking to the demo's daemon through
/// `OPENCLAW_EGRESS_SOCKET` (exported in the narration).
fn cli_command(egress: &Path, socket: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(egress);
    command
        .args(args)
        .env("OPENCLAW_EGRESS_SOCKET", socket)
        .stdin(Stdio::null());
    command
}

/// Runs `openclaw-egress ARGS` (in `dir` if given), printing the command and
/// its output.
pub(super) fn cli(
    egress: &Path,
    socket: &Path,
    args: &[&str],
    dir: Option<&Path>,
) -> Result<Output> {
    let mut command = cli_command(egress, socket, args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let line = cmd::display(Command::new("openclaw-egress").args(args));
    shell("host", &line);
    let result = command
        .output()
        .with_context(|| format!("running `{line}`"))?;
    output(&String::from_utf8_lossy(&result.stdout));
    output(&String::from_utf8_lossy(&result.stderr));
    Ok(result)
}

/// Runs `openclaw-egress ARGS` without printing anything; its stdout, or an
/// error unless it succeeded.
pub(super) fn cli_quiet(egress: &Path, socket: &Path, args: &[&str]) -> Result<String> {
    let result = cli_command(egress, socket, args)
        .output()
        .with_context(|| format!("running openclaw-egress {}", args.join(" ")))?;
    if !result.status.success() {
        bail!(
            "`openclaw-egress {}` failed ({}): {}",
            args.join(" "),
            result.status,
            String::from_utf8_lossy(&result.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&result.stdout).into_owned())
}
