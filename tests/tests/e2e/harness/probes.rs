//! What oce-probe reports: a cgroup_skb drop as the enforcer's tests see
//! it, the long runs (`resolve-connect`, `hold`), and the agent's TCP
//! retransmission counter.

use std::{net::IpAddr, os::fd::AsRawFd as _, path::Path};

use openclaw_egress_e2e::{
    AGENT_IPV4, HoldReport, ResolveConnectReport, Sandbox, probe_error, skip_unless_root,
};

use super::{basic_world, probe};

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
    if skip_unless_root() {
        return;
    }
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
fn resolve_connect_goes_from_each_answer_straight_to_a_connect() {
    if skip_unless_root() {
        return;
    }
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
    if skip_unless_root() {
        return;
    }
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
    if skip_unless_root() {
        return;
    }
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
