//! The `openclaw-egress` daemon under test, driven through its binary.

use std::{
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Output},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    events::DropEvent,
    metrics::Metrics,
    process::{ChildGuard, LogLine, run_with_deadline},
};

/// A running `openclaw-egress daemon`; SIGTERM (then SIGKILL after 5 s) on
/// drop, and its output is printed if the test panicked.
pub struct Daemon {
    bin: PathBuf,
    socket: PathBuf,
    child: ChildGuard,
}

impl Daemon {
    /// How long loading and attaching the programs may take before the API
    /// socket must accept connections.
    pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
    /// Longest a CLI call may run.
    pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);
    /// The daemon's Prometheus listener. The daemon runs in the sandbox's
    /// private agent netns, so every sandbox can use the same port.
    pub const METRICS_ADDR: &str = "127.0.0.1:9464";

    /// The daemon's command line, without the netns placement.
    pub(crate) fn command(
        bin: &Path,
        socket: &Path,
        state_dir: &Path,
        pins_dir: &Path,
        extra_args: &[&str],
    ) -> Command {
        let mut command = Command::new(bin);
        command
            .arg("daemon")
            .arg("--socket")
            .arg(socket)
            .args(["--metrics-addr", Self::METRICS_ADDR, "--log-format", "json"])
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--bpffs-dir")
            .arg(pins_dir)
            .args(extra_args);
        command
    }

    /// Waits until the API socket accepts connections (the daemon only
    /// listens once it is ready).
    pub(crate) fn wait_ready(bin: &Path, socket: &Path, mut child: ChildGuard) -> Result<Self> {
        let deadline = Instant::now() + Self::READY_TIMEOUT;
        loop {
            if let Some(status) = child.exited() {
                return Err(child.exited_error(status));
            }
            if UnixStream::connect(socket).is_ok() {
                return Ok(Self {
                    bin: bin.to_owned(),
                    socket: socket.to_owned(),
                    child,
                });
            }
            if Instant::now() > deadline {
                bail!(
                    "the daemon did not listen on {} within {:?}; its output:\n{}",
                    socket.display(),
                    Self::READY_TIMEOUT,
                    child.output().dump()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Everything the daemon printed so far (stdout and stderr, each in
    /// order).
    pub fn log_lines(&self) -> Vec<LogLine> {
        self.child.output().lines()
    }

    /// The first JSON line (stdout or stderr, from the start) for which
    /// `predicate` holds, waiting up to `timeout`.
    pub fn wait_for_log(
        &self,
        mut predicate: impl FnMut(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Result<serde_json::Value> {
        let found = self.child.output().wait_for(
            |l| serde_json::from_str(&l.text).is_ok_and(|v| predicate(&v)),
            timeout,
        );
        match found {
            Some(line) => Ok(serde_json::from_str(&line.text)?),
            None => bail!(
                "no matching daemon log line within {timeout:?}; its output:\n{}",
                self.child.output().dump()
            ),
        }
    }

    /// Every drop event the daemon has logged so far, in order.
    pub fn drop_events(&self) -> Vec<DropEvent> {
        self.log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(&l.text).ok())
            .filter_map(|v| DropEvent::from_log_line(&v))
            .collect()
    }

    /// The first drop event (from the start) for which `predicate` holds,
    /// waiting up to `timeout`.
    pub fn wait_for_drop_event(
        &self,
        mut predicate: impl FnMut(&DropEvent) -> bool,
        timeout: Duration,
    ) -> Result<DropEvent> {
        let line = self.wait_for_log(
            |v| DropEvent::from_log_line(v).is_some_and(|e| predicate(&e)),
            timeout,
        )?;
        DropEvent::from_log_line(&line).context("the matched line is a drop event")
    }

    /// `openclaw-egress <args> --socket <socket>`, e.g. for a streaming
    /// `monitor`. Runs in the caller's netns: the API is a unix socket, a
    /// filesystem object.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.args(args).arg("--socket").arg(&self.socket);
        command
    }

    /// Runs `openclaw-egress <args> --socket <socket>` to completion,
    /// whatever its exit status.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        run_with_deadline(&mut self.cli_command(args), Self::CLI_TIMEOUT)
    }

    /// Like [`Daemon::cli`], but fails (with its stderr) unless it exits 0;
    /// returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let output = self.cli(args)?;
        if !output.status.success() {
            bail!(
                "`openclaw-egress {}` failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(&output.stdout).trim()
            );
        }
        String::from_utf8(output.stdout).context("CLI output is not UTF-8")
    }

    /// `openclaw-egress apply <policy>`; fails unless the daemon took it.
    pub fn apply(&self, policy: &Path) -> Result<String> {
        let policy = policy.to_str().context("policy path is not UTF-8")?;
        self.cli_ok(&["apply", policy])
    }

    /// `openclaw-egress metrics`: the Prometheus text exposition.
    pub fn metrics_text(&self) -> Result<String> {
        self.cli_ok(&["metrics"])
    }

    /// `openclaw-egress metrics`, parsed.
    pub fn metrics(&self) -> Result<Metrics> {
        Metrics::parse(&self.metrics_text()?)
    }

    /// `openclaw-egress status --json`, parsed.
    pub fn status_json(&self) -> Result<serde_json::Value> {
        let text = self.cli_ok(&["status", "--json"])?;
        serde_json::from_str(&text).with_context(|| format!("status --json: {text}"))
    }

    /// Stops the daemon now (SIGTERM, then SIGKILL after 5 s) and returns
    /// whether it exited successfully, e.g. to test a restart.
    pub fn stop(mut self) -> Option<std::process::ExitStatus> {
        self.child.stop()
    }

    /// Like [`Daemon::stop`] (SIGTERM, then SIGKILL after 5 s), but keeps
    /// the wrapper, so its log can still be read afterwards.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.child.stop()
    }

    /// SIGKILL now: the daemon gets no chance to clean up (a crash, the
    /// OOM killer). Returns the exit status; the log stays readable.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.child.kill()
    }

    /// `Some(status)` once the daemon has exited (e.g. after `uninstall`).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.exited()
    }

    /// Waits up to `timeout` for the daemon to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.wait_exit(timeout)
    }
}
