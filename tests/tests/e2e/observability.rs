//! What the enforcer reports about its drops: Prometheus counters (over the
//! API and over HTTP) that move by exactly the number of dropped packets,
//! and drop events (daemon log and `monitor --json`) with the right
//! 5-tuple.
//!
//! Root-only; skipped with a message otherwise.

use crate::common;

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    os::unix::fs::MetadataExt as _,
    process::Command,
    time::Duration,
};

use common::{Metrics, Monitor, POLICY, PolicyYaml, Rig, is_drop_event_from, skip_unless_root};
use openclaw_egress_e2e::{AGENT_IPV4, Daemon, WorldConfig, probe_error};
use serde_json::Value;

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .dns("[fd77::1]:53")
        // A resolver the policy does not list.
        .dns("203.0.113.53:53")
        .record("api.example.com", "203.0.113.10")
        .record("api.example.com", "2001:db8:1::10")
        .tcp("203.0.113.10:443")
        .udp("203.0.113.99:4000")
        .tcp("[2001:db8:1::99]:4001")
}

fn policy(rig: &Rig) -> PolicyYaml {
    PolicyYaml::for_sandbox(&rig.sandbox).fqdn("api.example.com", &["443/tcp"])
}

/// Every drops_total series whose value differs between the two scrapes,
/// with the difference.
fn drop_deltas(before: &Metrics, after: &Metrics) -> BTreeMap<(String, String, String), i128> {
    let (before, after) = (before.drop_series(), after.drop_series());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the set of drop series changed between scrapes"
    );
    after
        .iter()
        .map(|(key, value)| (key.clone(), i128::from(*value) - i128::from(before[key])))
        .filter(|(_, delta)| *delta != 0)
        .collect()
}

fn key(reason: &str) -> (String, String, String) {
    (POLICY.to_owned(), reason.to_owned(), "egress".to_owned())
}

#[test]
fn drop_counters_move_by_exactly_the_number_of_drops() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    rig.apply(&policy(&rig), "policy.yaml");

    let before = rig.metrics();
    // Every reason and direction is exported from the start, at 0.
    assert_eq!(before.drops(POLICY, "no_rule", "egress"), 0, "{before:#?}");
    assert_eq!(before.drops(POLICY, "dns_resolver", "egress"), 0);
    assert_eq!(
        before.value(
            "openclaw_egress_policy_info",
            &[("policy", POLICY), ("mode", "enforce")]
        ),
        Some(1.0)
    );

    // UDP drops are one packet each (send fails at once, nothing is
    // retransmitted), so the expected counts are exact.
    for i in 0..3 {
        let outcome = rig.probe(&["udp", "203.0.113.99:4000", "--payload", &format!("{i}")]);
        outcome.assert_error(probe_error::PERMISSION_DENIED);
    }
    for _ in 0..2 {
        let outcome = rig.probe(&["dns", "203.0.113.53", "api.example.com"]);
        outcome.assert_error(probe_error::PERMISSION_DENIED);
    }
    // Allowed traffic counts nothing.
    rig.assert_allowed(&["tcp", "203.0.113.10:443"]);
    rig.assert_allowed(&["dns", "10.77.0.1", "api.example.com"]);

    // Counters are read from the kernel at scrape time, so they are exact
    // at once; polling only guards against a slow scrape path.
    let expected = BTreeMap::from([(key("no_rule"), 3), (key("dns_resolver"), 2)]);
    let after = common::poll_until("drop counters", Duration::from_secs(5), || {
        let after = rig.metrics();
        let deltas = drop_deltas(&before, &after);
        if deltas == expected {
            Ok(after)
        } else {
            Err(format!("deltas {deltas:?}, expected {expected:?}"))
        }
    });
    // Nothing was counted as audited (an enforcing policy).
    for sample in after.series("openclaw_egress_audit_would_drop_total") {
        assert_eq!(sample.value, 0.0, "{sample:?}");
    }
    // status agrees with the counters.
    let status = rig.status_policies();
    let drops: BTreeMap<String, u64> = status[0]["drops"]
        .as_array()
        .expect("drops is a list")
        .iter()
        .map(|d| {
            assert_eq!(d["verdict"], "dropped", "{d}");
            assert_eq!(d["direction"], "egress", "{d}");
            (
                d["reason"].as_str().expect("reason").to_owned(),
                d["count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(
        drops,
        BTreeMap::from([("dns_resolver".to_owned(), 2), ("no_rule".to_owned(), 3)]),
        "{status:#?}"
    );

    // The HTTP endpoint serves the same metrics, with Prometheus's content
    // type. curl runs in the agent netns (where the daemon listens on
    // 127.0.0.1) but outside the cgroup, so the policy does not apply to it.
    let (head, body) = curl_metrics(&rig);
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Content-Type in {head}"));
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let http = Metrics::parse(&body).unwrap_or_else(|e| panic!("{e:#}\n{body}"));
    assert_eq!(http.names(), after.names());
    assert!(
        http.names().contains(common::DROPS_TOTAL),
        "{:?}",
        http.names()
    );
    assert_eq!(http.drop_series(), after.drop_series());
}

/// `GET /metrics` with curl from inside the agent netns, outside the
/// cgroup; returns the response head and body.
fn curl_metrics(rig: &Rig) -> (String, String) {
    let url = format!("http://{}/metrics", Daemon::METRICS_ADDR);
    let output = Command::new("ip")
        .args(["netns", "exec", rig.sandbox.agent_netns()])
        .args(["curl", "-sS", "--max-time", "10", "-D", "-", &url])
        .output()
        .unwrap_or_else(|e| panic!("running curl (is it installed?): {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl {url}: {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text}"));
    (head.to_owned(), body.to_owned())
}

/// Asserts the fields every drop event of this test shares, and the
/// 5-tuple.
/// What a drop event must say, besides the policy and the cgroup.
struct Expected {
    proto: &'static str,
    reason: &'static str,
    stage: &'static str,
    src: SocketAddr,
    dst: SocketAddr,
}

#[track_caller]
fn assert_event(event: &Value, expected: &Expected, cgroup_id: u64) {
    assert_eq!(event["policy"], POLICY, "{event}");
    assert_eq!(event["verdict"], "dropped", "{event}");
    assert_eq!(event["reason"], expected.reason, "{event}");
    assert_eq!(event["stage"], expected.stage, "{event}");
    assert_eq!(event["direction"], "egress", "{event}");
    assert_eq!(event["proto"], expected.proto, "{event}");
    assert_eq!(event["src"], expected.src.ip().to_string(), "{event}");
    assert_eq!(event["src_port"], expected.src.port(), "{event}");
    assert_eq!(event["dst"], expected.dst.ip().to_string(), "{event}");
    assert_eq!(event["dst_port"], expected.dst.port(), "{event}");
    assert_eq!(event["cgroup_id"], cgroup_id, "{event}");
}

#[test]
fn drop_events_carry_the_five_tuple_in_the_log_and_the_monitor() {
    if skip_unless_root() {
        return;
    }
    let rig = Rig::start(&world());
    rig.apply(&policy(&rig), "policy.yaml");
    // On cgroup v2 a cgroup's id is its directory's inode number.
    let cgroup_id = std::fs::metadata(rig.sandbox.cgroup_path())
        .expect("stat the sandbox cgroup")
        .ino();

    // The monitor only sees events published after it subscribed, and
    // says nothing when it has: send throw-away drops until one shows up.
    let mut monitor = Monitor::spawn(&rig.daemon).unwrap_or_else(|e| panic!("{e:#}"));
    common::poll_until("monitor subscribed", Duration::from_secs(20), || {
        let warmup = rig.probe(&["udp", "203.0.113.99:4000", "--payload", "warm-up"]);
        let local = warmup
            .local
            .ok_or("the warm-up probe had no local address")?;
        monitor
            .next_matching(
                |v| v["src_port"] == local.port(),
                Duration::from_millis(300),
            )
            .map(drop)
            .ok_or_else(|| format!("no event yet; monitor printed {:?}", monitor.seen()))
    });

    // UDP over IPv4 to an unlisted address and port: refused at connect(),
    // before any packet, so the source is the socket's bound address (the
    // probe binds the unspecified address first).
    let udp_dst: SocketAddr = "203.0.113.99:4000".parse().unwrap();
    let udp = rig.probe(&["udp", &udp_dst.to_string(), "--payload", "x"]);
    udp.assert_error(probe_error::PERMISSION_DENIED);
    let udp_src = udp.local.expect("the UDP probe's local address");
    assert_eq!(udp_src.ip(), Ipv4Addr::UNSPECIFIED);

    // A TCP connect over IPv6, refused the same way.
    let tcp_dst: SocketAddr = "[2001:db8:1::99]:4001".parse().unwrap();
    let tcp = rig.probe(&[
        "tcp",
        &tcp_dst.to_string(),
        "--timeout-ms",
        common::DROPPED_TCP_TIMEOUT_MS,
    ]);
    tcp.assert_error(probe_error::PERMISSION_DENIED);
    let tcp_src = tcp.local.expect("the TCP probe's local address");
    assert_eq!(tcp_src.ip(), Ipv6Addr::UNSPECIFIED);

    // A packet dropped by the packet hook: a DNS query for a name no rule
    // allows, from the agent's own address.
    let dns_dst: SocketAddr = "10.77.0.1:53".parse().unwrap();
    let dns = rig.probe(&["dns", "10.77.0.1", "evil.example", "--timeout-ms", "500"]);
    dns.assert_error(probe_error::PERMISSION_DENIED);
    let dns_src = dns.local.expect("the DNS probe's local address");
    assert_eq!(dns_src.ip(), AGENT_IPV4);

    let expected = [
        Expected {
            proto: "udp",
            reason: "no_rule",
            stage: "connect",
            src: udp_src,
            dst: udp_dst,
        },
        Expected {
            proto: "tcp",
            reason: "no_rule",
            stage: "connect",
            src: tcp_src,
            dst: tcp_dst,
        },
        Expected {
            proto: "udp",
            reason: "dns_denied",
            stage: "packet",
            src: dns_src,
            dst: dns_dst,
        },
    ];
    for expected in &expected {
        let Expected { proto, src, .. } = expected;
        // The daemon's JSON log line.
        let logged = rig.wait_for_drop_event(*src);
        assert_event(&logged, expected, cgroup_id);
        assert_eq!(logged["level"], "WARN", "{logged}");
        let name = if expected.reason == "dns_denied" {
            "evil.example"
        } else {
            ""
        };
        assert_eq!(logged["dns_name"], name, "{logged}");

        // The same event on the monitor stream (a FlowRecord).
        let streamed = monitor
            .next_matching(
                |v| is_drop_event_from_record(v, *src),
                common::EVENT_TIMEOUT,
            )
            .unwrap_or_else(|| {
                panic!(
                    "monitor --json did not show the {proto} drop from {src}; it printed {:#?}",
                    monitor.seen()
                )
            });
        assert_event(&streamed, expected, cgroup_id);
        let name = (!name.is_empty()).then(|| Value::from(name));
        assert_eq!(
            streamed["dns_name"],
            name.unwrap_or(Value::Null),
            "{streamed}"
        );
        // The log line carries the event's own time, not the logging time.
        assert_eq!(
            logged["event_time"], streamed["time"],
            "{logged}\n{streamed}"
        );
    }
}

/// Like [`is_drop_event_from`], for a `monitor --json` record (which has no
/// `target`).
fn is_drop_event_from_record(v: &Value, local: SocketAddr) -> bool {
    let mut tagged = v.clone();
    tagged["target"] = "openclaw_egress::drop".into();
    is_drop_event_from(&tagged, local)
}
