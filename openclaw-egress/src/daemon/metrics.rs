//! Prometheus metrics, computed at scrape time from the kernel's per-CPU
//! counters (so they count every drop, including those whose ring-buffer
//! event was lost) plus the counters of instances replaced earlier.

use std::sync::Weak;

use openclaw_egress_common::{Direction, DropReason, Verdict};
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
    resolutions: IntCounterVec,
    refused: IntCounterVec,
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
            resolutions: counter(
                "openclaw_egress_dns_resolutions_total",
                "Resolutions of fqdn rules made by the daemon, by result.",
                &["policy", "result"],
            ),
            refused: counter(
                "openclaw_egress_dns_refused_addresses_total",
                "Resolved addresses refused by rebinding protection or maxIPsPerName.",
                &["policy"],
            ),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 7] {
        [
            &self.drops,
            &self.audited,
            &self.lost,
            &self.learned,
            &self.info,
            &self.resolutions,
            &self.refused,
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
            let mut counts = active.counts();
            counts.add(retired.get(name).unwrap_or(&Counts::default()));
            for direction in Direction::ALL {
                for reason in DropReason::ALL {
                    let labels = [name.as_str(), reason.as_str(), direction.as_str()];
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
                .with_label_values(&[name.as_str(), mode_name(active.policy.mode)])
                .set(1);
            let names = active.names.lock().expect("names lock");
            let (ok, failed, refused) = names.values().fold((0, 0, 0), |acc, state| {
                (
                    acc.0 + state.resolutions_ok,
                    acc.1 + state.resolutions_failed,
                    acc.2 + state.refused_addresses,
                )
            });
            families
                .resolutions
                .with_label_values(&[name.as_str(), "ok"])
                .inc_by(ok);
            families
                .resolutions
                .with_label_values(&[name.as_str(), "error"])
                .inc_by(failed);
            families.refused.with_label_values(&[name]).inc_by(refused);
        }
        families
            .collectors()
            .iter()
            .flat_map(|collector| collector.collect())
            .collect()
    }
}
