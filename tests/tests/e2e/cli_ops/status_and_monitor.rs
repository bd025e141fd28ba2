//! `status` (text and `--json`) and `monitor` (human lines) on workloads, drops, names and five-tuples.

use super::*;

#[test]
fn status_and_monitor_show_workloads_drops_names_and_five_tuples() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    let source = rig.apply(
        &PolicyYaml::for_sandbox(&rig.sandbox)
            .fqdn("x.example.com", &["443/tcp"])
            .fqdn_pattern("*.pkg.test", &["443/tcp"]),
        "policy.yaml",
    );
    let lookup = rig.probe(&["dns", "10.77.0.1", "mirror.pkg.test"]);
    assert_eq!(lookup.answers, ["203.0.113.50"], "{lookup:?}");
    rig.assert_allowed(&["tcp", "203.0.113.50:443"]);
    rig.assert_udp_dropped(W_UDP, "no_rule");
    rig.assert_udp_dropped(W_UDP, "no_rule");
    rig.assert_dropped(
        &["dns", "10.77.0.1", "evil.example", "--timeout-ms", "500"],
        probe_error::PERMISSION_DENIED,
        "dns_denied",
    );

    // status --json: the policy, its workload, its drops by reason, its
    // names with their addresses and time left.
    let cgroup = rig.sandbox.cgroup_path().display().to_string();
    let policies = rig.status_policies();
    let [policy] = &policies[..] else {
        panic!("expected one policy: {policies:#?}");
    };
    assert_eq!(policy["name"], POLICY);
    assert_eq!(policy["mode"], "enforce");
    assert_eq!(policy["source"], source.display().to_string());
    assert_eq!(policy["cgroup"], cgroup.as_str());
    assert_eq!(
        policy["workloads"],
        serde_json::json!([format!("cgroup {cgroup}")])
    );
    assert_eq!(policy["rules"], 2);
    assert_eq!(policy["events_lost"], 0);
    let drops: BTreeMap<(String, String, String), u64> = policy["drops"]
        .as_array()
        .expect("drops")
        .iter()
        .map(|d| {
            (
                (
                    d["verdict"].as_str().unwrap().to_owned(),
                    d["direction"].as_str().unwrap().to_owned(),
                    d["reason"].as_str().unwrap().to_owned(),
                ),
                d["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let key = |reason: &str| ("dropped".to_owned(), "egress".to_owned(), reason.to_owned());
    assert_eq!(
        drops,
        BTreeMap::from([(key("no_rule"), 2), (key("dns_denied"), 1)]),
        "{policy:#}"
    );
    let name = |rule: &str| -> &Value {
        policy["names"]
            .as_array()
            .and_then(|names| names.iter().find(|n| n["name"] == rule))
            .unwrap_or_else(|| panic!("no name {rule:?} in {policy:#}"))
    };
    let addresses = |rule: &str| -> Vec<(String, u64)> {
        name(rule)["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["ip"].as_str().unwrap().to_owned(),
                    a["expires_in_secs"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // Resolved by the daemon, refreshed on a schedule.
    let x = addresses("x.example.com");
    assert!(
        x.len() == 1 && x[0].0 == "203.0.113.10" && x[0].1 > 0,
        "{x:?}"
    );
    assert!(
        name("x.example.com")["next_refresh_secs"]
            .as_u64()
            .is_some_and(|s| s > 0),
        "{policy:#}"
    );
    // Learned from the agent's lookup; never resolved by the daemon.
    let learned = addresses("*.pkg.test");
    assert!(
        learned.len() == 1 && learned[0].0 == "203.0.113.50" && learned[0].1 > 0,
        "{learned:?}"
    );
    assert_eq!(name("*.pkg.test")["next_refresh_secs"], Value::Null);

    // The same for people.
    let human = rig
        .daemon
        .cli_ok(&["status"])
        .unwrap_or_else(|e| panic!("status: {e:#}"));
    for expected in [
        format!("policy {POLICY} (enforce) from {}", source.display()),
        format!("attached to: cgroup {cgroup}"),
        "rules: 2".to_owned(),
        "dropped egress no_rule: 2".to_owned(),
        "dropped egress dns_denied: 1".to_owned(),
        "x.example.com (resolved again in ".to_owned(),
        "203.0.113.10 expires in ".to_owned(),
        "*.pkg.test (learned from DNS answers)".to_owned(),
        "203.0.113.50 expires in ".to_owned(),
    ] {
        assert!(human.contains(&expected), "{expected:?} not in:\n{human}");
    }

    // monitor: one line per drop, with the 5-tuple, the reason and the
    // policy (and the refused name for a DNS drop). It says nothing when it
    // has subscribed: warm up until a drop shows.
    let mut monitor = Monitor::spawn_human(&rig.daemon).unwrap_or_else(|e| panic!("{e:#}"));
    poll_until("monitor subscribed", Duration::from_secs(20), || {
        let local = rig
            .probe(&["udp", W_UDP, "--payload", "warm-up"])
            .local
            .ok_or("the warm-up probe had no local address")?;
        monitor
            .next_line_matching(
                |l| l.contains(&format!(":{} -> ", local.port())),
                Duration::from_millis(300),
            )
            .map(drop)
            .ok_or_else(|| format!("no line yet; monitor printed {:?}", monitor.seen()))
    });
    // `<time> dropped egress <proto> <src> -> <dst> <reason> policy=<p>[ name=<n> type=<t>]`
    let mut expect_line = |outcome: ProbeOutcome, proto: &str, rest: String| {
        let local: SocketAddr = outcome.local.expect("the probe's local address");
        let src = match local {
            SocketAddr::V4(_) => local.to_string(),
            SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        };
        let line = monitor
            .next_line_matching(|l| l.contains(&format!(" {src} -> ")), EVENT_TIMEOUT)
            .unwrap_or_else(|| {
                panic!(
                    "no monitor line for {src}; it printed {:#?}",
                    monitor.seen()
                )
            });
        let (time, after_time) = line.split_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(
            time.len() >= 20 && time.ends_with('Z') && time.contains('T'),
            "no RFC 3339 time first: {line}"
        );
        assert_eq!(
            after_time,
            format!("dropped egress {proto} {src} -> {rest}"),
            "monitor line {line:?}"
        );
    };
    // Refused at connect(): the socket is bound to the unspecified address
    // (the probe binds before connecting), and the line says where.
    let udp = rig.probe(&["udp", W_UDP, "--payload", "m"]);
    assert_eq!(
        udp.local.map(|l| l.ip()),
        Some(Ipv4Addr::UNSPECIFIED.into())
    );
    expect_line(
        udp,
        "udp",
        format!("{W_UDP} no_rule policy={POLICY} (refused at connect)"),
    );
    let tcp6 = rig.probe(&["tcp", W6_TCP, "--timeout-ms", DROPPED_TCP_TIMEOUT_MS]);
    assert_eq!(
        tcp6.local.map(|l| l.ip()),
        Some(Ipv6Addr::UNSPECIFIED.into())
    );
    expect_line(
        tcp6,
        "tcp",
        format!("{W6_TCP} no_rule policy={POLICY} (refused at connect)"),
    );
    let dns = rig.probe(&["dns", "10.77.0.1", "evil.example", "--timeout-ms", "500"]);
    expect_line(
        dns,
        "udp",
        format!("10.77.0.1:53 dns_denied policy={POLICY} name=evil.example type=A"),
    );
}
