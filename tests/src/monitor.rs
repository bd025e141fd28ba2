//! `openclaw-egress monitor`, running in the background: its stdout read
//! line by line on a thread, for tests and `xtask demo`.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::daemon::Daemon;

/// A running `openclaw-egress monitor` talking to a [`Daemon`]; killed on
/// drop.
pub struct Monitor {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line received so far, for failure messages.
    seen: Vec<String>,
}

impl Monitor {
    /// `openclaw-egress monitor --json`: one JSON object per event (read
    /// with [`Monitor::next_matching`]).
    pub fn spawn(daemon: &Daemon) -> Result<Self> {
        Self::spawn_with(daemon, &["monitor", "--json"])
    }

    /// `openclaw-egress monitor` without `--json`: one line per event for
    /// people (read with [`Monitor::next_line_matching`]).
    pub fn spawn_human(daemon: &Daemon) -> Result<Self> {
        Self::spawn_with(daemon, &["monitor"])
    }

    fn spawn_with(daemon: &Daemon, args: &[&str]) -> Result<Self> {
        let mut child = daemon
            .cli_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning openclaw-egress {}", args.join(" ")))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// The next JSON line for which `predicate` holds (earlier lines that do
    /// not match are skipped), waiting up to `timeout`.
    pub fn next_matching(
        &mut self,
        mut predicate: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        let line = self.next_line_matching(
            |line| serde_json::from_str::<Value>(line).is_ok_and(|value| predicate(&value)),
            timeout,
        )?;
        serde_json::from_str(&line).ok()
    }

    /// The next line (JSON or not) for which `predicate` holds, waiting up
    /// to `timeout`.
    pub fn next_line_matching(
        &mut self,
        mut predicate: impl FnMut(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            self.seen.push(line.clone());
            if predicate(&line) {
                return Some(line);
            }
        }
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Stops the monitor and returns every line it printed.
    pub fn stop(mut self) -> Vec<String> {
        self.kill();
        // The reader thread ends at EOF, which closes the channel.
        self.seen.extend(self.lines.iter());
        std::mem::take(&mut self.seen)
    }

    fn kill(&mut self) {
        // Our own child, not reaped yet: the pid cannot have been reused.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.kill();
    }
}
