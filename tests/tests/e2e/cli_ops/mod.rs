//! The operator's commands: `exec` (one command under a policy in a fresh
//! cgroup, exit code passed through, nothing left behind), `status` (text
//! and `--json`), `monitor` (human lines) and `metrics` as `promtool check
//! metrics` sees it.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::{fs::MetadataExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use common::{
    DROPPED_TCP_TIMEOUT_MS, EVENT_TIMEOUT, Monitor, POLICY, PolicyYaml, Rig, poll_until,
    skip_unless_root, spawn_and_wait, write_file,
};
use openclaw_egress_e2e::{
    Daemon, ProbeOutcome, Sandbox, WorldConfig, binary_path, cgroup2_mount, probe_error,
    remove_cgroup,
};
use serde_json::Value;

mod exec;
mod metrics_promtool;
mod status_and_monitor;

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("x.example.com", "203.0.113.10")
        .tcp("203.0.113.10:443")
        .record("mirror.pkg.test", "203.0.113.50")
        .tcp("203.0.113.50:443")
        .record("evil.example", "203.0.113.98")
        .tcp("203.0.113.20:443")
        .udp("203.0.113.99:7")
        .tcp("[2001:db8:1::99]:443")
}

const X: &str = "203.0.113.10:443";
const Y: &str = "203.0.113.20:443";
const W_UDP: &str = "203.0.113.99:7";
const W6_TCP: &str = "[2001:db8:1::99]:443";
