//! A policy that is applied: its datapath instance and the tasks serving it.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::task::AbortHandle;

use super::{learned, names::Names, targets::Targets};
use crate::{
    api::{DropCount, NameStatus, PolicyStatus},
    datapath::{DnsStats, DropCounts, PolicyDatapath},
    events,
    policy::{Mode, Policy},
};
use openclaw_egress_common::{
    AllowKey, AllowValue, Direction, DropReason, Verdict, dns::DnsStat, maps::counter_index,
};

/// Counters of a datapath instance, kept when the instance goes away so that
/// Prometheus counters never go backwards across a policy swap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub drops: DropCounts,
    pub dns: DnsStats,
    pub events_lost: u64,
}

impl Counts {
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

pub struct ActivePolicy {
    pub policy: Arc<Policy>,
    pub source: String,
    pub targets: Targets,
    pub applied_at: SystemTime,
    /// `None` once retired (detached and unloaded).
    pub datapath: Arc<Mutex<Option<PolicyDatapath>>>,
    pub names: Names,
    pub tasks: Vec<AbortHandle>,
}

impl ActivePolicy {
    /// Live counters of the instance (zero once retired).
    pub fn counts(&self) -> Counts {
        let datapath = self.datapath.lock().expect("datapath lock");
        let Some(datapath) = datapath.as_ref() else {
            return Counts::default();
        };
        let report = |what: &str, error: &dyn std::fmt::Display| {
            tracing::error!(policy = %self.policy.name, "reading {what}: {error}");
        };
        Counts {
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

    /// Stops the tasks, detaches the programs and frees the maps; returns the
    /// final counters.
    pub fn retire(&self) -> Counts {
        for task in &self.tasks {
            task.abort();
        }
        let counts = self.counts();
        // Dropping the datapath drops the cgroup links: detached right here,
        // not whenever the aborted tasks happen to be dropped.
        drop(self.datapath.lock().expect("datapath lock").take());
        counts
    }

    /// Every entry of the instance's `ALLOW` map (none once retired).
    pub fn allow_entries(&self) -> Vec<(AllowKey, AllowValue)> {
        self.datapath
            .lock()
            .expect("datapath lock")
            .as_ref()
            .map(PolicyDatapath::allow_entries)
            .unwrap_or_default()
    }

    /// Distinct addresses currently allowed through names (resolved or learned).
    pub fn learned_ips(&self) -> usize {
        learned::live_addresses(&self.allow_entries())
    }

    /// The name rules and the addresses each currently allows.
    pub fn name_status(&self) -> Vec<NameStatus> {
        let entries = self.allow_entries();
        learned::name_status(
            &self.policy,
            &entries,
            &self.names.lock().expect("names lock"),
        )
    }

    pub fn status(&self, retired: &Counts) -> PolicyStatus {
        let mut counts = self.counts();
        counts.add(retired);
        let mut drops = Vec::new();
        for verdict in Verdict::ALL {
            for direction in Direction::ALL {
                for reason in DropReason::ALL {
                    let count = counts.drops(verdict, direction, reason);
                    if count > 0 {
                        drops.push(DropCount {
                            verdict: verdict.as_str().into(),
                            direction: direction.as_str().into(),
                            reason: reason.as_str().into(),
                            count,
                        });
                    }
                }
            }
        }
        PolicyStatus {
            name: self.policy.name.clone(),
            mode: mode_name(self.policy.mode).into(),
            source: self.source.clone(),
            cgroup: self.targets.cgroup.clone(),
            interfaces: self.targets.interfaces.clone(),
            applied_at: events::rfc3339(self.applied_at),
            rules: self.policy.egress.len(),
            drops,
            events_lost: counts.events_lost,
            names: self.name_status(),
        }
    }
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}
