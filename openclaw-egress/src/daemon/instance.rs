//! One workload's datapath instance and the task forwarding its drop events.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
};

use openclaw_egress_common::{AllowKey, AllowValue};
use tokio::{sync::broadcast, task::AbortHandle};

use super::{counts::Counts, workload::Workload};
use crate::{api::DropRecord, datapath::PolicyDatapath, events};

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
