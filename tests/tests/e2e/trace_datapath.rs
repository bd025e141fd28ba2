//! `daemon --trace-datapath`: the tracing build of the programs logs each
//! verdict into the daemon's log (aya-log), which is how one finds out why
//! a connection is dropped. (That the default build has no logging in it
//! at all is checked in openclaw-egress/tests/binary_identity.rs.)
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::time::Duration;

use common::{PolicyYaml, skip_unless_root};
use openclaw_egress_e2e::{Sandbox, WorldConfig, binary_path, probe_error};

#[test]
fn the_tracing_build_logs_each_verdict_with_its_destination() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().expect("creating the sandbox");
    let _world = sandbox
        .start_world(
            &WorldConfig::new()
                .dns("10.77.0.1:53")
                .udp("203.0.113.10:7")
                .udp("203.0.113.99:7"),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    let daemon = sandbox
        .spawn_daemon_with_env(
            &binary_path("openclaw-egress"),
            &["--trace-datapath"],
            &[("RUST_LOG", "info,openclaw_egress::trace=debug")],
        )
        .unwrap_or_else(|e| panic!("starting the daemon: {e:#}"));
    let policy = PolicyYaml::for_sandbox(&sandbox).cidr("203.0.113.10/32", &["7/udp"]);
    let file = policy.write(sandbox.scratch_dir(), "policy.yaml").unwrap();
    daemon.apply(&file).unwrap_or_else(|e| panic!("{e:#}"));

    sandbox
        .probe(&["udp", "203.0.113.10:7", "--payload", "x"])
        .unwrap()
        .assert_ok();
    sandbox
        .probe(&["udp", "203.0.113.99:7", "--payload", "w"])
        .unwrap()
        .assert_error(probe_error::PERMISSION_DENIED);
    let line_with = |text: &'static str| {
        move |line: &serde_json::Value| line["message"].as_str().is_some_and(|m| m.contains(text))
    };
    let pass = daemon
        .wait_for_log(
            line_with("cgroup egress: pass proto 17 to 203.0.113.10"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(pass["level"], "DEBUG", "{pass}");
    assert_eq!(pass["target"], "openclaw_egress::trace", "{pass}");
    // Refused at connect()/sendmsg(), before any packet.
    daemon
        .wait_for_log(
            line_with("refuse to 203.0.113.99 port 7"),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
}
