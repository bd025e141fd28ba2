//! A policy that is applied: one datapath instance per workload it selects,
//! and the task keeping its names resolved.

use std::{sync::Arc, time::SystemTime};

use openclaw_egress_common::{AllowKey, AllowValue, Direction, DropReason, Verdict};
use tokio::task::AbortHandle;

use super::{
    counts::Counts,
    events,
    instance::{Instance, Instances},
    workload::{self, Workload},
};
use crate::{
    api::{DropCount, NameStatus, PolicyStatus},
    fqdn::{learned, names::Names},
    policy::{Mode, Policy},
};

pub struct ActivePolicy {
    pub policy: Arc<Policy>,
    pub source: String,
    /// The policy text as applied (persisted for a restarted daemon).
    pub yaml: String,
    pub applied_at: SystemTime,
    pub instances: Instances,
    pub names: Names,
    pub resolver_task: AbortHandle,
}

impl ActivePolicy {
    pub fn workloads(&self) -> Vec<Workload> {
        self.instances()
            .iter()
            .map(|instance| instance.workload.clone())
            .collect()
    }

    pub fn instances(&self) -> Vec<Arc<Instance>> {
        self.instances.read().expect("instances lock").clone()
    }

    /// Live counters of all instances.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for instance in self.instances() {
            counts.add(&instance.counts());
        }
        counts
    }

    /// Ends every instance (see [`Instance::retire`]) and returns their
    /// final counters.
    pub fn retire(&self, detach: bool) -> Counts {
        self.resolver_task.abort();
        let mut counts = Counts::default();
        for instance in self.instances.write().expect("instances lock").drain(..) {
            counts.add(&instance.retire(detach));
        }
        counts
    }

    /// Every `ALLOW` entry of every instance.
    pub fn allow_entries(&self) -> Vec<(AllowKey, AllowValue)> {
        self.instances()
            .iter()
            .flat_map(|instance| instance.allow_entries())
            .collect()
    }

    /// Kernel memory of the maps of every instance, in bytes.
    pub fn memory(&self) -> u64 {
        self.instances()
            .iter()
            .map(|instance| instance.memory())
            .sum()
    }

    /// Distinct addresses currently allowed through names (resolved or learned).
    pub fn learned_ips(&self) -> usize {
        learned::live_addresses(&self.allow_entries())
    }

    /// The name rules and the addresses each currently allows (in any
    /// instance).
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
        for verdict in Verdict::COUNTED {
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
        let workloads = self.workloads();
        let (cgroup, interfaces) = workload::cgroup_and_interfaces(&workloads);
        PolicyStatus {
            name: self.policy.name.clone(),
            mode: mode_name(self.policy.mode).into(),
            source: self.source.clone(),
            cgroup,
            interfaces,
            workloads: workloads.iter().map(ToString::to_string).collect(),
            applied_at: events::rfc3339(self.applied_at),
            rules: self.policy.egress.len(),
            drops,
            events_lost: counts.events_lost,
            map_memory_bytes: self.memory(),
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
