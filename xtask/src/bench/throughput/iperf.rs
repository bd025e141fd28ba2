//! The iperf3 server, the client's deadline and what the probes and counters report.

use std::{
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use openclaw_egress_e2e::Sandbox;
use serde::Deserialize;

use super::NICE;
use crate::{
    bench::firewall::{SERVER, SERVER_PORT},
    cmd,
};

/// What `oce-probe connect-rate` reports.
#[derive(Deserialize)]
pub(super) struct ConnectRate {
    pub(super) connections: u64,
    pub(super) failures: u64,
    pub(super) per_second: f64,
    pub(super) cpu_us_per_connection: f64,
}

/// Interface counters of the agent's eth0.
pub(super) struct Counters {
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) rx_packets: u64,
}

/// `iperf3 -s` in the world netns, bound to the world end of the veth;
/// killed on drop.
pub(super) struct IperfServer(Child);

impl IperfServer {
    pub(super) fn start(sandbox: &Sandbox) -> Result<Self> {
        let port = SERVER_PORT.to_string();
        let server = SERVER.to_string();
        let mut command = sandbox.command_in_world(
            "nice",
            ["-n", NICE, "iperf3", "-s", "-B", &server, "-p", &port],
        )?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut server_guard = Self(command.spawn().context("starting the iperf3 server")?);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut ss = sandbox.command_in_world("ss", ["-Hltn", &format!("sport = :{port}")])?;
            if cmd::stdout(&mut ss).is_ok_and(|out| !out.trim().is_empty()) {
                return Ok(server_guard);
            }
            if let Some(status) = server_guard.0.try_wait()? {
                bail!("the iperf3 server exited: {status}");
            }
            if Instant::now() > deadline {
                bail!("the iperf3 server did not listen on {SERVER}:{SERVER_PORT} within 10 s");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for IperfServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child`; kills it (and fails) once `deadline` has passed.
pub(super) fn wait_with_deadline(mut child: Child, deadline: Duration) -> Result<()> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                // iperf3 -J reports its errors in the JSON; the caller reads it.
                eprintln!("iperf3 exited with {status}");
            }
            return Ok(());
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("iperf3 did not finish within {deadline:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}
