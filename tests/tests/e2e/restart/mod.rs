//! Enforcement outlives the daemon: a killed (SIGKILL) or stopped (SIGTERM)
//! daemon leaves every policy attached and pinned, a restarted daemon on the
//! same state and pin directories adopts it (learned addresses, counters,
//! pending drop events) with no moment where traffic is open, leftovers of
//! an unfinished swap are detached, and `uninstall` (with a daemon or
//! without) removes everything.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    thread,
    time::Duration,
};

use common::{
    DROPPED_TCP_TIMEOUT_MS, EVENT_TIMEOUT, POLICY, PolicyYaml, Rig, is_drop_event_from, poll_until,
    restart_daemon, skip_unless_root,
};
use openclaw_egress_e2e::{ProbeOutcome, Sandbox, WorldConfig, probe_error};
use serde_json::Value;

mod adoption;
mod uninstall;
mod unrecorded_workloads;

/// An fqdn name with TCP and UDP servers (x), names under `*.pkg.test` for
/// the agent to look up (mirror, late, after), a name no rule allows (evil)
/// and an address no rule allows (w).
fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("x.example.com", "203.0.113.10")
        .tcp("203.0.113.10:443")
        .udp("203.0.113.10:7")
        .record("mirror.pkg.test", "203.0.113.50")
        .record("late.pkg.test", "203.0.113.51")
        .record("after.pkg.test", "203.0.113.52")
        .tcp("203.0.113.50:443")
        .tcp("203.0.113.51:443")
        .tcp("203.0.113.52:443")
        .record("evil.example", "203.0.113.98")
        .tcp("203.0.113.99:443")
        .udp("203.0.113.99:7")
}

const X_TCP: &str = "203.0.113.10:443";
const X_UDP: &str = "203.0.113.10:7";
const MIRROR: &str = "203.0.113.50:443";
const LATE: &str = "203.0.113.51:443";
const AFTER: &str = "203.0.113.52:443";
const W_TCP: &str = "203.0.113.99:443";
const W_UDP: &str = "203.0.113.99:7";

/// The fqdn rule (resolved by the daemon) and the pattern (learned by the
/// kernel from the agent's own lookups).
fn policy(sandbox: &Sandbox) -> PolicyYaml {
    PolicyYaml::for_sandbox(sandbox)
        .fqdn("x.example.com", &["443/tcp", "7/udp"])
        .fqdn_pattern("*.pkg.test", &["443/tcp"])
}

/// oce-probe in the sandbox cgroup. (The helpers take the sandbox, not the
/// rig, so that they work while the rig's daemon is being replaced.)
#[track_caller]
fn probe(sandbox: &Sandbox, args: &[&str]) -> ProbeOutcome {
    sandbox
        .probe(args)
        .unwrap_or_else(|e| panic!("oce-probe {args:?}: {e:#}"))
}

#[track_caller]
fn assert_allowed(sandbox: &Sandbox, args: &[&str]) {
    let outcome = probe(sandbox, args);
    assert!(
        outcome.ok,
        "expected {args:?} to be allowed, got {outcome:?}"
    );
}

/// Looks `name` up through the policy's resolver from inside the cgroup
/// and checks the answer (the kernel learns it on the way in).
#[track_caller]
fn lookup(sandbox: &Sandbox, name: &str, expected: &str) {
    let outcome = probe(sandbox, &["dns", "10.77.0.1", name]);
    assert!(
        outcome.ok && outcome.answers == [expected],
        "looking up {name}: expected [{expected}], got {outcome:?}"
    );
}

/// A UDP datagram to w, which must be refused (a drop: EPERM at send);
/// returns the probe's local address, to find its drop event.
#[track_caller]
fn udp_drop(sandbox: &Sandbox) -> SocketAddr {
    let outcome = probe(sandbox, &["udp", W_UDP, "--payload", "w"]);
    outcome.assert_error(probe_error::PERMISSION_DENIED);
    outcome.local.expect("the dropped probe's local address")
}

/// What the policy must do whether or not a daemon runs: x (TCP and UDP)
/// and the learned mirror address pass; w (TCP and UDP) and a query for a
/// name no rule allows are dropped.
#[track_caller]
fn assert_enforced(sandbox: &Sandbox) {
    assert_allowed(sandbox, &["tcp", X_TCP]);
    assert_allowed(sandbox, &["udp", X_UDP, "--payload", "x"]);
    assert_allowed(sandbox, &["tcp", MIRROR]);
    udp_drop(sandbox);
    probe(
        sandbox,
        &["tcp", W_TCP, "--timeout-ms", DROPPED_TCP_TIMEOUT_MS],
    )
    .assert_error(probe_error::PERMISSION_DENIED);
    probe(
        sandbox,
        &["dns", "10.77.0.1", "evil.example", "--timeout-ms", "500"],
    )
    .assert_error(probe_error::PERMISSION_DENIED);
}

/// The one applied policy in `status --json`.
#[track_caller]
fn only_policy(rig: &Rig) -> Value {
    match &rig.status_policies()[..] {
        [policy] => policy.clone(),
        other => panic!("expected exactly one applied policy, got {other:#?}"),
    }
}

/// The addresses and their expiries `status --json` lists under the name
/// rule `name` of `policy`.
#[track_caller]
fn addresses(policy: &Value, name: &str) -> Vec<(IpAddr, u64)> {
    let entry = policy["names"]
        .as_array()
        .and_then(|names| names.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("no name rule {name:?} in {policy:#}"));
    entry["addresses"]
        .as_array()
        .unwrap_or_else(|| panic!("no addresses in {entry:#}"))
        .iter()
        .map(|a| {
            (
                a["ip"].as_str().unwrap().parse().unwrap(),
                a["expires_in_secs"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[track_caller]
fn ips(policy: &Value, name: &str) -> BTreeSet<IpAddr> {
    addresses(policy, name)
        .into_iter()
        .map(|(ip, _)| ip)
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The policy record files (`<state>/policies/*.json`).
fn records(sandbox: &Sandbox) -> Vec<PathBuf> {
    std::fs::read_dir(sandbox.state_dir().join("policies"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// Everything under the pin directory, for assertions that it is empty
/// (or gone).
fn pins(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}
