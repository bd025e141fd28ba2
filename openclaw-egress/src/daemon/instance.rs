//! One workload's datapath instance and the task forwarding its drop events,
//! and the one way to build one (an apply and a pod that appears both do).

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
};

use openclaw_egress_common::{AllowKey, AllowValue, FlowKey};
use tokio::{sync::broadcast, task::AbortHandle};

use super::{apply::ApplyError, counts::Counts, workload::Workload};
use crate::{
    api::DropRecord,
    datapath::{PolicyDatapath, StaticEntries},
    events,
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
}

pub struct Instance {
    pub workload: Workload,
    /// `None` once retired.
    datapath: Mutex<Option<PolicyDatapath>>,
    events_task: AbortHandle,
}

/// The instances of one policy; shared with the task that keeps its names
/// resolved (which writes into every one of them).
pub type Instances = Arc<RwLock<Vec<Arc<Instance>>>>;

impl Instance {
    /// Loads an instance of policy `policy` for `workload`, pinned under
    /// `pin_dir`, fills it (the allow entries first, the static entries with
    /// the ready flag last, so it never acts on half a policy) and attaches
    /// it. On failure nothing of it is left: not attached, not pinned.
    pub fn build(
        policy: &str,
        workload: &Workload,
        pin_dir: &std::path::Path,
        filling: &Filling<'_>,
        subscribers: broadcast::Sender<DropRecord>,
    ) -> Result<Arc<Self>, ApplyError> {
        let datapath_error = |error| ApplyError::Datapath {
            name: policy.to_string(),
            workload: workload.to_string(),
            error: Box::new(error),
        };
        let datapath =
            PolicyDatapath::load_pinned(workload.hooks(), pin_dir).map_err(datapath_error)?;
        let instance = Self::start(workload.clone(), datapath, policy, subscribers);
        let filled = instance
            .with(|datapath| -> Result<(), ApplyError> {
                datapath
                    .upsert_allow(filling.allow)
                    .map_err(datapath_error)?;
                datapath
                    .allow_flows(filling.flows)
                    .map_err(datapath_error)?;
                datapath
                    .install_static(filling.entries)
                    .map_err(datapath_error)?;
                workload
                    .attach(datapath)
                    .map_err(|error| ApplyError::Attach {
                        name: policy.to_string(),
                        workload: workload.to_string(),
                        error: Box::new(error),
                    })
            })
            .expect("a new instance is not retired");
        match filled {
            Ok(()) => Ok(instance),
            Err(error) => {
                instance.retire(true);
                Err(error)
            }
        }
    }

    /// Wraps a loaded (or adopted) datapath and starts forwarding its events.
    pub fn start(
        workload: Workload,
        mut datapath: PolicyDatapath,
        policy: &str,
        subscribers: broadcast::Sender<DropRecord>,
    ) -> Arc<Self> {
        let events_task = match datapath.take_events() {
            Some(ring) => {
                tokio::spawn(events::forward(ring, policy.to_string(), subscribers)).abort_handle()
            }
            None => tokio::spawn(async {}).abort_handle(),
        };
        Arc::new(Self {
            workload,
            datapath: Mutex::new(Some(datapath)),
            events_task,
        })
    }

    /// Runs `f` on the datapath unless the instance was retired.
    pub fn with<T>(&self, f: impl FnOnce(&mut PolicyDatapath) -> T) -> Option<T> {
        self.datapath.lock().expect("datapath lock").as_mut().map(f)
    }

    pub fn pin_dir(&self) -> Option<PathBuf> {
        self.with(|datapath| datapath.pin_dir().map(PathBuf::from))
            .flatten()
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
    /// between detaching it (and removing its pins) and leaving it enforcing
    /// in the kernel, as on daemon shutdown.
    pub fn retire(&self, detach: bool) -> Counts {
        self.events_task.abort();
        let counts = self.counts();
        if let Some(datapath) = self.datapath.lock().expect("datapath lock").take() {
            if detach {
                datapath.remove();
            } else {
                drop(datapath);
            }
        }
        counts
    }
}
