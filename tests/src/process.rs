//! Child processes: capturing their output line by line, stopping them on
//! drop, and running short-lived ones with a deadline.

use std::{
    fmt,
    io::{BufRead as _, BufReader, Read},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// Which pipe a captured line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of a child's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    pub text: String,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.stream {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
        };
        write!(f, "[{tag}] {}", self.text)
    }
}

/// The lines a child has written so far, filled by reader threads.
#[derive(Clone, Default)]
pub(crate) struct CapturedOutput {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    lines: Vec<LogLine>,
    /// Pipes not at EOF yet; at 0 no line will ever come again.
    open: usize,
}

impl CapturedOutput {
    /// Reads `pipe` line by line on a thread until EOF.
    pub(crate) fn capture(&self, pipe: impl Read + Send + 'static, stream: Stream) {
        self.shared.state.lock().unwrap().open += 1;
        let shared = Arc::clone(&self.shared);
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                // read_until, not lines(): a child may print invalid UTF-8.
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
                        shared
                            .state
                            .lock()
                            .unwrap()
                            .lines
                            .push(LogLine { stream, text });
                        shared.changed.notify_all();
                    }
                }
            }
            shared.state.lock().unwrap().open -= 1;
            shared.changed.notify_all();
        });
    }

    pub(crate) fn lines(&self) -> Vec<LogLine> {
        self.shared.state.lock().unwrap().lines.clone()
    }

    /// The first line (from the very beginning) matching `predicate`,
    /// waiting up to `timeout` for it; `None` on timeout or once all pipes
    /// are closed without a match.
    pub(crate) fn wait_for(
        &self,
        mut predicate: impl FnMut(&LogLine) -> bool,
        timeout: Duration,
    ) -> Option<LogLine> {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        let mut state = self.shared.state.lock().unwrap();
        loop {
            if let Some(line) = state.lines[checked..].iter().find(|l| predicate(l)) {
                return Some(line.clone());
            }
            checked = state.lines.len();
            let now = Instant::now();
            if state.open == 0 || now >= deadline {
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// All lines, for error messages and post-mortems.
    pub(crate) fn dump(&self) -> String {
        let lines = self.lines();
        if lines.is_empty() {
            return "(no output)".to_owned();
        }
        lines.iter().map(|l| format!("  {l}\n")).collect()
    }
}

/// A child process that is stopped on drop: SIGTERM, then SIGKILL after a
/// grace period. Output goes to a [`CapturedOutput`], which is printed on
/// drop if the thread is panicking (the test failed), to help debugging.
pub(crate) struct ChildGuard {
    name: String,
    child: Child,
    output: CapturedOutput,
    grace: Duration,
}

impl ChildGuard {
    /// Spawns `command` with stdout and stderr captured.
    pub(crate) fn spawn(name: &str, command: &mut Command, grace: Duration) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {name}: {command:?}"))?;
        let output = CapturedOutput::default();
        output.capture(child.stdout.take().expect("piped"), Stream::Stdout);
        output.capture(child.stderr.take().expect("piped"), Stream::Stderr);
        Ok(Self {
            name: name.to_owned(),
            child,
            output,
            grace,
        })
    }

    pub(crate) fn output(&self) -> &CapturedOutput {
        &self.output
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the child has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the child to exit.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// An error saying the child exited, with everything it printed.
    pub(crate) fn exited_error(&mut self, status: ExitStatus) -> anyhow::Error {
        // The reader threads may still be draining the pipes.
        self.output.wait_for(|_| false, Duration::from_millis(500));
        anyhow::anyhow!(
            "{} exited early ({status}); its output:\n{}",
            self.name,
            self.output.dump()
        )
    }

    /// SIGKILL now (no chance to clean up) and reap; returns the exit
    /// status.
    pub(crate) fn kill(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// SIGTERM, wait up to the grace period, then SIGKILL; returns the exit
    /// status.
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child, which has not been reaped yet
        // (so the pid cannot have been reused).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        if let Some(status) = self.wait_exit(self.grace) {
            return Some(status);
        }
        eprintln!(
            "openclaw-egress-e2e: {} did not exit within {:?} of SIGTERM, killing it",
            self.name, self.grace
        );
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("---- output of {} ----\n{}", self.name, self.output.dump());
        }
    }
}

/// Runs a short-lived command to completion, killing it after `deadline`
/// (so a hung child fails the test instead of hanging it). Stdin is
/// `/dev/null`; stdout and stderr are captured.
pub fn run_with_deadline(command: &mut Command, deadline: Duration) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {command:?}"))?;
    // Read both pipes on threads: a child filling one pipe while we wait
    // on the other would deadlock.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for child")? {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            bail!(
                "{command:?} did not finish within {deadline:?}; stderr: {}",
                String::from_utf8_lossy(&stderr).trim()
            );
        }
        thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}
