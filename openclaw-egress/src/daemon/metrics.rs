//! Prometheus metrics, computed at scrape time from the kernel's per-CPU
//! counters (so they count every drop, including those whose ring-buffer
//! event was lost) plus the counters of instances replaced earlier.

use std::sync::Weak;

use openclaw_egress_common::{Direction, DropReason, Verdict, dns::DnsStat};
use prometheus::{
    IntCounterVec, IntGaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::{Counts, Daemon, active::mode_name};

/// Fresh metric vectors, filled on every scrape: a removed policy's series
/// disappear instead of lingering with stale values.
struct Families {
    drops: IntCounterVec,
    audited: IntCounterVec,
    lost: IntCounterVec,
    learned: IntGaugeVec,
    info: IntGaugeVec,
    queries: IntCounterVec,
    answers: IntCounterVec,
    learned_total: IntCounterVec,
    refused: IntCounterVec,
    resolutions: IntCounterVec,
    memory: IntGaugeVec,
    gate_held: IntCounterVec,
    gate_armed: IntGaugeVec,
    flow_log_suppressed: IntCounterVec,
}

impl Families {
    fn new() -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        Self {
            drops: counter(
                "openclaw_egress_drops_total",
                "Packets dropped by policy, reason and direction.",
                &["policy", "reason", "direction"],
            ),
            audited: counter(
                "openclaw_egress_audit_would_drop_total",
                "Packets an audit-mode policy let through but would have dropped.",
                &["policy", "reason", "direction"],
            ),
            lost: counter(
                "openclaw_egress_ringbuf_lost_events_total",
                "Drop events that did not fit in the ring buffer (the drop itself is still counted).",
                &["policy"],
            ),
            learned: gauge(
                "openclaw_egress_learned_ips",
                "Addresses currently allowed because an allowed name resolved to them.",
                &["policy"],
            ),
            info: gauge(
                "openclaw_egress_policy_info",
                "Applied policies (always 1).",
                &["policy", "mode"],
            ),
            queries: counter(
                "openclaw_egress_dns_queries_total",
                "DNS queries from the workload, by whether a rule allows the name.",
                &["policy", "verdict"],
            ),
            answers: counter(
                "openclaw_egress_dns_answers_total",
                "DNS answers from the resolvers: parsed, unparsed, or unsolicited (answering no outstanding query of the workload; nothing learned).",
                &["policy", "result"],
            ),
            learned_total: counter(
                "openclaw_egress_dns_learned_addresses_total",
                "Addresses learned in the kernel from DNS answers.",
                &["policy"],
            ),
            refused: counter(
                "openclaw_egress_dns_refused_addresses_total",
                "Addresses from DNS not allowed: internal (rebinding protection), over maxIPsPerName (cap), over maxIPsPerPattern (pattern_cap), or no room left in the policy's map (full).",
                &["policy", "reason"],
            ),
            resolutions: counter(
                "openclaw_egress_dns_resolutions_total",
                "Resolutions of fqdn rules made by the daemon, by result.",
                &["policy", "result"],
            ),
            memory: gauge(
                "openclaw_egress_map_memory_bytes",
                "Kernel memory of the policy's maps, over all its workloads.",
                &["policy"],
            ),
            gate_held: counter(
                "openclaw_egress_pod_gate_held_packets_total",
                "Packets of new pods held by the pod gate until their policy was in force (DaemonSet mode).",
                &[],
            ),
            gate_armed: gauge(
                "openclaw_egress_pod_gate_armed",
                "1 while a selected pod is awaited and new pod cgroups are held until marked (DaemonSet mode).",
                &[],
            ),
            flow_log_suppressed: counter(
                "openclaw_egress_flow_log_suppressed_total",
                "Allowed connections not logged because of --flow-log-rate (only with --flow-log).",
                &[],
            ),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 14] {
        [
            &self.drops,
            &self.audited,
            &self.lost,
            &self.learned,
            &self.info,
            &self.queries,
            &self.answers,
            &self.learned_total,
            &self.refused,
            &self.resolutions,
            &self.memory,
            &self.gate_held,
            &self.gate_armed,
            &self.flow_log_suppressed,
        ]
    }
}

pub struct DaemonCollector {
    daemon: Weak<Daemon>,
    descs: Vec<Desc>,
}

impl DaemonCollector {
    pub fn new(daemon: Weak<Daemon>) -> Self {
        let families = Families::new();
        let descs = families
            .collectors()
            .iter()
            .flat_map(|collector| collector.desc().into_iter().cloned())
            .collect();
        Self { daemon, descs }
    }
}

impl Collector for DaemonCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(daemon) = self.daemon.upgrade() else {
            return Vec::new();
        };
        let families = Families::new();
        let retired = daemon.retired.lock().expect("retired lock").clone();
        for (name, active) in daemon.policies.read().expect("policies lock").iter() {
            let name = name.as_str();
            let mut counts = active.counts();
            counts.add(retired.get(name).unwrap_or(&Counts::default()));
            for direction in Direction::ALL {
                for reason in DropReason::ALL {
                    let labels = [name, reason.as_str(), direction.as_str()];
                    families
                        .drops
                        .with_label_values(&labels)
                        .inc_by(counts.drops(Verdict::Dropped, direction, reason));
                    families
                        .audited
                        .with_label_values(&labels)
                        .inc_by(counts.drops(Verdict::Audited, direction, reason));
                }
            }
            families
                .lost
                .with_label_values(&[name])
                .inc_by(counts.events_lost);
            families
                .learned
                .with_label_values(&[name])
                .set(i64::try_from(active.learned_ips()).unwrap_or(i64::MAX));
            families
                .info
                .with_label_values(&[name, mode_name(active.policy.mode)])
                .set(1);
            let kernel = |stat| counts.dns(stat);
            for (verdict, stat) in [
                ("allowed", DnsStat::QueriesAllowed),
                ("denied", DnsStat::QueriesDenied),
            ] {
                families
                    .queries
                    .with_label_values(&[name, verdict])
                    .inc_by(kernel(stat));
            }
            for (result, stat) in [
                ("parsed", DnsStat::AnswersParsed),
                ("unparsed", DnsStat::AnswersUnparsed),
                ("unsolicited", DnsStat::AnswersUnsolicited),
            ] {
                families
                    .answers
                    .with_label_values(&[name, result])
                    .inc_by(kernel(stat));
            }
            families
                .learned_total
                .with_label_values(&[name])
                .inc_by(kernel(DnsStat::AddressesLearned));

            // The daemon's own resolutions refuse addresses by the same rules.
            let names = active.names.lock().expect("names lock");
            let sum = |field: fn(&crate::fqdn::names::NameState) -> u64| {
                names.values().map(field).sum::<u64>()
            };
            families
                .refused
                .with_label_values(&[name, "internal"])
                .inc_by(
                    kernel(DnsStat::AddressesRefusedInternal) + sum(|state| state.refused_internal),
                );
            families
                .refused
                .with_label_values(&[name, "cap"])
                .inc_by(kernel(DnsStat::AddressesRefusedCap) + sum(|state| state.refused_cap));
            families
                .refused
                .with_label_values(&[name, "pattern_cap"])
                .inc_by(kernel(DnsStat::AddressesRefusedPatternCap));
            families
                .refused
                .with_label_values(&[name, "full"])
                .inc_by(kernel(DnsStat::AddressesRefusedFull));
            families
                .memory
                .with_label_values(&[name])
                .set(i64::try_from(active.memory()).unwrap_or(i64::MAX));
            families
                .resolutions
                .with_label_values(&[name, "ok"])
                .inc_by(sum(|state| state.resolutions_ok));
            families
                .resolutions
                .with_label_values(&[name, "error"])
                .inc_by(sum(|state| state.resolutions_failed));
        }
        let gate = daemon.datapath.pod_gate();
        families
            .gate_held
            .with_label_values::<&str>(&[])
            .inc_by(gate.held_packets());
        families
            .gate_armed
            .with_label_values::<&str>(&[])
            .set(i64::from(gate.is_armed()));
        if let Some(flow_log) = &daemon.flow_log {
            families
                .flow_log_suppressed
                .with_label_values::<&str>(&[])
                .inc_by(flow_log.suppressed());
        }
        families
            .collectors()
            .iter()
            .flat_map(|collector| collector.collect())
            .collect()
    }
}
