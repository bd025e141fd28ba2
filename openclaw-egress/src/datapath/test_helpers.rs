//! Running the programs without attaching them, for the kernel tests and
//! the benchmarks (feature `test-helpers`, which the daemon never enables):
//! an unpinned datapath, versions in force for a workload number with no
//! hooks, and `BPF_PROG_TEST_RUN` on hand-built frames (see `frames`).

use std::sync::Arc;

use openclaw_egress_common::workload::{active_entry, active_epoch, active_slot};

use super::{
    Build, Capacities, Datapath, DatapathError, Hooks, PolicyDatapath, Result,
    stub::{Entry, WORKLOAD_CB_OFFSET},
};
use crate::bpf_sys;
pub use crate::bpf_sys::TestRun;

/// `sizeof(struct __sk_buff)`: the context given to test runs.
const SK_BUFF_LEN: usize = 192;

/// The embedded eBPF object (e.g. to measure what verifying it costs).
pub fn object() -> &'static [u8] {
    Build::Plain.object()
}

impl Datapath {
    /// Loads and verifies the programs, unpinned (gone with the process).
    pub fn load() -> Result<Self> {
        Self::load_into(None, Build::Plain)
    }

    /// Runs the shared program of `entry` `repeat` times on `frame` as the
    /// stub of workload number `workload` would (through
    /// `BPF_PROG_TEST_RUN`; `context`, if given, is the packet's `struct
    /// __sk_buff`, whose `cb[0]` is set to the workload).
    pub fn test_run(
        &self,
        entry: Entry,
        workload: u32,
        frame: &[u8],
        context: Option<&[u8]>,
        repeat: u32,
    ) -> Result<TestRun> {
        let mut skb = context.map_or_else(|| vec![0u8; SK_BUFF_LEN], <[u8]>::to_vec);
        if skb.len() < WORKLOAD_CB_OFFSET + 4 {
            skb.resize(WORKLOAD_CB_OFFSET + 4, 0);
        }
        skb[WORKLOAD_CB_OFFSET..WORKLOAD_CB_OFFSET + 4].copy_from_slice(&workload.to_ne_bytes());
        bpf_sys::test_run(self.entry_program(entry), frame, Some(&skb), repeat).map_err(|source| {
            DatapathError::TestRun {
                name: entry.program(),
                source,
            }
        })
    }

    /// The slot and epoch in force for workload number `workload`, if any.
    pub fn in_force(&self, workload: u32) -> Option<(u32, u32)> {
        let entry = self.active().get(workload);
        (entry != 0).then(|| (active_slot(entry), active_epoch(entry)))
    }

    /// Slots in use.
    pub fn slots_in_use(&self) -> usize {
        self.numbers().used_slots().len()
    }
}

impl PolicyDatapath {
    /// Loads a private datapath with one slot of the largest capacities,
    /// runnable without attaching; nothing is in force until
    /// [`Self::install_static`] marks it ready.
    pub fn load(hooks: Hooks) -> Result<Self> {
        Self::unattached(&Arc::new(Datapath::load()?), hooks, &Capacities::MAX)
    }

    /// Like [`Self::create`], and in force for a workload number of its
    /// own with no hooks attached, so that its programs can be run on test
    /// packets.
    pub fn unattached(
        shared: &Arc<Datapath>,
        hooks: Hooks,
        capacities: &Capacities,
    ) -> Result<Self> {
        let mut datapath = Self::create(shared, hooks, capacities)?;
        let workload = shared.allocate_workload()?;
        shared
            .active()
            .set(workload, active_entry(datapath.slot, datapath.epoch));
        datapath.unattached = Some(workload);
        Ok(datapath)
    }

    /// The workload number test runs run as, if this version is unattached.
    pub fn unattached_workload(&self) -> Option<u32> {
        self.unattached
    }

    /// Runs the egress program on `frame` (an IP packet, as cgroup hooks
    /// see it) `repeat` times without attaching it, through
    /// `BPF_PROG_TEST_RUN`. The return value is 1 for pass, 0 for drop.
    pub fn test_run_egress(&self, frame: &[u8], repeat: u32) -> Result<TestRun> {
        self.test_run(Entry::Egress, frame, None, repeat)
    }

    /// Like [`Self::test_run_egress`], for the ingress (DNS learning) program.
    pub fn test_run_ingress(&self, frame: &[u8]) -> Result<TestRun> {
        self.test_run(Entry::Ingress, frame, None, 1)
    }

    /// Like [`Self::test_run_egress`], for the TC program that sees what the
    /// workload sends (the frame keeps its Ethernet header; TC_ACT_SHOT = 2
    /// is a drop, -1 = continue).
    pub fn test_run_tc_from_workload(&self, frame: &[u8]) -> Result<TestRun> {
        self.test_run(Entry::TcFromWorkload, frame, None, 1)
    }

    /// Like [`Self::test_run_ingress`], for the TC program on the way to the workload.
    pub fn test_run_tc_to_workload(&self, frame: &[u8]) -> Result<TestRun> {
        self.test_run(Entry::TcToWorkload, frame, None, 1)
    }

    /// Like [`Self::test_run_egress`] (one run), with `context` as the
    /// packet's `struct __sk_buff` (e.g. to mark it as a GSO packet); its
    /// `cb[0]` is set to the workload, as the stub would.
    pub fn test_run_egress_with_context(&self, frame: &[u8], context: &[u8]) -> Result<TestRun> {
        self.test_run(Entry::Egress, frame, Some(context), 1)
    }

    fn test_run(
        &self,
        entry: Entry,
        frame: &[u8],
        context: Option<&[u8]>,
        repeat: u32,
    ) -> Result<TestRun> {
        let workload = self.unattached.ok_or(DatapathError::NotRunnable)?;
        self.shared
            .test_run(entry, workload, frame, context, repeat)
    }
}
