//! Self-tests of the end-to-end harness: the sandbox topology, oce-world,
//! oce-probe, the daemon wrapper (against a stand-in daemon) and teardown.
//!
//! Root-only (network namespaces, cgroups); skipped with a message
//! otherwise. CI runs them as root.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
    os::{
        fd::AsRawFd as _,
        unix::fs::{MetadataExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use openclaw_egress_e2e::{
    AGENT_IPV4, AGENT_IPV6, HoldReport, ProbeOutcome, ResolveConnectReport, Sandbox, WorldConfig,
    is_root, probe_error,
};

/// Skips the test (with a note on stderr) unless running as root.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root (network namespaces, cgroups)");
            return;
        }
    };
}

fn probe(sandbox: &Sandbox, args: &[&str]) -> ProbeOutcome {
    sandbox
        .probe(args)
        .unwrap_or_else(|e| panic!("oce-probe {args:?}: {e:#}"))
}

/// The world most tests use: DNS on the gateway, two hosts with TCP echo
/// servers, one with UDP echo.
fn basic_world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        .record("api.example.com", "203.0.113.10")
        .record("api.example.com", "203.0.113.11")
        .record("api.example.com", "2001:db8:1::10")
        .record("v4only.example.com", "203.0.113.20")
        .tcp("203.0.113.10:7")
        .tcp("[2001:db8:1::10]:7")
        .udp("203.0.113.10:7")
}

#[test]
fn agent_reaches_world_tcp_over_ipv4_and_ipv6() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();

    let v4 = probe(&sandbox, &["tcp", "203.0.113.10:7"]);
    v4.assert_ok();
    assert_eq!(v4.detail.as_deref(), Some("hello from 203.0.113.10:7"));
    assert_eq!(v4.local.map(|a| a.ip()), Some(IpAddr::V4(AGENT_IPV4)));

    let v6 = probe(&sandbox, &["tcp", "[2001:db8:1::10]:7", "--send", "ping"]);
    v6.assert_ok();
    // With --send, the detail is the echoed line.
    assert_eq!(v6.detail.as_deref(), Some("ping"));
    assert_eq!(v6.local.map(|a| a.ip()), Some(IpAddr::V6(AGENT_IPV6)));
}

#[test]
fn dns_answers_records_nodata_and_nxdomain() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let world = sandbox.start_world(&basic_world()).unwrap();

    let a = probe(&sandbox, &["dns", "10.77.0.1", "api.example.com"]);
    a.assert_ok();
    assert_eq!(a.rcode.as_deref(), Some("NOERROR"));
    assert_eq!(a.answers, ["203.0.113.10", "203.0.113.11"]);
    assert!(a.local.is_some(), "{a:?}");

    // Case-insensitive, over TCP, from the IPv6 server.
    let aaaa = probe(
        &sandbox,
        &[
            "dns",
            "[fd77::1]:53",
            "API.Example.COM.",
            "--type",
            "AAAA",
            "--tcp",
        ],
    );
    aaaa.assert_ok();
    assert_eq!(aaaa.answers, ["2001:db8:1::10"]);

    // A known name without records of that type: NOERROR, no answers.
    let nodata = probe(
        &sandbox,
        &["dns", "10.77.0.1", "v4only.example.com", "--type", "AAAA"],
    );
    assert_eq!(nodata.rcode.as_deref(), Some("NOERROR"), "{nodata:?}");
    assert!(nodata.answers.is_empty(), "{nodata:?}");

    let unknown = probe(&sandbox, &["dns", "10.77.0.1", "nope.example.com"]);
    unknown.assert_ok();
    assert_eq!(unknown.rcode.as_deref(), Some("NXDOMAIN"));
    assert!(unknown.answers.is_empty());

    // The world logs every query, so tests can tell whether one got through.
    let logged = world
        .wait_for_dns_query("nope.example.com", Duration::from_secs(2))
        .expect("the NXDOMAIN query was logged");
    assert_eq!(logged.rcode, "NXDOMAIN");
    assert_eq!(logged.client.ip(), IpAddr::V4(AGENT_IPV4));
    let protos: HashSet<_> = world.dns_queries().into_iter().map(|q| q.proto).collect();
    assert_eq!(protos, HashSet::from(["udp".to_owned(), "tcp".to_owned()]));
}

#[test]
fn cname_answer_carries_the_chain() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let config = basic_world()
        .cname("www.example.com", "edge.example.net")
        .cname("edge.example.net", "api.example.com");
    let _world = sandbox.start_world(&config).unwrap();

    let chain = probe(&sandbox, &["dns", "10.77.0.1", "www.example.com"]);
    chain.assert_ok();
    assert_eq!(chain.cnames, ["edge.example.net.", "api.example.com."]);
    assert_eq!(chain.answers, ["203.0.113.10", "203.0.113.11"]);

    // A CNAME to nothing: the CNAME, then NXDOMAIN (as real servers do).
    let config = WorldConfig::new()
        .dns("10.77.0.1:5353")
        .cname("dangling.example.com", "gone.example.com");
    let _other = sandbox.start_world(&config).unwrap();
    let dangling = probe(&sandbox, &["dns", "10.77.0.1:5353", "dangling.example.com"]);
    assert_eq!(dangling.rcode.as_deref(), Some("NXDOMAIN"), "{dangling:?}");
    assert_eq!(dangling.cnames, ["gone.example.com."]);
}

#[test]
fn udp_echo() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();

    let echo = probe(
        &sandbox,
        &["udp", "203.0.113.10:7", "--payload", "hello udp"],
    );
    echo.assert_ok();
    assert_eq!(echo.detail.as_deref(), Some("hello udp"));
    assert_eq!(echo.local.map(|a| a.ip()), Some(IpAddr::V4(AGENT_IPV4)));

    // Nothing listens on UDP port 9: ICMP port unreachable -> refused.
    let closed = probe(
        &sandbox,
        &[
            "udp",
            "203.0.113.10:9",
            "--payload",
            "x",
            "--timeout-ms",
            "1000",
        ],
    );
    closed.assert_error(probe_error::REFUSED);
}

#[test]
fn fresh_ips_are_distinct_and_connectable() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let config = WorldConfig::new()
        .dns("10.77.0.1:53")
        .fresh_ips("fresh.example.com", "198.51.100.0/24")
        .fresh_ips("fresh.example.com", "2001:db8:99::/64")
        .fresh_tcp_port(443)
        .fresh_http_port(80)
        .ttl(5);
    let _world = sandbox.start_world(&config).unwrap();

    let mut seen = HashSet::new();
    for _ in 0..5 {
        let answer = probe(&sandbox, &["dns", "10.77.0.1", "FRESH.example.com"]);
        let [ip] = answer.answer_ips()[..] else {
            panic!("expected one address, got {answer:?}");
        };
        assert!(seen.insert(ip), "{ip} was handed out twice");
        // The address must be connectable right after the answer.
        let target = SocketAddr::new(ip, 443).to_string();
        let greeting = probe(&sandbox, &["tcp", &target]);
        greeting.assert_ok();
        assert_eq!(greeting.detail, Some(format!("hello from {target}")));
    }

    let answer = probe(
        &sandbox,
        &["dns", "10.77.0.1", "fresh.example.com", "--type", "AAAA"],
    );
    let [ip @ IpAddr::V6(_)] = answer.answer_ips()[..] else {
        panic!("expected one IPv6 address, got {answer:?}");
    };
    let target = SocketAddr::new(ip, 443).to_string();
    probe(&sandbox, &["tcp", &target]).assert_ok();
}

#[test]
fn host_without_server_refuses() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();
    sandbox
        .add_world_host("203.0.113.200".parse().unwrap())
        .unwrap();
    // Adding a host twice is harmless.
    sandbox
        .add_world_host("203.0.113.200".parse().unwrap())
        .unwrap();

    let refused = probe(&sandbox, &["tcp", "203.0.113.200:80"]);
    refused.assert_error(probe_error::REFUSED);
    // The local port is known even though the connection failed, so a test
    // can match drop events by source port.
    assert!(refused.local_port().is_some(), "{refused:?}");
}

#[test]
fn probes_run_inside_the_sandbox_cgroup() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let expected = format!("/{}", sandbox.cgroup_relative());
    assert_eq!(sandbox.cgroup_path(), sandbox_cgroup_abs(&sandbox));

    let inside = probe(&sandbox, &["cgroup"]);
    assert_eq!(inside.detail.as_deref(), Some(expected.as_str()));
    let outside = sandbox.probe_outside_cgroup(&["cgroup"]).unwrap();
    assert_ne!(outside.detail.as_deref(), Some(expected.as_str()));

    // command_in_agent: in the cgroup and in the agent netns, through `ip
    // netns exec`.
    let output = sandbox
        .command_in_agent("cat", ["/proc/self/cgroup"])
        .unwrap()
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let cgroup = String::from_utf8(output.stdout).unwrap();
    assert!(
        cgroup.lines().any(|l| l == format!("0::{expected}")),
        "{cgroup}"
    );
}

fn sandbox_cgroup_abs(sandbox: &Sandbox) -> PathBuf {
    openclaw_egress_e2e::cgroup2_mount()
        .unwrap()
        .join(sandbox.cgroup_relative())
}

#[test]
fn curl_in_agent_resolves_through_the_world() {
    require_root!();
    // Not a skip: `cargo xtask setup` installs curl, and a test that passes
    // without running hides a broken machine.
    assert!(
        Command::new("curl").arg("--version").output().is_ok(),
        "curl is not installed (`cargo xtask setup` installs it)"
    );
    let sandbox = Sandbox::new().unwrap();
    let config = basic_world()
        .http("203.0.113.10:80")
        .http("[2001:db8:1::10]:80");
    let _world = sandbox.start_world(&config).unwrap();

    // The name resolves through /etc/netns/<agent>/resolv.conf -> 10.77.0.1.
    for family in ["-4", "-6"] {
        let output = sandbox
            .command_in_agent(
                "curl",
                [family, "-sS", "--max-time", "5", "http://api.example.com/"],
            )
            .unwrap()
            .output()
            .unwrap();
        assert!(output.status.success(), "curl {family}: {output:?}");
        let body = String::from_utf8(output.stdout).unwrap();
        let expected = if family == "-4" {
            "hello from 203.0.113.10:80\n"
        } else {
            "hello from [2001:db8:1::10]:80\n"
        };
        assert_eq!(body, expected);
    }
}

#[test]
fn parallel_sandboxes_are_isolated() {
    require_root!();
    let one = Sandbox::new().unwrap();
    let two = Sandbox::new().unwrap();
    assert_ne!(one.agent_netns(), two.agent_netns());
    assert_ne!(one.cgroup_path(), two.cgroup_path());
    // Same addresses in both, different servers.
    let _w1 = one
        .start_world(&WorldConfig::new().tcp("203.0.113.10:7"))
        .unwrap();
    probe(&one, &["tcp", "203.0.113.10:7"]).assert_ok();
    // The same host in sandbox two's world has no server.
    two.add_world_host("203.0.113.10".parse().unwrap()).unwrap();
    probe(&two, &["tcp", "203.0.113.10:7"]).assert_error(probe_error::REFUSED);
}

/// What a sandbox leaves on the machine, for the teardown tests.
struct Footprint {
    netns: Vec<String>,
    cgroup: PathBuf,
    resolv_dir: PathBuf,
    scratch: PathBuf,
}

impl Footprint {
    fn of(sandbox: &Sandbox) -> Self {
        Self {
            netns: vec![
                sandbox.agent_netns().to_owned(),
                sandbox.world_netns().to_owned(),
            ],
            cgroup: sandbox.cgroup_path().to_owned(),
            resolv_dir: Path::new("/etc/netns").join(sandbox.agent_netns()),
            scratch: sandbox.scratch_dir().to_owned(),
        }
    }

    #[track_caller]
    fn assert_present(&self) {
        let listed = netns_list();
        for ns in &self.netns {
            assert!(listed.contains(ns), "{ns} missing from {listed:?}");
        }
        assert!(self.cgroup.is_dir());
        assert!(self.resolv_dir.join("resolv.conf").is_file());
        assert!(self.scratch.is_dir());
    }

    #[track_caller]
    fn assert_gone(&self) {
        let listed = netns_list();
        for ns in &self.netns {
            assert!(!listed.contains(ns), "{ns} still in {listed:?}");
        }
        assert!(
            !self.cgroup.exists(),
            "{} still exists",
            self.cgroup.display()
        );
        assert!(
            !self.resolv_dir.exists(),
            "{} still exists",
            self.resolv_dir.display()
        );
        assert!(
            !self.scratch.exists(),
            "{} still exists",
            self.scratch.display()
        );
    }
}

fn netns_list() -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn drop_removes_everything_and_kills_leftovers() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let footprint = Footprint::of(&sandbox);
    footprint.assert_present();

    let world = sandbox.start_world(&basic_world()).unwrap();
    // A process left running in the cgroup, and a world server whose guard
    // is leaked: dropping the sandbox must kill both.
    let mut sleeper = sandbox
        .command_in_agent("sleep", ["600"])
        .unwrap()
        .spawn()
        .unwrap();
    std::mem::forget(world);
    assert!(!sandbox.cgroup_pids().is_empty());

    drop(sandbox);
    footprint.assert_gone();
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "sleep should have been killed: {status}");
}

#[test]
fn drop_cleans_up_after_a_panic() {
    require_root!();
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let sandbox = Sandbox::new().unwrap();
        let _world = sandbox.start_world(&basic_world()).unwrap();
        tx.send(Footprint::of(&sandbox)).unwrap();
        panic!("deliberate panic while the sandbox is alive");
    })
    .join();
    assert!(result.is_err(), "the thread should have panicked");
    rx.recv().unwrap().assert_gone();
}

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

#[test]
fn daemon_wrapper_drives_a_stand_in_daemon() {
    require_root!();
    assert!(
        Command::new("python3").arg("--version").output().is_ok(),
        "python3 is not installed (`cargo xtask setup` installs it)"
    );
    let sandbox = Sandbox::new().unwrap();
    let fake = sandbox.scratch_dir().join("openclaw-egress");
    std::fs::write(&fake, FAKE_DAEMON).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let daemon = sandbox.spawn_daemon(&fake).unwrap();
    assert!(daemon.socket().starts_with(sandbox.scratch_dir()));

    // It runs in the agent netns.
    let started = daemon
        .wait_for_log(|v| v["message"] == "starting", Duration::from_secs(5))
        .unwrap();
    let agent_ns = std::fs::metadata(Path::new("/run/netns").join(sandbox.agent_netns()))
        .unwrap()
        .ino();
    assert_eq!(started["netns"], format!("net:[{agent_ns}]"));
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

/// Attaches a cgroup_skb egress program that drops everything (`r0 = 0;
/// exit`, assembled by hand so this needs no BPF toolchain) to the sandbox
/// cgroup. It stays attached until the cgroup is removed.
fn attach_drop_all_egress(cgroup: &Path) -> std::io::Result<()> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
    const BPF_CGROUP_INET_EGRESS: u32 = 1;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    // mov64 r0, 0 ; exit
    let insns: [[u8; 8]; 2] = [[0xb7, 0, 0, 0, 0, 0, 0, 0], [0x95, 0, 0, 0, 0, 0, 0, 0]];
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_SKB.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[68..72].copy_from_slice(&BPF_CGROUP_INET_EGRESS.to_ne_bytes());
    // SAFETY: bpf(2) with a zeroed attr of the documented layout.
    let prog = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
    if prog < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let cgroup_dir = std::fs::File::open(cgroup)?;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cgroup_dir.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_INET_EGRESS.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, attr.as_ptr(), attr.len()) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the program fd we own; the attachment keeps it alive.
    unsafe { libc::close(prog as i32) };
    if rc < 0 { Err(err) } else { Ok(()) }
}

/// How a cgroup_skb egress drop looks to oce-probe on this kernel; the
/// end-to-end tests of the enforcer rely on it.
#[test]
fn probe_reports_a_cgroup_skb_drop() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();
    attach_drop_all_egress(sandbox.cgroup_path()).unwrap();

    // UDP: send(2) fails at once with EPERM.
    for args in [
        &["udp", "203.0.113.10:7", "--payload", "x"][..],
        &["dns", "10.77.0.1", "api.example.com"][..],
    ] {
        let outcome = probe(&sandbox, args);
        outcome.assert_error(probe_error::PERMISSION_DENIED);
        assert!(outcome.local_port().is_some(), "{outcome:?}");
    }
    // TCP: connect(2) does NOT fail with EPERM. The kernel ignores the
    // error of the first SYN (tcp_connect only reacts to ECONNREFUSED) and
    // keeps retransmitting, so a dropped connect looks like a timeout. The
    // local port is known all the same, to find the drop event.
    for args in [
        &["tcp", "203.0.113.10:7", "--timeout-ms", "300"][..],
        &["tcp", "[2001:db8:1::10]:7", "--timeout-ms", "300"][..],
        &[
            "dns",
            "10.77.0.1",
            "api.example.com",
            "--tcp",
            "--timeout-ms",
            "300",
        ][..],
    ] {
        let outcome = probe(&sandbox, args);
        outcome.assert_error(probe_error::TIMEOUT);
        assert!(outcome.local_port().is_some(), "{outcome:?}");
    }
    // Outside the cgroup nothing is dropped.
    sandbox
        .probe_outside_cgroup(&["tcp", "203.0.113.10:7"])
        .unwrap()
        .assert_ok();
}

#[test]
fn start_world_reports_why_it_failed() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let config = WorldConfig::new()
        .tcp("203.0.113.10:7")
        .tcp("203.0.113.10:7");
    let err = sandbox.start_world(&config).err().expect("a bind conflict");
    let text = format!("{err:#}");
    assert!(text.contains("binding TCP 203.0.113.10:7"), "{text}");
}

/// The inode of a named netns, as `/proc/<pid>/ns/net` names it.
fn netns_inode(name: &str) -> u64 {
    std::fs::metadata(Path::new("/run/netns").join(name))
        .unwrap()
        .ino()
}

#[test]
fn daemon_and_commands_run_where_asked() {
    require_root!();
    assert!(
        Command::new("python3").arg("--version").output().is_ok(),
        "python3 is not installed (`cargo xtask setup` installs it)"
    );
    let sandbox = Sandbox::new().unwrap();
    let fake = sandbox.scratch_dir().join("openclaw-egress");
    std::fs::write(&fake, FAKE_DAEMON).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

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

#[test]
fn resolve_connect_goes_from_each_answer_straight_to_a_connect() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let config = basic_world()
        .fresh_ips("fresh.example.com", "11.0.0.0/16")
        .fresh_tcp_port(443);
    let world = sandbox.start_world(&config).unwrap();

    let report: ResolveConnectReport = sandbox
        .probe_json(&[
            "resolve-connect",
            "10.77.0.1",
            "fresh.example.com",
            "443",
            "--count",
            "20",
        ])
        .unwrap();
    report.assert_all_ok();
    assert_eq!(report.count, 20);
    assert_eq!(report.distinct_addresses, 20, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
    assert!(report.max_connect_us > 0, "{report:?}");
    let asked = world
        .dns_queries()
        .iter()
        .filter(|q| q.name == "fresh.example.com.")
        .count();
    assert_eq!(asked, 20);

    // Failures are reported per round and stage: a name without address,
    // a world host without a server on the port (connection refused).
    let nxdomain: ResolveConnectReport = sandbox
        .probe_json(&[
            "resolve-connect",
            "10.77.0.1",
            "nope.example.com",
            "443",
            "--count",
            "2",
        ])
        .unwrap();
    assert_eq!(
        (nxdomain.lookups_ok, nxdomain.connects_ok),
        (0, 0),
        "{nxdomain:?}"
    );
    assert_eq!(nxdomain.failures.len(), 2, "{nxdomain:?}");
    assert_eq!(nxdomain.failures[1].round, 1);
    assert_eq!(nxdomain.failures[0].stage, "lookup");
    assert_eq!(nxdomain.failures[0].error, "no address (NXDOMAIN)");
    let refused: ResolveConnectReport = sandbox
        .probe_json(&["resolve-connect", "10.77.0.1", "api.example.com", "443"])
        .unwrap();
    assert_eq!(
        (refused.lookups_ok, refused.connects_ok),
        (1, 0),
        "{refused:?}"
    );
    let [failure] = &refused.failures[..] else {
        panic!("expected one failure, got {refused:?}");
    };
    assert_eq!(failure.stage, "connect");
    assert_eq!(failure.error, probe_error::REFUSED);
    assert_eq!(failure.addr, Some("203.0.113.10:443".parse().unwrap()));
    assert!(failure.local.is_some(), "{failure:?}");
}

#[test]
fn hold_keeps_one_connection_and_counts_its_rounds() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();

    let held: HoldReport = sandbox
        .probe_json(&[
            "hold",
            "203.0.113.10:7",
            "--seconds",
            "1",
            "--interval-ms",
            "100",
        ])
        .unwrap();
    held.assert_all_ok();
    // Rounds at 0, 100, ..., 1000 ms.
    assert_eq!(held.rounds_ok, 11, "{held:?}");
    assert!((1000..3000).contains(&held.elapsed_ms), "{held:?}");
    assert_eq!(held.target, Some("203.0.113.10:7".parse().unwrap()));
    assert_eq!(held.local.map(|a| a.ip()), Some(IpAddr::V4(AGENT_IPV4)));

    // With a DNS server, the target's name is looked up first.
    let looked_up: HoldReport = sandbox
        .probe_json(&[
            "hold",
            "api.example.com:7",
            "--dns-server",
            "10.77.0.1",
            "--seconds",
            "0.2",
            "--interval-ms",
            "100",
        ])
        .unwrap();
    looked_up.assert_all_ok();
    assert_eq!(looked_up.lookup_answers, ["203.0.113.10", "203.0.113.11"]);
    assert_eq!(looked_up.target, Some("203.0.113.10:7".parse().unwrap()));

    // A connection that never works says why.
    let refused: HoldReport = sandbox
        .probe_json(&["hold", "203.0.113.10:9", "--seconds", "1"])
        .unwrap();
    assert!(!refused.connected, "{refused:?}");
    assert_eq!(refused.first_error.as_deref(), Some("connect: refused"));
    assert_eq!(refused.rounds_ok, 0);
}

/// RetransSegs of the agent netns moves when a SYN has to be sent again,
/// and only then.
#[test]
fn agent_tcp_retransmits_count_a_dropped_syn() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();

    let before = sandbox.agent_tcp_retransmits().unwrap();
    probe(&sandbox, &["tcp", "203.0.113.10:7", "--send", "x"]).assert_ok();
    assert_eq!(sandbox.agent_tcp_retransmits().unwrap(), before);

    attach_drop_all_egress(sandbox.cgroup_path()).unwrap();
    // The first SYN is dropped; the retransmission timer (1 s) fires once
    // before the probe gives up at 1.5 s.
    probe(&sandbox, &["tcp", "203.0.113.10:7", "--timeout-ms", "1500"])
        .assert_error(probe_error::TIMEOUT);
    let after = sandbox.agent_tcp_retransmits().unwrap();
    assert!(after > before, "RetransSegs {before} -> {after}");
}

#[test]
fn child_cgroups_take_probes_and_go_with_the_sandbox() {
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let _world = sandbox.start_world(&basic_world()).unwrap();
    let child = sandbox.create_cgroup("pod-x").unwrap();
    assert_eq!(child, sandbox.cgroup_path().join("pod-x"));
    assert!(sandbox.create_cgroup("../escape").is_err());

    // A probe placed in the child cgroup, in the agent netns.
    let expected = format!("/{}/pod-x", sandbox.cgroup_relative());
    let inside = sandbox.probe_in_cgroup(&child, &["cgroup"]).unwrap();
    assert_eq!(inside.detail.as_deref(), Some(expected.as_str()));
    sandbox
        .probe_in_cgroup(&child, &["tcp", "203.0.113.10:7"])
        .unwrap()
        .assert_ok();
    let output = sandbox
        .command_in_cgroup(&child, "cat", ["/proc/self/cgroup"])
        .unwrap()
        .output()
        .unwrap();
    let cgroups = String::from_utf8(output.stdout).unwrap();
    assert!(
        cgroups.lines().any(|l| l == format!("0::{expected}")),
        "{cgroups}"
    );

    // A process left in the child: dropping the sandbox kills it and
    // removes both cgroups.
    let mut sleeper = sandbox
        .command_in_cgroup(&child, "sleep", ["600"])
        .unwrap()
        .spawn()
        .unwrap();
    let parent = sandbox.cgroup_path().to_path_buf();
    drop(sandbox);
    assert!(!child.exists() && !parent.exists(), "{}", child.display());
    assert!(!sleeper.wait().unwrap().success());
}

#[test]
fn fake_kube_api_lists_and_watches_the_pods_of_a_node() {
    use openclaw_egress_e2e::kube::{FakeKubeApi, running_pod};
    require_root!();
    let sandbox = Sandbox::new().unwrap();
    let listener = sandbox
        .bind_tcp_in_agent("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let api = FakeKubeApi::serve(listener).unwrap();
    api.apply_pod(running_pod("ns", "a", "uid-a", "n1", &[("app", "x")]));
    api.apply_pod(running_pod("ns", "b", "uid-b", "n2", &[("app", "x")]));
    // curl in the agent netns: the server listens on its loopback only.
    let get = |query: &str| -> serde_json::Value {
        let url = format!("http://{}/api/v1/pods?{query}", api.addr());
        let output = sandbox
            .command_in_agent_outside_cgroup("curl", ["-sS", "--max-time", "10", &url])
            .unwrap()
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        // A watch is one JSON object per line: wrap them in an array.
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        match &lines[..] {
            [one] if one["kind"] == "PodList" => one.clone(),
            _ => serde_json::Value::Array(lines),
        }
    };
    let list = get("fieldSelector=spec.nodeName%3Dn1");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list:#}");
    assert_eq!(items[0]["metadata"]["uid"], "uid-a");
    assert_eq!(items[0]["status"]["phase"], "Running");
    let version: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // A watch from the list's version sees what happened since, on n1 only,
    // and ends at its timeout.
    api.apply_pod(running_pod("ns", "a", "uid-a", "n1", &[("app", "y")]));
    assert!(api.delete_pod("ns", "b"));
    assert!(api.delete_pod("ns", "a"));
    assert!(!api.delete_pod("ns", "a"));
    let events = get(&format!(
        "watch=true&fieldSelector=spec.nodeName%3Dn1&resourceVersion={version}&timeoutSeconds=1"
    ));
    let kinds: Vec<(String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["object"]["metadata"]["labels"]["app"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("MODIFIED".to_owned(), "y".to_owned()),
            ("DELETED".to_owned(), "y".to_owned())
        ]
    );
    // Everything asked was recorded; other paths are 404s.
    let output = sandbox
        .command_in_agent_outside_cgroup(
            "curl",
            [
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &format!("http://{}/api/v1/namespaces", api.addr()),
            ],
        )
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "404");
    let requests = api.requests();
    assert_eq!(requests.len(), 3, "{requests:#?}");
    assert!(!requests[0].is_watch());
    assert_eq!(requests[0].node_selector(), Some("n1"));
    assert!(requests[1].is_watch());
    assert_eq!(api.open_watches(), 0);
    assert!(
        api.kubeconfig()
            .contains(&format!("server: http://{}", api.addr()))
    );
}
