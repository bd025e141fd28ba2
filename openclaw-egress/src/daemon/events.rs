//! Reading drop events from the datapath's ring buffer (every workload's:
//! each event names the slot of the policy that judged it), and what a
//! policy records beside them: allowed connections (logged under
//! `--flow-log`), DNS questions and answers (for learners only).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, RwLock},
    time::SystemTime,
};

use aya::maps::{MapData, RingBuf};
use openclaw_egress_common::{
    Direction, DropEvent, DropReason, Stage, Verdict, addr::as_ipv4, proto,
};
use tokio::{io::unix::AsyncFd, sync::broadcast};

use super::flow_log::FlowLog;
use crate::{
    api::{FlowRecord, dns_types},
    clock, netlink,
    policy::{EgressRule, Target},
};

/// Which policy each slot holds, for naming the policy (and the rule) of an
/// event. A slot's entry stays until the slot holds another policy, so
/// that events still in the ring when a version is retired keep their name.
#[derive(Clone, Default)]
pub struct SlotNames(Arc<RwLock<HashMap<u32, SlotPolicy>>>);

/// The policy in a slot: its name and its rules' targets, by rule index.
#[derive(Clone, Default)]
pub struct SlotPolicy {
    pub name: String,
    pub rules: Arc<[String]>,
}

impl SlotPolicy {
    pub fn new(name: &str, rules: &[EgressRule]) -> Self {
        Self {
            name: name.to_string(),
            rules: rules.iter().map(|rule| target_text(&rule.target)).collect(),
        }
    }

    fn rule(&self, index: u32) -> Option<String> {
        self.rules.get(usize::try_from(index).ok()?).cloned()
    }
}

fn target_text(target: &Target) -> String {
    match target {
        Target::Fqdn(name) => name.to_string(),
        Target::Pattern(pattern) => pattern.to_string(),
        Target::Cidr(cidr) => cidr.to_string(),
    }
}

impl SlotNames {
    pub fn name(&self, slot: u32, policy: SlotPolicy) {
        self.0
            .write()
            .expect("slot names lock")
            .insert(slot, policy);
    }

    /// The policy of `slot` (no name for slot 0: a workload with no policy
    /// in force, or one unknown).
    pub fn of(&self, slot: u32) -> SlotPolicy {
        self.0
            .read()
            .expect("slot names lock")
            .get(&slot)
            .cloned()
            .unwrap_or_default()
    }
}

/// Turns a kernel record into what people and SIEMs see.
pub fn record(event: &DropEvent, policy: &SlotPolicy) -> FlowRecord {
    let ip = |addr: &[u8; 16]| match event.family {
        4 => as_ipv4(addr).map(IpAddr::from),
        6 => Some(IpAddr::from(*addr)),
        _ => None,
    };
    let name_len = usize::from(event.dns_name_len).min(event.dns_name.len());
    let verdict = Verdict::from_u8(event.verdict);
    let allowed = verdict == Some(Verdict::Allowed);
    let about_server_name =
        !allowed && DropReason::from_u8(event.reason).is_some_and(DropReason::is_about_server_name);
    let reason = if allowed {
        "allowed"
    } else {
        DropReason::from_u8(event.reason).map_or("unknown", DropReason::as_str)
    };
    FlowRecord {
        time: rfc3339(clock::wall_time_of(event.timestamp_ns)),
        policy: policy.name.clone(),
        verdict: verdict.map_or("unknown", Verdict::as_str).to_string(),
        reason: reason.to_string(),
        direction: Direction::from_u8(event.direction)
            .map_or("unknown", Direction::as_str)
            .to_string(),
        stage: Stage::from_u8(event.stage)
            .map_or("unknown", Stage::as_str)
            .to_string(),
        proto: protocol_name(event.proto),
        src: ip(&event.src_addr),
        src_port: event.src_port,
        dst: ip(&event.dst_addr),
        dst_port: event.dst_port,
        cgroup_id: event.cgroup_id,
        dns_name: (name_len > 0 && !about_server_name)
            .then(|| String::from_utf8_lossy(&event.dns_name[..name_len]).into_owned()),
        dns_type: (name_len > 0 && event.dns_type != 0).then(|| dns_types::name(event.dns_type)),
        server_name: (name_len > 0 && about_server_name)
            .then(|| String::from_utf8_lossy(&event.dns_name[..name_len]).into_owned()),
        rule: allowed.then(|| policy.rule(event.rule)).flatten(),
    }
}

/// The socket to destroy for a drop event, if it refused a connection for
/// the name it carried on a cgroup hook: (local end, remote end, cookie).
/// Destroying it resets the connection at once, where the program could
/// only drop its packets (TC hooks answer with a reset themselves).
pub fn socket_to_reset(event: &DropEvent) -> Option<(SocketAddr, SocketAddr, u64)> {
    let reason = DropReason::from_u8(event.reason)?;
    let refused = reason.is_about_server_name()
        && event.stage == Stage::Packet as u8
        && event.verdict == Verdict::Dropped as u8
        && event.proto == proto::TCP
        && event.socket_cookie != 0;
    if !refused {
        return None;
    }
    let ip = |addr: &[u8; 16]| match event.family {
        4 => as_ipv4(addr).map(IpAddr::from),
        6 => Some(IpAddr::from(*addr)),
        _ => None,
    };
    Some((
        SocketAddr::new(ip(&event.src_addr)?, event.src_port),
        SocketAddr::new(ip(&event.dst_addr)?, event.dst_port),
        event.socket_cookie,
    ))
}

/// Destroys the socket of a refused connection (see [`socket_to_reset`]).
fn reset(local: SocketAddr, remote: SocketAddr, cookie: u64) {
    tokio::task::spawn_blocking(move || {
        match netlink::destroy_tcp_socket(local, remote, cookie) {
            Ok(()) => tracing::debug!(%local, %remote, "refused connection reset"),
            // Closed already, or in another network namespace (a pod whose
            // veth is not enforced): its packets stay dropped.
            Err(error) => {
                tracing::debug!(%local, %remote, "cannot reset refused connection: {error}")
            }
        }
    });
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn protocol_name(number: u8) -> String {
    match number {
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ICMP => "icmp".into(),
        proto::ICMPV6 => "icmpv6".into(),
        other => other.to_string(),
    }
}

/// Forwards every event of `ring` to `subscribers`, and drops (and allowed
/// flows, under `--flow-log`) to the log, for as long as the daemon runs.
pub async fn forward(
    ring: RingBuf<MapData>,
    names: SlotNames,
    flow_log: Option<Arc<FlowLog>>,
    subscribers: broadcast::Sender<FlowRecord>,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its map fd, which stays open and unchanged
    // for as long as the RingBuf lives, i.e. as long as the AsyncFd owning it.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|error| error.into_parts().1)?;
    loop {
        let mut guard = ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if item.len() < size_of::<DropEvent>() {
                tracing::error!(len = item.len(), "short drop event on the ring buffer");
                continue;
            }
            // SAFETY: the kernel wrote a whole DropEvent (length checked
            // above); read_unaligned because ring buffer records are only
            // 8-byte aligned.
            let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DropEvent>()) };
            if let Some((local, remote, cookie)) = socket_to_reset(&event) {
                reset(local, remote, cookie);
            }
            let record = record(&event, &names.of(event.slot));
            if event.verdict != Verdict::Allowed as u8 {
                log_drop(&record);
            } else if event.stage == Stage::Packet as u8
                && let Some(flow_log) = &flow_log
                && flow_log.admit()
            {
                log_allowed(&record);
            }
            // No subscribers is the normal case; nothing to do then.
            let _ = subscribers.send(record);
        }
        guard.clear_ready();
    }
}

/// The fields of a flow's log line: one schema for dropped, audited and
/// allowed flows (the README lists them).
macro_rules! log_flow {
    ($level:ident, $target:literal, $record:expr, $message:expr) => {{
        let record = $record;
        tracing::$level!(
            target: $target,
            policy = %record.policy,
            verdict = %record.verdict,
            reason = %record.reason,
            direction = %record.direction,
            stage = %record.stage,
            proto = %record.proto,
            src = %record.src.map(|ip| ip.to_string()).unwrap_or_default(),
            src_port = record.src_port,
            dst = %record.dst.map(|ip| ip.to_string()).unwrap_or_default(),
            dst_port = record.dst_port,
            cgroup_id = record.cgroup_id,
            dns_name = record.dns_name.as_deref().unwrap_or(""),
            dns_type = record.dns_type.as_deref().unwrap_or(""),
            server_name = record.server_name.as_deref().unwrap_or(""),
            rule = record.rule.as_deref().unwrap_or(""),
            event_time = %record.time,
            "{}",
            $message,
        )
    }};
}

fn log_drop(record: &FlowRecord) {
    log_flow!(
        warn,
        "openclaw_egress::drop",
        record,
        if record.verdict == "audited" {
            "would drop (audit)"
        } else {
            "packet dropped"
        }
    );
}

fn log_allowed(record: &FlowRecord) {
    log_flow!(info, "openclaw_egress::flow", record, "connection allowed");
}

#[cfg(test)]
mod tests {
    use openclaw_egress_common::{DNS_NAME_MAX, ipv4_mapped};

    use super::*;

    fn event() -> DropEvent {
        DropEvent {
            timestamp_ns: clock::monotonic_ns(),
            cgroup_id: 42,
            src_addr: ipv4_mapped([10, 77, 0, 2]),
            dst_addr: ipv4_mapped([203, 0, 113, 20]),
            src_port: 40000,
            dst_port: 443,
            proto: proto::TCP,
            family: 4,
            reason: DropReason::NoRule as u8,
            direction: Direction::Egress as u8,
            verdict: Verdict::Dropped as u8,
            stage: 0,
            dns_name_len: 0,
            dns_name: [0; DNS_NAME_MAX],
            _pad2: 0,
            slot: 1,
            socket_cookie: 0,
            rule: openclaw_egress_common::NO_RULE,
            dns_type: 0,
            _pad3: [0; 2],
        }
    }

    fn agent() -> SlotPolicy {
        SlotPolicy {
            name: "agent".into(),
            rules: vec!["api.trusted.test".to_string(), "*.pkg.test".to_string()].into(),
        }
    }

    #[test]
    fn ipv4_event_becomes_a_record() {
        let record = record(&event(), &agent());
        assert_eq!(record.policy, "agent");
        assert_eq!(record.verdict, "dropped");
        assert_eq!(record.reason, "no_rule");
        assert_eq!(record.direction, "egress");
        assert_eq!(record.proto, "tcp");
        assert_eq!(record.src, Some("10.77.0.2".parse().unwrap()));
        assert_eq!(record.src_port, 40000);
        assert_eq!(record.dst, Some("203.0.113.20".parse().unwrap()));
        assert_eq!(record.dst_port, 443);
        assert_eq!(record.cgroup_id, 42);
        assert_eq!(record.dns_name, None);
        assert_eq!(
            record.to_string(),
            format!(
                "{} dropped egress tcp 10.77.0.2:40000 -> 203.0.113.20:443 no_rule policy=agent",
                record.time
            )
        );
    }

    #[test]
    fn ipv6_event_with_dns_name() {
        let mut event = event();
        event.family = 6;
        event.proto = proto::UDP;
        event.src_addr = "fd77::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        event.dst_addr = "fd77::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        event.dst_port = 53;
        event.reason = DropReason::DnsDenied as u8;
        event.verdict = Verdict::Audited as u8;
        event.dns_name[..9].copy_from_slice(b"evil.test");
        event.dns_name_len = 9;
        event.dns_type = 28;
        let record = record(&event, &agent());
        assert_eq!(record.dst, Some("fd77::1".parse().unwrap()));
        assert_eq!(record.dns_name.as_deref(), Some("evil.test"));
        assert_eq!(record.dns_type.as_deref(), Some("AAAA"));
        assert_eq!(record.rule, None);
        assert!(
            record
                .to_string()
                .ends_with("audited egress udp [fd77::2]:40000 -> [fd77::1]:53 dns_denied policy=agent name=evil.test type=AAAA"),
            "{record}"
        );
    }

    #[test]
    fn allowed_flow_names_its_rule() {
        let mut event = event();
        event.verdict = Verdict::Allowed as u8;
        event.reason = u8::MAX;
        event.rule = 1;
        let allowed = record(&event, &agent());
        assert_eq!(allowed.verdict, "allowed");
        assert_eq!(allowed.reason, "allowed");
        assert_eq!(allowed.rule.as_deref(), Some("*.pkg.test"));
        event.rule = openclaw_egress_common::NO_RULE;
        assert_eq!(record(&event, &agent()).rule, None);
    }
}
