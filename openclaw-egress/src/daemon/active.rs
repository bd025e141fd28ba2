//! A policy that is applied: its datapath instance and the tasks serving it.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::task::AbortHandle;

use super::names::{self, Names};
use crate::{
    api::{DropCount, PolicyStatus},
    clock,
    datapath::{DropCounts, PolicyDatapath},
    events,
    policy::{Mode, Policy},
};
use openclaw_egress_common::{Direction, DropReason, Verdict, maps::counter_index};

/// Counters of a datapath instance, kept when the instance goes away so that
/// Prometheus counters never go backwards across a policy swap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub drops: DropCounts,
    pub events_lost: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        if self.drops.len() < other.drops.len() {
            self.drops.resize(other.drops.len(), 0);
        }
        for (mine, theirs) in self.drops.iter_mut().zip(&other.drops) {
            *mine += theirs;
        }
        self.events_lost += other.events_lost;
    }

    pub fn drops(&self, verdict: Verdict, direction: Direction, reason: DropReason) -> u64 {
        self.drops
            .get(counter_index(verdict, direction, reason) as usize)
            .copied()
            .unwrap_or(0)
    }
}

pub struct ActivePolicy {
    pub policy: Arc<Policy>,
    pub source: String,
    pub cgroup: PathBuf,
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
        Counts {
            drops: datapath.drop_counts().unwrap_or_else(|error| {
                tracing::error!(policy = %self.policy.name, "reading drop counters: {error}");
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

    /// Addresses currently allowed through resolved names.
    pub fn learned_ips(&self) -> usize {
        let now = clock::monotonic_ns();
        self.names
            .lock()
            .expect("names lock")
            .values()
            .map(|state| {
                state
                    .addresses
                    .values()
                    .filter(|expires| **expires > now)
                    .count()
            })
            .sum()
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
            cgroup: self.cgroup.clone(),
            applied_at: events::rfc3339(self.applied_at),
            rules: self.policy.egress.len(),
            drops,
            events_lost: counts.events_lost,
            names: names::status(&self.names),
        }
    }
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "enforce",
        Mode::Audit => "audit",
    }
}
