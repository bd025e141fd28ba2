//! Processes a test keeps running while it does other things: a probe that
//! holds a socket open (`oce-probe udp-listen`), a pod's "pause" process.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::{
    probe::ProbeOutcome,
    process::{ChildGuard, Stream},
};

/// A child started by [`crate::Sandbox::spawn_probe`] or
/// [`crate::Sandbox::spawn_in_cgroup`], its output captured line by line;
/// stopped (SIGTERM, then SIGKILL) on drop, and its output printed if the
/// test panicked.
pub struct Background {
    pub(crate) child: ChildGuard,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The first stdout line (from the start) that parses as a
    /// [`ProbeOutcome`] for which `predicate` holds, waiting up to
    /// `timeout`: e.g. the line `udp-listen` prints once it is bound.
    pub fn wait_for_outcome(
        &self,
        mut predicate: impl FnMut(&ProbeOutcome) -> bool,
        timeout: Duration,
    ) -> Result<ProbeOutcome> {
        let line = self.child.output().wait_for(
            |l| {
                l.stream == Stream::Stdout
                    && serde_json::from_str::<ProbeOutcome>(&l.text).is_ok_and(|o| predicate(&o))
            },
            timeout,
        );
        match line {
            Some(line) => Ok(serde_json::from_str(&line.text)?),
            None => bail!(
                "no matching line within {timeout:?}; output so far:\n{}",
                self.child.output().dump()
            ),
        }
    }

    /// Waits up to `timeout` for the process to exit by itself and returns
    /// the last [`ProbeOutcome`] it printed.
    pub fn finish(mut self, timeout: Duration) -> Result<ProbeOutcome> {
        let Some(status) = self.child.wait_exit(timeout) else {
            bail!(
                "did not exit within {timeout:?}; output so far:\n{}",
                self.child.output().dump()
            );
        };
        // The reader threads may still be draining the pipes.
        self.child
            .output()
            .wait_for(|_| false, Duration::from_millis(200));
        let lines = self.child.output().lines();
        let last = lines
            .iter()
            .rev()
            .filter(|l| l.stream == Stream::Stdout)
            .find_map(|l| serde_json::from_str::<ProbeOutcome>(&l.text).ok());
        match last {
            Some(outcome) if status.success() => Ok(outcome),
            _ => bail!(
                "exited {status} without a result; its output:\n{}",
                self.child.output().dump()
            ),
        }
    }
}
