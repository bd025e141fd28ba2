//! Helpers shared by the end-to-end tests of the enforcer: a sandbox with a
//! world and a real daemon, policy YAML writers, probes that expect a drop
//! and find its event, `status --json` and metrics of the test's policy.
//! (The policy writer, the Prometheus parser, the `monitor` reader, bounded
//! polling, temp dirs and the root check live in the harness library and
//! are re-exported.)

pub mod bypass;
pub mod kube;

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use openclaw_egress_e2e::{
    Daemon, ProbeOutcome, Sandbox, World, WorldConfig, binary_path, probe_error,
};
pub use openclaw_egress_e2e::{
    Metrics, Monitor, PolicyYaml, TempDir,
    metrics::{
        AUDIT_WOULD_DROP_TOTAL, DNS_ANSWERS_TOTAL, DNS_LEARNED_TOTAL, DNS_QUERIES_TOTAL,
        DNS_REFUSED_TOTAL, DROPS_TOTAL,
    },
    poll_until, skip_unless_root,
};
use serde_json::Value;

mod rig;
mod rig_checks;

pub use rig::{DaemonSide, Rig, restart_daemon};

/// The policy name every test uses (one daemon per test, so no clash).
pub const POLICY: &str = openclaw_egress_e2e::DEFAULT_POLICY_NAME;

/// How long a drop event may take from the kernel to the daemon's log. It
/// goes through a ring buffer and an epoll wakeup, so it is normally there
/// within milliseconds; the margin is for loaded CI machines.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeout of TCP probes that are expected to be dropped. A dropped SYN is
/// retransmitted, never refused, so the probe only ends at its timeout;
/// shorter than the initial RTO (1 s) so that only one SYN goes out.
pub const DROPPED_TCP_TIMEOUT_MS: &str = "500";

/// Timeout of UDP probes that a TC classifier is expected to drop: unlike a
/// cgroup drop (EPERM at send), a datagram shot on the interface just never
/// gets an answer.
pub const DROPPED_UDP_TIMEOUT_MS: &str = "500";

/// How much the metric `name` of this test's policy, series with (at
/// least) `labels`, grew from `before` to `after`.
pub fn delta(before: &Metrics, after: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut all = vec![("policy", POLICY)];
    all.extend_from_slice(labels);
    after.sum(name, &all) - before.sum(name, &all)
}

/// The protocol and destination of an oce-probe command line (`tcp ADDR`,
/// `udp ADDR`, `dns SERVER [--tcp]`).
#[track_caller]
pub fn probe_target(args: &[&str]) -> (&'static str, SocketAddr) {
    let addr = |text: &str| -> SocketAddr {
        text.parse()
            .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .unwrap_or_else(|_| panic!("{args:?}: no target address in {text:?}"))
    };
    match args {
        ["tcp" | "tls-hello", target, ..] => ("tcp", addr(target)),
        ["udp", target, ..] => ("udp", addr(target)),
        ["dns", server, ..] if args.contains(&"--tcp") => ("tcp", addr(server)),
        ["dns", server, ..] => ("udp", addr(server)),
        // The attacker's subcommands (see `common::bypass`).
        ["dns-craft" | "dns-gso" | "dns-forge", server, ..] if args.contains(&"--tcp") => {
            ("tcp", addr(server))
        }
        ["dns-craft" | "dns-gso" | "dns-forge", server, ..] => ("udp", addr(server)),
        ["socket-op", proto, _, target, ..] => match *proto {
            "tcp" => ("tcp", addr(target)),
            _ => ("udp", addr(target)),
        },
        _ => panic!("{args:?}: not a tcp, udp or dns probe"),
    }
}

/// True if `v` is a drop event logged for the socket bound to `local`.
pub fn is_drop_event_from(v: &Value, local: SocketAddr) -> bool {
    v["target"] == "openclaw_egress::drop"
        && v["src_port"] == local.port()
        && v["src"] == local.ip().to_string()
}

#[track_caller]
pub fn write_file(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Spawns `command` (stdin `/dev/null`, stdout and stderr captured) and
/// waits for it, killing it after `deadline`; returns its pid (e.g. to find
/// what `openclaw-egress exec` named after itself) and its output.
#[track_caller]
pub fn spawn_and_wait(command: &mut Command, deadline: Duration) -> (u32, std::process::Output) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(output) => (
            pid,
            output.unwrap_or_else(|e| panic!("waiting for {command:?}: {e}")),
        ),
        Err(_) => {
            // Not reaped yet (the waiting thread still blocks on it), so the
            // pid is still our child's.
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{command:?} did not finish within {deadline:?}");
        }
    }
}

/// Runs `openclaw-egress <args>` without a daemon (e.g. `validate`).
#[track_caller]
pub fn run_cli(args: &[&str]) -> std::process::Output {
    let bin = binary_path("openclaw-egress");
    Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", bin.display()))
}

/// A turn at running `openclaw-egress exec`, held for a whole test. Each
/// exec removes what an earlier, killed exec left behind anywhere on the
/// host, so tests that run exec (in this one test binary, concurrently)
/// take turns: one's cleanup must not remove what another keeps on purpose
/// (cli_ops' killed exec).
pub fn exec_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
