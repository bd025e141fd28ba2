//! One policy version on one workload, and the one way to build one (an
//! apply and a pod that appears both do).

use std::sync::{Arc, Mutex, RwLock};

use openclaw_egress_common::{AllowKey, AllowValue, FlowKey};

use super::{
    counts::Counts,
    error::ApplyError,
    events::{SlotNames, SlotPolicy},
    state::InstanceRecord,
    workload::Workload,
};
use crate::{
    datapath::{Capacities, Datapath, PolicyDatapath, StaticEntries},
    policy::Policy,
};

/// What a new instance holds before it is attached.
pub struct Filling<'a> {
    /// The entries the policy text determines (readiness among them).
    pub entries: &'a StaticEntries,
    /// `ALLOW` entries: the daemon's resolutions of the policy's names, and
    /// what the workload learned under the version being replaced.
    pub allow: &'a [(AllowKey, AllowValue)],
    /// Flows allowed under the version being replaced that the new one
    /// allows too (TC verdict cache).
    pub flows: &'a [FlowKey],
    /// What the programs report beyond drops (`record` bits, see
    /// `recording`).
    pub record: u32,
}

pub struct Instance {
    pub workload: Workload,
    /// `None` once retired.
    datapath: Mutex<Option<PolicyDatapath>>,
}

/// The instances of one policy; shared with the task that keeps its names
/// resolved (which writes into every one of them).
pub type Instances = Arc<RwLock<Vec<Arc<Instance>>>>;

impl Instance {
    /// Creates the maps of policy `policy` for `workload` in `shared`,
    /// sized to the policy, fills them (the allow entries first, the static
    /// entries with the ready flag last, so the programs never act on half a
    /// policy) and puts them in force on the workload. On failure nothing of
    /// it is left, and whatever was in force before still is.
    pub fn build(
        policy: &Policy,
        workload: &Workload,
        shared: &Arc<Datapath>,
        filling: &Filling<'_>,
        slot_names: &SlotNames,
    ) -> Result<Arc<Self>, ApplyError> {
        let datapath_error = |error| ApplyError::Datapath {
            name: policy.name.clone(),
            workload: workload.to_string(),
            error: Box::new(error),
        };
        let capacities = Capacities::for_policy(filling.entries);
        let mut datapath = PolicyDatapath::create(shared, workload.hooks(), &capacities)
            .map_err(datapath_error)?;
        slot_names.name(
            datapath.slot(),
            SlotPolicy::new(&policy.name, &policy.egress),
        );
        let filled = (|| -> Result<(), ApplyError> {
            datapath
                .upsert_allow(filling.allow)
                .map_err(datapath_error)?;
            datapath
                .allow_flows(filling.flows)
                .map_err(datapath_error)?;
            datapath
                .install_static(filling.entries)
                .map_err(datapath_error)?;
            if filling.record != 0 {
                datapath
                    .set_record(filling.record)
                    .map_err(datapath_error)?;
            }
            workload
                .attach(&mut datapath)
                .map_err(|error| ApplyError::Attach {
                    name: policy.name.clone(),
                    workload: workload.to_string(),
                    error: Box::new(error),
                })
        })();
        match filled {
            Ok(()) => Ok(Self::start(workload.clone(), datapath)),
            Err(error) => {
                datapath.remove();
                Err(error)
            }
        }
    }

    /// Wraps a built (or adopted) policy version.
    pub fn start(workload: Workload, datapath: PolicyDatapath) -> Arc<Self> {
        Arc::new(Self {
            workload,
            datapath: Mutex::new(Some(datapath)),
        })
    }

    /// Runs `f` on the datapath unless the instance was retired.
    pub fn with<T>(&self, f: impl FnOnce(&mut PolicyDatapath) -> T) -> Option<T> {
        self.datapath.lock().expect("datapath lock").as_mut().map(f)
    }

    /// What a restarted daemon needs to adopt it: the workload's number,
    /// the slot and its epoch (once attached).
    pub fn record(&self) -> Option<InstanceRecord> {
        self.with(|datapath| {
            datapath.workloads().first().map(|&number| InstanceRecord {
                workload: self.workload.clone(),
                number,
                slot: datapath.slot(),
                epoch: datapath.epoch(),
            })
        })
        .flatten()
    }

    /// The kernel memory of this version's maps, in bytes.
    pub fn memory(&self) -> u64 {
        self.with(|datapath| datapath.memory()).unwrap_or_default()
    }

    pub fn counts(&self) -> Counts {
        self.with(|datapath| Counts::of(datapath))
            .unwrap_or_default()
    }

    /// The flows the TC verdict cache holds as allowed (none once retired).
    pub fn allowed_flows(&self) -> Vec<FlowKey> {
        self.with(|datapath| datapath.allowed_flows())
            .unwrap_or_default()
    }

    /// Every entry of the `ALLOW` map (none once retired).
    pub fn allow_entries(&self) -> Vec<(AllowKey, AllowValue)> {
        self.with(|datapath| datapath.allow_entries())
            .unwrap_or_default()
    }

    /// Ends the instance and returns its final counters. `detach` decides
    /// between ending it (its slot emptied, its workload detached unless a
    /// newer version holds it) and leaving it enforcing in the kernel, as on
    /// daemon shutdown.
    pub fn retire(&self, detach: bool) -> Counts {
        let counts = self.counts();
        if let Some(datapath) = self.datapath.lock().expect("datapath lock").take() {
            if detach {
                datapath.remove();
            } else {
                datapath.leave_in_place();
            }
        }
        counts
    }
}
