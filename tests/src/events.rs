//! Drop events as the daemon logs them (`--log-format json`), typed.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

/// The `target` of the daemon's drop-event log lines.
pub const DROP_EVENT_TARGET: &str = "openclaw_egress::drop";
/// The `target` of the daemon's allowed-flow log lines (`--flow-log`), which
/// have the same fields.
pub const FLOW_EVENT_TARGET: &str = "openclaw_egress::flow";

/// One drop event (or, for an audit-mode policy, a would-be drop): a JSON
/// log line of target [`DROP_EVENT_TARGET`]. Unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DropEvent {
    pub policy: String,
    /// `dropped` or `audited`.
    pub verdict: String,
    /// `no_rule`, `expired`, `dns_resolver`, `dns_denied`, ...
    pub reason: String,
    /// `egress` or `ingress`.
    pub direction: String,
    /// `tcp`, `udp`, `icmp`, ...
    pub proto: String,
    /// Empty when the packet could not be parsed.
    pub src: String,
    pub src_port: u16,
    pub dst: String,
    pub dst_port: u16,
    /// 0 when unknown (TC programs see no socket).
    pub cgroup_id: u64,
    /// The refused DNS question for `dns_denied`; empty otherwise.
    #[serde(default)]
    pub dns_name: String,
    /// The TLS server name or HTTP Host a connection was refused for
    /// (`sni_denied`, `host_denied`); empty otherwise.
    #[serde(default)]
    pub server_name: String,
    /// `packet` (a packet was dropped) or `connect` (a connect()/sendmsg()
    /// was refused before any packet).
    #[serde(default)]
    pub stage: String,
    /// When the kernel saw the packet (RFC 3339).
    #[serde(default)]
    pub event_time: String,
    /// The question's type (`A`, `AAAA`, ...) with `dns_name`; empty otherwise.
    #[serde(default)]
    pub dns_type: String,
    /// The rule that allowed an allowed flow; empty otherwise.
    #[serde(default)]
    pub rule: String,
}

impl DropEvent {
    /// The event in a daemon log line, if the line is one.
    pub fn from_log_line(line: &serde_json::Value) -> Option<Self> {
        if line.get("target")? != DROP_EVENT_TARGET {
            return None;
        }
        serde_json::from_value(line.clone()).ok()
    }

    /// The allowed flow in a daemon log line (`--flow-log`), if the line is one.
    pub fn from_flow_log_line(line: &serde_json::Value) -> Option<Self> {
        if line.get("target")? != FLOW_EVENT_TARGET {
            return None;
        }
        serde_json::from_value(line.clone()).ok()
    }

    /// The packet's source address and port.
    pub fn src_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(
            self.src.parse::<IpAddr>().ok()?,
            self.src_port,
        ))
    }

    /// The packet's destination address and port.
    pub fn dst_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(
            self.dst.parse::<IpAddr>().ok()?,
            self.dst_port,
        ))
    }

    /// True if the packet came from the socket bound to `local`.
    pub fn is_from(&self, local: SocketAddr) -> bool {
        self.src_addr() == Some(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_drop_log_line_and_nothing_else() {
        let line = serde_json::json!({
            "timestamp": "2026-01-01T00:00:00Z", "level": "WARN",
            "message": "packet dropped", "target": DROP_EVENT_TARGET,
            "policy": "agent", "verdict": "dropped", "reason": "dns_denied",
            "direction": "egress", "proto": "udp", "src": "10.77.0.2",
            "src_port": 40000, "dst": "10.77.0.1", "dst_port": 53,
            "cgroup_id": 7, "dns_name": "x.attacker.example",
            "event_time": "2026-01-01T00:00:00.000Z"
        });
        let event = DropEvent::from_log_line(&line).expect("a drop event");
        assert_eq!(event.dns_name, "x.attacker.example");
        assert!(event.is_from("10.77.0.2:40000".parse().unwrap()));
        assert_eq!(event.dst_addr(), Some("10.77.0.1:53".parse().unwrap()));
        let other = serde_json::json!({"target": "openclaw_egress::daemon", "message": "x"});
        assert_eq!(DropEvent::from_log_line(&other), None);
    }
}
