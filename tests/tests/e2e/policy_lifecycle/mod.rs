//! A policy's life: `validate`, `apply` of broken policies (refused, the old
//! one keeps enforcing), `apply` of a new version (swapped in atomically),
//! `remove` (traffic flows again).
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{os::unix::process::ExitStatusExt as _, path::Path, sync::atomic::AtomicBool};

use common::{POLICY, PolicyYaml, Rig, TempDir, run_cli, skip_unless_root, write_file};
use openclaw_egress_e2e::{WorldConfig, probe_error};
use serde_json::Value;

mod removal;
mod replacement;
mod validate;

/// Two allowed names (x, y) with a TCP server each, a name both test
/// policies allow for UDP (z), and an address no policy allows (w).
fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("x.example.com", "203.0.113.10")
        .record("y.example.com", "203.0.113.20")
        .record("z.example.com", "203.0.113.30")
        .tcp("203.0.113.10:443")
        .tcp("203.0.113.10:8443")
        .tcp("203.0.113.20:443")
        .udp("203.0.113.30:7")
        .udp("203.0.113.99:7")
}

const X: &str = "203.0.113.10:443";
const X_OTHER_PORT: &str = "203.0.113.10:8443";
const Y: &str = "203.0.113.20:443";
const Z_UDP: &str = "203.0.113.30:7";
const W_UDP: &str = "203.0.113.99:7";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one applied policy in `status --json`; panics if there is not
/// exactly one.
#[track_caller]
fn only_policy(rig: &Rig) -> Value {
    match &rig.status_policies()[..] {
        [policy] => policy.clone(),
        other => panic!("expected exactly one policy in status, got {other:#?}"),
    }
}

/// The enforcement of the policy allowing x on 443/tcp: x works, x on
/// another port, y and w are dropped.
#[track_caller]
fn assert_x_policy_enforced(rig: &Rig, full: bool) {
    rig.assert_allowed(&["tcp", X]);
    rig.assert_udp_dropped(W_UDP, "no_rule");
    if full {
        // The TCP drops cost a probe timeout each; checked less often.
        rig.assert_tcp_dropped(X_OTHER_PORT, "no_rule");
        rig.assert_tcp_dropped(Y, "no_rule");
    }
}
