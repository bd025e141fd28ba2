//! Running `oce-probe` in the agent netns (in or out of a cgroup) or in the world netns.

use std::{fs::File, path::Path, process::Command, time::Duration};

use anyhow::{Context as _, Result, bail};
use serde::de::DeserializeOwned;

use super::{PROBE_DEADLINE, Sandbox, commands::open_procs};
use crate::{
    background::Background,
    bins::binary_path,
    placement::Placement,
    probe::{ProbeOutcome, parse_last_line},
    process::{ChildGuard, run_with_deadline},
};

impl Sandbox {
    /// Runs `oce-probe <args>` in the agent netns and inside the sandbox
    /// cgroup (so the policy applies to it).
    pub fn probe(&self, args: &[&str]) -> Result<ProbeOutcome> {
        self.run_probe(args, true)
    }

    /// Runs `oce-probe <args>` in the agent netns but outside the cgroup: a
    /// baseline that no cgroup policy applies to.
    pub fn probe_outside_cgroup(&self, args: &[&str]) -> Result<ProbeOutcome> {
        self.run_probe(args, false)
    }

    fn run_probe(&self, args: &[&str], in_cgroup: bool) -> Result<ProbeOutcome> {
        ProbeOutcome::parse(&self.run_probe_stdout(args, in_cgroup)?)
    }

    /// Runs `oce-probe <args>` in the agent netns inside `cgroup` (an
    /// absolute cgroup directory, e.g. one made by
    /// [`Sandbox::create_cgroup`]): a workload other than the sandbox
    /// cgroup itself, such as a pod's cgroup.
    pub fn probe_in_cgroup(&self, cgroup: &Path, args: &[&str]) -> Result<ProbeOutcome> {
        let procs = open_procs(cgroup)?;
        ProbeOutcome::parse(&self.run_probe_placed(args, Some(procs))?)
    }

    /// [`Sandbox::probe_json`] inside `cgroup` (see
    /// [`Sandbox::probe_in_cgroup`]).
    pub fn probe_json_in_cgroup<T: DeserializeOwned>(
        &self,
        cgroup: &Path,
        args: &[&str],
    ) -> Result<T> {
        let procs = open_procs(cgroup)?;
        parse_last_line(&self.run_probe_placed(args, Some(procs))?)
    }

    /// Runs `oce-probe <args>` in the agent netns and inside the sandbox
    /// cgroup, and parses its JSON line as `T`: for the subcommands whose
    /// report is not a [`ProbeOutcome`] (`resolve-connect` gives a
    /// [`crate::ResolveConnectReport`], `hold` a [`crate::HoldReport`]).
    pub fn probe_json<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        parse_last_line(&self.run_probe_stdout(args, true)?)
    }

    /// [`Sandbox::probe_json`] outside the cgroup.
    pub fn probe_json_outside_cgroup<T: DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        parse_last_line(&self.run_probe_stdout(args, false)?)
    }

    /// Starts `oce-probe <args>` in the agent netns, inside `cgroup` (an
    /// absolute cgroup directory, e.g. [`Sandbox::cgroup_path`]) or, with
    /// `None`, outside any sandbox cgroup, and returns at once: for probes
    /// that hold a socket open while the test does something else (e.g.
    /// `udp-listen`). Read its lines with [`Background::wait_for_outcome`].
    pub fn spawn_probe(&self, cgroup: Option<&Path>, args: &[&str]) -> Result<Background> {
        let mut command = Command::new(binary_path("oce-probe"));
        command.args(args);
        Placement {
            cgroup_procs: cgroup.map(open_procs).transpose()?,
            netns: Some(self.agent.open()?),
        }
        .apply(&mut command);
        let child = ChildGuard::spawn("oce-probe", &mut command, Duration::from_secs(2))?;
        Ok(Background { child })
    }

    /// Runs `oce-probe <args>` in the WORLD netns (outside any cgroup), e.g.
    /// `forge-answer`, for what an attacker elsewhere on the network (or a
    /// compromised resolver path) could send towards the agent.
    pub fn probe_in_world(&self, args: &[&str]) -> Result<ProbeOutcome> {
        let mut command = self.command_in_world(binary_path("oce-probe"), args)?;
        let output = run_with_deadline(&mut command, PROBE_DEADLINE)
            .with_context(|| format!("running oce-probe {} in the world", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "oce-probe {} (world) failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                stdout.trim()
            );
        }
        ProbeOutcome::parse(&stdout)
    }

    /// Runs oce-probe to completion; its stdout, or an error if it exited
    /// non-zero (a usage error: the probe itself reports failures as JSON).
    fn run_probe_stdout(&self, args: &[&str], in_cgroup: bool) -> Result<String> {
        let procs = in_cgroup.then(|| self.cgroup.open_procs()).transpose()?;
        self.run_probe_placed(args, procs)
    }

    /// Runs oce-probe in the agent netns, in the cgroup whose `cgroup.procs`
    /// is given (else in the caller's cgroup).
    fn run_probe_placed(&self, args: &[&str], cgroup_procs: Option<File>) -> Result<String> {
        let mut command = Command::new(binary_path("oce-probe"));
        command.args(args);
        Placement {
            cgroup_procs,
            netns: Some(self.agent.open()?),
        }
        .apply(&mut command);
        let output = run_with_deadline(&mut command, PROBE_DEADLINE)
            .with_context(|| format!("running oce-probe {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "oce-probe {} failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                stdout.trim()
            );
        }
        Ok(stdout.into_owned())
    }
}
