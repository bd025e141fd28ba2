//! `daemon --flow-log`: each allowed connection is logged once, beside the
//! drop events and with their fields (one schema), naming the rule that
//! allowed it; past `--flow-log-rate` lines are counted, not logged; and
//! without the flag nothing allowed is logged.
//!
//! Root-only.

use crate::common;

use std::{collections::BTreeSet, time::Duration};

use common::{EVENT_TIMEOUT, POLICY, Rig, poll_until, skip_unless_root};
use openclaw_egress_e2e::{DropEvent, ResolveConnectReport, WorldConfig};

const NAMED: &str = "203.0.113.10:8443";
const DIRECT: &str = "203.0.113.20:9000";
const DENIED: &str = "203.0.113.30:9000";

fn world() -> WorldConfig {
    WorldConfig::new()
        .dns("10.77.0.1:53")
        .record("x.example.test", "203.0.113.10")
        .tcp(NAMED)
        .tcp(DIRECT)
        .tcp(DENIED)
}

fn rig(daemon_args: &[&str]) -> Rig {
    let rig = Rig::start_with_args(&world(), daemon_args);
    let policy = rig
        .policy()
        .fqdn("x.example.test", &["8443/tcp"])
        .cidr("203.0.113.20/32", &["9000/tcp"]);
    rig.apply(&policy, "flows.yaml");
    rig
}

/// Two connections to the named server, one to the CIDR rule's, one denied.
fn connect(rig: &Rig) {
    let report: ResolveConnectReport = rig.probe_json(&[
        "resolve-connect",
        "10.77.0.1",
        "x.example.test",
        "8443",
        "--count",
        "2",
    ]);
    report.assert_all_ok();
    rig.assert_allowed(&["tcp", DIRECT]);
    rig.assert_tcp_dropped(DENIED, "no_rule");
}

fn flow_lines(rig: &Rig) -> Vec<serde_json::Value> {
    rig.daemon
        .log_lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line.text).ok())
        .filter(|v| DropEvent::from_flow_log_line(v).is_some())
        .collect()
}

/// The keys of a log line's fields, but the message.
fn field_keys(line: &serde_json::Value) -> BTreeSet<String> {
    line.as_object()
        .unwrap()
        .keys()
        .filter(|key| !matches!(key.as_str(), "message" | "level" | "target" | "timestamp"))
        .cloned()
        .collect()
}

#[test]
fn each_allowed_connection_is_logged_once_with_its_rule() {
    if skip_unless_root() {
        return;
    }
    let rig = rig(&["--flow-log"]);
    connect(&rig);
    poll_until("three allowed flows logged", EVENT_TIMEOUT, || {
        let lines = flow_lines(&rig);
        if lines.len() >= 3 {
            Ok(())
        } else {
            Err(format!("{lines:#?}"))
        }
    });
    // Nothing more comes: one line per connection, not per packet.
    std::thread::sleep(Duration::from_millis(500));
    let lines = flow_lines(&rig);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let flows: Vec<DropEvent> = lines
        .iter()
        .map(|line| DropEvent::from_flow_log_line(line).unwrap())
        .collect();
    let mut seen: Vec<(String, u16, String)> = flows
        .iter()
        .map(|flow| (flow.dst.clone(), flow.dst_port, flow.rule.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "203.0.113.10".to_string(),
                8443,
                "x.example.test".to_string()
            ),
            (
                "203.0.113.10".to_string(),
                8443,
                "x.example.test".to_string()
            ),
            (
                "203.0.113.20".to_string(),
                9000,
                "203.0.113.20/32".to_string()
            ),
        ]
    );
    for flow in &flows {
        assert_eq!(flow.policy, POLICY);
        assert_eq!(flow.verdict, "allowed");
        assert_eq!(flow.reason, "allowed");
        assert_eq!(flow.proto, "tcp");
        assert_eq!(flow.stage, "packet");
        assert_ne!(flow.cgroup_id, 0);
    }
    // One schema: a drop line has exactly the same fields.
    let drop = rig
        .daemon
        .wait_for_log(
            |v| DropEvent::from_log_line(v).is_some_and(|e| e.dst_port == 9000),
            EVENT_TIMEOUT,
        )
        .unwrap();
    assert_eq!(field_keys(&drop), field_keys(&lines[0]));
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[0]["message"], "connection allowed");
}

#[test]
fn past_the_rate_allowed_flows_are_counted_not_logged() {
    if skip_unless_root() {
        return;
    }
    let rig = rig(&["--flow-log", "--flow-log-rate", "1"]);
    let report: ResolveConnectReport = rig.probe_json(&[
        "resolve-connect",
        "10.77.0.1",
        "x.example.test",
        "8443",
        "--count",
        "6",
    ]);
    report.assert_all_ok();
    let suppressed = poll_until("suppressed flows counted", EVENT_TIMEOUT, || {
        let suppressed = rig
            .metrics()
            .sum("openclaw_egress_flow_log_suppressed_total", &[]);
        if suppressed >= 4 {
            Ok(suppressed)
        } else {
            Err(format!("{suppressed} suppressed"))
        }
    });
    let logged = flow_lines(&rig).len() as u64;
    assert_eq!(
        logged + suppressed,
        6,
        "logged {logged}, suppressed {suppressed}"
    );
}

#[test]
fn without_the_flag_nothing_allowed_is_logged() {
    if skip_unless_root() {
        return;
    }
    let rig = rig(&[]);
    connect(&rig);
    rig.daemon
        .wait_for_drop_event(|e| e.dst_port == 9000, EVENT_TIMEOUT)
        .unwrap();
    assert!(flow_lines(&rig).is_empty());
    let metrics = rig.daemon.metrics_text().unwrap();
    assert!(!metrics.contains("openclaw_egress_flow_log_suppressed_total"));
}
