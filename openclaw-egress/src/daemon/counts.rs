//! Counters of a datapath instance, kept when the instance goes away so that
//! Prometheus counters never go backwards across a policy swap.

use openclaw_egress_common::{Direction, DropReason, Verdict, dns::DnsStat, maps::counter_index};

use crate::datapath::{DnsStats, DropCounts, PolicyDatapath};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub drops: DropCounts,
    pub dns: DnsStats,
    pub events_lost: u64,
}

impl Counts {
    /// The instance's counters now (what cannot be read counts as zero, and is logged).
    pub fn of(datapath: &PolicyDatapath) -> Self {
        let report = |what: &str, error: &dyn std::fmt::Display| {
            tracing::error!("reading {what}: {error}");
        };
        Self {
            drops: datapath.drop_counts().unwrap_or_else(|error| {
                report("drop counters", &error);
                Vec::new()
            }),
            dns: datapath.dns_stats().unwrap_or_else(|error| {
                report("DNS counters", &error);
                Vec::new()
            }),
            events_lost: datapath.events_lost().unwrap_or(0),
        }
    }

    pub fn add(&mut self, other: &Counts) {
        add_all(&mut self.drops, &other.drops);
        add_all(&mut self.dns, &other.dns);
        self.events_lost += other.events_lost;
    }

    pub fn dns(&self, stat: DnsStat) -> u64 {
        self.dns.get(stat as usize).copied().unwrap_or(0)
    }

    pub fn drops(&self, verdict: Verdict, direction: Direction, reason: DropReason) -> u64 {
        self.drops
            .get(counter_index(verdict, direction, reason) as usize)
            .copied()
            .unwrap_or(0)
    }
}

fn add_all(mine: &mut Vec<u64>, theirs: &[u64]) {
    if mine.len() < theirs.len() {
        mine.resize(theirs.len(), 0);
    }
    for (mine, theirs) in mine.iter_mut().zip(theirs) {
        *mine += theirs;
    }
}
