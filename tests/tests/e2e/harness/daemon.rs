//! The daemon wrapper, driving a stand-in for `openclaw-egress` (a Python
//! script, so no BPF build is needed): where it runs, its log, drop
//! events, metrics, status, apply and stop.

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use openclaw_egress_e2e::{Sandbox, skip_unless_root};

/// A stand-in for `openclaw-egress`, to test the daemon wrapper without the
/// BPF build: listens on the socket, prints JSON lines, answers `metrics`
/// and `apply`.
const FAKE_DAEMON: &str = r#"#!/usr/bin/env python3
import json, os, signal, socket, sys
args = sys.argv[1:]
sock = args[args.index("--socket") + 1]
def log(**fields):
    print(json.dumps(fields), flush=True)
if args[0] == "daemon":
    log(level="INFO", message="starting", netns=os.readlink("/proc/self/ns/net"), args=args)
    print("not json", flush=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(sock)
    server.listen()
    def stop(*_):
        log(level="INFO", message="stopping")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    log(event="drop", reason="not_allowed", src_port=40000)
    log(target="openclaw_egress::drop", level="WARN", policy="p", verdict="dropped",
        reason="dns_denied", direction="egress", proto="udp", src="10.77.0.2",
        src_port=40001, dst="10.77.0.1", dst_port=53, cgroup_id=7,
        dns_name="x.attacker.example", event_time="2026-01-01T00:00:00.000Z")
    while True:
        server.accept()[0].close()
elif args[0] == "metrics":
    print("openclaw_egress_drops_total{policy=\"p\",reason=\"r\",direction=\"egress\"} 1")
elif args[0] == "status":
    print(json.dumps({"version": "0", "policies": []}))
elif args[0] == "apply":
    if "bad" in args[1]:
        print("invalid policy: unknown field", file=sys.stderr)
        sys.exit(1)
    print("applied " + args[1])
"#;

/// Writes [`FAKE_DAEMON`] into the sandbox's scratch directory as
/// `openclaw-egress`. Not a skip without python3, which runs it: `cargo
/// xtask setup` installs it, and a test that passes without running hides
/// a broken machine.
#[track_caller]
fn install_fake_daemon(sandbox: &Sandbox) -> PathBuf {
    assert!(
        Command::new("python3").arg("--version").output().is_ok(),
        "python3 is not installed (`cargo xtask setup` installs it)"
    );
    let fake = sandbox.scratch_dir().join("openclaw-egress");
    std::fs::write(&fake, FAKE_DAEMON).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

#[test]
fn daemon_wrapper_drives_a_stand_in_daemon() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let fake = install_fake_daemon(&sandbox);

    let daemon = sandbox.spawn_daemon(&fake).unwrap();
    assert!(daemon.socket().starts_with(sandbox.scratch_dir()));

    // It runs in the agent netns.
    let started = daemon
        .wait_for_log(|v| v["message"] == "starting", Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        started["netns"],
        format!("net:[{}]", netns_inode(sandbox.agent_netns()))
    );
    let args: Vec<&str> = started["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--log-format", "json"]),
        "{args:?}"
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--metrics-addr", "127.0.0.1:9464"]),
        "{args:?}"
    );

    let event = daemon
        .wait_for_log(|v| v["event"] == "drop", Duration::from_secs(5))
        .unwrap();
    assert_eq!(event["src_port"], 40000);
    assert!(
        daemon
            .wait_for_log(|v| v["event"] == "never", Duration::from_millis(200))
            .is_err()
    );

    assert!(
        daemon
            .metrics_text()
            .unwrap()
            .contains("openclaw_egress_drops_total")
    );
    assert_eq!(daemon.metrics().unwrap().drops("p", "r", "egress"), 1);
    assert_eq!(
        daemon.status_json().unwrap()["policies"],
        serde_json::json!([])
    );

    // Drop events, typed: only lines of the drop target count.
    let typed = daemon
        .wait_for_drop_event(|e| e.reason == "dns_denied", Duration::from_secs(5))
        .unwrap();
    assert_eq!(typed.dns_name, "x.attacker.example");
    assert!(typed.is_from("10.77.0.2:40001".parse().unwrap()));
    assert_eq!(daemon.drop_events(), [typed]);
    let good = sandbox.scratch_dir().join("good.yaml");
    assert!(daemon.apply(&good).unwrap().contains("applied"));
    let err = daemon
        .apply(&sandbox.scratch_dir().join("bad.yaml"))
        .unwrap_err();
    assert!(format!("{err:#}").contains("unknown field"), "{err:#}");

    // SIGTERM first: the daemon gets to shut down cleanly.
    let status = daemon.stop().expect("exit status");
    assert!(status.success(), "{status}");
}

/// The inode of a named netns, as `/proc/<pid>/ns/net` names it.
fn netns_inode(name: &str) -> u64 {
    std::fs::metadata(Path::new("/run/netns").join(name))
        .unwrap()
        .ino()
}

#[test]
fn daemon_and_commands_run_where_asked() {
    if skip_unless_root() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let fake = install_fake_daemon(&sandbox);

    // The daemon for interface (TC) policies runs in the world netns.
    let daemon = sandbox.spawn_daemon_in_world(&fake, &["--extra"]).unwrap();
    let started = daemon
        .wait_for_log(|v| v["message"] == "starting", Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        started["netns"],
        format!("net:[{}]", netns_inode(sandbox.world_netns()))
    );
    assert!(
        started["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--extra"),
        "{started}"
    );
    assert!(daemon.stop().expect("exit status").success());

    // A command in the agent netns, outside the cgroup.
    let output = sandbox
        .command_in_agent_outside_cgroup(
            "sh",
            ["-c", "readlink /proc/self/ns/net; cat /proc/self/cgroup"],
        )
        .unwrap()
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("net:[{}]", netns_inode(sandbox.agent_netns())).as_str())
    );
    let sandbox_cgroup = format!("0::/{}", sandbox.cgroup_relative());
    assert!(lines.all(|l| l != sandbox_cgroup), "{text}");
}
